"""The original model in Keras on tensorflow-cpu: the peer of bench_train_cpu.

Same model (Conv 5x5x32 SAME relu, MaxPool 2, Conv 5x5x64 SAME relu, MaxPool 2, Flatten,
Dense 1024 relu, Dropout 0.4, Dense 10 softmax), Adam(0.001, epsilon 1e-7), sparse categorical
cross-entropy, batch 100, raw 0..255 pixels, on the shipped MNIST read through tf.data from the
same TFRecords, cached in memory and shuffled. Timing: wall and process CPU time around `steps`
steps of a compiled (tf.function) training step, after the warm-up steps (100 by default, as
bench_train_cpu's); the best of 3 runs.
Usage: keras_mnist_cpu.py TRAIN_TFRECORDS [steps=50] [threads=2] [warmup=100]
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from keras_mnist_model import build, dataset  # noqa: E402


def main():
    path = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    warmup = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    ds = dataset(path).shuffle(1000, seed=1).repeat().batch(100, drop_remainder=True).prefetch(2)
    _, _, step = build()

    it = iter(ds)
    for _ in range(warmup):
        loss = step(*next(it))
    best_wall = best_cpu = float("inf")
    for _ in range(3):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            loss = step(*next(it))
        loss = float(loss)
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    ms = 1e3 * best_wall / steps
    print(f"RESULT engine=keras-tf{tf.__version__} batch=100 steps={steps} ms_per_step={ms:.2f} "
          f"images_per_s={100e3 / ms:.0f} cpu_s_per_step={best_cpu / steps:.3f} last_loss={loss:.4f} "
          f"warmup={warmup}")


if __name__ == "__main__":
    main()
