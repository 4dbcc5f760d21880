"""The original model in Keras on tensorflow-cpu: the peer of bench_train_cpu.

Same model (Conv 5x5x32 SAME relu, MaxPool 2, Conv 5x5x64 SAME relu, MaxPool 2, Flatten,
Dense 1024 relu, Dropout 0.4, Dense 10 softmax), Adam(0.001, epsilon 1e-7), sparse categorical
cross-entropy, batch 100, raw 0..255 pixels, on the shipped MNIST read through tf.data from the
same TFRecords, cached in memory and shuffled. Timing: wall and process CPU time around `steps`
steps of a compiled (tf.function) training step, after 5 warm-up steps; the best of 3 runs.
Usage: keras_mnist_cpu.py TRAIN_TFRECORDS [steps=50] [threads=2]
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402


def main():
    path = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    feats = {"image_raw": tf.io.FixedLenFeature([], tf.string),
             "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(rec):
        ex = tf.io.parse_single_example(rec, feats)
        img = tf.reshape(tf.cast(tf.io.decode_raw(ex["image_raw"], tf.uint8), tf.float32), [28, 28, 1])
        return img, tf.cast(ex["label"], tf.int32)

    ds = (tf.data.TFRecordDataset(path).map(parse).cache().shuffle(1000, seed=1)
          .repeat().batch(100, drop_remainder=True).prefetch(2))
    L = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1), name="image_input"),
        L.Conv2D(32, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(1024, activation="relu"), L.Dropout(0.4),
        L.Dense(10, activation="softmax")])
    opt = tf.keras.optimizers.Adam(0.001, epsilon=1e-7)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))
        return loss

    it = iter(ds)
    for _ in range(5):
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
          f"images_per_s={100e3 / ms:.0f} cpu_s_per_step={best_cpu / steps:.3f} last_loss={loss:.4f}")


if __name__ == "__main__":
    main()
