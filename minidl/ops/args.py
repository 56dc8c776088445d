"""Argument parsing shared by the ops and layers."""
import numbers


def pair(op, name, value):
    """An int or a pair of ints -> (int, int), as PyTorch's kernel_size=3 -> (3, 3).

    ValueError for a sequence that is not of length 2, TypeError for anything
    that is not an int (bools included); both name ``op`` and ``name``."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return int(items[0]), int(items[1])
