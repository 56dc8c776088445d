"""Loading the CUDA C kernels of ``kernels/*.cu`` and launching them.

This is the only module that knows about grids and blocks. An op's GPU twin
allocates its outputs with ``xp`` and calls::

    from minidl import cuda
    cuda.launch("conv.cu", "im2col", n_threads, (x, np.int32(C), ..., col), x.dtype)

What ``launch`` does, step by step:

1. finds ``conv.cu`` (package data ``minidl/kernels/`` once installed,
   ``<repo>/kernels/`` in a source checkout; a path to any .cu file works too)
   and parses every ``extern "C" __global__ void name(args)`` in it;
2. checks ``args`` against the C signature of ``name``: an array for each
   pointer, whose dtype is the pointee type (``scalar_t*`` -> ``dtype``,
   ``int*`` -> int32, ``long long*`` -> int64), and a NumPy scalar of exactly
   the C type for each value (``int`` -> ``np.int32``, ``long long`` ->
   ``np.int64``, ``scalar_t`` -> ``dtype``'s scalar type). A mismatch raises
   TypeError: CuPy would pass a Python ``int`` as 64 bits to an ``int``
   parameter and the kernel would silently read garbage;
3. picks a 1-D grid: ``block = 256`` threads, ``grid = ceil(n / 256)`` blocks
   capped at ``MAX_BLOCKS``; kernels use a grid-stride loop, so any ``n`` is
   covered;
4. calls the active launcher. By default that is CuPy: ``RawModule`` compiles
   the file once per (source, dtype) with ``-Dscalar_t=float`` or ``double``
   and runs it on the GPU. Inside ``with cuda.host_launcher():`` it is the CPU
   harness of ``minidl.testing``, which compiles the same file with g++ and
   runs every (block, thread) on NumPy arrays -- how the kernels are tested
   on machines without a GPU.

The launcher choice is per Python thread (``threading.local``): a
``host_launcher()`` block affects only the thread that entered it.
"""
import contextlib
import dataclasses
import operator
import os
import re
import threading
from pathlib import Path

import numpy as np

from . import backend

THREADS_PER_BLOCK = 256
MAX_BLOCKS = 65535          # enough to fill any GPU; grid-stride loops do the rest

# C type of a parameter -> the NumPy dtype it holds ("scalar_t" is the launch dtype)
C_TYPES = {"int": np.dtype(np.int32), "long long": np.dtype(np.int64),
           "float": np.dtype(np.float32), "double": np.dtype(np.float64),
           "scalar_t": None}
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----------------------------------------------------------------------------
# finding and parsing kernel sources
# ----------------------------------------------------------------------------
def kernel_dir():
    """The folder of the .cu files: installed package data, else the repo's."""
    installed = Path(__file__).resolve().parent / "kernels"
    return installed if installed.is_dir() else installed.parent.parent / "kernels"


def kernel_files():
    """Every ``kernels/*.cu``, sorted (the tests walk this list)."""
    return sorted(kernel_dir().glob("*.cu"))


