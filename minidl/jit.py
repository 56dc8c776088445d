"""Numba set-up shared by every CPU kernel.

``njit`` is ``numba.njit(cache=True, nogil=True)``. nogil: the compiled
loops release the GIL, so conv2d's workers (ops/parallel.py) run them on
several cores at once. cache: compiled machine code is written to disk, so
only the first run on a machine pays the compile time. The cache
goes under ``$NUMBA_CACHE_DIR`` if set, else under ``~/.cache/minidl/numba``
(``$MINIDL_CACHE_DIR`` overrides) — a writable place even when minidl is
installed read-only in site-packages — in a folder named by a hash of
minidl's own source files, ``minidl-<hash>``. Numba checks that the file
of a cached function is unchanged, but not the files of the helpers it
compiled in: pool.py's kernels inline im2col.py's row loops, so after an
edit of im2col.py they would still run the old loops from the cache. A
new hash is a new, empty folder: any edit recompiles every kernel once
(a few seconds). The folders of the last KEPT_CACHES sources are kept.

Threading layer: ``workqueue`` unless ``$NUMBA_THREADING_LAYER`` says
otherwise. With the default OpenMP layer, libgomp's threads spin after each
parallel loop and steal the cores from the BLAS threads of the next GEMM:
a LeNet-5 training step (batch 32, 2 cores) measured 142 ms with OpenMP
against 8 ms with workqueue. The price: workqueue must not be entered from
two Python threads at once (minidl's DataLoader threads run only the
transforms: scipy, and warp_bilinear, which is not a parallel kernel).
"""
import functools
import glob
import hashlib
import os
import re
import shutil

KEPT_CACHES = 3
PREFIX = "minidl-"                      # names the cache folders this module makes
CACHE_FOLDER = re.compile(PREFIX + "[0-9a-f]{16}")   # minidl-<source_hash()>


def source_hash():
    """Hash of every .py file of the package, names and contents (a few ms)."""
    root = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha1()
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        digest.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def cache_dir():
    """The folder of this source's compiled kernels (see the module docstring).
    A NUMBA_CACHE_DIR that a parent minidl process set ends in its own
    minidl-<hash>: that part is dropped, so the child uses its own."""
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("MINIDL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "minidl"),
        "numba")
    if CACHE_FOLDER.fullmatch(os.path.basename(os.path.normpath(base))):
        base = os.path.dirname(os.path.normpath(base))
    return os.path.join(base, PREFIX + source_hash())


def prune_old_caches(current, keep=KEPT_CACHES):
    """Delete all but the ``keep`` most recently used minidl-<hash> folders beside ``current``."""
    def last_used(folder):
        try:
            return os.path.getmtime(folder)
        except OSError:                 # removed meanwhile by another process
            return 0.0

    folders = [f for f in glob.glob(os.path.join(os.path.dirname(current), PREFIX + "*"))
               if CACHE_FOLDER.fullmatch(os.path.basename(f))]
    folders.sort(key=lambda f: (f == current, last_used(f)), reverse=True)
    for old in folders[keep:]:
        shutil.rmtree(old, ignore_errors=True)


CACHE_DIR = cache_dir()
try:
    if not os.path.isdir(CACHE_DIR):    # a source not seen before: make room for its kernels
        os.makedirs(CACHE_DIR, exist_ok=True)
        prune_old_caches(CACHE_DIR)
    os.utime(CACHE_DIR)                 # marks it used, for prune_old_caches
except OSError:                         # not writable: Numba says so when it compiles
    pass
os.environ["NUMBA_CACHE_DIR"] = CACHE_DIR   # Numba re-reads NUMBA_* at each compilation
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

import numba  # noqa: E402  (after the NUMBA_* variables are set)

numba.config.CACHE_DIR = CACHE_DIR      # also when numba was imported before minidl
if not numba.config.THREADING_LAYER or numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = os.environ["NUMBA_THREADING_LAYER"]

njit = functools.partial(numba.njit, cache=True, nogil=True)
prange = numba.prange
