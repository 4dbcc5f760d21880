"""The trainer end to end on the real MNIST, with TensorFlow as the judge of what it leaves.

One 500-step CPU training run (shared by the tests of this module) must reach >= 97% test
accuracy and print the Estimator's log lines; TF reads its checkpoint (tf.train.load_checkpoint,
and a TF1 graph with tf.compat.v1.train.AdamOptimizer restores it with Saver.restore), its events
(summary_iterator) and loads its export (tf.saved_model.load), whose probabilities on 1,000 test
images equal `predict`'s and whose accuracy equals what the trainer reported for them. Smaller
runs check resume, signals, NaN and flag errors.
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(os.environ.get("BUILD_DIR", os.path.join(REPO, "build")), "bin")
TRAINER = os.path.join(BIN, "trainer")
TFRECORD = os.path.join(BIN, "tfrecord")
PREDICT = os.path.join(BIN, "predict")
QUICK_ENV = {k: v for k, v in os.environ.items()
             if not k.startswith(("SM_", "TF_CONFIG", "CLOUD_ML_", "AIP_"))}

LOSS_RE = r"INFO:tensorflow:loss = ([0-9.e+-]+), step = (\d+)"
DICT_RE = (r"INFO:tensorflow:Saving dict for global step (\d+): accuracy = ([0-9.e+-]+), "
           r"global_step = (\d+), loss = ([0-9.e+-]+)")


def tf():
    import tensorflow
    return tensorflow


def run_trainer(args, env=None, timeout=600):
    assert os.access(TRAINER, os.X_OK), f"{TRAINER} is missing: build the trainer target"
    e = dict(QUICK_ENV)
    e.update(env or {})
    p = subprocess.run([TRAINER] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, env=e, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def eval_dict(log):
    """(step, accuracy, loss) of the last 'Saving dict' line."""
    m = re.findall(DICT_RE, log)
    assert m, "no 'Saving dict for global step' line in:\n" + log[-3000:]
    step, acc, gs, loss = m[-1]
    assert step == gs
    return int(step), float(acc), float(loss)


# ---- data ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """Paths of the train and test TFRecords (data/prepare.sh's, else made here with `tfrecord
    from-idx` from the shipped IDX files), and of the first 1,000 test records."""
    d = os.path.join(REPO, "data", "mnist")
    train = os.path.join(d, "mnist_train.tfrecords")
    test = os.path.join(d, "mnist_test.tfrecords")
    out = tmp_path_factory.mktemp("mnist")
    if not (os.path.exists(train) and os.path.exists(test)):
        assert os.access(TFRECORD, os.X_OK), f"{TFRECORD} is missing"
        for split, prefix in (("train", "train"), ("test", "t10k")):
            images = glob.glob(os.path.join(d, f"{prefix}-images*"))
            labels = glob.glob(os.path.join(d, f"{prefix}-labels*"))
            assert images and labels, f"no MNIST IDX files for {split} in {d}"
            dst = str(out / f"mnist_{split}.tfrecords")
            subprocess.run([TFRECORD, "from-idx", "--images", images[0], "--labels", labels[0],
                            "--out", dst], check=True)
        train = str(out / "mnist_train.tfrecords")
        test = str(out / "mnist_test.tfrecords")
    # the first 1,000 test examples, written by TensorFlow itself
    small = str(out / "mnist_test_1000.tfrecords")
    with tf().io.TFRecordWriter(small) as w:
        for rec in tf().data.TFRecordDataset(test).take(1000):
            w.write(rec.numpy())
    return {"train": train, "test": test, "test1000": small}


def decode_examples(path):
    """images float32 [n,28,28,1] (raw 0..255) and labels int64 [n] via tf.io.parse_example."""
    t = tf()
    feats = {"image_raw": t.io.FixedLenFeature([], t.string),
             "label": t.io.FixedLenFeature([], t.int64)}
    images, labels = [], []
    for batch in t.data.TFRecordDataset(path).batch(1000):
        ex = t.io.parse_example(batch, feats)
        px = t.io.decode_raw(ex["image_raw"], t.uint8)
        images.append(t.reshape(t.cast(px, t.float32), [-1, 28, 28, 1]).numpy())
        labels.append(ex["label"].numpy())
    return np.concatenate(images), np.concatenate(labels)


# ---- the main run: 500 steps on the CPU ----------------------------------------------------------

@pytest.fixture(scope="module")
def main_run(mnist, tmp_path_factory):
    job = str(tmp_path_factory.mktemp("job") / "mnist")
    t0 = time.time()
    rc, out, err = run_trainer(["--train", mnist["train"], "--test", mnist["test"],
                                "--steps", "500", "--job-dir", job, "--device", "cpu",
                                "--save-checkpoints-steps", "250"])
    assert rc == 0, err[-5000:]
    return {"job": job, "log": err, "seconds": time.time() - t0}


def test_accuracy_and_estimator_log_lines(main_run):
    log, job = main_run["log"], main_run["job"]
    step, acc, loss = eval_dict(log)
    assert step == 500
    assert acc >= 0.97, f"test accuracy {acc} < 0.97 after 500 steps"
    assert 0 < loss < 0.2
    steps = [int(s) for _, s in re.findall(LOSS_RE, log)]
    assert steps == [1, 101, 201, 301, 401], steps
    assert re.search(r"^INFO:tensorflow:loss = [0-9.]+, step = 1$", log, re.M)
    assert re.search(r"^INFO:tensorflow:loss = [0-9.]+, step = 101 \(\d+\.\d{3} sec\)$", log, re.M)
    assert len(re.findall(r"^INFO:tensorflow:global_step/sec: [0-9.e+]+$", log, re.M)) == 4
    for s in (0, 250, 500):
        assert f"INFO:tensorflow:Saving checkpoints for {s} into {job}/model.ckpt.\n" in log
    # train_and_evaluate: an evaluation and export after the first checkpoint after the start,
    # later ones throttled (600 s), and one at the end
    assert ("INFO:tensorflow:Start train and evaluate loop. The evaluate will happen after every "
            "checkpoint. Checkpoint frequency is determined based on RunConfig arguments: "
            "save_checkpoints_steps 250 or save_checkpoints_secs None.\n") in log
    assert [int(m[0]) for m in re.findall(DICT_RE, log)] == [250, 500]
    assert log.count("INFO:tensorflow:Skip the current checkpoint eval due to throttle secs "
                     "(600 secs).\n") == 1
    assert len(glob.glob(os.path.join(job, "export", "exporter", "[0-9]" * 10))) == 2
    assert re.search(r"^INFO:tensorflow:Loss for final step: [0-9.]+\.$", log, re.M)
    assert "INFO:tensorflow:Signatures INCLUDED in export for Predict: ['serving_default']" in log
    assert "\r" not in log, "progress line written to a non-terminal"


def test_checkpoint_read_by_tensorflow(main_run):
    t, job = tf(), main_run["job"]
    assert t.train.latest_checkpoint(job) == os.path.join(job, "model.ckpt-500")
    state = open(os.path.join(job, "checkpoint")).read()
    assert 'model_checkpoint_path: "model.ckpt-500"' in state
    assert re.findall(r'all_model_checkpoint_paths: "([^"]+)"', state) == [
        "model.ckpt-0", "model.ckpt-250", "model.ckpt-500"]
    r = t.train.load_checkpoint(job)
    shapes = r.get_variable_to_shape_map()
    expect = {"conv2d/kernel": [5, 5, 1, 32], "conv2d/bias": [32],
              "conv2d_1/kernel": [5, 5, 32, 64], "conv2d_1/bias": [64],
              "dense/kernel": [3136, 1024], "dense/bias": [1024],
              "dense_1/kernel": [1024, 10], "dense_1/bias": [10], "global_step": []}
    for name, shape in expect.items():
        assert shapes.get(name) == shape, (name, shapes.get(name))
    assert int(r.get_tensor("global_step")) == 500
    # the Adam state is in the checkpoint too (one slot pair per parameter at least)
    assert len(shapes) >= len(expect) + 16, sorted(shapes)
    k = r.get_tensor("conv2d/kernel")
    assert np.isfinite(k).all() and np.abs(k).max() > 0


def tf1_adam_training_graph():
    """The original model as a TF1 graph (variables named as tf.layers names them), its loss and
    tf.compat.v1.train.AdamOptimizer's train op (Keras' epsilon, as our trainer): the graph a TF1
    Estimator job saves and restores. Returns (graph, images, labels, loss, train_op)."""
    t = tf()
    v1 = t.compat.v1
    graph = t.Graph()
    with graph.as_default():
        images = v1.placeholder(t.float32, [None, 28, 28, 1])
        labels = v1.placeholder(t.int64, [None])

        def weights(scope, shape):
            with v1.variable_scope(scope):
                return (v1.get_variable("kernel", shape, t.float32),
                        v1.get_variable("bias", shape[-1:], t.float32))

        h = images
        for scope, shape in (("conv2d", [5, 5, 1, 32]), ("conv2d_1", [5, 5, 32, 64])):
            k, b = weights(scope, shape)
            h = t.nn.relu(t.nn.bias_add(t.nn.conv2d(h, k, 1, "SAME"), b))
            h = t.nn.max_pool2d(h, 2, 2, "VALID")
        h = t.reshape(h, [-1, 7 * 7 * 64])
        k, b = weights("dense", [3136, 1024])
        h = t.nn.relu(t.matmul(h, k) + b)      # dropout left out: not a variable
        k, b = weights("dense_1", [1024, 10])
        loss = v1.losses.sparse_softmax_cross_entropy(labels, t.matmul(h, k) + b)
        step = v1.train.get_or_create_global_step()
        train_op = v1.train.AdamOptimizer(epsilon=1e-7).minimize(loss, global_step=step)
    return graph, images, labels, loss, train_op


def test_checkpoint_restored_by_tf1_adam_saver(main_run, mnist):
    """tf.compat.v1.train.Saver().restore of our checkpoint into a TF1 AdamOptimizer graph: every
    variable it has (weights, slots <var>/Adam and <var>/Adam_1, the non-slot beta1_power and
    beta2_power, global_step) is in the checkpoint and restored to our values; the graph then
    trains on, its accumulators advancing from ours."""
    t, job = tf(), main_run["job"]
    v1 = t.compat.v1
    prefix = os.path.join(job, "model.ckpt-500")
    ours = t.train.load_checkpoint(prefix)
    x, y = decode_examples(mnist["test1000"])
    graph, images, labels, loss, train_op = tf1_adam_training_graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        variables = {v.op.name: v for v in v1.global_variables()}
        assert len(variables) == 8 * 3 + 3 and {"beta1_power", "beta2_power"} <= set(variables)
        assert sorted(variables) == sorted(ours.get_variable_to_shape_map())
        v1.train.Saver().restore(sess, prefix)     # fails on any missing name, dtype or shape
        restored = sess.run(variables)
        for name, value in restored.items():
            np.testing.assert_array_equal(value, ours.get_tensor(name), err_msg=name)
            assert value.dtype == ours.get_tensor(name).dtype, name
        assert restored["global_step"] == 500
        assert np.abs(restored["dense/kernel/Adam_1"]).max() > 0
        # TF1 starts the powers at beta and multiplies them by beta after each step: after 500
        # steps beta^501 (TF's float32 product; ours is powf, so relative 1e-5)
        b1, b2 = np.float32(1), np.float32(1)
        for _ in range(501):
            b1, b2 = b1 * np.float32(0.9), b2 * np.float32(0.999)
        np.testing.assert_allclose(restored["beta1_power"], b1, rtol=1e-5)
        np.testing.assert_allclose(restored["beta2_power"], b2, rtol=1e-5)
        # one TF1 training step from the restored state
        before = sess.run(loss, {images: x[:100], labels: y[:100]})
        assert before < 1.0, before
        sess.run(train_op, {images: x[:100], labels: y[:100]})
        after = sess.run(variables)
        assert after["global_step"] == 501
        np.testing.assert_allclose(after["beta1_power"], b1 * np.float32(0.9), rtol=1e-5)
        np.testing.assert_allclose(after["beta2_power"], b2 * np.float32(0.999), rtol=1e-5)


def test_events_read_by_tensorflow(main_run):
    t, job = tf(), main_run["job"]
    _, acc, loss = eval_dict(main_run["log"])

    def scalars(path):
        out, first = {}, None
        for ev in t.compat.v1.train.summary_iterator(path):
            if first is None:
                first = ev.file_version
            for v in ev.summary.value:   # a string tensor as TF decodes it, else the scalar
                value = (t.make_ndarray(v.tensor).item().decode() if v.HasField("tensor")
                         else v.simple_value)
                out.setdefault(v.tag, []).append((ev.step, value))
        return first, out

    train_files = glob.glob(os.path.join(job, "events.out.tfevents.*"))
    assert len(train_files) == 1, train_files
    first, train = scalars(train_files[0])
    assert first == "brain.Event:2"
    assert [s for s, _ in train["loss"]] == [1, 101, 201, 301, 401]
    assert [s for s, _ in train["global_step/sec"]] == [101, 201, 301, 401]
    eval_files = glob.glob(os.path.join(job, "eval", "events.out.tfevents.*"))
    assert len(eval_files) == 1, eval_files
    first, ev = scalars(eval_files[0])
    assert first == "brain.Event:2"
    assert [s for s, _ in ev["accuracy"]] == [250, 500]   # after the first checkpoint, the end
    assert ev["accuracy"][-1] == (500, pytest.approx(acc, abs=1e-6))
    assert ev["loss"][-1] == (500, pytest.approx(loss, rel=1e-6))
    assert ev["checkpoint_path"] == [(s, f"{job}/model.ckpt-{s}") for s in (250, 500)]


def test_rerun_at_max_steps_evaluates_and_exports_what_tf_loads(main_run, mnist, tmp_path):
    """A run to an already-reached step skips training, evaluates (here on 1,000 test images)
    and exports; TF's own run of that export gives the accuracy the trainer reported."""
    job = main_run["job"]
    sm_dir = str(tmp_path / "sm_model")
    metrics = str(tmp_path / "hp" / "output.metrics")
    time.sleep(1.1)   # a new export version (unix seconds) beside the first run's
    rc, _, log = run_trainer(["--train", mnist["train"], "--test", mnist["test1000"],
                              "--steps", "500", "--job-dir", job, "--device", "cpu"],
                             env={"SM_MODEL_DIR": sm_dir, "CLOUD_ML_HP_METRIC_FILE": metrics})
    assert rc == 0, log[-3000:]
    assert "INFO:tensorflow:Skipping training since max_steps has already saved." in log
    assert "Saving checkpoints for" not in log
    step, acc, _ = eval_dict(log)
    assert step == 500

    exports = sorted(glob.glob(os.path.join(job, "export", "exporter", "[0-9]" * 10)))
    assert len(exports) == 3, exports    # the first run's two, this one's
    sm_exports = glob.glob(os.path.join(sm_dir, "[0-9]*", "saved_model.pb"))
    assert len(sm_exports) == 1, os.listdir(sm_dir) if os.path.isdir(sm_dir) else sm_dir

    images, labels = decode_examples(mnist["test1000"])
    assert len(labels) == 1000
    t = tf()
    tf_probs = {}
    for export in (exports[-1], os.path.dirname(sm_exports[0])):
        loaded = t.saved_model.load(export, tags=["serve"])
        fn = loaded.signatures["serving_default"]
        probs = fn(image_input=t.constant(images))["dense_1"].numpy()
        assert probs.shape == (1000, 10)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
        tf_acc = float(np.mean(np.argmax(probs, axis=1) == labels))
        assert abs(tf_acc - acc) < 1e-6, (tf_acc, acc)
        tf_probs[export] = probs

    # the engine's own probabilities (`predict`, TF Serving's REST body) on the same 1,000
    # images of the same export equal TF's: absolute 1e-5 (probabilities lie in [0, 1])
    assert os.access(PREDICT, os.X_OK), f"{PREDICT} is missing: build the predict target"
    request = str(tmp_path / "request.json")
    with open(request, "w") as f:
        json.dump({"instances": images.astype(int).tolist()}, f)
    p = subprocess.run([PREDICT, "--model-dir", exports[-1], "--json-request", request],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    ours = np.array(json.loads(p.stdout)["predictions"], dtype=np.float64)
    assert ours.shape == (1000, 10)
    np.testing.assert_allclose(ours, tf_probs[exports[-1]], rtol=0, atol=1e-5)
    our_acc = float(np.mean(np.argmax(ours, axis=1) == labels))
    assert abs(our_acc - acc) < 1e-6, (our_acc, acc)

    # assets.extra: the signature as TF sees it, and instances (the first 3 test images of the
    # run) that `predict` and TF answer alike
    extra = os.path.join(exports[-1], "assets.extra")
    sig = json.load(open(os.path.join(extra, "signature.json")))
    fn = t.saved_model.load(exports[-1]).signatures["serving_default"]
    (spec,) = fn.structured_input_signature[1].values()
    from tensorflow.core.framework import types_pb2
    dtype = types_pb2.DataType.Name(spec.dtype.as_datatype_enum)
    assert sig["inputs"] == {spec.name: {"dtype": dtype,
                                         "shape": [-1 if d is None else d for d in spec.shape],
                                         "tensor": "Placeholder:0"}}
    (name, out), = fn.structured_outputs.items()
    assert sig["outputs"] == {name: {"dtype": "DT_FLOAT", "shape": [-1, 10],
                                     "tensor": "dense_1/Softmax:0"}} and out.shape[1] == 10
    instances = os.path.join(extra, "example_instances.json")
    batch = np.array([json.loads(line) for line in open(instances)], dtype=np.float32)
    np.testing.assert_array_equal(batch, images[:3])
    p = subprocess.run([PREDICT, "--model-dir", exports[-1], "--json-instances", instances],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    np.testing.assert_allclose(json.loads(p.stdout)["predictions"],
                               fn(image_input=t.constant(batch))[name].numpy(), rtol=0, atol=1e-5)

    # the tuning metric, as cloudml-hypertune writes it
    lines = open(metrics).read().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["global_step"] == "500" and entry["trial"] == "0"
    assert abs(float(entry["accuracy"]) - acc) < 1e-6
    assert list(entry) == sorted(entry)

    # --eval-steps as EvalSpec.steps: the first 7 batches of 9 images (63), TF's accuracy on them
    rc, _, log = run_trainer(["--train", mnist["train"], "--test", mnist["test1000"],
                              "--steps", "500", "--job-dir", job, "--device", "cpu",
                              "--eval-steps", "7", "--eval-batch-size", "9"])
    assert rc == 0, log[-3000:]
    probs = tf_probs[exports[-1]][:63]
    tf_acc63 = float(np.mean(np.argmax(probs, axis=1) == labels[:63]))
    assert abs(eval_dict(log)[1] - tf_acc63) < 1e-6, (eval_dict(log), tf_acc63)
    # _StopAfterNEvalsHook's progress: every batch under 20 steps, every steps // 10 from 20, and
    # only the batches the data had (25 steps of 50 over 1,000 images: 20)
    assert re.findall(r"Evaluation \[(\d+)/7\]", log) == [str(k) for k in range(1, 8)]
    rc, _, log = run_trainer(["--train", mnist["train"], "--test", mnist["test1000"],
                              "--steps", "500", "--job-dir", job, "--device", "cpu",
                              "--eval-steps", "25", "--eval-batch-size", "50"])
    assert rc == 0, log[-3000:]
    assert re.findall(r"Evaluation \[(\d+)/25\]", log) == ["2", "4", "6", "8", "10", "12", "14",
                                                          "16", "18", "20"]


# ---- resume -------------------------------------------------------------------------------------

SMALL = ["--batch-size", "20", "--device", "cpu", "--log-step-count-steps", "20"]


def test_throttle_0_evaluates_and_exports_after_every_checkpoint(mnist, tmp_path):
    """--throttle-secs 0: each checkpoint's evaluation runs and exports; --eval-every-steps adds
    evaluations without exports, and none twice at a step."""
    job = str(tmp_path / "job")
    rc, _, log = run_trainer(["--train", mnist["test1000"], "--test", mnist["test1000"],
                              "--steps", "6", "--batch-size", "10", "--device", "cpu",
                              "--job-dir", job, "--save-checkpoints-steps", "2",
                              "--throttle-secs", "0", "--eval-every-steps", "2",
                              "--exports-to-keep", "0"])
    assert rc == 0, log[-3000:]
    assert [int(m[0]) for m in re.findall(DICT_RE, log)] == [2, 4, 6]
    assert "Skip the current checkpoint eval" not in log
    assert len(glob.glob(os.path.join(job, "export", "exporter", "[0-9]" * 10))) == 3
    rc, _, log = run_trainer(["--train", mnist["test1000"], "--test", mnist["test1000"],
                              "--steps", "9", "--batch-size", "10", "--device", "cpu",
                              "--job-dir", job, "--save-checkpoints-steps", "2",
                              "--eval-every-steps", "7", "--exports-to-keep", "0"])
    assert rc == 0, log[-3000:]
    # resumed at 6: the cadence evaluates at 7 (no export), the first checkpoint after the start
    # (8) evaluates and exports, the last save (9) is throttled, then the end evaluates and exports
    assert [int(m[0]) for m in re.findall(DICT_RE, log)] == [7, 8, 9]
    # the Estimator names the checkpoint it evaluated: none at 7
    assert re.findall(r"Saving 'checkpoint_path' summary for global step (\d+)", log) == ["8", "9"]
    assert log.count("Skip the current checkpoint eval due to throttle secs (600 secs).") == 1
    assert len(glob.glob(os.path.join(job, "export", "exporter", "[0-9]" * 10))) == 5


def test_resume_continues_like_an_uninterrupted_run(mnist, tmp_path):
    """40 steps with checkpoints, then on to 60 from the checkpoint, against 60 in one go. The
    1,000-example training set makes an epoch 50 steps, so the resumed part crosses a reshuffle."""
    job, straight = str(tmp_path / "job"), str(tmp_path / "straight")
    common = ["--train", mnist["test1000"], "--test", mnist["test1000"]] + SMALL
    rc, _, log1 = run_trainer(common + ["--steps", "40", "--job-dir", job,
                                        "--save-checkpoints-steps", "20", "--foo", "bar"])
    assert rc == 0, log1[-3000:]
    assert "WARNING:tensorflow:ignoring unknown flag --foo bar" in log1
    assert os.path.exists(os.path.join(job, "model.ckpt-40.index"))
    assert os.path.exists(os.path.join(job, "model.ckpt-40.meta"))
    rc, _, log2 = run_trainer(common + ["--steps", "60", "--job-dir", job,
                                        "--save-checkpoints-steps", "20"])
    assert rc == 0, log2[-3000:]
    assert f"INFO:tensorflow:Restoring parameters from {job}/model.ckpt-40\n" in log2
    resumed_steps = [int(s) for _, s in re.findall(LOSS_RE, log2)]
    assert resumed_steps == [41], resumed_steps
    assert "Saving checkpoints for 40 into" not in log2
    assert f"Saving checkpoints for 60 into {job}/model.ckpt." in log2
    assert int(tf().train.load_checkpoint(job).get_tensor("global_step")) == 60

    # the same 60 steps in one go: same batches (the order depends on seed and step only), the
    # same Adam state after the restore, so the same loss at step 41 and the same evaluation
    rc, _, log3 = run_trainer(common + ["--steps", "60", "--job-dir", straight,
                                        "--eval-every-steps", "20"])
    assert rc == 0, log3[-3000:]
    assert [int(m[0]) for m in re.findall(DICT_RE, log3)] == [20, 40, 60]
    straight_losses = dict((int(s), l) for l, s in re.findall(LOSS_RE, log3))
    resumed_losses = dict((int(s), l) for l, s in re.findall(LOSS_RE, log2))
    assert resumed_losses[41] == straight_losses[41]
    assert eval_dict(log2) == eval_dict(log3)


def test_resume_from_the_original_keras_jobs_checkpoint(mnist, tmp_path):
    """A job dir the original job (Keras under model_to_estimator, TF 1.12) left: TF writes our
    40-step state under that job's variable names (the fixture's model.ckpt-10 lists them:
    Adam's slots as training/Variable_N in creation order, Adam/iterations, ...); the trainer
    resumes from it exactly as from its own checkpoint."""
    t = tf()
    v1 = t.compat.v1
    ours, keras = str(tmp_path / "ours"), str(tmp_path / "keras")
    common = ["--train", mnist["test1000"], "--test", mnist["test1000"]] + SMALL
    rc, _, log = run_trainer(common + ["--steps", "40", "--job-dir", ours])
    assert rc == 0, log[-3000:]
    reader = t.train.load_checkpoint(ours)
    fixture = os.path.join(REPO, "..", "shared", "fixtures", "tf112-estimator-export",
                           "model.ckpt-10")
    wanted = dict(t.train.list_variables(fixture))
    params = ["conv2d/kernel", "conv2d/bias", "conv2d_1/kernel", "conv2d_1/bias",
              "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    values = {p: reader.get_tensor(p) for p in params}
    for i, p in enumerate(params):   # m, then v, then amsgrad's vhat, each in parameter order
        for s, slot in enumerate(["/Adam", "/Adam_1", None]):
            k = s * len(params) + i
            name = "training/Variable" + (f"_{k}" if k else "")
            values[name] = (reader.get_tensor(p + slot) if slot
                            else np.zeros([1], np.float32))
    values.update({"global_step": np.int64(40), "Adam/iterations": np.int64(40),
                   "Adam/lr": np.float32(0.001), "Adam/beta_1": np.float32(0.9),
                   "Adam/beta_2": np.float32(0.999), "Adam/decay": np.float32(0.0)})
    assert sorted(values) == sorted(wanted)
    for name, value in values.items():
        assert list(np.shape(value)) == wanted[name], name
    os.makedirs(keras)
    with t.Graph().as_default():
        variables = [v1.Variable(value, name=name) for name, value in values.items()]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver(variables).save(sess, os.path.join(keras, "model.ckpt"),
                                           global_step=40)
    assert os.path.exists(os.path.join(keras, "model.ckpt-40.index"))

    logs = {}
    for job in (ours, keras):
        rc, _, logs[job] = run_trainer(common + ["--steps", "60", "--job-dir", job])
        assert rc == 0, logs[job][-3000:]
        assert f"Restoring parameters from {job}/model.ckpt-40\n" in logs[job]
    assert re.findall(LOSS_RE, logs[keras]) == re.findall(LOSS_RE, logs[ours])
    assert eval_dict(logs[keras]) == eval_dict(logs[ours])


def test_sigterm_saves_a_checkpoint_and_stops(mnist, tmp_path):
    job = str(tmp_path / "job")
    p = subprocess.Popen([TRAINER, "--train", mnist["test1000"], "--test", mnist["test1000"],
                          "--steps", "1000000", "--job-dir", job, "--batch-size", "10",
                          "--device", "cpu", "--log-step-count-steps", "5"],
                         stderr=subprocess.PIPE, text=True, env=QUICK_ENV)
    seen = []
    for line in p.stderr:
        seen.append(line)
        if re.match(LOSS_RE, line):
            break
    p.send_signal(signal.SIGTERM)
    _, rest = p.communicate(timeout=120)
    log = "".join(seen) + rest
    assert p.returncode == 128 + signal.SIGTERM, log[-3000:]
    assert "Received SIGTERM" in log
    step = int(re.findall(r"Saving checkpoints for (\d+) into", log)[-1])
    assert step > 0
    assert tf().train.latest_checkpoint(job) == os.path.join(job, f"model.ckpt-{step}")


def test_nan_loss_stops_with_the_estimator_message(mnist, tmp_path):
    rc, _, log = run_trainer(["--train", mnist["test1000"], "--test", mnist["test1000"],
                              "--steps", "50", "--job-dir", str(tmp_path / "job"),
                              "--batch-size", "10", "--device", "cpu", "--learning-rate", "3e38",
                              "--log-step-count-steps", "1"])
    assert rc == 1, log[-3000:]
    assert "ERROR:tensorflow:Model diverged with loss = NaN.\n" in log
    assert "NaN loss during training" in log
    assert not re.search(r"loss = nan", log)


def test_bad_flags_exit_2_naming_them(mnist, tmp_path):
    base = ["--train", mnist["test1000"], "--test", mnist["test1000"],
            "--job-dir", str(tmp_path / "job")]
    for extra, needle in ((["--steps", "abc"], "--steps"),
                          (["--batch-size", "-3"], "--batch-size"),
                          (["--verbosity", "LOUD"], "--verbosity")):
        rc, _, log = run_trainer(base + extra)
        assert rc == 2 and needle in log, (extra, rc, log)
    missing = str(tmp_path / "nope.tfrecords")
    rc, _, log = run_trainer(["--train", missing, "--test", mnist["test1000"],
                              "--job-dir", str(tmp_path / "job")])
    assert rc == 2 and "--train" in log and missing in log, log
    assert not os.path.exists(str(tmp_path / "job")), "work started before the error"


def test_non_chief_roles_do_nothing(mnist, tmp_path):
    job = str(tmp_path / "job")
    rc, _, log = run_trainer(["--train", mnist["test1000"], "--test", mnist["test1000"],
                              "--job-dir", job],
                             env={"TF_CONFIG": '{"cluster": {}, "task": {"type": "worker", '
                                               '"index": 1}}'})
    assert rc == 0, log
    assert "WARNING:tensorflow:TF_CONFIG task type 'worker'" in log
    assert not os.path.exists(job)


def test_custom_model_spec_exports_and_tuning_tag(mnist, tmp_path):
    """--model trains another sequential CNN and exports it; a tuning tag other than accuracy
    is written to the metric file and to the eval summaries; time-cadence checkpoints are kept
    to --keep-checkpoint-max."""
    job, metrics = str(tmp_path / "job"), str(tmp_path / "metrics")
    rc, _, log = run_trainer(["--train", mnist["test1000"], "--test", mnist["test1000"],
                              "--steps", "5", "--batch-size", "10", "--device", "cpu",
                              "--job-dir", job,
                              "--model", "conv:8:5,relu,maxpool:2,flatten,dense:10",
                              "--hypertune-tag", "training/hptuning/metric",
                              # always due by time: a checkpoint at every stop, newest 3 kept
                              "--save-checkpoints-secs", "1e-9", "--log-step-count-steps", "1",
                              "--keep-checkpoint-max", "3"],
                             env={"CLOUD_ML_HP_METRIC_FILE": metrics})
    assert rc == 0, log[-3000:]
    assert re.findall(r"Saving checkpoints for (\d+) into", log) == ["0", "1", "2", "3", "4", "5"]
    state = open(os.path.join(job, "checkpoint")).read()
    assert re.findall(r'all_model_checkpoint_paths: "([^"]+)"', state) == [
        "model.ckpt-3", "model.ckpt-4", "model.ckpt-5"]
    assert not glob.glob(os.path.join(job, "model.ckpt-2.*"))
    _, acc, _ = eval_dict(log)
    entry = json.loads(open(metrics).read().splitlines()[-1])
    assert abs(float(entry["training/hptuning/metric"]) - acc) < 1e-6
    # the dict's line has the tag too, its keys sorted as the Estimator prints them
    line = re.findall(r"Saving dict for global step 5: (.*)", log)[-1]
    assert [k.split(" = ")[0] for k in line.split(", ")] == [
        "accuracy", "global_step", "loss", "training/hptuning/metric"], line
    rc, _, log = run_trainer(["--train", mnist["test1000"], "--test", mnist["test1000"],
                              "--steps", "2", "--batch-size", "10", "--device", "cpu",
                              "--job-dir", str(tmp_path / "auc"), "--hypertune-tag", "auc_loss",
                              "--model", "conv:8:5,relu,maxpool:2,flatten,dense:10"])
    assert rc == 0, log[-3000:]
    line = re.findall(r"Saving dict for global step 2: (.*)", log)[-1]
    assert [k.split(" = ")[0] for k in line.split(", ")] == [
        "accuracy", "auc_loss", "global_step", "loss"], line
    assert line.split(", ")[1].split(" = ")[1] == line.split(", ")[3].split(" = ")[1]  # the loss
    t = tf()
    tags = {v.tag for f in glob.glob(os.path.join(job, "eval", "events.out.tfevents.*"))
            for ev in t.compat.v1.train.summary_iterator(f) for v in ev.summary.value}
    assert tags == {"accuracy", "loss", "training/hptuning/metric", "checkpoint_path"}
    shapes = t.train.load_checkpoint(job).get_variable_to_shape_map()
    assert shapes["conv2d/kernel"] == [5, 5, 1, 8] and shapes["dense/kernel"] == [1568, 10]
    export = glob.glob(os.path.join(job, "export", "exporter", "[0-9]" * 10))[0]
    images, labels = decode_examples(mnist["test1000"])
    fn = t.saved_model.load(export).signatures["serving_default"]
    probs = list(fn(image_input=t.constant(images[:100])).values())[0].numpy()
    assert probs.shape == (100, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_progress_line_only_on_a_terminal(mnist, tmp_path):
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen([TRAINER, "--train", mnist["test1000"], "--test", mnist["test1000"],
                          "--steps", "30", "--batch-size", "10", "--device", "cpu",
                          "--job-dir", str(tmp_path / "job")],
                         stdout=subprocess.DEVNULL, stderr=slave, env=QUICK_ENV)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:      # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert p.wait(timeout=120) == 0
    text = out.decode()
    assert re.search(r"\r\x1b\[Kstep (11|21)/30  loss [0-9.]+", text), text[-2000:]
    # every log line starts on a clean line: the progress line is erased first
    assert "\r\x1b[KINFO:tensorflow:Saving checkpoints for 30" in text


PHASES_RE = (r"^DEBUG:tensorflow:Wall time by phase: data and model ([0-9.]+) s \(decoding "
             r"([0-9.]+) s beside the model's creation ([0-9.]+) s\), resume ([0-9.]+) s, "
             r"training ([0-9.]+) s \(of which checkpoints and evaluations ([0-9.]+) s\), "
             r"evaluation ([0-9.]+) s, export ([0-9.]+) s more, last checkpoint's files "
             r"([0-9.]+) s more; total ([0-9.]+) s \(checkpoint files written beside the job: "
             r"([0-9.]+) s; export files beside the evaluation: ([0-9.]+) s\)$")


def test_phase_times_at_debug_verbosity(mnist, tmp_path, main_run):
    """--verbosity DEBUG ends with where the wall time went (tests/gpu/report.py reads it from
    the GPU job); the phases add up to the total; INFO runs do not print it."""
    rc, out, err = run_trainer(["--train", mnist["test1000"], "--test", mnist["test1000"],
                                "--steps", "20", "--batch-size", "10", "--device", "cpu",
                                "--save-checkpoints-steps", "10", "--verbosity", "DEBUG",
                                "--job-dir", str(tmp_path / "job")])
    assert rc == 0, err[-3000:]
    m = re.search(PHASES_RE, err, re.M)
    assert m, err[-3000:]
    (start, decoding, creation, resume, training, within, evaluation, export, last_files, total,
     written, export_files) = (float(x) for x in m.groups())
    # decoding and the model's creation run side by side within the first phase
    assert 0 < decoding <= start + 0.002 and 0 < creation <= start + 0.002
    # checkpoints 0, 10 and 20 are started inside the training phase, their files written
    # on a thread beside it (and the last one beside the evaluation and export)
    assert 0 < within < training
    assert written > 0
    # the export's files are written beside the evaluation; what is left after it is the wait
    assert evaluation > 0 and export >= 0 and export_files > 0
    assert any(l.startswith("INFO:tensorflow:SavedModel written to:") for l in err.splitlines())
    assert abs(start + resume + training + evaluation + export + last_files - total) <= 0.006
    assert "INFO:tensorflow:Saving dict for global step 20" in err
    assert "Wall time by phase" not in main_run["log"]


def test_vertex_ai_output_dirs(mnist, tmp_path):
    """Vertex AI's baseOutputDirectory variables and no --job-dir: the checkpoints go to
    AIP_CHECKPOINT_DIR, the event files also to AIP_TENSORBOARD_LOG_DIR (the same records), the
    SavedModel into AIP_MODEL_DIR itself, where TF loads it; a rerun replaces that export, and a
    model dir holding anything else stops the job before it trains."""
    base = str(tmp_path / "out")
    env = {"AIP_MODEL_DIR": f"{base}/model/", "AIP_CHECKPOINT_DIR": f"{base}/checkpoints/",
           "AIP_TENSORBOARD_LOG_DIR": f"{base}/logs/"}
    args = ["--train", mnist["test1000"], "--test", mnist["test1000"], "--batch-size", "10",
            "--device", "cpu"]
    rc, _, log = run_trainer(args + ["--steps", "3"], env=env)
    assert rc == 0, log[-3000:]
    ckpt, logs, model = (os.path.join(base, d) for d in ("checkpoints", "logs", "model"))
    assert open(os.path.join(ckpt, "checkpoint")).read().startswith(
        'model_checkpoint_path: "model.ckpt-3"')
    for sub in ("", "eval"):
        ours = glob.glob(os.path.join(ckpt, sub, "events.out.tfevents.*"))
        mirrored = glob.glob(os.path.join(logs, sub, "events.out.tfevents.*"))
        assert len(ours) == 1 and len(mirrored) == 1, (ours, mirrored)
        assert os.path.basename(ours[0]) == os.path.basename(mirrored[0])
        assert open(ours[0], "rb").read() == open(mirrored[0], "rb").read()
    assert sorted(os.listdir(model)) == ["assets.extra", "saved_model.pb", "variables"]
    assert f"SavedModel written to: {model}/saved_model.pb" in log
    assert sorted(os.listdir(base)) == ["checkpoints", "logs", "model"]   # no temp-model
    t = tf()
    images, _ = decode_examples(mnist["test1000"])
    fn = t.saved_model.load(model).signatures["serving_default"]
    probs = fn(image_input=t.constant(images[:50]))["dense_1"].numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    variables = os.path.join(model, "variables", "variables")
    assert t.train.load_checkpoint(variables).get_tensor("global_step") == 3

    rc, _, log = run_trainer(args + ["--steps", "5"], env=env)
    assert rc == 0, log[-3000:]
    assert "Restoring parameters from " + os.path.join(ckpt, "model.ckpt-3") in log
    assert t.train.load_checkpoint(variables).get_tensor("global_step") == 5

    with open(os.path.join(model, "notes.txt"), "w") as f:
        f.write("mine")
    rc, _, log = run_trainer(args + ["--steps", "7"], env=env)
    assert rc == 1 and model in log and "notes.txt" in log, log[-3000:]
    assert not os.path.exists(os.path.join(ckpt, "model.ckpt-7.index"))
    assert t.train.load_checkpoint(variables).get_tensor("global_step") == 5
