"""The engine's semantics: accumulation, no_grad, detach, released graphs,
deep chains, non-scalar backward, devices and bad input."""
import gc
import tracemalloc

import numpy as np
import pytest

import minidl
from minidl import Tensor
from minidl.ops.loss import cross_entropy


def t64(a, requires_grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def test_gradients_accumulate_across_backward_calls():
    x = t64([1.0, 2.0])
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3 + 2, 3 + 4])


def test_shared_subexpression_sums_both_paths():
    x = t64(2.0)
    y = x * x
    z = y + y * x          # x^2 + x^3 -> 2x + 3x^2 = 16
    z.backward()
    assert x.grad.item() == 16.0


def test_no_grad_records_nothing():
    x = t64([1.0])
    with minidl.no_grad():
        y = x * 2
        assert not minidl.is_grad_enabled()
        with minidl.enable_grad():
            assert minidl.is_grad_enabled()
    assert minidl.is_grad_enabled()
    assert not y.requires_grad and y.creator is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_detach_stops_gradient():
    x = t64([3.0])
    (x * x.detach()).sum().backward()
    assert x.grad.item() == 3.0      # d/dx of x * const, not 2x


def test_only_leaves_keep_grad():
    x = t64([1.0])
    y = x * 2
    (y * 3).sum().backward()
    assert y.grad is None and x.grad.item() == 6.0


def test_second_backward_through_released_graph_raises():
    x = t64([1.0, 2.0])
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = t64([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 8.0])


def test_deep_chain_needs_no_recursion():
    x = t64([1.0])
    y = x
    for _ in range(20000):
        y = y + 1e-4
    y.sum().backward()
    assert x.grad.item() == 1.0


def test_nonscalar_backward_needs_grad_argument():
    x = t64([1.0, 2.0])
    y = x * 2
    with pytest.raises(RuntimeError, match="scalar"):
        y.backward()
    y.backward(grad=np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 20.0])


def test_backward_grad_of_wrong_shape():
    x = t64([1.0, 2.0])
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(grad=np.ones(3))


def _training_step(w, x, target):
    loss = cross_entropy(x @ w, target)
    loss.backward()
    w.data -= 0.1 * w.grad.data
    w.grad = None


def test_memory_does_not_grow_across_training_steps():
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal((256, 10)).astype(np.float32), requires_grad=True)
    x = Tensor(rng.standard_normal((512, 256)).astype(np.float32))
    target = rng.integers(0, 10, 512)
    for _ in range(3):
        _training_step(w, x, target)
    gc.collect()
    tracemalloc.start()
    _training_step(w, x, target)
    first, _ = tracemalloc.get_traced_memory()
    for _ in range(20):
        _training_step(w, x, target)
    last, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert last - first < 200_000, f"memory grew by {last - first} bytes over 20 steps"


def test_saved_buffers_released_after_backward():
    x = t64(np.ones(1000))
    y = x.exp()
    fn = y.creator
    y.sum().backward()
    assert fn.released and not hasattr(fn, "y") and not hasattr(fn, "inputs")


def test_requires_grad_only_for_floats():
    with pytest.raises(TypeError, match="floating"):
        Tensor(np.array([1, 2]), requires_grad=True)


def test_non_numeric_data_rejected():
    with pytest.raises(TypeError, match="numeric"):
        Tensor(["a", "b"])
    with pytest.raises(TypeError, match="numeric"):
        Tensor({"a": 1})


@pytest.mark.parametrize("op", ["add", "mul", "sub", "div"])
def test_incompatible_shapes_name_op_and_shapes(op):
    a, b = t64(np.ones((2, 3))), t64(np.ones((4,)))
    fn = {"add": lambda: a + b, "mul": lambda: a * b, "sub": lambda: a - b,
          "div": lambda: a / b}[op]
    with pytest.raises(ValueError, match=rf"{op}: shapes \(2, 3\) and \(4,\)"):
        fn()


def test_matmul_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\)"):
        t64(np.ones((2, 3))) @ t64(np.ones((4, 5)))


def test_reshape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4,\)"):
        t64(np.ones((2, 3))).reshape(4)


def test_cross_entropy_rejects_float_targets_and_out_of_range():
    logits = t64(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="integer"):
        cross_entropy(logits, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        cross_entropy(logits, np.array([0, 1, 2]))


@pytest.mark.skipif(minidl.cuda_is_available(),
                    reason="a GPU is present: the no-GPU message cannot be shown")
def test_to_cuda_without_gpu_is_one_clear_line():
    with pytest.raises(RuntimeError) as info:
        minidl.ones(2).to("cuda")
    msg = str(info.value)
    assert "\n" not in msg and ("GPU" in msg or "CuPy" in msg)
    assert 'pip install ".[gpu]"' in msg or "no usable GPU" in msg


def test_bad_device_name():
    with pytest.raises(ValueError, match="device"):
        minidl.ones(2).to("tpu")


@pytest.mark.skipif(not minidl.cuda_is_available(), reason="needs a CUDA GPU and CuPy")
def test_mixing_devices_names_both():
    a, b = minidl.ones(2), minidl.ones(2).to("cuda")
    with pytest.raises(RuntimeError, match="cpu.*cuda|cuda.*cpu"):
        a + b


def test_mixing_devices_error_message_without_gpu():
    # The check itself needs no GPU: it compares the devices of the inputs.
    from minidl.tensor import _check_same_device

    class FakeCuda:
        device, shape = "cuda", (2,)
    with pytest.raises(RuntimeError, match=r"Add: .*cpu \(2,\), cuda \(2,\)"):
        _check_same_device("Add", [minidl.ones(2), FakeCuda()])


def test_item_numpy_and_conversions():
    x = Tensor(np.array([[1.5]]))
    assert x.item() == 1.5
    assert isinstance(x.numpy(), np.ndarray)
    assert x.float().dtype == np.float32 and x.float().double().dtype == np.float64
    x64 = t64([1.0, 2.0])
    (x64.float() * 2).sum().backward()
    assert x64.grad.dtype == np.float64
    assert minidl.zeros(2, 3).shape == (2, 3) and minidl.ones((4,)).dtype == np.float32
    minidl.manual_seed(0)
    a = minidl.randn(3).numpy()
    minidl.manual_seed(0)
    assert np.array_equal(a, minidl.randn(3).numpy())
