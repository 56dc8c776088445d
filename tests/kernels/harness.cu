// Test-only kernels that prove minidl's CUDA plumbing (tests/test_cuda_*.py).
// Same rules as kernels/*.cu: compiled with -Dscalar_t=float or double, one
// thread per output, grid-stride loop over a 64-bit count, no std headers.

// y[i] = a * x[i] + y[i] for 0 <= i < n.
// Thread t of block b starts at i = b * blockDim.x + t and strides by the
// number of threads in the grid, so any n is covered by any grid.
extern "C" __global__ void saxpy(long long n, scalar_t a, const scalar_t* __restrict__ x,
                                 scalar_t* __restrict__ y) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] = a * x[i] + y[i];
    }
}

// Which (block, thread) handled element i, and the grid it ran in:
// who[i] = {blockIdx.x, threadIdx.x, gridDim.x, blockDim.x}; who is (n, 4).
extern "C" __global__ void whoami(long long n, int* __restrict__ who) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        who[4 * i + 0] = blockIdx.x;
        who[4 * i + 1] = threadIdx.x;
        who[4 * i + 2] = gridDim.x;
        who[4 * i + 3] = blockDim.x;
    }
}

// y[i] = x[i * stride] for 0 <= i < n: the offset i * stride is 64-bit, so
// it may pass 2^31 elements (tests map a sparse file for x).
extern "C" __global__ void strided_gather(long long n, long long stride,
                                          const scalar_t* __restrict__ x,
                                          scalar_t* __restrict__ y) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] = x[i * stride];
    }
}

// Copies each scalar argument into element 0 of an array of the same type
// (one thread does it): shows that every C type arrives intact.
extern "C" __global__ void echo(int i, long long l, float f, double d, scalar_t s,
                                int* oi, long long* ol, float* of, double* od, scalar_t* os) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        *oi = i; *ol = l; *of = f; *od = d; *os = s;
    }
}

// The device functions the host header supplies, applied to x[0..n):
// out[i, :] = {max, min, fmax, fmin, -inf, exp, pow, sqrt, log, rsqrt, __ldg}.
extern "C" __global__ void device_functions(long long n, const scalar_t* __restrict__ x,
                                            scalar_t* __restrict__ out) {
    const scalar_t minus_inf = sizeof(scalar_t) == 4 ? __int_as_float(0xff800000)
                                                     : __longlong_as_double(0xfff0000000000000ULL);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const scalar_t v = __ldg(x + i);
        scalar_t* o = out + 11 * i;
        o[0] = max(v, (scalar_t)0.5);
        o[1] = min(v, (scalar_t)0.5);
        o[2] = fmax(v, (scalar_t)0.5);
        o[3] = fmin(v, (scalar_t)0.5);
        o[4] = minus_inf;
        o[5] = exp(v);
        o[6] = pow(v, (scalar_t)0.75);
        o[7] = sqrt(v);
        o[8] = log(v);
        o[9] = rsqrt(v);
        o[10] = (scalar_t)max(i, 3LL);
    }
}
