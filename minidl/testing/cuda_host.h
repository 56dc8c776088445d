// cuda_host.h -- just enough CUDA C for g++ to compile a kernels/*.cu file
// unchanged and run its kernels on the CPU (see minidl/testing/__init__.py).
//
// minidl/testing/cuda_host.py writes a C++ file that includes this header,
// then the .cu text, then one extern "C" minidl_launch_<kernel>() per kernel
// that calls the kernel once for every (block, thread) of a 1-D grid.
// Scope: one-thread-per-output kernels. No __shared__, no __syncthreads(),
// no atomics: threads run one after another, never at the same time.
#pragma once

#include <math.h>       // exp, pow, sqrt, log, fmax, fmin... with float overloads
#include <bit>          // std::bit_cast
#include <type_traits>  // std::is_same_v, for the signature checks

// ---- qualifiers that mean nothing on the host ------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)

// ---- built-in coordinates ---------------------------------------------------
// thread_local: two Python threads may launch at the same time.
struct dim3 { unsigned int x, y, z; };
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

// ---- device functions the kernels may call ---------------------------------
// min/max: CUDA overloads them for int, long long, float, double.
template <class A, class B> inline auto min(A a, B b) { return b < a ? b : a; }
template <class A, class B> inline auto max(A a, B b) { return a < b ? b : a; }

// Reinterpret the bits (used for -inf: __int_as_float(0xff800000)).
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }
inline double __longlong_as_double(long long i) { return std::bit_cast<double>(i); }
inline long long __double_as_longlong(double d) { return std::bit_cast<long long>(d); }

// __ldg: load through the read-only cache; on the CPU just a load.
template <class T> inline T __ldg(const T* p) { return *p; }

// Fast-math and reciprocal square root (exact versions on the host).
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float rsqrt(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }

// ---- the launcher -----------------------------------------------------------
// Run kernel() for block 0..grid-1 and, in each, thread 0..block-1.
template <class Kernel>
void minidl_host_launch(unsigned int grid, unsigned int block, Kernel kernel) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned int b = 0; b < grid; ++b) {
        blockIdx = {b, 0, 0};
        for (unsigned int t = 0; t < block; ++t) {
            threadIdx = {t, 0, 0};
            kernel();
        }
    }
}
