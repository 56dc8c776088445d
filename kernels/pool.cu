// Pooling kernels: the CUDA twins of the Numba functions of minidl/ops/pool.py
// (same names; read the two side by side). Compiled once per dtype with
// -Dscalar_t=float or -Dscalar_t=double; launched by minidl.cuda.launch.
//
// Arrays are N*C = P independent planes: x and gx are (P, H, W), y, gy and
// argmax are (P, OH, OW), all C-contiguous. Window (oh, ow) covers input rows
// [oh*sh - ph, oh*sh - ph + kh) and columns [ow*sw - pw, ow*sw - pw + kw),
// clipped to the input; every window holds at least one real pixel (the
// Python side checks padding <= kernel / 2 and PyTorch's ceil_mode rule).
//
// Thread mapping: one thread per element of the array it writes (forward: an
// output; backward: an input pixel, which GATHERS from the windows covering
// it, so no two threads write one element and no atomics are needed). A
// grid-stride loop over the 64-bit count n covers any size with any grid.
// Plane offsets (p * H * W) are 64-bit; offsets inside a plane fit in int
// (H * W < 2^31 is checked in Python, since argmax stores them as int).

// First output row (or column) whose window covers input row h:
// oh*s - p + k > h  <=>  oh > (h + p - k) / s.
__device__ __forceinline__ int first_window(int h, int k, int s, int p) {
    return h + p < k ? 0 : (h + p - k) / s + 1;
}

// One past the last output row whose window covers input row h:
// oh*s - p <= h  <=>  oh <= (h + p) / s;  capped at the output size.
__device__ __forceinline__ int end_window(int h, int s, int p, int out) {
    return min((h + p) / s + 1, out);
}

// PyTorch's divisor of avg pooling for the window with corner (h0, w0):
// with count_include_pad the window clipped to the padded input [-p, H + p),
// else the number of real pixels.
__device__ __forceinline__ int divisor(int h0, int w0, int H, int W, int kh, int kw,
                                       int ph, int pw, int count_include_pad) {
    if (count_include_pad)
        return (min(h0 + kh, H + ph) - h0) * (min(w0 + kw, W + pw) - w0);
    return (min(h0 + kh, H) - max(h0, 0)) * (min(w0 + kw, W) - max(w0, 0));
}

// y[i] = max of window i; argmax[i] = h*W + w of its FIRST maximum
// (row-major order, strict >). A NaN wins: the window's last NaN, as
// PyTorch's scan `v > best || isnan(v)` picks (the Numba twin tracks it
// aside to keep its compare chain short; this kernel does the same).
// Thread i: i = (p*OH + oh)*OW + ow, 0 <= i < n = P*OH*OW.
extern "C" __global__ void max_pool_forward(
        long long n, const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
        int* __restrict__ argmax, int H, int W, int OH, int OW,
        int kh, int kw, int sh, int sw, int ph, int pw) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const int ow = (int)(i % OW);
        const int oh = (int)(i / OW % OH);
        const scalar_t* plane = x + i / ((long long)OH * OW) * H * W;
        const int h_lo = max(oh * sh - ph, 0), h_hi = min(oh * sh - ph + kh, H);
        const int w_lo = max(ow * sw - pw, 0), w_hi = min(ow * sw - pw + kw, W);
        int best_i = h_lo * W + w_lo;
        scalar_t best = plane[best_i];
        int nan_i = -1;                                  // the last NaN seen, if any
        for (int h = h_lo; h < h_hi; ++h) {
            for (int w = w_lo; w < w_hi; ++w) {
                const scalar_t v = plane[h * W + w];
                if (v > best) {
                    best = v;
                    best_i = h * W + w;
                }
                if (v != v) nan_i = h * W + w;
            }
        }
        if (nan_i >= 0) {
            best = plane[nan_i];
            best_i = nan_i;
        }
        y[i] = best;
        argmax[i] = best_i;
    }
}

// gx[i] = sum of gy over the windows covering pixel i whose argmax is i.
// Thread i: i = (p*H + h)*W + w, 0 <= i < n = P*H*W. Windows are visited in
// (oh, ow) order, the order of the Numba scatter, so the sums match exactly.
extern "C" __global__ void max_pool_backward(
        long long n, const scalar_t* __restrict__ gy, const int* __restrict__ argmax,
        scalar_t* __restrict__ gx, int H, int W, int OH, int OW,
        int kh, int kw, int sh, int sw, int ph, int pw) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const int w = (int)(i % W);
        const int h = (int)(i / W % H);
        const long long plane = i / ((long long)H * W) * OH * OW;   // offset of (p, 0, 0)
        const int me = h * W + w;
        scalar_t acc = 0;
        for (int oh = first_window(h, kh, sh, ph); oh < end_window(h, sh, ph, OH); ++oh) {
            for (int ow = first_window(w, kw, sw, pw); ow < end_window(w, sw, pw, OW); ++ow) {
                const long long o = plane + oh * OW + ow;
                if (argmax[o] == me) acc += gy[o];
            }
        }
        gx[i] = acc;
    }
}

// y[i] = sum of the real pixels of window i / divisor, summed in scalar_t.
// Thread i: i = (p*OH + oh)*OW + ow, 0 <= i < n = P*OH*OW.
extern "C" __global__ void avg_pool_forward(
        long long n, const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
        int H, int W, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
        int count_include_pad) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const int ow = (int)(i % OW);
        const int oh = (int)(i / OW % OH);
        const scalar_t* plane = x + i / ((long long)OH * OW) * H * W;
        const int h0 = oh * sh - ph, w0 = ow * sw - pw;
        const int h_hi = min(h0 + kh, H), w_hi = min(w0 + kw, W);
        scalar_t acc = 0;
        for (int h = max(h0, 0); h < h_hi; ++h)
            for (int w = max(w0, 0); w < w_hi; ++w)
                acc += plane[h * W + w];
        y[i] = acc / (scalar_t)divisor(h0, w0, H, W, kh, kw, ph, pw, count_include_pad);
    }
}

// gx[i] = sum over the windows covering pixel i of gy / divisor.
// Thread i: i = (p*H + h)*W + w, 0 <= i < n = P*H*W.
extern "C" __global__ void avg_pool_backward(
        long long n, const scalar_t* __restrict__ gy, scalar_t* __restrict__ gx,
        int H, int W, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
        int count_include_pad) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const int w = (int)(i % W);
        const int h = (int)(i / W % H);
        const long long plane = i / ((long long)H * W) * OH * OW;   // offset of (p, 0, 0)
        scalar_t acc = 0;
        for (int oh = first_window(h, kh, sh, ph); oh < end_window(h, sh, ph, OH); ++oh) {
            for (int ow = first_window(w, kw, sw, pw); ow < end_window(w, sw, pw, OW); ++ow) {
                const int d = divisor(oh * sh - ph, ow * sw - pw, H, W, kh, kw, ph, pw,
                                      count_include_pad);
                acc += gy[plane + oh * OW + ow] / (scalar_t)d;
            }
        }
        gx[i] = acc;
    }
}
