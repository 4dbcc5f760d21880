/* conv2d.cu: 2-D convolution on the GPU as implicit GEMMs (no im2col buffer): the functors
 * below read the im2col matrices straight out of the NHWC activations, and the shared tiled
 * GEMM (gemm_cuda.cuh) does the rest.
 *
 *   forward          y[(n,oh,ow), k]     = sum_(kh,kw,c)  x[n, oh*sh+kh-pt, ow*sw+kw-pl, c] * w[(kh,kw,c), k]
 *   backward data    dx[(n,h,w), c]      = sum_(kh,kw,k)  dy[n, (h+pt-kh)/sh, (w+pl-kw)/sw, k] * w[kh,kw,c,k]
 *                                          (terms whose division is inexact or out of range are 0)
 *   backward filter  dw[(kh,kw,c), k]    = sum_(n,oh,ow)  x[n, oh*sh+kh-pt, ow*sw+kw-pl, c] * dy[(n,oh,ow), k]
 *                    db[k]               = the same sum with x replaced by 1 (an extra GEMM row)
 * Layouts: x [N,H,W,C], y/dy [N,OH,OW,K] (NHWC); w [KH,KW,C,K] (HWIO), so w is already the
 * [(kh,kw,c), k] matrix of the forward GEMM. Out-of-image taps read as 0 (SAME padding). */
#include "kernels/gemm_cuda.cuh"
#include "kernels/kernels_cuda.h"

namespace {

/* The shape, by value in every functor, with fast dividers for the index arithmetic. */
struct Geo {
    int n, h, w, c, kh, kw, k, sh, sw, pt, pl, oh, ow;
    FastDiv d_h, d_w, d_c, d_kw, d_k, d_oh, d_ow, d_sh, d_sw;
};

Geo geo_of(const Conv2dShape *s) {
    Geo g;
    g.n = s->n; g.h = s->h; g.w = s->w; g.c = s->c; g.kh = s->kh; g.kw = s->kw; g.k = s->k;
    g.sh = s->stride_h; g.sw = s->stride_w; g.pt = s->pad_top; g.pl = s->pad_left;
    g.oh = s->oh; g.ow = s->ow;
    g.d_h = FastDiv(s->h); g.d_w = FastDiv(s->w); g.d_c = FastDiv(s->c);
    g.d_kw = FastDiv(s->kw); g.d_k = FastDiv(s->k); g.d_oh = FastDiv(s->oh);
    g.d_ow = FastDiv(s->ow); g.d_sh = FastDiv(s->stride_h); g.d_sw = FastDiv(s->stride_w);
    return g;
}

/* Forward A: rows (n,oh,ow), columns (kh,kw,c). */
struct Im2colFwd {
    const float *x;
    Geo g;
    __device__ __forceinline__ float operator()(int m, int kk) const {
        int ow, oh, c, kw;
        int n = g.d_oh.divmod(g.d_ow.divmod(m, &ow), &oh);
        int kh = g.d_kw.divmod(g.d_c.divmod(kk, &c), &kw);
        int ih = oh * g.sh + kh - g.pt, iw = ow * g.sw + kw - g.pl;
        if ((unsigned)ih >= (unsigned)g.h || (unsigned)iw >= (unsigned)g.w) return 0.0f;
        return x[(((size_t)n * g.h + ih) * g.w + iw) * g.c + c];
    }
};

/* Backward-data A: rows (n,h,w), columns (kh,kw,k) -> dy at the output pixel whose window puts
 * tap (kh,kw) on input pixel (h,w). */
struct DyGather {
    const float *dy;
    Geo g;
    __device__ __forceinline__ float operator()(int m, int kk) const {
        int iw, ih, ko, kw;
        int n = g.d_h.divmod(g.d_w.divmod(m, &iw), &ih);
        int kh = g.d_kw.divmod(g.d_k.divmod(kk, &ko), &kw);
        int th = ih + g.pt - kh, tw = iw + g.pl - kw;
        if (th < 0 || tw < 0) return 0.0f;
        int rh, rw;
        int oh = g.d_sh.divmod(th, &rh), ow = g.d_sw.divmod(tw, &rw);
        if (rh != 0 || rw != 0 || oh >= g.oh || ow >= g.ow) return 0.0f;
        return dy[(((size_t)n * g.oh + oh) * g.ow + ow) * g.k + ko];
    }
};

/* Backward-data B: (kk=(kh,kw,k), c) -> w[kh,kw,c,k] (contiguous along kk's k). */
struct WTrans {
    const float *w;
    int c, k;
    FastDiv d_k;
    __device__ __forceinline__ float operator()(int kk, int ci) const {
        int ko;
        int tap = d_k.divmod(kk, &ko);
        return w[((size_t)tap * c + ci) * k + ko];
    }
};

/* Backward-filter A: rows (kh,kw,c) plus a row of ones (m == KH*KW*C) for db; columns
 * (n,oh,ow). */
struct Im2colT {
    const float *x;
    Geo g;
    int rows; /* KH*KW*C */
    __device__ __forceinline__ float operator()(int m, int kk) const {
        if (m >= rows) return 1.0f;
        int c, kw, ow, oh;
        int kh = g.d_kw.divmod(g.d_c.divmod(m, &c), &kw);
        int n = g.d_oh.divmod(g.d_ow.divmod(kk, &ow), &oh);
        int ih = oh * g.sh + kh - g.pt, iw = ow * g.sw + kw - g.pl;
        if ((unsigned)ih >= (unsigned)g.h || (unsigned)iw >= (unsigned)g.w) return 0.0f;
        return x[(((size_t)n * g.h + ih) * g.w + iw) * g.c + c];
    }
};

bool shape_ok(const Conv2dShape *s) {
    return s->n >= 0 && s->h > 0 && s->w > 0 && s->c > 0 && s->kh > 0 && s->kw > 0 && s->k > 0 &&
           s->stride_h > 0 && s->stride_w > 0 && s->oh >= 0 && s->ow >= 0 &&
           (long long)s->n * s->oh * s->ow < (1LL << 31) && (long long)s->n * s->h * s->w < (1LL << 31);
}

} /* namespace */

