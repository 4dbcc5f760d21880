"""The original model in Keras, and the shipped MNIST TFRecords through tf.data: what the Keras
peers (keras_mnist_cpu.py: step time; keras_mnist_accuracy.py: test accuracy) share.

Model: Conv 5x5x32 SAME relu, MaxPool 2, Conv 5x5x64 SAME relu, MaxPool 2, Flatten, Dense 1024
relu, Dropout 0.4, Dense 10 softmax (Glorot-uniform kernels, zero biases: Keras's defaults);
Adam(0.001, epsilon 1e-7); sparse categorical cross-entropy; raw 0..255 pixels.
"""
import tensorflow as tf


def dataset(path):
    """(image float [28,28,1] of raw pixels, label int32) per record, cached in memory."""
    feats = {"image_raw": tf.io.FixedLenFeature([], tf.string),
             "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(rec):
        ex = tf.io.parse_single_example(rec, feats)
        img = tf.reshape(tf.cast(tf.io.decode_raw(ex["image_raw"], tf.uint8), tf.float32), [28, 28, 1])
        return img, tf.cast(ex["label"], tf.int32)

    return tf.data.TFRecordDataset(path).map(parse).cache()


def build():
    """(model, loss_fn, step): step(x, y) is one compiled Adam training step, returns the loss."""
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

    return model, loss_fn, step
