"""Parity of our engine with TensorFlow/Keras on the original model (and on a --model spec
with the less common cases: even kernel with SAME padding and stride 2, SAME max-pooling with
padding, VALID conv, two dropouts).

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
MASK32 = np.uint64(0xFFFFFFFF)
PHILOX_STREAM_DROPOUT = 1 << 30
RTOL = 1e-4
ORIGINAL = None  # the tool's default: the original CNN
ORIGINAL_SPEC = ("conv:32:5:same,relu,maxpool:2,conv:64:5:same,relu,maxpool:2,flatten,"
                 "dense:1024,relu,dropout:0.4,dense:10")
ODD_SPEC = ("conv:6:4:same:2,relu,maxpool:3:2:same,conv:5:3:valid,relu,maxpool:2,flatten,"
            "dense:24,relu,dropout:0.3,dense:16,relu,dropout:0.5,dense:10")


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


def dropout_scale(step, index, rate, shape):
    """Our mask of dropout layer `index` at `step`, times 1/(1-rate), as float32."""
    count = int(np.prod(shape))
    stream = PHILOX_STREAM_DROPOUT + step * 16 + index
    u = philox_u32(SEED, stream, np.arange(count, dtype=np.uint64))
    uniform = (u >> np.uint64(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    rate = np.float32(rate)
    keep = uniform >= rate
    scale = np.float32(1.0) / (np.float32(1.0) - rate)
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


def keras_model(tf, spec):
    """The Keras model of a spec (core/model_spec.h grammar). Returns the model (inputs: the
    image, then one mask per dropout layer), the Keras names of the layers with weights, and the
    (rate, feature shape) of each dropout."""
    keras = tf.keras
    image = keras.Input((28, 28, 1), name="image_input")
    h, masks, dropouts, names, counts = image, [], [], [], {}

    def name_for(kind):
        k = counts.get(kind, 0)
        counts[kind] = k + 1
        names.append(kind if k == 0 else f"{kind}_{k}")
        return names[-1]

    for layer in spec.split(","):
        f = layer.split(":")
        if f[0] == "conv":
            pad = f[3] if len(f) > 3 else "same"
            stride = int(f[4]) if len(f) > 4 else 1
            h = keras.layers.Conv2D(int(f[1]), int(f[2]), strides=stride, padding=pad,
                                    name=name_for("conv2d"))(h)
        elif f[0] == "maxpool":
            stride = int(f[2]) if len(f) > 2 else int(f[1])
            pad = f[3] if len(f) > 3 else "valid"
            h = keras.layers.MaxPooling2D(int(f[1]), strides=stride, padding=pad)(h)
        elif f[0] == "dense":
            h = keras.layers.Dense(int(f[1]), name=name_for("dense"))(h)
        elif f[0] == "relu":
            h = keras.layers.ReLU()(h)
        elif f[0] == "flatten":
            h = keras.layers.Flatten()(h)
        elif f[0] == "dropout":  # Dropout(rate) with our mask
            shape = tuple(h.shape[1:])
            mask = keras.Input(shape, name=f"dropout_mask_{len(masks)}")
            masks.append(mask)
            dropouts.append((float(f[1]), shape))
            h = keras.layers.Multiply()([h, mask])
        else:
            raise ValueError(layer)
    return keras.Model([image] + masks, h), names, dropouts


def rel_err(ours, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.max(np.abs(np.asarray(ours, np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-30))


def test_philox_matches_known_answer():
    # Random123's published known-answer test for philox4x32-10: counter 0, key 0.
    # Our element i of stream 0 under seed 0 is word i of the block counter i/4.
    words = philox_u32(0, 0, np.arange(4, dtype=np.uint64))
    assert [hex(int(w)) for w in words] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]


@pytest.mark.parametrize("spec", [ORIGINAL, ODD_SPEC], ids=["original", "odd-shapes"])
def test_keras_parity(tmp_path, spec):
    assert TOOL.exists(), f"{TOOL} is missing: build the tree first (BUILD_DIR={BUILD_DIR})"
    tf = pytest.importorskip("tensorflow")
    tf.keras.utils.set_random_seed(7)
    model, layer_names, dropouts = keras_model(tf, spec or ORIGINAL_SPEC)
    images, labels = synthetic_batch(np.random.default_rng(3))
    images.tofile(tmp_path / "images.f32")
    labels.tofile(tmp_path / "labels.i32")
    layers = {name: model.get_layer(name) for name in layer_names}
    for name, layer in layers.items():
        layer.kernel.numpy().astype(np.float32).tofile(tmp_path / f"param_{name}__kernel.f32")
        layer.bias.numpy().astype(np.float32).tofile(tmp_path / f"param_{name}__bias.f32")

    args = [str(TOOL), str(tmp_path), str(N), str(STEPS), str(SEED)] + ([spec] if spec else [])
    subprocess.run(args, check=True)

    def ours(prefix, name, shape):
        return np.fromfile(tmp_path / f"{prefix}{name}.f32", np.float32).reshape(shape)

    variables = [v for name in layer_names for v in (layers[name].kernel, layers[name].bias)]
    var_names = [f"{name}__{part}" for name in layer_names for part in ("kernel", "bias")]
    xent = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step_grads(step):
        masks = [dropout_scale(step, k, rate, (N,) + shape)
                 for k, (rate, shape) in enumerate(dropouts)]
        with tf.GradientTape() as tape:
            logits = model([images] + masks, training=True)
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
