/* dropout_dense.c: a dropout and the dense layer after it, fused (kernels.h); the reference
 * for dense.cu's twin, written as plain loops (the layer is narrow: the model's logits). */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/philox.h"

/* x'[e]: the dropout's output, from its input and mask (x itself without a mask). */
static float dropped(const float *x, const uint8_t *mask, float scale, size_t e) {
    if (!mask) return x[e];
    return mask[e] ? x[e] * scale : 0.0f;
}

void dropout_dense_forward(int n, int in, int out, float rate, uint64_t seed, uint64_t stream,
                           const float *x, const float *w, const float *b, float *y,
                           uint8_t *mask, int relu) {
    const float scale = dropout_scale(rate);
    if (mask)
        for (size_t e = 0; e < (size_t)n * in; e++)
            mask[e] = philox_uniform(seed, stream, e) >= rate;
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            float acc = 0.0f;
            for (int i = 0; i < in; i++)
                acc = fmaf(dropped(x, mask, scale, (size_t)r * in + i), w[(size_t)i * out + o], acc);
            if (b) acc += b[o];
            y[(size_t)r * out + o] = relu && !(acc > 0.0f) ? 0.0f : acc;
        }
}

void dropout_dense_backward(int n, int in, int out, float rate, const uint8_t *mask, int relu_x,
                            const float *x, const float *w, const float *dy, float *dx, float *dw,
                            float *db) {
    const float scale = dropout_scale(rate);
    if (dx)
        for (int r = 0; r < n; r++)
            for (int i = 0; i < in; i++) {
                const size_t e = (size_t)r * in + i;
                float g = 0.0f;
                for (int o = 0; o < out; o++)
                    g = fmaf(dy[(size_t)r * out + o], w[(size_t)i * out + o], g);
                const int pass = mask[e] && (!relu_x || x[e] > 0.0f);
                dx[e] = pass ? g * scale : 0.0f;
            }
    for (int i = 0; i < in; i++)
        for (int o = 0; o < out; o++) {
            float acc = 0.0f;
            for (int r = 0; r < n; r++)
                acc = fmaf(dropped(x, mask, scale, (size_t)r * in + i), dy[(size_t)r * out + o], acc);
            dw[(size_t)i * out + o] = acc;
        }
    if (db)
        for (int o = 0; o < out; o++) {
            float acc = 0.0f;
            for (int r = 0; r < n; r++) acc += dy[(size_t)r * out + o];
            db[o] = acc;
        }
}
