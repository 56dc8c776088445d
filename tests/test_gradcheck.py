"""gradcheck itself: it passes correct gradients and catches wrong ones."""
import numpy as np
import pytest

import minidl
from minidl import GradcheckError, Tensor, gradcheck
from minidl.tensor import Function


def t64(a):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


class WrongSquare(Function):
    """y = x^2 with a deliberately wrong backward (x instead of 2x)."""
    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return gy * self.x


def test_catches_detach_trick():
    # autograd sees d/dx (x * const) = x, the true derivative is 2x
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda x: x * x.detach(), [t64([1.0, 2.0, 3.0])])
    msg = str(info.value)
    assert "input 0" in msg and "analytic" in msg and "numeric" in msg


def test_catches_wrong_backward_elementwise_and_directional():
    x = t64(np.linspace(0.5, 2, 12).reshape(3, 4))
    with pytest.raises(GradcheckError, match=r"element \(\d, \d\)"):
        gradcheck(lambda x: WrongSquare()(x), [x], mode="elementwise")
    with pytest.raises(GradcheckError, match="directional"):
        gradcheck(lambda x: WrongSquare()(x), [x], mode="directional")


def test_directional_mode_on_large_input_passes_and_fails():
    rng = np.random.default_rng(0)
    x = t64(rng.uniform(0.5, 1.5, 10000))
    assert gradcheck(lambda x: (x * x).tanh(), [x])
    with pytest.raises(GradcheckError):
        gradcheck(lambda x: WrongSquare()(x).sum(), [x])


def test_names_the_failing_input_among_several():
    a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(lambda a, b: a + WrongSquare()(b), [a, b], mode="elementwise")


def test_float32_inputs_are_checked_in_float64():
    x = Tensor(np.array([0.3, 0.7], dtype=np.float32), requires_grad=True)
    assert gradcheck(lambda x: x.exp() * x, [x])


def test_tuple_outputs_and_non_grad_inputs():
    a, c = t64([1.0, 2.0]), Tensor(np.array([5.0, 6.0]))
    assert gradcheck(lambda a, c: (a * c, a.exp()), [a, c])


def test_no_input_requiring_grad_is_an_error():
    with pytest.raises(ValueError, match="requires grad"):
        gradcheck(lambda x: x * 2, [Tensor(np.ones(2))])


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        gradcheck(lambda x: x, [t64([1.0])], mode="bogus")


def test_error_is_an_assertion_error():
    assert issubclass(minidl.GradcheckError, AssertionError)
