// Deliberately broken kernels: tests/asan/test_asan_harness.py shows that the
// sanitized host build stops on each bug and names this file and line.
// Never launched outside the sanitizer run.

// BUG: reads x[i + 1], one element past the end of x for the last thread.
extern "C" __global__ void read_past_end(long long n, const scalar_t* __restrict__ x,
                                         scalar_t* __restrict__ y) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        y[i] = x[i + 1];
    }
}

// BUG: 32-bit index arithmetic; i * width overflows int once it passes 2^31
// (undefined behaviour; on a GPU it silently wraps to a wrong offset).
extern "C" __global__ void int_offset_overflow(int n, int width, long long* __restrict__ offset) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        offset[i] = i * width;
    }
}
