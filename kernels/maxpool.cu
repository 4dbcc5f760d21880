/* maxpool.cu: max pooling on NHWC activations on the GPU, bit-identical to kernels/maxpool.c. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/kernels_cuda.h"

namespace {

struct PoolGeo {
    int n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow;
};

/* One thread per output element; the window is scanned in row-major order and the first
 * maximum wins (strict >), as the CPU twin. Padding never wins: the scan covers real pixels
 * only, and every SAME window holds at least one.
 * I is the index type: size_t in version 1 (the first GPU run's kernel, CNN_POOL_V=1), unsigned
 * in version 2 (the default): pool_ok() keeps the input, and so the output (pad < kernel),
 * under 2^31 elements, and 32-bit divisions are a few instructions where 64-bit ones are a
 * ~70-instruction subroutine (four per output element against one or two loads). */
template <class I>
__global__ void maxpool_fwd_kernel(PoolGeo g, const float *x, float *y, int32_t *argmax) {
    pdl_wait_and_release();
    I total = (I)g.n * g.oh * g.ow * g.c;
    for (I o = (I)blockIdx.x * blockDim.x + threadIdx.x; o < total;
         o += (I)gridDim.x * blockDim.x) {
        int c = (int)(o % (I)g.c);
        I t = o / (I)g.c;
        int ow = (int)(t % (I)g.ow);
        t /= (I)g.ow;
        int oh = (int)(t % (I)g.oh), n = (int)(t / (I)g.oh);
        int h0 = oh * g.sh - g.pt, w0 = ow * g.sw - g.pl;
        int hb = max(h0, 0), he = min(h0 + g.kh, g.h), wb = max(w0, 0), we = min(w0 + g.kw, g.w);
        I best = (((I)n * g.h + hb) * g.w + wb) * g.c + c;
        float bv = x[best];
        for (int ih = hb; ih < he; ih++)
            for (int iw = wb; iw < we; iw++) {
                I i = (((I)n * g.h + ih) * g.w + iw) * g.c + c;
                float v = x[i];
                if (v > bv) { bv = v; best = i; }
            }
        y[o] = bv;
        argmax[o] = (int32_t)best;
    }
}

/* One thread per input element: adds dy of every window that contains it and chose it, in
 * output order (the CPU twin's order of += into a zeroed dx, so the sums are bit-identical).
 * I as in the forward kernel: 64-bit in versions 1 and 2 (six ~70-instruction divisions per
 * element made the kernel instruction-bound: 33 us for pool1 at batch 100, a quarter of the
 * memory speed), 32-bit in version 3. */
template <class I>
__global__ void maxpool_bwd_kernel(PoolGeo g, const float *dy, const int32_t *argmax,
                                   const float *relu_x, const float *relu_y, float *dx) {
    pdl_wait_and_release();
    I total = (I)g.n * g.h * g.w * g.c;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (I)gridDim.x * blockDim.x) {
        int c = (int)(i % (I)g.c);
        I t = i / (I)g.c;
        int iw = (int)(t % (I)g.w);
        t /= (I)g.w;
        int ih = (int)(t % (I)g.h), n = (int)(t / (I)g.h);
        float s = 0.0f;
        if (!relu_x || relu_x[i] > 0.0f) {
            /* Windows oh with oh*sh - pt <= ih < oh*sh - pt + kh. */
            int lo_h = ih + g.pt - g.kh + 1, hi_h = ih + g.pt;
            int lo_w = iw + g.pl - g.kw + 1, hi_w = iw + g.pl;
            int oh0 = lo_h > 0 ? (lo_h + g.sh - 1) / g.sh : 0, oh1 = min(hi_h / g.sh, g.oh - 1);
            int ow0 = lo_w > 0 ? (lo_w + g.sw - 1) / g.sw : 0, ow1 = min(hi_w / g.sw, g.ow - 1);
            for (int oh = oh0; oh <= oh1; oh++)
                for (int ow = ow0; ow <= ow1; ow++) {
                    I o = (((I)n * g.oh + oh) * g.ow + ow) * g.c + c;
                    if (argmax[o] == (int32_t)i && (!relu_y || relu_y[o] > 0.0f)) s += dy[o];
                }
        }
        dx[i] = s;
    }
}

/* Version 4: one thread per 4 consecutive channels of an output pixel (C % 4 == 0, x 16-byte
 * aligned): the window's pixels as float4 loads, y as a float4 store, the argmax as an int4
 * store, and the index arithmetic once per 4 outputs. Each channel's scan and comparisons are
 * version 3's, so the same bits. Run 2 timed version 2 at 84% of cuDNN on pool1 (7.8 vs 6.6 us
 * at batch 100), whose pooling writes no argmax. */
