/* dense.c: fully connected layer on row-major x[N,in], kernel w[in,out], y[N,out], via sgemm. */
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

void dense_forward(int n, int in, int out, const float *x, const float *w, const float *b,
                   float *y) {
    sgemm(0, 0, n, out, in, 1.0f, x, in, w, out, 0.0f, y, out);
    if (b)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) y[(size_t)i * out + j] += b[j];
}

void dense_backward(int n, int in, int out, const float *x, const float *w, const float *dy,
                    float *dx, float *dw, float *db) {
    if (dx) sgemm(0, 1, n, in, out, 1.0f, dy, out, w, out, 0.0f, dx, in); /* dy * w^T */
    sgemm(1, 0, in, out, n, 1.0f, x, in, dy, out, 0.0f, dw, out);          /* x^T * dy */
    if (db) {
        for (int j = 0; j < out; j++) db[j] = 0.0f;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < out; j++) db[j] += dy[(size_t)i * out + j];
    }
}

void dense_backward_data_alive(int n, int in, int out, const float *x, const float *w,
                               const float *dy, float *dx) {
    for (int r = 0; r < n; r++)
        for (int i = 0; i < in; i++) {
            float *o = dx + (size_t)r * in + i;
            if (!(x[(size_t)r * in + i] > 0.0f)) {
                *o = 0.0f;
                continue;
            }
            const float *g = dy + (size_t)r * out, *wr = w + (size_t)i * out;
            float lane[32];
            for (int l = 0; l < 32; l++) {
                float acc = 0.0f;
                for (int t = 0; t < out / 128; t++)
                    for (int q = 0; q < 4; q++) {
                        const int j = 128 * t + 4 * l + q;
                        acc = fmaf(g[j], wr[j], acc);
                    }
                lane[l] = acc;
            }
            for (int s = 16; s > 0; s >>= 1) {
                float next[32];
                for (int l = 0; l < 32; l++) next[l] = lane[l] + lane[l ^ s];
                memcpy(lane, next, sizeof lane);
            }
            *o = lane[0];
        }
}
