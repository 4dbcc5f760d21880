/* dense.c: fully connected layer on row-major x[N,in], kernel w[in,out], y[N,out], via sgemm. */
#include "kernels/kernels.h"

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
