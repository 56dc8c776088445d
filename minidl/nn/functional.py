"""The functional API, ``import minidl.nn.functional as F``.

Thin public names over ``minidl.ops``: each operation's formula, naive
reference, fast kernels and backward live in its ops module.
"""
from ..ops.conv import conv2d
from ..ops.pool import max_pool2d, avg_pool2d, adaptive_avg_pool2d
from ..ops.lrn import local_response_norm
from ..ops.layers import linear, dropout, batch_norm
from ..ops.loss import softmax, log_softmax, cross_entropy


def relu(x):
    """max(x, 0), elementwise."""
    return x.relu()


def tanh(x):
    return x.tanh()


def sigmoid(x):
    """1 / (1 + exp(-x)), elementwise."""
    return x.sigmoid()


__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
           "local_response_norm", "linear", "dropout", "batch_norm", "softmax",
           "log_softmax", "cross_entropy", "relu", "tanh", "sigmoid"]
