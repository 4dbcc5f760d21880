"""The original job's accuracy in Keras on tensorflow-cpu: the peer of `trainer --steps N`.

Same model and hyper-parameters as the trainer's defaults (Conv 5x5x32 SAME relu, MaxPool 2,
Conv 5x5x64 SAME relu, MaxPool 2, Flatten, Dense 1024 relu, Dropout 0.4, Dense 10 softmax;
Glorot-uniform kernels, zero biases; Adam(0.001, epsilon 1e-7); sparse categorical
cross-entropy; batch 100; raw 0..255 pixels; the training set reshuffled every epoch), on the
shipped MNIST read from the same TFRecords. Trains `steps` steps from `seed`, then evaluates on
the whole test set and prints one RESULT line with the test accuracy and loss.
Usage: keras_mnist_accuracy.py TRAIN_TFRECORDS TEST_TFRECORDS [steps=12000] [seed=0] [threads=2]
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from keras_mnist_model import build, dataset  # noqa: E402


def main():
    train, test = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 12000
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.keras.utils.set_random_seed(seed)
    ds = (dataset(train).shuffle(60000, seed=seed, reshuffle_each_iteration=True)
          .repeat().batch(100, drop_remainder=True).prefetch(2))
    model, loss_fn, step = build()

    t0 = time.perf_counter()
    it = iter(ds)
    for i in range(steps):
        loss = step(*next(it))
        if (i + 1) % 1000 == 0:
            print(f"step {i + 1} loss {float(loss):.4f}", flush=True)
    train_s = time.perf_counter() - t0
    model.compile(loss=loss_fn, metrics=["accuracy"])
    test_loss, acc = model.evaluate(dataset(test).batch(100), verbose=0)
    print(f"RESULT engine=keras-tf{tf.__version__} steps={steps} seed={seed} batch=100 "
          f"accuracy={acc:.4f} loss={test_loss:.4f} train_s={train_s:.0f}")


if __name__ == "__main__":
    main()
