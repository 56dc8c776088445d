"""Testing the CUDA kernels on a machine with no GPU.

minidl's GPU kernels are CUDA C files (``kernels/*.cu``) that CuPy compiles
and runs on the GPU. Most machines that run the tests (laptops, CI) have no
GPU, so this package checks the kernels in three ways that need none.

1. **They compile** (``nvrtc.py``). NVRTC, NVIDIA's run-time compiler -- the
   one CuPy's ``RawModule`` uses -- is a plain shared library on PyPI
   (``nvidia-cuda-nvrtc-cu12``) and runs without a GPU or driver.
   ``nvrtc.compile(text, options)`` turns each file into machine code for
   sm_80 and sm_90, exactly as a GPU machine would, and raises
   ``NVRTCError`` with the compiler's log (file, line, message) otherwise.

2. **They compute the right thing** (``cuda_host.py`` and ``cuda_host.h``).
   A CUDA kernel is C++ run once per thread; a thread knows who it is from
   ``blockIdx``, ``blockDim``, ``threadIdx`` and ``gridDim``. The header
   ``cuda_host.h`` defines those as ordinary variables, removes the CUDA
   keywords (``__global__``, ``__device__``...) and supplies the device
   functions the kernels use (``max``, ``__int_as_float``...). g++ then
   compiles the *unchanged* .cu file into a shared library, and a generated
   loop runs the kernel for every (block, thread), one after another.
   Inside ``with minidl.cuda.host_launcher():`` every ``cuda.launch`` goes
   there, on NumPy arrays -- so a test runs an op's whole GPU path (its GPU
   twin function, ``cuda.launch``, the .cu kernel) and compares it with the
   CPU (Numba) path. The harness also checks that ``minidl.cuda`` read each
   kernel's signature as the compiler did (a ``static_assert``), and
   ``cuda.launch`` checks every argument's type against that signature.

3. **They stay inside their arrays** (``tests/asan``). With
   ``host_launcher(sanitize=True)`` the library is built with
   AddressSanitizer and UBSan: a read one element past an array, or a
   32-bit index that overflows, stops the run with the kernel's line.

What it cannot find -- keep testing on a real GPU when you can:

* **Races and missing atomics.** The threads never run at the same time, so
  two threads writing one element, or a read-modify-write that needs
  ``atomicAdd``, give the right answer here and a wrong one on a GPU. This is
  why minidl's kernels are gathers: one thread computes one output and
  nothing else writes it. Kernels with ``__shared__``, ``__syncthreads()`` or
  atomics are rejected (NotImplementedError).
* **Floating-point differences.** nvcc contracts ``a * b + c`` into one
  fused multiply-add (one rounding instead of two) and its fast-math
  functions (``__expf``, ``__powf``) are less exact; g++ here does neither.
  Compare arithmetic kernels with a tolerance; data movement (im2col,
  max-pooling) must match exactly.
* **GPU limits and speed**: register or shared-memory pressure, occupancy,
  timing. Only a GPU tells.
"""
