// im2col and col2im for conv2d on the GPU: the twins of the Numba functions
// of the same names in minidl/ops/im2col.py (read them side by side). The
// Numba loops first copy the images into padded, phase-split planes so that
// each CPU copy is one unit-stride run; here each thread reads x directly and
// checks the bounds itself. The results are the same, bit for bit.
//
// Compiled once per dtype with -Dscalar_t=float or -Dscalar_t=double.
// Layouts (all C-contiguous), with L = OH*OW:
//   x   (N, C, H, W)                 an input image batch (or its gradient)
//   col (C*kh*kw, N*L)               col[(c*kh + p)*kw + q, n*L + i*OW + j]
//                                      = x[n, c, i*sh - ph + p*dh, j*sw - pw + q*dw]
//                                      (0 where that pixel is in the padding)
// The windows of the N images lie side by side in each row of col, so that
// one GEMM covers the whole batch.
//
// Both kernels: one thread per OUTPUT element, a grid-stride loop over a
// 64-bit count (col of a large batch can exceed 2^31 elements), no atomics.

// im2col: one thread per col element t, t = (r*N + n)*L + i*OW + j.
extern "C" __global__ void im2col(const scalar_t* __restrict__ x, scalar_t* __restrict__ col,
                                  long long total, int N, int C, int H, int W, int kh, int kw,
                                  int sh, int sw, int ph, int pw, int dh, int dw,
                                  int OH, int OW)
{
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)blockDim.x * gridDim.x) {
        int j = (int)(t % OW);                      // output column
        int i = (int)((t / OW) % OH);               // output row
        long long rn = t / ((long long)OH * OW);    // r*N + n
        int n = (int)(rn % N);                      // image
        long long r = rn / N;                       // row of col
        int q = (int)(r % kw);                      // kernel column
        int p = (int)((r / kw) % kh);               // kernel row
        int c = (int)(r / ((long long)kh * kw));    // input channel
        int ih = i * sh - ph + p * dh;              // input pixel read
        int iw = j * sw - pw + q * dw;
        col[t] = (ih >= 0 && ih < H && iw >= 0 && iw < W)
                     ? x[(((long long)n * C + c) * H + ih) * W + iw] : (scalar_t)0;
    }
}

// col2im: the adjoint of im2col, as a GATHER: one thread per pixel t of x,
// t = ((n*C + c)*H + h)*W + w, sums the col entries that im2col copied from it.
// Kernel row p reads the pixel at output row i = (h + ph - p*dh) / sh when that
// division is exact and 0 <= i < OH (likewise q and j). The sum runs over
// (p, q) in ascending order from 0, the order in which the Numba scatter adds
// into a pixel, so both give the same bits.
extern "C" __global__ void col2im(const scalar_t* __restrict__ col, scalar_t* __restrict__ x,
                                  long long total, int N, int C, int H, int W, int kh, int kw,
                                  int sh, int sw, int ph, int pw, int dh, int dw,
                                  int OH, int OW)
{
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)blockDim.x * gridDim.x) {
        int w = (int)(t % W);
        int h = (int)((t / W) % H);
        long long nc = t / ((long long)H * W);      // input plane n*C + c
        int n = (int)(nc / C), c = (int)(nc % C);
        scalar_t sum = 0;
        for (int p = 0; p < kh; ++p) {
            int di = h + ph - p * dh;               // = i*sh if output row i saw (h, p)
            if (di < 0 || di % sh != 0 || di / sh >= OH) continue;
            int i = di / sh;
            for (int q = 0; q < kw; ++q) {
                int dj = w + pw - q * dw;
                if (dj < 0 || dj % sw != 0 || dj / sw >= OW) continue;
                int j = dj / sw;
                long long r = ((long long)c * kh + p) * kw + q;   // row of col
                sum += col[((r * N + n) * OH + i) * OW + j];
            }
        }
        x[t] = sum;
    }
}
