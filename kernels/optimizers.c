/* optimizers.c: one fused pass per parameter buffer for Adam, SGD and momentum, in the
 * arithmetic order of TF's training ops (ApplyAdam, ApplyGradientDescent, KerasMomentum) so
 * that results track TF to the last bits where possible. */
#include "kernels/kernels.h"

#include <math.h>

void adam_update(size_t n, float *w, const float *g, float *m, float *v, float lr, float beta1,
                 float beta2, float eps, int64_t t) {
    /* Keras computes the bias-corrected rate in float32 from beta^t (beta_power). */
    const float b1p = powf(beta1, (float)t), b2p = powf(beta2, (float)t);
    const float lr_t = lr * sqrtf(1.0f - b2p) / (1.0f - b1p);
    const float one_m_b1 = 1.0f - beta1, one_m_b2 = 1.0f - beta2;
    for (size_t i = 0; i < n; i++) {
        /* ApplyAdam's form of m = b1*m + (1-b1)*g and v = b2*v + (1-b2)*g^2. */
        float gi = g[i];
        float mi = m[i] + (gi - m[i]) * one_m_b1;
        float vi = v[i] + (gi * gi - v[i]) * one_m_b2;
        m[i] = mi;
        v[i] = vi;
        w[i] -= (mi * lr_t) / (sqrtf(vi) + eps);
    }
}

void sgd_update(size_t n, float *w, const float *g, float lr) {
    for (size_t i = 0; i < n; i++) w[i] -= lr * g[i];
}

void momentum_update(size_t n, float *w, const float *g, float *vel, float lr, float momentum,
                     int nesterov) {
    for (size_t i = 0; i < n; i++) {
        float a = vel[i] * momentum - g[i] * lr;
        vel[i] = a;
        w[i] += nesterov ? a * momentum - g[i] * lr : a;
    }
}
