"""The CPU host harness: compile a .cu file with g++, run its kernels on NumPy arrays.

``minidl.cuda.host_launcher()`` installs a ``HostLauncher``; then
``cuda.launch`` ends in ``HostLauncher.launch``, which

1. writes a C++ file: ``#include "cuda_host.h"``, the unchanged .cu text
   (behind a ``#line`` directive, so errors name the .cu file and line) and,
   per kernel, a ``static_assert`` that the signature ``minidl.cuda`` parsed
   is the one the compiler sees, plus an ``extern "C" minidl_launch_<name>``
   that runs the kernel for every (block, thread);
2. compiles it once with ``g++ -std=c++20 -O2 -shared -fPIC -Dscalar_t=...``
   into ``~/.cache/minidl/cuda_host/<file>_<scalar_t>_<hash>.so`` (``$MINIDL_CACHE_DIR``
   overrides the folder), the hash covering the text, the header and the flags;
3. loads it with ctypes and calls it with the arrays' data pointers and the
   scalars converted to the C types of the signature.
"""
import collections
import ctypes
import functools
import hashlib
import os
import re
import subprocess
from pathlib import Path

import numpy as np

from ..cuda import _COMMENT_RE

HEADER = Path(__file__).with_name("cuda_host.h")
FLAGS = ("-std=c++20", "-O2", "-shared", "-fPIC")
SANITIZE_FLAGS = ("-std=c++20", "-O1", "-g", "-shared", "-fPIC", "-fno-omit-frame-pointer",
                  "-fsanitize=address,undefined", "-fno-sanitize-recover=all")
_C_TYPES = {"int": ctypes.c_int32, "long long": ctypes.c_int64,
            "float": ctypes.c_float, "double": ctypes.c_double}
_UNSUPPORTED = re.compile(r"\b(__syncthreads\w*|__shared__|atomic\w+)\b")
_functions = {}   # (.cu path, text, kernel, dtype, sanitize) -> ctypes function


def cache_dir():
    root = os.environ.get("MINIDL_CACHE_DIR") or Path.home() / ".cache" / "minidl"
    return Path(root) / "cuda_host"


@functools.cache
def compiler():
    """The C++ compiler ($CXX, default g++) and its version line."""
    cxx = os.environ.get("CXX", "g++")
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"the CUDA host harness needs a C++20 compiler: {cxx!r} failed "
                           f"({e}); install g++ or set $CXX") from e
    return cxx, out.stdout.splitlines()[0]


def host_source(source):
    """The C++ text compiled for a ``minidl.cuda.KernelSource``."""
    found = _UNSUPPORTED.search(_COMMENT_RE.sub(" ", source.text))
    if found:
        raise NotImplementedError(
            f"{source.path.name} uses {found.group(1)}: the host harness runs one CUDA "
            f"thread at a time and supports only one-thread-per-output kernels "
            f"(no __shared__, __syncthreads or atomics)")
    parts = ['#include "cuda_host.h"', f'#line 1 "{source.path}"', source.text,
             '#line 1 "minidl_host_launchers"']
    for k in source.kernels.values():
        decls = [p.declaration() for p in k.params]
        params = ", ".join(["unsigned int grid", "unsigned int block"]
                           + [f"{d} a{i}" for i, d in enumerate(decls)])
        call = ", ".join(f"a{i}" for i in range(len(decls)))
        parts.append(
            f"static_assert(std::is_same_v<decltype(&{k.name}), void (*)({', '.join(decls)})>,\n"
            f'              "{k.name}: minidl.cuda parsed another signature than the compiler");\n'
            f'extern "C" void minidl_launch_{k.name}({params}) {{\n'
            f"    minidl_host_launch(grid, block, [&] {{ {k.name}({call}); }});\n}}")
    return "\n".join(parts) + "\n"


def build(source, dtype, sanitize=False):
    """Compile ``source`` for ``dtype`` (cached); return the path of the .so."""
    cxx, version = compiler()
    scalar = {"float32": "float", "float64": "double"}[np.dtype(dtype).name]
    flags = (SANITIZE_FLAGS if sanitize else FLAGS) + (f"-Dscalar_t={scalar}", f"-I{HEADER.parent}")
    text = host_source(source)
    key = "\n".join([version, " ".join(flags), HEADER.read_text(), text])
    name = f"{source.path.stem}_{scalar}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    out = cache_dir() / (name + ".so")
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cpp, tmp = out.with_suffix(f".{os.getpid()}.cpp"), out.with_suffix(f".{os.getpid()}.tmp")
        cpp.write_text(text)
        run = subprocess.run([cxx, *flags, str(cpp), "-o", str(tmp)], capture_output=True, text=True)
        if run.returncode != 0:
            failed = out.with_suffix(".failed.cpp")
            os.replace(cpp, failed)
            raise RuntimeError(f"g++ could not compile {source.path} for the host "
                               f"harness ({failed}):\n{run.stderr[-4000:]}")
        os.replace(cpp, out.with_suffix(".cpp"))   # kept for reading; renames are atomic,
        os.replace(tmp, out)                       # so parallel test processes never clash
    return out


def asan_loaded():
    """True if the AddressSanitizer runtime is in this process (LD_PRELOAD)."""
    with open("/proc/self/maps") as maps:
        return "libasan" in maps.read()


class HostLauncher:
    """Runs kernels on the CPU; ``launched`` counts (file name, kernel) launches."""

    def __init__(self, sanitize=False):
        self.sanitize = sanitize
        self.launched = collections.Counter()

    def launch(self, source, kernel, grid, block, args, dtype):
        for i, a in enumerate(args):
            if kernel.params[i].pointer and not isinstance(a, np.ndarray):
                raise TypeError(f"kernel {kernel.name!r} argument {i} '{kernel.params[i].name}' "
                                f"is a {type(a).__name__}; the host launcher runs on NumPy arrays")
        fn = self._function(source, kernel, dtype)
        values = [a.ctypes.data if p.pointer else a.item() for p, a in zip(kernel.params, args)]
        fn(grid, block, *values)
        self.launched[source.path.name, kernel.name] += 1

    def _function(self, source, kernel, dtype):
        key = (source.path, source.text, kernel.name, np.dtype(dtype).name, self.sanitize)
        if key not in _functions:
            if self.sanitize and not asan_loaded():
                raise RuntimeError(
                    "a sanitized host build needs the ASan runtime loaded first: run "
                    "ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$(g++ -print-file-name=libasan.so) "
                    "python -m pytest -m asan tests/asan")
            library = ctypes.CDLL(str(build(source, dtype, self.sanitize)))
            fn = getattr(library, "minidl_launch_" + kernel.name)
            scalar = ctypes.c_float if np.dtype(dtype) == np.float32 else ctypes.c_double
            fn.argtypes = [ctypes.c_uint, ctypes.c_uint] + [
                ctypes.c_void_p if p.pointer else (scalar if p.ctype == "scalar_t" else _C_TYPES[p.ctype])
                for p in kernel.params]
            fn.restype = None
            _functions[key] = fn
        return _functions[key]
