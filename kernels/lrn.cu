// Local Response Normalization across channels: the CUDA twins of the Numba
// functions of minidl/ops/lrn.py (same names; the formula and the derivation
// of the backward are in that module's docstring). Compiled once per dtype
// with -Dscalar_t=float or -Dscalar_t=double; sums run in scalar_t.
//
// Arrays are (N, C, L), L = H*W, C-contiguous: element (n, c, l) is at
// (n*C + c)*L + l, and channel c' of the same pixel at that index + (c'-c)*L.
// Window of channel c: [c - size/2, c + (size-1)/2], cut at 0 and C-1.
//
// Thread mapping: one thread per element i of the output, 0 <= i < n = N*C*L
// (grid-stride loop, 64-bit indices); it reads the channels of its own pixel
// only, so nothing is shared and no atomics are needed.

// s = k + alpha * sum_{c' in W(c)} x_c'^2;  p = s^-beta;  y = x * p.
extern "C" __global__ void lrn_forward(
        long long n, const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
        scalar_t* __restrict__ s, scalar_t* __restrict__ p, int C, long long L,
        int size, scalar_t alpha, scalar_t beta, scalar_t k) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const int c = (int)(i / L % C);
        const scalar_t* pixel = x + (i - c * L);        // channel 0 of this (n, l)
        const int lo = max(c - size / 2, 0), hi = min(c + (size - 1) / 2 + 1, C);
        scalar_t acc = 0;
        for (int j = lo; j < hi; ++j)
            acc += pixel[j * L] * pixel[j * L];
        const scalar_t scale = k + alpha * acc;
        s[i] = scale;
        p[i] = pow(scale, -beta);
        y[i] = x[i] * p[i];
    }
}

// gx_j = gy_j p_j - 2 alpha beta x_j * sum_{c in W'(j)} gy_c x_c p_c / s_c,
// W'(j) = [j - (size-1)/2, j + size/2] (the channels whose window holds j).
// Thread i is element (n, j, l); it recomputes the terms of its neighbours.
extern "C" __global__ void lrn_backward(
        long long n, const scalar_t* __restrict__ x, const scalar_t* __restrict__ s,
        const scalar_t* __restrict__ p, const scalar_t* __restrict__ gy,
        scalar_t* __restrict__ gx, int C, long long L, int size, scalar_t alpha,
        scalar_t beta) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const int j = (int)(i / L % C);
        const long long pixel = i - j * L;              // index of channel 0 of this (n, l)
        const int lo = max(j - (size - 1) / 2, 0), hi = min(j + size / 2 + 1, C);
        scalar_t acc = 0;
        for (int c = lo; c < hi; ++c) {
            const long long e = pixel + c * L;
            acc += gy[e] * x[e] * p[e] / s[e];
        }
        gx[i] = gy[i] * p[i] - (scalar_t)2 * alpha * beta * x[i] * acc;
    }
}
