/* dense_narrow.h: a dense layer's three GEMMs where it has at most 16 outputs (the model's
 * logits layer, 1024 -> 10), private to kernels/. The packed sgemm takes such a layer through
 * its edge tiles only (each 6 x 16 tile summed into a buffer, then copied a float at a time)
 * and packs x^T for dw; these loops keep a row of `out` values in one AVX-512 register
 * instead. Each value is sgemm's (kernels/sgemm.c): a fmaf chain from 0 over each KC slice of
 * the sum (sgemm_kc_step), the slices added in order: the same bits. Row-major x[N,in],
 * w[in,out], y and dy [N,out], as dense.c. */
#ifndef KERNELS_DENSE_NARROW_H
#define KERNELS_DENSE_NARROW_H

/* Whether these loops run: 1 <= out <= 16 on a CPU with the AVX-512 clones (else sgemm). */
int dense_narrow_fits(int out);
/* y = x * w (no bias) */
void dense_narrow_forward(int n, int in, int out, const float *x, const float *w, float *y);
/* dx = dy * w^T; -1 when out of memory (nothing written), else 0 */
int dense_narrow_backward_data(int n, int in, int out, const float *dy, const float *w,
                               float *dx);
/* dw = x^T * dy */
void dense_narrow_backward_filter(int n, int in, int out, const float *x, const float *dy,
                                  float *dw);

#endif
