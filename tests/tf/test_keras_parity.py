"""Parity of our engine with TensorFlow/Keras on the original model.

Keras builds the original CNN (Conv 5x5x32 SAME + ReLU, MaxPool 2, Conv 5x5x64 SAME + ReLU,
MaxPool 2, Flatten, Dense 1024 + ReLU, Dropout 0.4, Dense 10) with its own Glorot init; both sides
get those weights and the same batch of raw 0..255 pixels. Dropout is on: Keras multiplies by the
mask our engine draws, recomputed here from the documented Philox stream
(kernels/philox.h: seed, PHILOX_STREAM_DROPOUT + step*16 + layer), which also checks our Philox
against an independent implementation. Compared: logits, loss and every gradient at step 0, then
the losses of 5 Adam steps and the weights after them. Tolerance: max|ours - keras| <= 1e-4 *
max|keras| per tensor (float32, different summation orders).

One allowance, for the weights after the Adam steps: Adam divides by sqrt(v), so the first
update of a weight is lr * sign(g) whatever |g|. Where a gradient is within float32 rounding noise
of zero, its sign, and so a whole lr-sized step, is decided by summation order (seen: a
conv2d_1 weight with g = -2e-6 against max|g| = 5.7, off by 5.8e-6 after 5 steps). So at most
max(2, 0.1%) weights per tensor may exceed the 1e-4 bound, and those by no more than Adam's
largest possible movement, 4 * lr * steps.
"""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("BUILD_DIR", REPO / "build"))
TOOL = BUILD_DIR / "bin" / "tool_parity"

N = 16
STEPS = 5
SEED = 1234
RATE = np.float32(0.4)
MASK32 = np.uint64(0xFFFFFFFF)
PHILOX_STREAM_DROPOUT = 1 << 30
LAYERS = ["conv2d", "conv2d_1", "dense", "dense_1"]
RTOL = 1e-4


def philox_u32(seed, stream, idx):
    """Philox 4x32-10 as kernels/philox.h: 32 random bits for elements idx of a stream."""
    idx = np.asarray(idx, dtype=np.uint64)
    block = idx >> np.uint64(2)
    c0 = block & MASK32
    c1 = block >> np.uint64(32)
    c2 = np.full_like(block, np.uint64(stream) & MASK32)
    c3 = np.full_like(block, np.uint64(stream) >> np.uint64(32))
    k0 = np.uint64(seed) & MASK32
    k1 = np.uint64(seed) >> np.uint64(32)
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + np.uint64(0x9E3779B9)) & MASK32
        k1 = (k1 + np.uint64(0xBB67AE85)) & MASK32
    words = np.stack([c0, c1, c2, c3])
    return words[(idx & np.uint64(3)).astype(np.int64), np.arange(idx.size)]