extern "C" size_t conv2d_workspace_floats_cuda(const Conv2dShape *s) {
    int fm = s->n * s->oh * s->ow, fk = s->kh * s->kw * s->c;
    size_t f = gemm::splitk_floats(fm, s->k, fk);
    size_t d = gemm::splitk_floats(s->n * s->h * s->w, s->c, s->kh * s->kw * s->k);
    size_t w = gemm::splitk_floats(fk + 1, s->k, fm);
    size_t mx = f > d ? f : d;
    return mx > w ? mx : w;
}

extern "C" cudaError_t conv2d_forward_cuda(const Conv2dShape *s, const float *x, const float *w,
                                           const float *b, float *y, int relu, float *ws,
                                           size_t ws_floats, cudaStream_t stream) {
    if (!shape_ok(s)) return cudaErrorInvalidValue;
    Geo g = geo_of(s);
    int M = s->n * s->oh * s->ow, K = s->kh * s->kw * s->c;
    /* Coalescing: along k (channels) when there are several, else along m (pixels). */
    if (s->c >= 8)
        return gemm::launch<true, true>(M, s->k, K, Im2colFwd{x, g}, gemm::MatB<false>{w, s->k},
                                        gemm::StoreBiasRelu{y, b, s->k, relu}, ws, ws_floats, stream);
    return gemm::launch<false, true>(M, s->k, K, Im2colFwd{x, g}, gemm::MatB<false>{w, s->k},
                                     gemm::StoreBiasRelu{y, b, s->k, relu}, ws, ws_floats, stream);
}

extern "C" cudaError_t conv2d_backward_data_cuda(const Conv2dShape *s, const float *dy,
                                                 const float *w, float *dx, float *ws,
                                                 size_t ws_floats, cudaStream_t stream) {
    if (!shape_ok(s)) return cudaErrorInvalidValue;
    Geo g = geo_of(s);
    int M = s->n * s->h * s->w, K = s->kh * s->kw * s->k;
    return gemm::launch<true, false>(M, s->c, K, DyGather{dy, g}, WTrans{w, s->c, s->k, FastDiv(s->k)},
                                     gemm::StorePlain{dx, s->c}, ws, ws_floats, stream);
}

extern "C" cudaError_t conv2d_backward_filter_cuda(const Conv2dShape *s, const float *x,
                                                   const float *dy, float *dw, float *db,
                                                   float *ws, size_t ws_floats,
                                                   cudaStream_t stream) {
    if (!shape_ok(s)) return cudaErrorInvalidValue;
    Geo g = geo_of(s);
    int rows = s->kh * s->kw * s->c, K = s->n * s->oh * s->ow;
    return gemm::launch<false, true>(db ? rows + 1 : rows, s->k, K, Im2colT{x, g, rows},
                                     gemm::MatB<false>{dy, s->k}, gemm::StoreWeightBias{dw, db, rows, s->k},
                                     ws, ws_floats, stream);
}
