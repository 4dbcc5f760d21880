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

/* Forward A: rows (n,oh,ow), columns (kh,kw,c):
 *   x[((n*H + oh*sh-pt + kh)*W + ow*sw-pl + kw)*C + c] = x[row.base + k.off]
 * with row.base = ((n*H + ih0)*W + iw0)*C (ih0, iw0: the window's origin, may be negative) and
 * k.off = (kh*W + kw)*C + c; the tap is inside the image when ih0+kh, iw0+kw are. */
struct Im2colFwd {
    const float *x;
    Geo g;
    struct Row { int base, ih0, iw0; };
    struct K { int off, kh, kw; };
    __host__ __device__ __forceinline__ Row row_at(int n, int oh, int ow) const {
        int ih0 = oh * g.sh - g.pt, iw0 = ow * g.sw - g.pl;
        return Row{((n * g.h + ih0) * g.w + iw0) * g.c, ih0, iw0};
    }
    __host__ __device__ __forceinline__ Row row(int m) const {
        int ow, oh;
        int n = g.d_oh.divmod(g.d_ow.divmod(m, &ow), &oh);
        return row_at(n, oh, ow);
    }
    __host__ __device__ __forceinline__ K kctx(int kk) const {
        int c, kw;
        int kh = g.d_kw.divmod(g.d_c.divmod(kk, &c), &kw);
        return K{(kh * g.w + kw) * g.c + c, kh, kw};
    }
    __host__ __device__ __forceinline__ bool inside(Row r, K k) const {
        return (unsigned)(r.ih0 + k.kh) < (unsigned)g.h && (unsigned)(r.iw0 + k.kw) < (unsigned)g.w;
    }
    __device__ __forceinline__ float at(Row r, K k) const {
        return inside(r, k) ? x[r.base + k.off] : 0.0f;
    }
    /* 4 consecutive channels of one tap (k fastest, C % 4 == 0): inside or outside together. */
    static constexpr bool HAS_VEC4 = true;
    __host__ bool vec4(bool k_fast, int) const {
        return k_fast && g.c % 4 == 0 && aligned16(x);
    }
    __device__ __forceinline__ float4 at4(Row r, K k) const {
        return inside(r, k) ? *reinterpret_cast<const float4 *>(x + r.base + k.off)
                            : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
};

/* Forward A with the rows in pooling-window order, for a 2x2 max pool of stride 2 over the
 * conv output (no padding): row m = 4p + q is conv output pixel (2ph + q/2, 2pw + q%2) of
 * pooled position p = (n, ph, pw), so rows 4p..4p+3 are p's window in the pool's scan order
 * (row-major), and a GEMM tile's rows are whole windows. Conv output rows and columns past
 * 2*PH, 2*PW (odd OH, OW) belong to no window and are never computed. */
struct Im2colPool2 {
    Im2colFwd f;
    FastDiv d_pw, d_ph;
    typedef Im2colFwd::Row Row;
    typedef Im2colFwd::K K;
    __host__ __device__ __forceinline__ Row row(int m) const {
        int pw, ph;
        const int q = m & 3, n = d_ph.divmod(d_pw.divmod(m >> 2, &pw), &ph);
        return f.row_at(n, 2 * ph + (q >> 1), 2 * pw + (q & 1));
    }
    __host__ __device__ __forceinline__ K kctx(int kk) const { return f.kctx(kk); }
    __device__ __forceinline__ float at(Row r, K k) const { return f.at(r, k); }
    static constexpr bool HAS_VEC4 = true;
    __host__ bool vec4(bool k_fast, int m) const { return f.vec4(k_fast, m); }
    __device__ __forceinline__ float4 at4(Row r, K k) const { return f.at4(r, k); }
};

/* The pooling store of Im2colPool2's GEMM: for pooled position p = m/4 and channel k, the four
 * conv values v_q = max(acc_q + b[k], 0) (StoreBiasRelu's arithmetic), their max (the first
 * of equal values wins, as maxpool2d_forward) into y[p, k] and its index in the virtual conv
 * output [N,OH,OW,K] into argmax[p, k]. */
struct StorePool2 {
    float *y;
    int32_t *argmax;
    const float *b;
    int k, oh, ow;
    FastDiv d_pw, d_ph;
    static constexpr bool POOL4 = true;
    __device__ __forceinline__ void store4(int m, int kk, float a0, float a1, float a2,
                                           float a3) const {
        const float bias = b ? b[kk] : 0.0f;
        const float v[4] = {a0, a1, a2, a3};
        float best = 0.0f;
        int at = 0;
#pragma unroll
        for (int q = 0; q < 4; q++) {
            float u = b ? v[q] + bias : v[q];
            u = u > 0.0f ? u : 0.0f;
            if (q == 0 || u > best) {
                best = u;
                at = q;
            }
        }
        const int p = m >> 2;
        int pw, ph;
        const int n = d_ph.divmod(d_pw.divmod(p, &pw), &ph);
        y[(size_t)p * k + kk] = best;
        argmax[(size_t)p * k + kk] =
            ((n * oh + 2 * ph + (at >> 1)) * ow + 2 * pw + (at & 1)) * k + kk;
    }
};

/* Backward-data A, stride 1: rows (n,h,w), columns (kh,kw,k) -> dy[n, h+pt-kh, w+pl-kw, k]
 *   = dy[row.base + k.off], row.base = ((n*OH + th0)*OW + tw0)*K with th0 = h+pt, tw0 = w+pl,
 *   k.off = k - (kh*OW + kw)*K; inside when th0-kh, tw0-kw are. */
struct DyGatherS1 {
    const float *dy;
    Geo g;
    struct Row { int base, th0, tw0; };
    struct K { int off, kh, kw; };
    __host__ __device__ __forceinline__ Row row(int m) const {
        int iw, ih;
        int n = g.d_h.divmod(g.d_w.divmod(m, &iw), &ih);
        int th0 = ih + g.pt, tw0 = iw + g.pl;
        return Row{((n * g.oh + th0) * g.ow + tw0) * g.k, th0, tw0};
    }
    __host__ __device__ __forceinline__ K kctx(int kk) const {
        int ko, kw;
        int kh = g.d_kw.divmod(g.d_k.divmod(kk, &ko), &kw);
        return K{ko - (kh * g.ow + kw) * g.k, kh, kw};
    }
    __host__ __device__ __forceinline__ bool inside(Row r, K k) const {
        return (unsigned)(r.th0 - k.kh) < (unsigned)g.oh && (unsigned)(r.tw0 - k.kw) < (unsigned)g.ow;
    }
    __device__ __forceinline__ float at(Row r, K k) const {
        return inside(r, k) ? dy[r.base + k.off] : 0.0f;
    }
    /* 4 consecutive output channels of one tap (K % 4 == 0). */
    static constexpr bool HAS_VEC4 = true;
    __host__ bool vec4(bool k_fast, int) const {
        return k_fast && g.k % 4 == 0 && aligned16(dy);
    }
    __device__ __forceinline__ float4 at4(Row r, K k) const {
        return inside(r, k) ? *reinterpret_cast<const float4 *>(dy + r.base + k.off)
                            : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
};

/* Backward-data A, any stride: the output pixel oh = (h+pt-kh)/sh exists only when the
 * division is exact. */
struct DyGather {
    const float *dy;
    Geo g;
    struct Row { int n, ih, iw; };
    struct K { int kh, kw, ko; };
    __host__ __device__ __forceinline__ Row row(int m) const {
        int iw, ih;
        int n = g.d_h.divmod(g.d_w.divmod(m, &iw), &ih);
        return Row{n, ih, iw};
    }
    __host__ __device__ __forceinline__ K kctx(int kk) const {
        int ko, kw;
        int kh = g.d_kw.divmod(g.d_k.divmod(kk, &ko), &kw);
        return K{kh, kw, ko};
    }
    /* index into dy, or -1 outside */
    __host__ __device__ __forceinline__ int index(Row r, K k) const {
        int th = r.ih + g.pt - k.kh, tw = r.iw + g.pl - k.kw;
        if (th < 0 || tw < 0) return -1;
        int rh, rw;
        int oh = g.d_sh.divmod(th, &rh), ow = g.d_sw.divmod(tw, &rw);
        if (rh != 0 || rw != 0 || oh >= g.oh || ow >= g.ow) return -1;
        return ((r.n * g.oh + oh) * g.ow + ow) * g.k + k.ko;
    }
    __device__ __forceinline__ float at(Row r, K k) const {
        int i = index(r, k);
        return i >= 0 ? dy[i] : 0.0f;
    }
    static constexpr bool HAS_VEC4 = false; /* element by element (rare: strided convs) */
};

/* Backward-data B: (kk=(kh,kw,k), c) -> w[kh,kw,c,k] (contiguous along kk's k):
 * w[kctx(kk) + col(c)] with kctx = tap*C*K + k (tap = (kh,kw)) and col = c*K. */
struct WTrans {
    const float *w;
    int c, k;
    FastDiv d_k;
    typedef int Col;
    typedef int K;
    __host__ __device__ __forceinline__ Col col(int ci) const { return ci * k; }
    __host__ __device__ __forceinline__ K kctx(int kk) const {
        int ko;
        int tap = d_k.divmod(kk, &ko);
        return tap * c * k + ko;
    }
    __device__ __forceinline__ float at(Col cc, K kc) const { return w[cc + kc]; }
    /* 4 consecutive output channels k of one tap (k fastest, K % 4 == 0). */
    static constexpr bool HAS_VEC4 = true;
    __host__ bool vec4(bool n_fast) const {
        return !n_fast && k % 4 == 0 && aligned16(w);
    }
    __device__ __forceinline__ float4 at4(Col cc, K kc) const {
        return *reinterpret_cast<const float4 *>(w + cc + kc);
    }
};

/* Backward-filter A: rows (kh,kw,c) plus a row of ones (m == KH*KW*C) for db; columns
 * (n,oh,ow): x[k.base + row.off] with the roles of Im2colFwd's parts swapped. */
struct Im2colT {
    const float *x;
    Geo g;
    int rows; /* KH*KW*C */
    struct Row { int off, kh, kw, ones; };
    struct K { int base, ih0, iw0; };
    __host__ __device__ __forceinline__ Row row(int m) const {
        if (m >= rows) return Row{0, 0, 0, 1};
        int c, kw;
        int kh = g.d_kw.divmod(g.d_c.divmod(m, &c), &kw);
        return Row{(kh * g.w + kw) * g.c + c, kh, kw, 0};
    }
    __host__ __device__ __forceinline__ K kctx(int kk) const {
        int ow, oh;
        int n = g.d_oh.divmod(g.d_ow.divmod(kk, &ow), &oh);
        int ih0 = oh * g.sh - g.pt, iw0 = ow * g.sw - g.pl;
        return K{((n * g.h + ih0) * g.w + iw0) * g.c, ih0, iw0};
    }
    __host__ __device__ __forceinline__ bool inside(Row r, K k) const {
        return (unsigned)(k.ih0 + r.kh) < (unsigned)g.h && (unsigned)(k.iw0 + r.kw) < (unsigned)g.w;
    }
    __device__ __forceinline__ float at(Row r, K k) const {
        if (r.ones) return 1.0f;
        return inside(r, k) ? x[k.base + r.off] : 0.0f;
    }
    /* 4 consecutive channels of one tap (m fastest, C % 4 == 0). The row of ones, KH*KW*C (a
     * multiple of 4), is the last row and starts its group: (1, 0, 0, 0). */
    static constexpr bool HAS_VEC4 = true;
    __host__ bool vec4(bool k_fast, int) const {
        return !k_fast && g.c % 4 == 0 && aligned16(x);
    }
    __device__ __forceinline__ float4 at4(Row r, K k) const {
        if (r.ones) return make_float4(1.0f, 0.0f, 0.0f, 0.0f);
        return inside(r, k) ? *reinterpret_cast<const float4 *>(x + k.base + r.off)
                            : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
};

/* The functors index with int: every base/offset they form, padding included, must stay below
 * 2^31 (a generous bound on the tensors, (N+1) images of (H+KH+OH) x (W+KW+OW) pixels). */
bool shape_ok(const Conv2dShape *s) {
    if (!(s->n >= 0 && s->h > 0 && s->w > 0 && s->c > 0 && s->kh > 0 && s->kw > 0 && s->k > 0 &&
          s->stride_h > 0 && s->stride_w > 0 && s->oh > 0 && s->ow > 0 && s->pad_top >= 0 &&
          s->pad_left >= 0 && s->pad_top < s->kh + s->h && s->pad_left < s->kw + s->w))
        return false;
    long long ch = s->c > s->k ? s->c : s->k;
    return (long long)(s->n + 1) * (s->h + s->kh + s->oh) * (s->w + s->kw + s->ow) * ch <
               (1LL << 31) &&
           (long long)s->kh * s->kw * s->c * s->k < (1LL << 31);
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

extern "C" int conv2d_relu_pool2_gemm_ok(const Conv2dShape *cs, const Pool2dShape *ps) {
    return shape_ok(cs) && ps->kh == 2 && ps->kw == 2 && ps->stride_h == 2 &&
           ps->stride_w == 2 && ps->pad_top == 0 && ps->pad_left == 0 && ps->n == cs->n &&
           ps->h == cs->oh && ps->w == cs->ow && ps->c == cs->k && ps->oh == cs->oh / 2 &&
           ps->ow == cs->ow / 2 && ps->oh > 0 && ps->ow > 0 &&
           (size_t)cs->n * cs->oh * cs->ow * cs->k < (1ull << 31); /* argmax is int32 */
}

extern "C" cudaError_t conv2d_relu_pool2_forward_cuda(const Conv2dShape *cs, const Pool2dShape *ps,
                                                      const float *x, const float *w,
                                                      const float *b, float *y, int32_t *argmax,
                                                      cudaStream_t stream) {
    if (!conv2d_relu_pool2_gemm_ok(cs, ps)) return cudaErrorInvalidValue;
    Geo g = geo_of(cs);
    const int M = 4 * cs->n * ps->oh * ps->ow, K = cs->kh * cs->kw * cs->c;
    const FastDiv d_pw(ps->ow), d_ph(ps->oh);
    Im2colPool2 a{Im2colFwd{x, g}, d_pw, d_ph};
    StorePool2 st{y, argmax, b, cs->k, cs->oh, cs->ow, d_pw, d_ph};
    /* Coalescing as conv2d_forward_cuda; no scratch: the pooling store is never split. */
    if (cs->c >= 8)
        return gemm::launch<true, true>(M, cs->k, K, a, gemm::MatB<false>{w, cs->k}, st, nullptr,
                                        0, stream);
    return gemm::launch<false, true>(M, cs->k, K, a, gemm::MatB<false>{w, cs->k}, st, nullptr, 0,
                                     stream);
}

extern "C" cudaError_t conv2d_backward_data_cuda(const Conv2dShape *s, const float *dy,
                                                 const float *w, float *dx, float *ws,
                                                 size_t ws_floats, cudaStream_t stream) {
    if (!shape_ok(s)) return cudaErrorInvalidValue;
    Geo g = geo_of(s);
    int M = s->n * s->h * s->w, K = s->kh * s->kw * s->k;
    WTrans wt{w, s->c, s->k, FastDiv(s->k)};
    if (s->stride_h == 1 && s->stride_w == 1)
        return gemm::launch<true, false>(M, s->c, K, DyGatherS1{dy, g}, wt,
                                         gemm::StorePlain{dx, s->c}, ws, ws_floats, stream);
    return gemm::launch<true, false>(M, s->c, K, DyGather{dy, g}, wt, gemm::StorePlain{dx, s->c},
                                     ws, ws_floats, stream);
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
