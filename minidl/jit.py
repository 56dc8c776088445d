"""Numba set-up shared by every CPU kernel.

``njit`` is ``numba.njit(cache=True)``: compiled machine code is written to
disk, so only the first run on a machine pays the compile time. The cache
goes to ``$NUMBA_CACHE_DIR`` if set, else to ``~/.cache/minidl/numba``
(``$MINIDL_CACHE_DIR`` overrides) — a writable place even when minidl is
installed read-only in site-packages.
"""
import functools
import os

_default = os.path.join(os.environ.get("MINIDL_CACHE_DIR")
                        or os.path.join(os.path.expanduser("~"), ".cache", "minidl"), "numba")
os.environ.setdefault("NUMBA_CACHE_DIR", _default)

import numba  # noqa: E402  (after NUMBA_CACHE_DIR is set)

if not numba.config.CACHE_DIR:          # numba was imported before minidl
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

njit = functools.partial(numba.njit, cache=True)
prange = numba.prange
