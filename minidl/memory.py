"""Keep freed memory in the process instead of handing it back to the OS.

NumPy allocates every array with malloc. glibc serves a big request with a
fresh mmap (or grows the heap) and, when the array is freed, unmaps it or
trims the heap as soon as more than M_TRIM_THRESHOLD bytes are free at its
top (by default twice the largest block freed so far). The next call of the
same layer then page-faults all of that memory in again, zero-filled by the
kernel: a forward pass that frees three 9 MB arrays every call (LRN keeps
y, s and p) pays ~7,000 page faults each time.

minidl therefore sets, once, at import (Linux with glibc only):

    M_MMAP_THRESHOLD = 64 MiB    requests below it come from the heap
                                 (32 MiB where glibc refuses more)
    M_TRIM_THRESHOLD = 1 GiB     up to 1 GiB of free heap is kept

so that, after the first training step, the arrays of every later step reuse
the same pages. The price is the one every caching allocator (PyTorch's
CUDA allocator, jemalloc, tcmalloc) pays: the process keeps its high-water
mark of heap memory instead of shrinking after a peak. Arrays above 64 MiB
are still mmapped and unmapped (VGG-16's first activations at batch 32).

Measured with `python benchmarks/run.py` (2 threads, medians; two runs with
glibc's defaults, then two with these settings): LRN 8x96x55x55 forward
24 / 13.8 ms -> 3.5 / 2.9 ms; LeNet conv2 forward+backward 3.0 / 2.7 ->
1.7 / 1.6 ms; VGG 2x2 max-pool forward 51 / 52 -> 34 / 45 ms; a ResNet-50
training step (batch 4) 1,424 -> 1,196 ms, its peak RSS unchanged (1,259
MB). Set MINIDL_MALLOC_DEFAULTS=1 to leave glibc's defaults alone.
"""
import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD = 64 * 2**20
TRIM_THRESHOLD = 2**30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3          # from glibc's malloc.h


def keep_freed_memory():
    """Set glibc's thresholds as the module docstring says. Returns True if
    they were set, False where it does not apply (not glibc, or opted out)."""
    if os.environ.get("MINIDL_MALLOC_DEFAULTS") == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):                   # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # older glibc refuses an mmap threshold above 32 MiB: then take 32 MiB
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) or
            mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
