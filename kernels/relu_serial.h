/* relu_serial.h: the ReLU on the calling thread, private to kernels/: relu_forward runs it on
 * each thread's blocks, and the conv + ReLU + max pool of conv2d.c on the conv rows it has just
 * made, inside its parallel region (relu_forward would open a region of its own, which cost
 * more than these few floats). */
#ifndef KERNELS_RELU_SERIAL_H
#define KERNELS_RELU_SERIAL_H

#include <stddef.h>

/* y[i] = x[i] > 0 ? x[i] : 0 for i < n (NaN and -0 give +0); y may be x. */
void relu_serial(size_t n, const float *x, float *y);

#endif
