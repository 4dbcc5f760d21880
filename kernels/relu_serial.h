/* relu_serial.h: the ReLU in place on the calling thread, private to kernels/: the conv + ReLU +
 * max pool of conv2d.c applies it to the conv rows it has just made, inside its parallel region
 * (relu_forward would open a region of its own, which cost more than these few floats). */
#ifndef KERNELS_RELU_SERIAL_H
#define KERNELS_RELU_SERIAL_H

#include <stddef.h>

/* x[i] = x[i] > 0 ? x[i] : 0 for i < n: relu_forward's values (NaN and -0 give +0). */
void relu_serial(size_t n, float *x);

#endif
