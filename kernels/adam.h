/* adam.h: Adam's per-element update, private to kernels/: adam_update (optimizers.c) and
 * dense_backward_adam (dense.c, the update inside a dense layer's backward) both go through
 * these two, so that they give the same bits. */
#ifndef KERNELS_ADAM_H
#define KERNELS_ADAM_H

#include <stddef.h>
#include <stdint.h>

/* The constants of one Adam update at the 1-based step t (kernels.h, adam_update). */
typedef struct {
    float lr_t, one_m_b1, one_m_b2, eps;
} AdamRate;

AdamRate adam_rate(float lr, float beta1, float beta2, float eps, int64_t t);

/* Adam on elements [i0, i1) of w, g, m, v, on the calling thread. */
void adam_range(const AdamRate *r, size_t i0, size_t i1, float *w, const float *g, float *m,
                float *v);

#endif