@dataclasses.dataclass(frozen=True)
class Param:
    """One kernel parameter, e.g. ``const scalar_t* __restrict__ x``."""
    name: str          # "x"
    ctype: str         # "scalar_t", "float", "double", "int" or "long long"
    pointer: bool      # True for "scalar_t*"
    const: bool        # True for "const scalar_t*" (pointee is const)

    def declaration(self):
        """The C type as a function type spells it: ``const scalar_t*``."""
        return ("const " if self.const else "") + self.ctype + ("*" if self.pointer else "")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One ``extern "C" __global__`` function: its name and parameters."""
    name: str
    params: tuple      # of Param


@dataclasses.dataclass(frozen=True)
class KernelSource:
    """A parsed .cu file."""
    path: Path
    text: str
    kernels: dict      # name -> Kernel


_KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_COMMENT_RE = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def parse_kernels(text, filename="<source>"):
    """Map each ``extern "C" __global__ void name(args)`` of ``text`` to a Kernel.

    Raises ValueError for a ``__global__`` function in another form or a
    parameter of a type the launcher cannot check.
    """
    code = _COMMENT_RE.sub(" ", text)
    kernels = {}
    for match in _KERNEL_RE.finditer(code):
        name, arglist = match.group(1), match.group(2).strip()
        parts = [] if arglist in ("", "void") else arglist.split(",")
        kernels[name] = Kernel(name, tuple(_parse_param(p, name, filename) for p in parts))
    n_global = len(re.findall(r"\b__global__\b", code))
    if n_global != len(kernels):
        raise ValueError(f"{filename}: {n_global} __global__ functions but only "
                         f"{len(kernels)} in the form 'extern \"C\" __global__ void "
                         f"name(...)' ({sorted(kernels)}); minidl.cuda can launch only that form")
    return kernels


def _parse_param(text, kernel, filename):
    """``const scalar_t* __restrict__ x`` -> Param("x", "scalar_t", True, True)."""
    tokens = [t for t in re.findall(r"\w+|\*", text) if t != "__restrict__"]
    stars = tokens.count("*")
    words = [t for t in tokens if t not in ("*", "const")]
    if len(words) < 2 or stars > 1:
        raise ValueError(f"{filename}: kernel {kernel!r}: cannot read parameter {text.strip()!r}")
    ctype, name = " ".join(words[:-1]), words[-1]
    if ctype not in C_TYPES:
        raise ValueError(f"{filename}: kernel {kernel!r} parameter {name!r} has type "
                         f"{ctype!r}; supported: {', '.join(C_TYPES)} and pointers to them")
    pointer = stars == 1
    const = pointer and "const" in tokens and tokens.index("const") < tokens.index("*")
    return Param(name, ctype, pointer, const)


_paths = {}     # source argument -> absolute Path
_sources = {}   # (path, mtime_ns) -> KernelSource


def _find(source):
    path = Path(source)
    if not path.is_absolute() and len(path.parts) == 1:
        path = kernel_dir() / path
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"CUDA source {str(source)!r} not found (looked at {path}; "
                                f"kernel files: {[p.name for p in kernel_files()]})")
    return path


def load_source(source):
    """The KernelSource of ``source``: a file name in ``kernels/`` or a path.

    Parsed once and cached; an edited file (new mtime) is read again.
    """
    if source not in _paths:
        _paths[source] = _find(source)
    path = _paths[source]
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _sources:
        text = path.read_text(encoding="utf-8")
        _sources[key] = KernelSource(path, text, parse_kernels(text, path.name))
    return _sources[key]


# ----------------------------------------------------------------------------
# checking arguments against a signature
# ----------------------------------------------------------------------------
def _is_array(a):
    return isinstance(a, np.ndarray) or backend.is_cupy_array(a)


def check_args(kernel, args, dtype):
    """Raise TypeError unless ``args`` match ``kernel``'s C signature for ``dtype``."""
    if len(args) != len(kernel.params):
        names = ", ".join(p.declaration() + " " + p.name for p in kernel.params)
        raise TypeError(f"kernel {kernel.name!r} takes {len(kernel.params)} arguments "
                        f"({names}), got {len(args)}")
    for i, (p, a) in enumerate(zip(kernel.params, args)):
        want = dtype if p.ctype == "scalar_t" else C_TYPES[p.ctype]
        where = f"kernel {kernel.name!r} argument {i} '{p.name}' ({p.declaration()})"
        if p.pointer:
            if not _is_array(a):
                raise TypeError(f"{where} needs an array of {want}, got {type(a).__name__}")
            if a.dtype != want:
                raise TypeError(f"{where} needs an array of {want}, got an array of {a.dtype}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{where} needs a C-contiguous array, got strides "
                                 f"{a.strides} for shape {a.shape}; pass xp.ascontiguousarray(a)")
        elif type(a) is not want.type:
            raise TypeError(f"{where} needs np.{want.type.__name__}, got {_describe(a)}; "
                            f"wrap it: np.{want.type.__name__}(value)")


def _describe(a):
    """'Python int 5', 'numpy int64 5' or 'an array of float32 (3, 4)'."""
    if _is_array(a):
        return f"an array of {a.dtype} {tuple(a.shape)}"
    return f"{type(a).__module__.replace('builtins', 'Python')} {type(a).__name__} {a}"


