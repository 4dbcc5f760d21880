/* conv_window.h: which taps of a conv window fall inside the input, and which outputs a tap
 * reaches, along one axis (private to kernels/). */
#ifndef KERNELS_CONV_WINDOW_H
#define KERNELS_CONV_WINDOW_H

/* The taps [*k0, *k1) of output o's window (k taps) that lie inside [0, in); returns the input
 * index of tap 0 (o*stride - pad, may be < 0). */
static inline int conv_window_taps(int o, int stride, int pad, int k, int in, int *k0, int *k1) {
    int i0 = o * stride - pad;
    *k0 = i0 < 0 ? -i0 : 0;
    *k1 = in - i0 < k ? in - i0 : k;
    if (*k1 < *k0) *k1 = *k0;
    return i0;
}

/* The outputs [*lo, *hi) (of out) whose tap t reads an input index o*stride - pad + t inside
 * [0, in). */
static inline void conv_tap_outputs(int t, int stride, int pad, int in, int out, int *lo,
                                    int *hi) {
    int a = pad - t, b = in - 1 + pad - t; /* o*stride in [a, b] */
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    *hi = b < 0 ? 0 : b / stride + 1;
    if (*hi > out) *hi = out;
    if (*hi < *lo) *hi = *lo;
}

#endif
