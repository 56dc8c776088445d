"""Weight initialisation, with PyTorch's names and formulas (``torch.nn.init``).

Every function fills a Tensor in place (no gradient is recorded) and returns
it. Random numbers come from ``minidl.tensor.default_rng()``, so
``minidl.manual_seed(s)`` makes initialisation reproducible.

For a weight of shape (out, in, *kernel), with receptive field r = prod(kernel):
    fan_in = in * r,    fan_out = out * r.
He (Kaiming) keeps the variance of the activations through ReLU layers:
    std = gain / sqrt(fan),  uniform bound = sqrt(3) * std.
Glorot (Xavier) balances the forward and backward passes:
    std = gain * sqrt(2 / (fan_in + fan_out)),  uniform bound = sqrt(3) * std.
"""
import math
import numbers

import numpy as np

from ..backend import to_device
from ..tensor import Tensor, default_rng


def calculate_gain(nonlinearity, param=None):
    """The gain that keeps the activations' variance for ``nonlinearity``.

    linear, conv*, sigmoid: 1;  tanh: 5/3;  relu: sqrt(2);
    leaky_relu with negative slope a (``param``, default 0.01): sqrt(2 / (1 + a^2));
    selu: 3/4.
    """
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight (out, in, *kernel): in * r and out * r."""
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dims, got "
                         f"shape {tuple(tensor.shape)}")
    receptive_field = int(np.prod(tensor.shape[2:]))
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _kaiming_std(tensor, a, mode, nonlinearity):
    """gain / sqrt(fan); 0 for an empty tensor (nothing to fill)."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0


def _xavier_std(tensor, gain):
    """gain * sqrt(2 / (fan_in + fan_out)); 0 for an empty tensor."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return gain * math.sqrt(2.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0


# ----------------------------------------------------------------------------
# filling a tensor
# ----------------------------------------------------------------------------
def _check(tensor, fn):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{fn}: expected a Tensor, got {type(tensor).__name__}")


def _fill(tensor, values):
    """Write the NumPy array ``values`` into ``tensor`` (its dtype, its device)."""
    tensor.data[...] = to_device(values.astype(tensor.dtype, copy=False), tensor.device)
    return tensor


def _draw_dtype(tensor):
    # the Generator draws float32 or float64 directly: no float64 temporary
    # the size of a 37M-element AlexNet layer when the weight is float32
    return np.float64 if tensor.dtype == np.float64 else np.float32


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with samples of U(a, b)."""
    _check(tensor, "uniform_")
    if not a <= b:
        raise ValueError(f"uniform_: need a <= b, got a={a}, b={b}")
    r = default_rng().random(tensor.shape, dtype=_draw_dtype(tensor))   # U(0, 1)
    return _fill(tensor, a + (b - a) * r)


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with samples of N(mean, std^2)."""
    _check(tensor, "normal_")
    if std < 0:
        raise ValueError(f"normal_: std must be >= 0, got {std}")
    z = default_rng().standard_normal(tensor.shape, dtype=_draw_dtype(tensor))
    return _fill(tensor, mean + std * z)


def constant_(tensor, val):
    """Fill with the value ``val``."""
    _check(tensor, "constant_")
    tensor.data[...] = val
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0)


def ones_(tensor):
    return constant_(tensor, 1)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """He uniform: U(-bound, bound), bound = sqrt(3) * gain / sqrt(fan).

    ``a`` is the negative slope of leaky_relu (PyTorch's Linear and Conv2d use
    a = sqrt(5), which gives bound = 1 / sqrt(fan_in))."""
    _check(tensor, "kaiming_uniform_")
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """He normal: N(0, std^2), std = gain / sqrt(fan)."""
    _check(tensor, "kaiming_normal_")
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def xavier_uniform_(tensor, gain=1.0):
    """Glorot uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    _check(tensor, "xavier_uniform_")
    bound = math.sqrt(3.0) * _xavier_std(tensor, gain)
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """Glorot normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    _check(tensor, "xavier_normal_")
    return normal_(tensor, 0.0, _xavier_std(tensor, gain))
