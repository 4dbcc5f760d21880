/* softmax_xent.c: softmax, the fused sparse softmax cross-entropy (mean over the batch) and
 * its gradient, and the accuracy count. Rows are [N,C] row-major logits. */
#include "kernels/kernels.h"

#include <math.h>

/* probs_row = softmax(row); returns log(sum_j exp(row[j] - max)) and the max in *mx_out.
 * Max-subtracted, so huge logits are fine; the loss is formed from shifted logits,
 * log(sum) - (row[label] - max), so a large max does not swallow it. */
static float softmax_row(int c, const float *row, float *probs_row, float *mx_out) {
    float mx = row[0];
    for (int j = 1; j < c; j++) mx = row[j] > mx ? row[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < c; j++) {
        probs_row[j] = expf(row[j] - mx);
        sum += probs_row[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < c; j++) probs_row[j] *= inv;
    *mx_out = mx;
    return logf(sum);
}

void softmax_forward(int n, int c, const float *logits, float *probs) {
    float mx;
    for (int i = 0; i < n; i++) softmax_row(c, logits + (size_t)i * c, probs + (size_t)i * c, &mx);
}

void softmax_xent_forward(int n, int c, const float *logits, const int32_t *labels, float *probs,
                          float *loss) {
    double total = 0.0; /* in row order, so the result does not depend on threads */
    for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * c;
        float mx, log_sum = softmax_row(c, row, probs + (size_t)i * c, &mx);
        total += (double)(log_sum - (row[labels[i]] - mx));
    }
    *loss = n > 0 ? (float)(total / n) : 0.0f;
}

void softmax_xent_backward(int n, int c, const float *probs, const int32_t *labels, float dloss,
                           float *dlogits) {
    const float scale = n > 0 ? dloss / (float)n : 0.0f;
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * c;
        float *d = dlogits + (size_t)i * c;
        for (int j = 0; j < c; j++) d[j] = (p[j] - (j == labels[i] ? 1.0f : 0.0f)) * scale;
    }
}

int argmax_correct(int n, int c, const float *logits, const int32_t *labels) {
    int correct = 0;
    for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * c;
        int best = 0;
        for (int j = 1; j < c; j++)
            if (row[j] > row[best]) best = j;
        correct += best == labels[i];
    }
    return correct;
}