def dropout_scale(step, shape):
    """The mask of the model's (only) dropout layer at `step`, times 1/(1-rate), as float32."""
    count = int(np.prod(shape))
    u = philox_u32(SEED, PHILOX_STREAM_DROPOUT + step * 16, np.arange(count, dtype=np.uint64))
    uniform = (u >> np.uint64(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    keep = uniform >= RATE
    scale = np.float32(1.0) / (np.float32(1.0) - RATE)
    return np.where(keep, scale, np.float32(0.0)).astype(np.float32).reshape(shape)


def synthetic_batch(rng):
    """Digit-like raw 0..255 images: a few bright strokes on black."""
    x = np.zeros((N, 28, 28, 1), np.float32)
    for i in range(N):
        for _ in range(3):
            r, c = rng.integers(4, 20, size=2)
            h, w = rng.integers(2, 8, size=2)
            x[i, r:r + h, c:c + w, 0] = rng.integers(100, 256)
    return x, rng.integers(0, 10, size=N).astype(np.int32)


def keras_model(tf):
    keras = tf.keras
    image = keras.Input((28, 28, 1), name="image_input")
    mask = keras.Input((1024,), name="dropout_mask")
    h = keras.layers.Conv2D(32, 5, padding="same", activation="relu", name="conv2d")(image)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2d_1")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(1024, activation="relu", name="dense")(h)
    h = keras.layers.Multiply()([h, mask])  # Dropout(0.4) with our mask
    logits = keras.layers.Dense(10, name="dense_1")(h)
    return keras.Model([image, mask], logits)


def rel_err(ours, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(np.asarray(ours, np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-30))


def test_philox_matches_known_answer():
    # Random123's published known-answer test for philox4x32-10: counter 0, key 0.
    # Our element i of stream 0 under seed 0 is word i of the block counter i/4.
    words = philox_u32(0, 0, np.arange(4, dtype=np.uint64))
    assert [hex(int(w)) for w in words] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]


def test_keras_parity(tmp_path):
    assert TOOL.exists(), f"{TOOL} is missing: build the tree first (BUILD_DIR={BUILD_DIR})"
    tf = pytest.importorskip("tensorflow")
    tf.keras.utils.set_random_seed(7)
    model = keras_model(tf)
    images, labels = synthetic_batch(np.random.default_rng(3))
    images.tofile(tmp_path / "images.f32")
    labels.tofile(tmp_path / "labels.i32")
    layers = {name: model.get_layer(name) for name in LAYERS}
    for name, layer in layers.items():
        layer.kernel.numpy().astype(np.float32).tofile(tmp_path / f"param_{name}__kernel.f32")
        layer.bias.numpy().astype(np.float32).tofile(tmp_path / f"param_{name}__bias.f32")

    subprocess.run([str(TOOL), str(tmp_path), str(N), str(STEPS), str(SEED)], check=True)

    def ours(prefix, name, shape):
        return np.fromfile(tmp_path / f"{prefix}{name}.f32", np.float32).reshape(shape)

    variables = [v for name in LAYERS for v in (layers[name].kernel, layers[name].bias)]
    var_names = [f"{name}__{part}" for name in LAYERS for part in ("kernel", "bias")]
    xent = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step_grads(step):
        with tf.GradientTape() as tape:
            logits = model([images, dropout_scale(step, (N, 1024))], training=True)
            loss = xent(labels, logits)
        return logits, loss, tape.gradient(loss, variables)

    # Step 0: logits, loss, every gradient.
    logits, loss, grads = step_grads(0)
    assert rel_err(ours("", "logits", (N, 10)), logits.numpy()) <= RTOL
    assert abs(float(ours("", "loss", (1,))[0]) - float(loss)) <= RTOL * abs(float(loss))
    for vname, g in zip(var_names, grads):
        e = rel_err(ours("grad_", vname, g.shape), g.numpy())
        assert e <= RTOL, f"gradient {vname}: relative error {e:.3g}"
        assert np.max(np.abs(g.numpy())) > 0, f"gradient {vname} is all zero: a weak test"

    # 5 Adam steps (Keras defaults except epsilon, which is Keras's 1e-7 as ours).
    lr = 0.001
    opt = tf.keras.optimizers.Adam(learning_rate=lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    our_losses = np.fromfile(tmp_path / "losses.f32", np.float32)
    assert our_losses.shape == (STEPS,)
    for step in range(STEPS):
        _, loss, grads = step_grads(step)
        assert abs(float(our_losses[step]) - float(loss)) <= RTOL * abs(float(loss)), \
            f"step {step}: loss {our_losses[step]} vs keras {float(loss)}"
        opt.apply_gradients(zip(grads, variables))
    for vname, v in zip(var_names, variables):
        mine, ref = ours("final_", vname, v.shape), v.numpy()
        diff = np.abs(mine.astype(np.float64) - ref)
        outliers = diff > RTOL * np.max(np.abs(ref))
        assert outliers.sum() <= max(2, outliers.size // 1000), \
            f"weights {vname} after {STEPS} Adam steps: {outliers.sum()} beyond 1e-4, worst " \
            f"relative error {np.max(diff) / np.max(np.abs(ref)):.3g}"
        assert np.all(diff <= 4 * lr * STEPS), f"{vname}: a weight moved more than Adam can"
