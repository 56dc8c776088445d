"""Numba set-up shared by every CPU kernel.

``njit`` is ``numba.njit(cache=True)``: compiled machine code is written to
disk, so only the first run on a machine pays the compile time. The cache
goes to ``$NUMBA_CACHE_DIR`` if set, else to ``~/.cache/minidl/numba``
(``$MINIDL_CACHE_DIR`` overrides) — a writable place even when minidl is
installed read-only in site-packages.

Threading layer: ``workqueue`` unless ``$NUMBA_THREADING_LAYER`` says
otherwise. With the default OpenMP layer, libgomp's threads spin after each
parallel loop and steal the cores from the BLAS threads of the next GEMM:
a LeNet-5 training step (batch 32, 2 cores) measured 142 ms with OpenMP
against 8 ms with workqueue. The price: workqueue must not be entered from
two Python threads at once (minidl's DataLoader threads run only the
transforms, which use scipy, never these kernels).
"""
import functools
import os

_default = os.path.join(os.environ.get("MINIDL_CACHE_DIR")
                        or os.path.join(os.path.expanduser("~"), ".cache", "minidl"), "numba")
os.environ.setdefault("NUMBA_CACHE_DIR", _default)
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

import numba  # noqa: E402  (after NUMBA_CACHE_DIR is set)

if not numba.config.CACHE_DIR:          # numba was imported before minidl
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    numba.config.THREADING_LAYER = os.environ["NUMBA_THREADING_LAYER"]

njit = functools.partial(numba.njit, cache=True)
prange = numba.prange
