"""The layers: Modules that hold their weights and settings and call the
functions of ``minidl.nn.functional`` in ``forward``.

Weights start as PyTorch's do: kaiming_uniform_(a=sqrt(5)) for Linear and
Conv2d weights, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same
uniform for their biases. Each layer checks its input and names itself and
both shapes in the error (a network adds the layer's dotted name).
"""
import math
import numbers

import numpy as np

from . import functional as F
from . import init
from .module import Module, Parameter
from ..ops.args import pair
from ..tensor import Tensor


def _positive_int(value, name, layer):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return int(value)


def _expect_4d(layer, x):
    if x.ndim != 4:
        raise ValueError(f"{layer} expected a 4-D input (N, C, H, W), got shape "
                         f"{tuple(x.shape)}; for one image use x.reshape(1, *x.shape)")


def _empty(*shape):
    return np.empty(shape, dtype=np.float32)       # filled by the initialiser at once


def _init_weight_and_bias(weight, bias):
    """PyTorch's default: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)) for
    the weight, U(+-1/sqrt(fan_in)) for the bias."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound)


# ----------------------------------------------------------------------------
# layers with weights
# ----------------------------------------------------------------------------
class Linear(Module):
    """y = x W^T + b.  x: (..., in_features) -> y: (..., out_features);
    weight: (out_features, in_features), bias: (out_features,)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features", "Linear")
        self.out_features = _positive_int(out_features, "out_features", "Linear")
        self.weight = Parameter(_empty(out_features, in_features))
        self.register_parameter("bias", Parameter(_empty(out_features)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self):
        _init_weight_and_bias(self.weight, self.bias)

    def forward(self, x):
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expected input (..., {self.in_features}) with "
                             f"in_features={self.in_features}, got shape {tuple(x.shape)}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Conv2d(Module):
    """2-D convolution (cross-correlation) of (N, C_in, H, W) images.

    weight: (out_channels, in_channels / groups, kH, kW), bias: (out_channels,).
    Output: (N, out_channels, H_out, W_out) with, per spatial dim,
    H_out = floor((H + 2 padding - dilation (kH - 1) - 1) / stride) + 1.
    ``padding`` may also be "same" or "valid".
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels", "Conv2d")
        self.out_channels = _positive_int(out_channels, "out_channels", "Conv2d")
        self.groups = _positive_int(groups, "groups", "Conv2d")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels={in_channels} and out_channels="
                             f"{out_channels} must both be divisible by groups={groups}")
        self.kernel_size = pair(type(self).__name__, "kernel_size", kernel_size)
        self.stride = pair(type(self).__name__, "stride", stride)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'same' or "
                                 f"'valid', got {padding!r}")
            self.padding = padding
        else:
            self.padding = pair(type(self).__name__, "padding", padding)
        self.dilation = pair(type(self).__name__, "dilation", dilation)
        self.weight = Parameter(_empty(out_channels, in_channels // groups, *self.kernel_size))
        self.register_parameter("bias", Parameter(_empty(out_channels)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self):
        _init_weight_and_bias(self.weight, self.bias)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            got = f": a {x.shape[1]}-channel input" if x.ndim == 4 else ""
            raise ValueError(f"Conv2d expected input (N, {self.in_channels}, H, W) with "
                             f"in_channels={self.in_channels}, got shape {tuple(x.shape)}{got}")
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class BatchNorm2d(Module):
    """Batch normalization of (N, C, H, W) per channel: y = gamma xhat + beta.

    Training: xhat uses the batch's mean and (biased) variance, and the
    buffers are updated, running = (1 - momentum) running + momentum batch,
    with the unbiased batch variance for running_var (momentum=None: the
    cumulative average over the num_batches_tracked batches). Eval: xhat uses
    running_mean and running_var. Buffers: running_mean (C,), running_var
    (C,), num_batches_tracked (int64 scalar), as torchvision names them.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features", "BatchNorm2d")
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=np.float32))     # gamma
            self.bias = Parameter(np.zeros(num_features, dtype=np.float32))      # beta
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, np.float32)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d expected input (N, {self.num_features}, H, W) with "
                             f"num_features={self.num_features}, got shape {tuple(x.shape)}")
        update = self.training and self.track_running_stats
        if self.momentum is not None:
            momentum = self.momentum
        else:                           # cumulative average: batch k weighs 1 / k
            momentum = 1.0 / (int(self.num_batches_tracked.item()) + 1) if update else 0.0
        y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         training=self.training or not self.track_running_stats,
                         momentum=momentum, eps=self.eps)
        if update:
            self.num_batches_tracked.data += 1
        return y

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


# ----------------------------------------------------------------------------
# pooling and normalization
# ----------------------------------------------------------------------------
class MaxPool2d(Module):
    """The maximum of each kernel_size window, moved by stride (default: kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode

    def forward(self, x):
        _expect_4d("MaxPool2d", x)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """The mean of each kernel_size window, moved by stride (default: kernel_size);
    count_include_pad: zero padding counts in the divisor."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, x):
        _expect_4d("AvgPool2d", x)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed (H_out, W_out) whatever the input size."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        _expect_4d("AdaptiveAvgPool2d", x)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class LocalResponseNorm(Module):
    """b_c = a_c / (k + alpha * sum_{c' in window(c)} a_c'^2) ** beta across channels,
    the window being ``size`` channels centred on c (Krizhevsky et al. 2012).

    alpha is NOT divided by size (PyTorch's LocalResponseNorm divides it):
    PyTorch's LocalResponseNorm(size, alpha) equals this one with alpha / size.
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        self.size = _positive_int(size, "size", "LocalResponseNorm")
        self.alpha, self.beta, self.k = alpha, beta, k

    def forward(self, x):
        _expect_4d("LocalResponseNorm", x)
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


# ----------------------------------------------------------------------------
# activations, dropout, reshaping
# ----------------------------------------------------------------------------
class ReLU(Module):
    """max(x, 0). ``inplace`` is accepted for PyTorch compatibility and ignored:
    minidl never overwrites an input (autograd may need it)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.relu(x)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Softmax(Module):
    """exp(x_i) / sum_j exp(x_j) along ``dim``."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log softmax(x) = x_i - log sum_j exp(x_j) along ``dim``, computed stably."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.log_softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Dropout(Module):
    """Inverted dropout in training (zero with probability p, scale the rest by
    1 / (1 - p)); the identity in eval mode."""

    def __init__(self, p=0.5):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Identity(Module):
    """forward(x) = x (a placeholder, e.g. for a removed classifier)."""

    def forward(self, x):
        return x


class Flatten(Module):
    """Merge dims start_dim..end_dim: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
