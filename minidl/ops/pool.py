"""Placeholder: pooling is being written (issue 3)."""


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    raise NotImplementedError


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    raise NotImplementedError


def adaptive_avg_pool2d(x, output_size):
    raise NotImplementedError