def launch_config(n_threads):
    """(grid, block) for ``n_threads`` threads: ceil(n / 256) blocks, capped."""
    grid = min(max(1, -(-n_threads // THREADS_PER_BLOCK)), MAX_BLOCKS)
    return grid, THREADS_PER_BLOCK


# ----------------------------------------------------------------------------
# launchers
# ----------------------------------------------------------------------------
def nvrtc_options(dtype):
    """Compiler options of every kernel file: the one macro, ``scalar_t``."""
    return ("-Dscalar_t=" + {"float32": "float", "float64": "double"}[np.dtype(dtype).name],)


class CupyLauncher:
    """Runs kernels on the GPU through ``cupy.RawModule`` (cached per source and dtype)."""

    def __init__(self):
        self._modules = {}   # (source text, dtype name) -> cupy.RawModule

    def launch(self, source, kernel, grid, block, args, dtype):
        cp, reason = backend._load_cupy()
        if cp is None:
            raise RuntimeError(f"cannot launch CUDA kernel {kernel.name!r}: {reason} "
                               f"(inside `with minidl.cuda.host_launcher():` kernels run on the CPU)")
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                raise TypeError(f"kernel {kernel.name!r} argument {i} "
                                f"'{kernel.params[i].name}' is a NumPy array; the GPU "
                                f"launcher needs CuPy arrays")
        key = (source.text, dtype.name)
        if key not in self._modules:
            self._modules[key] = cp.RawModule(code=source.text, options=nvrtc_options(dtype))
        self._modules[key].get_function(kernel.name)((grid,), (block,), args)


_cupy_launcher = CupyLauncher()
_state = threading.local()     # .launcher: the host launcher of this thread, or None


@contextlib.contextmanager
def host_launcher(sanitize=False):
    """Inside this block (this thread only) ``launch`` runs kernels on the CPU.

    The same .cu file is compiled with g++ (``minidl.testing.cuda_host``) and
    every (block, thread) runs in turn on NumPy arrays; ``use_gpu_path`` is
    True for NumPy arrays, so whole ops take their GPU-twin path.
    ``sanitize=True`` builds with AddressSanitizer and UBSan (the process must
    run with libasan preloaded, see ``minidl.testing``). Yields the launcher,
    whose ``launched`` Counter records the kernels run.
    """
    from .testing.cuda_host import HostLauncher
    previous = getattr(_state, "launcher", None)
    _state.launcher = HostLauncher(sanitize=sanitize)
    try:
        yield _state.launcher
    finally:
        _state.launcher = previous


def use_gpu_path(x):
    """True if an op on array ``x`` must take its GPU twin (CUDA kernels).

    That is a CuPy array, or any array inside ``with cuda.host_launcher():``.
    """
    return backend.is_cupy_array(x) or getattr(_state, "launcher", None) is not None


def launch(source, kernel, n_threads, args, dtype):
    """Run ``kernel`` of ``source`` with at least ``n_threads`` threads.

    source: file name in ``kernels/`` ("conv.cu") or a path to a .cu file.
    kernel: name of an ``extern "C" __global__`` function in it.
    n_threads: the count the kernel's grid-stride loop covers (0: nothing runs).
    args: arrays and NumPy scalars, typed exactly as the C signature.
    dtype: float32 or float64, the ``scalar_t`` the file is compiled for.
    """
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"launch of {kernel!r}: dtype must be float32 or float64, got {dtype}")
    src = load_source(source)
    if kernel not in src.kernels:
        raise ValueError(f"{src.path.name} has no kernel {kernel!r}; it has {sorted(src.kernels)}")
    k = src.kernels[kernel]
    args = tuple(args)
    check_args(k, args, dtype)
    n_threads = operator.index(n_threads)
    if n_threads < 0:
        raise ValueError(f"launch of {kernel!r}: n_threads must be >= 0, got {n_threads}")
    if n_threads == 0:
        return
    grid, block = launch_config(n_threads)
    launcher = getattr(_state, "launcher", None) or _cupy_launcher
    launcher.launch(src, k, grid, block, args, dtype)