__global__ void maxpool_fwd4_kernel(PoolGeo g, const float *x, float *y, int32_t *argmax) {
    pdl_wait_and_release();
    const int c4 = g.c / 4;
    const unsigned total = (unsigned)g.n * g.oh * g.ow * c4;
    for (unsigned q = blockIdx.x * blockDim.x + threadIdx.x; q < total;
         q += gridDim.x * blockDim.x) {
        const int c = (int)(q % (unsigned)c4) * 4;
        unsigned t = q / (unsigned)c4;
        const int ow = (int)(t % (unsigned)g.ow);
        t /= (unsigned)g.ow;
        const int oh = (int)(t % (unsigned)g.oh), n = (int)(t / (unsigned)g.oh);
        const int h0 = oh * g.sh - g.pt, w0 = ow * g.sw - g.pl;
        const int hb = max(h0, 0), he = min(h0 + g.kh, g.h);
        const int wb = max(w0, 0), we = min(w0 + g.kw, g.w);
        const unsigned first = (((unsigned)n * g.h + hb) * g.w + wb) * g.c + c;
        float4 bv = *reinterpret_cast<const float4 *>(x + first);
        unsigned b0 = first, b1 = first + 1, b2 = first + 2, b3 = first + 3;
        for (int ih = hb; ih < he; ih++)
            for (int iw = wb; iw < we; iw++) {
                const unsigned i = (((unsigned)n * g.h + ih) * g.w + iw) * g.c + c;
                const float4 v = *reinterpret_cast<const float4 *>(x + i);
                if (v.x > bv.x) { bv.x = v.x; b0 = i; }
                if (v.y > bv.y) { bv.y = v.y; b1 = i + 1; }
                if (v.z > bv.z) { bv.z = v.z; b2 = i + 2; }
                if (v.w > bv.w) { bv.w = v.w; b3 = i + 3; }
            }
        const unsigned o = q * 4; /* = (((n*OH + oh)*OW + ow)*C + c) */
        *reinterpret_cast<float4 *>(y + o) = bv;
        *reinterpret_cast<int4 *>(argmax + o) = make_int4((int)b0, (int)b1, (int)b2, (int)b3);
    }
}

PoolGeo pool_geo(const Pool2dShape *s) {
    return PoolGeo{s->n, s->h, s->w, s->c, s->kh, s->kw, s->stride_h, s->stride_w,
                   s->pad_top, s->pad_left, s->oh, s->ow};
}

bool pool_ok(const Pool2dShape *s) {
    return s->n >= 0 && s->h > 0 && s->w > 0 && s->c > 0 && s->kh > 0 && s->kw > 0 &&
           s->stride_h > 0 && s->stride_w > 0 && s->pad_top >= 0 && s->pad_left >= 0 &&
           s->pad_top < s->kh && s->pad_left < s->kw &&
           (size_t)s->n * s->h * s->w * s->c < (1ull << 31); /* argmax is int32 */
}

/* CNN_POOL_V: 1 = 64-bit indices forward and backward (the first GPU run); 2 = 32-bit forward,
 * 64-bit backward (runs 2 and 3); 3 = 32-bit both; 4 (the default) = 3 with the forward 4
 * channels per thread where C % 4 == 0 and x, y, argmax are 16-byte aligned. The same results.
 * Read at every launch. */
int pool_version(void) {
    const char *v = getenv("CNN_POOL_V");
    if (v && strcmp(v, "1") == 0) return 1;
    if (v && strcmp(v, "2") == 0) return 2;
    if (v && strcmp(v, "3") == 0) return 3;
    return 4;
}

/* relu_x: the ReLU's mask from the pool's input; relu_y: from its output (at most one set). */
cudaError_t pool_backward(const Pool2dShape *s, const float *dy, const int32_t *argmax,
                          const float *relu_x, const float *relu_y, float *dx,
                          cudaStream_t stream) {
    if (!pool_ok(s)) return cudaErrorInvalidValue;
    size_t total = (size_t)s->n * s->h * s->w * s->c;
    if (total == 0) return cudaSuccess;
    if (pool_version() < 3)
        CNN_KERNEL(grid_for(total, 256), 256, stream, maxpool_bwd_kernel<size_t>)(
            pool_geo(s), dy, argmax, relu_x, relu_y, dx);
    else
        CNN_KERNEL(grid_for(total, 256), 256, stream, maxpool_bwd_kernel<unsigned>)(
            pool_geo(s), dy, argmax, relu_x, relu_y, dx);
    return launch_status();
}

} /* namespace */

extern "C" cudaError_t maxpool2d_forward_cuda(const Pool2dShape *s, const float *x, float *y,
                                              int32_t *argmax, cudaStream_t stream) {
    if (!pool_ok(s)) return cudaErrorInvalidValue;
    size_t total = (size_t)s->n * s->oh * s->ow * s->c;
    if (total == 0) return cudaSuccess;
    if (pool_version() >= 4 && s->c % 4 == 0 && aligned16(x) && aligned16(y) && aligned16(argmax))
        CNN_KERNEL(grid_for(total / 4, 256), 256, stream, maxpool_fwd4_kernel)(pool_geo(s), x, y,
                                                                             argmax);
    else if (pool_version() == 1)
        CNN_KERNEL(grid_for(total, 256), 256, stream, maxpool_fwd_kernel<size_t>)(
            pool_geo(s), x, y, argmax);
    else
        CNN_KERNEL(grid_for(total, 256), 256, stream, maxpool_fwd_kernel<unsigned>)(
            pool_geo(s), x, y, argmax);
    return launch_status();
}

extern "C" cudaError_t maxpool2d_backward_cuda(const Pool2dShape *s, const float *dy,
                                               const int32_t *argmax, const float *relu_x,
                                               float *dx, cudaStream_t stream) {
    return pool_backward(s, dy, argmax, relu_x, NULL, dx, stream);
}

extern "C" cudaError_t maxpool2d_relu_backward_from_y_cuda(const Pool2dShape *s, const float *dy,
                                                           const int32_t *argmax, const float *y,
                                                           float *dx, cudaStream_t stream) {
    return pool_backward(s, dy, argmax, NULL, y, dx, stream);
}
