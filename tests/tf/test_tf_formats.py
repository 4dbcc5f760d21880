"""TensorFlow is the oracle for what io/ writes and reads: checkpoints (tensor bundles),
TensorBoard event files, SavedModel exports, and `predict`.

Our side is driven through build/bin/tool_tf_formats (tests/tools/tf_formats.c) and
build/bin/predict; a missing binary is a failure, not a skip.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("BUILD_DIR", REPO / "build")) / "bin"

# The original CNN's variables (TF names, shapes), as the Estimator export has them.
CNN_VARS = [
    ("conv2d/kernel", (5, 5, 1, 32)),
    ("conv2d/bias", (32,)),
    ("conv2d_1/kernel", (5, 5, 32, 64)),
    ("conv2d_1/bias", (64,)),
    ("dense/kernel", (3136, 1024)),
    ("dense/bias", (1024,)),
    ("dense_1/kernel", (1024, 10)),
    ("dense_1/bias", (10,)),
]


def binary(name):
    path = BIN / name
    assert path.exists(), f"{path} is missing: build the project first (cmake --build build)"
    return str(path)


def tool(*args):
    res = subprocess.run([binary("tool_tf_formats"), *map(str, args)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def cnn_weights(seed):
    """Glorot-uniform kernels and small non-zero biases; conv2d's kernel is scaled for 0..255
    inputs so that the logits stay moderate and the softmax comparison means something."""
    rng = np.random.default_rng(seed)
    w = {}
    for name, shape in CNN_VARS:
        if name.endswith("kernel"):
            fan_in = int(np.prod(shape[:-1]))
            fan_out = shape[-1] * (int(np.prod(shape[:2])) if len(shape) == 4 else 1)
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w[name] = rng.uniform(-limit, limit, shape).astype(np.float32)
        else:
            w[name] = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    w["conv2d/kernel"] /= 64.0
    return w


def write_manifest(directory, tensors):
    """tool_tf_formats' manifest: NAME DTYPE RANK DIMS.. FILE per tensor."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (name, arr) in enumerate(tensors.items()):
        arr = np.asarray(arr).copy(order="C")   # (ascontiguousarray makes scalars 1-D)
        dtype = {np.dtype(np.float32): "float", np.dtype(np.int64): "int64"}[arr.dtype]
        (directory / f"t{i}.bin").write_bytes(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        dims = " ".join(str(d) for d in arr.shape)
        lines.append(f"{name} {dtype} {arr.ndim} {dims} t{i}.bin".replace("  ", " "))
    path = directory / "manifest.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_manifest(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        name, dtype, rank = parts[0], parts[1], int(parts[2])
        shape = tuple(int(d) for d in parts[3:3 + rank])
        data = (Path(path).parent / parts[3 + rank]).read_bytes()
        out[name] = np.frombuffer(data, dtype={"float": "<f4", "int64": "<i8"}[dtype]).reshape(shape)
    return out


def numpy_forward(w, images):
    """The original CNN in float64 numpy: NHWC, HWIO kernels, SAME 5x5 convs, 2x2 pools."""
    def conv_same(x, k, b):
        kh, kw = k.shape[:2]
        xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
        return np.einsum("nhwcij,ijco->nhwo", win, k, optimize=True) + b

    def pool(x):
        n, h, wd, c = x.shape
        return x.reshape(n, h // 2, 2, wd // 2, 2, c).max(axis=(2, 4))

    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = images.astype(np.float64)
    x = pool(np.maximum(conv_same(x, w["conv2d/kernel"], w["conv2d/bias"]), 0))
    x = pool(np.maximum(conv_same(x, w["conv2d_1/kernel"], w["conv2d_1/bias"]), 0))
    x = x.reshape(x.shape[0], -1)
    x = np.maximum(x @ w["dense/kernel"] + w["dense/bias"], 0)
    logits = x @ w["dense_1/kernel"] + w["dense_1/bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), logits


def random_images(n, seed=7):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(n, 28, 28, 1)).astype(np.float32)
    img[: n // 2, :, :14] = 0                      # some structure, some blank space
    return img


# ---- checkpoints ---------------------------------------------------------------------------

def test_tf_reads_our_checkpoints(tmp_path):
    w = cnn_weights(1)
    tensors = dict(w)
    for name, shape in CNN_VARS:                          # Adam slots as tf.train.AdamOptimizer
        tensors[name + "/Adam"] = np.full(shape, 0.5, np.float32)
        tensors[name + "/Adam_1"] = np.full(shape, 0.25, np.float32)
    tensors["beta1_power"] = np.array(0.9 ** 7, np.float32)
    manifests = {}
    job = tmp_path / "job"
    for step in (0, 10, 20, 30, 40, 50, 60):
        tensors["global_step"] = np.array(step, np.int64)
        manifests[step] = write_manifest(tmp_path / f"m{step}", tensors)
        prefix = tool("checkpoint", manifests[step], job, step, 5)
        assert prefix == f"{job}/model.ckpt-{step}"

    latest = tf.train.latest_checkpoint(str(job))
    assert latest == f"{job}/model.ckpt-60"
    state = tf.train.get_checkpoint_state(str(job))
    assert [Path(p).name for p in state.all_model_checkpoint_paths] == [
        f"model.ckpt-{s}" for s in (20, 30, 40, 50, 60)]
    assert not (job / "model.ckpt-10.index").exists()

    listed = dict(tf.train.list_variables(latest))
    assert set(listed) == set(tensors)
    for name, arr in tensors.items():
        assert tuple(listed[name]) == arr.shape, name
    reader = tf.train.load_checkpoint(latest)
    dtypes = reader.get_variable_to_dtype_map()
    for name, arr in tensors.items():
        got = reader.get_tensor(name)
        assert dtypes[name] == tf.as_dtype(arr.dtype), name
        np.testing.assert_array_equal(got, arr, err_msg=name)
    assert reader.get_tensor("global_step") == 60

    # model.ckpt-N.meta: tf.train.import_meta_graph + Saver.restore, as for Estimator's files
    images = random_images(8, seed=3)
    want, _ = numpy_forward(w, images)
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        saver = tf.compat.v1.train.import_meta_graph(latest + ".meta")
        saver.restore(sess, latest)
        got = sess.run("dense_1/Softmax:0", {"Placeholder:0": images})
        assert sess.run("global_step/Read/ReadVariableOp:0") == 60
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert not (job / "model.ckpt-10.meta").exists()


def test_we_read_tf_checkpoints(tmp_path):
    """A checkpoint written by tf.compat.v1.train.Saver (what Estimator uses) and one by TF2's
    object-based tf.train.Checkpoint: our reader finds them and reads the same values."""
    w = cnn_weights(2)
    g = tf.Graph()
    with g.as_default():
        for name, arr in w.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(arr), use_resource=True)
        gs = tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(gs.assign(42))
            saver.save(sess, str(tmp_path / "tf1" / "model.ckpt"), global_step=42)
    out = tool("latest", tmp_path / "tf1")
    assert out == f"42 {tmp_path}/tf1/model.ckpt-42"
    (tmp_path / "dump1").mkdir()
    tool("dump", f"{tmp_path}/tf1/model.ckpt-42", tmp_path / "dump1")
    got = read_manifest(tmp_path / "dump1" / "manifest.txt")
    assert set(got) == set(w) | {"global_step"}
    for name, arr in w.items():
        np.testing.assert_array_equal(got[name], arr, err_msg=name)
    assert got["global_step"] == 42

    ckpt = tf.train.Checkpoint(kernel=tf.Variable(w["dense_1/kernel"]),
                               step=tf.Variable(np.int64(9)))
    prefix = ckpt.write(str(tmp_path / "tf2" / "obj"))
    (tmp_path / "dump2").mkdir()
    tool("dump", prefix, tmp_path / "dump2")
    got = read_manifest(tmp_path / "dump2" / "manifest.txt")
    np.testing.assert_array_equal(got["kernel/.ATTRIBUTES/VARIABLE_VALUE"], w["dense_1/kernel"])
    assert got["step/.ATTRIBUTES/VARIABLE_VALUE"] == 9


# ---- event files ---------------------------------------------------------------------------

def test_summary_iterator_reads_our_events(tmp_path):
    path = tool("events", tmp_path / "eval", "100:loss=2.5", "200:accuracy=0.875,loss=0.125")
    assert Path(path).parent == tmp_path / "eval"
    assert Path(path).name.startswith("events.out.tfevents.")
    events = list(tf.compat.v1.train.summary_iterator(path))
    assert events[0].file_version == "brain.Event:2"
    assert events[0].wall_time > 1.5e9
    scalars = [(e.step, v.tag, v.simple_value) for e in events for v in e.summary.value]
    assert scalars == [(100, "loss", 2.5), (200, "accuracy", 0.875), (200, "loss", 0.125)]
    assert events[-1].session_log.status == tf.compat.v1.SessionLog.START


def test_tensorboard_graph_event(tmp_path):
    tensors = dict(cnn_weights(4))
    tensors["global_step"] = np.array(0, np.int64)
    manifest = write_manifest(tmp_path / "w", tensors)
    path = tool("graph-events", manifest, tmp_path / "job")
    events = list(tf.compat.v1.train.summary_iterator(path))
    assert events[0].file_version == "brain.Event:2"
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(events[1].graph_def)
    assert "dense_1/Softmax" in {n.name for n in graph.node}
    meta = events[2].meta_graph_def
    mg = tf.compat.v1.MetaGraphDef()
    mg.ParseFromString(meta)
    assert mg.graph_def == graph
    assert "serving_default" in mg.signature_def


# ---- SavedModel ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """Our SavedModel of the original CNN with known weights."""
    base = tmp_path_factory.mktemp("export")
    w = cnn_weights(3)
    tensors = dict(w)
    tensors["global_step"] = np.array(1234, np.int64)
    manifest = write_manifest(base / "weights", tensors)
    export_dir = base / "exporter" / "1562621605"
    export_dir.parent.mkdir()
    tool("savedmodel", manifest, export_dir)
    return export_dir, w


def test_saved_model_cli_lists_signature(export):
    export_dir, _ = export
    res = subprocess.run(["saved_model_cli", "show", "--dir", str(export_dir), "--all"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert "signature_def['serving_default']:" in out
    assert ("inputs['image_input'] tensor_info: dtype: DT_FLOAT shape: (-1, 28, 28, 1) "
            "name: Placeholder:0") in out
    assert ("outputs['dense_1'] tensor_info: dtype: DT_FLOAT shape: (-1, 10) "
            "name: dense_1/Softmax:0") in out
    assert "Method name is: tensorflow/serving/predict" in out
    assert "tag-set: 'serve'" in out or "tag-set: serve" in out


def test_tf2_load_matches_numpy(export):
    export_dir, w = export
    images = random_images(64)
    want, logits = numpy_forward(w, images)
    assert 0.5 < np.abs(logits).max() < 50, "weights give degenerate logits"
    loaded = tf.saved_model.load(str(export_dir))
    fn = loaded.signatures["serving_default"]
    got = fn(image_input=tf.constant(images))["dense_1"].numpy()
    assert got.shape == (64, 10)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    names = sorted(v.name for v in loaded.variables)
    assert "dense/kernel:0" in names


def test_tf1_session_loader_matches_numpy(export):
    export_dir, w = export
    images = random_images(32, seed=11)
    want, _ = numpy_forward(w, images)
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(export_dir))
        sig = meta.signature_def["serving_default"]
        assert sig.method_name == "tensorflow/serving/predict"
        inp = sig.inputs["image_input"].name
        out = sig.outputs["dense_1"].name
        got = sess.run(out, {inp: images})
        step = sess.run("global_step/Read/ReadVariableOp:0")
        kernel = sess.run("conv2d/kernel/Read/ReadVariableOp:0")
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert step == 1234
    np.testing.assert_array_equal(kernel, w["conv2d/kernel"])


def test_export_uses_only_tf112_ops(export):
    """Every op of our graph exists in TF 1.12 (the fixture's real export, TF 1.14, lists the
    OpDefs it used; ours must be a subset of those plus the ones TF 1.12 certainly has)."""
    export_dir, _ = export
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((export_dir / "saved_model.pb").read_bytes())
    mg = sm.meta_graphs[0]
    assert list(mg.meta_info_def.tags) == ["serve"]
    assert not mg.HasField("object_graph_def")
    assert mg.graph_def.versions.producer == 27
    ops = {n.op for n in mg.graph_def.node}
    fixture_ops = {"Const", "AssignVariableOp", "ReadVariableOp", "Identity", "VarHandleOp",
                   "NoOp", "Conv2D", "MatMul", "MaxPool", "Placeholder", "Softmax", "Reshape",
                   "BiasAdd", "Relu", "RestoreV2", "SaveV2", "PlaceholderWithDefault"}
    assert ops <= fixture_ops, ops - fixture_ops
    later_attrs = {"explicit_paddings", "allowed_devices", "debug_name", "validate_shape",
                   "grad_a", "grad_b"}
    for n in mg.graph_def.node:
        assert not (set(n.attr) & later_attrs), (n.name, set(n.attr) & later_attrs)


# ---- predict -------------------------------------------------------------------------------

def run_predict(export_dir, *args, stdin=None):
    return subprocess.run([binary("predict"), "--model-dir", str(export_dir), *map(str, args)],
                          capture_output=True, text=True, input=stdin)


def tf_predictions(export_dir, images):
    loaded = tf.saved_model.load(str(export_dir))
    return loaded.signatures["serving_default"](image_input=tf.constant(images))["dense_1"].numpy()


def test_predict_matches_tf(export, tmp_path):
    export_dir, _ = export
    images = random_images(40, seed=5)
    want = tf_predictions(export_dir, images)
    # newline-delimited instances, bare values and {"image_input": ...} objects mixed
    lines = [json.dumps(im.tolist()) if i % 2 else json.dumps({"image_input": im.tolist()})
             for i, im in enumerate(images)]
    (tmp_path / "instances.json").write_text("\n".join(lines[:20]) + "\n\n" + "\n".join(lines[20:]))
    res = run_predict(export_dir, "--json-instances", tmp_path / "instances.json",
                      "--batch-size", 16)
    assert res.returncode == 0, res.stderr
    got = np.array(json.loads(res.stdout)["predictions"])
    assert got.shape == (40, 10)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # a REST body (row form), from stdin
    body = json.dumps({"signature_name": "serving_default",
                       "instances": [im.tolist() for im in images[:3]]})
    res = run_predict(export_dir, "--json-request", "-", stdin=body)
    assert res.returncode == 0, res.stderr
    np.testing.assert_allclose(np.array(json.loads(res.stdout)["predictions"]), want[:3],
                               atol=1e-5, rtol=0)
    # columnar form answers {"outputs": ...}
    body = json.dumps({"inputs": {"image_input": [im.tolist() for im in images[:2]]}})
    res = run_predict(export_dir, "--json-request", "-", stdin=body)
    assert res.returncode == 0, res.stderr
    np.testing.assert_allclose(np.array(json.loads(res.stdout)["outputs"]), want[:2],
                               atol=1e-5, rtol=0)


def test_predict_errors_name_the_problem(export, tmp_path):
    export_dir, _ = export
    good = json.dumps(random_images(1)[0].tolist())
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(good + "\n" + good + "\n[[1, 2,\n")
    res = run_predict(export_dir, "--json-instances", bad_json)
    assert res.returncode == 1
    assert f"{bad_json}: line 3: malformed JSON" in res.stderr

    short = np.zeros((28, 27, 1)).tolist()
    res = run_predict(export_dir, "--json-request", "-",
                      stdin=json.dumps({"instances": [json.loads(good), short]}))
    assert res.returncode == 1
    assert "instance 1: element [0] has 27 entries, expected 28" in res.stderr

    res = run_predict(export_dir, "--json-request", "-",
                      stdin=json.dumps({"instances": [{"images": json.loads(good)}]}))
    assert res.returncode == 1
    assert 'exactly the key "image_input"' in res.stderr

    res = run_predict(export_dir, "--json-request", "-", stdin='{"instances": [[[["x"]]]]}')
    assert res.returncode == 1 and "instance 0" in res.stderr

    res = run_predict(export_dir, "--json-instances", bad_json, "--json-request", bad_json)
    assert res.returncode == 2 and "exactly one of" in res.stderr
    res = run_predict(tmp_path / "nowhere", "--json-instances", bad_json)
    assert res.returncode == 1 and "saved_model.pb" in res.stderr
    # the real Estimator export has no variables data in the fixture: a clear error
    fixture = REPO.parent / "shared/fixtures/tf112-estimator-export/export/exporter/1562621605"
    (tmp_path / "one.json").write_text(good + "\n")
    res = run_predict(fixture, "--json-instances", tmp_path / "one.json")
    assert res.returncode == 1
    assert "variables.data-00000-of-00001" in res.stderr


# ---- TensorFlow's C API: the C++ SavedModel loader (loader.cc) TF Serving uses -------------

def test_c_api_loader_matches_numpy(export):
    import ctypes as C
    lib_path = Path(tf.__file__).parent / "libtensorflow_cc.so.2"
    if not lib_path.exists():
        pytest.skip(f"this TensorFlow wheel has no {lib_path.name} (C API)")
    lib = C.CDLL(str(lib_path))
    if not hasattr(lib, "TF_LoadSessionFromSavedModel"):
        pytest.skip("this TensorFlow wheel does not export TF_LoadSessionFromSavedModel")
    vp = C.c_void_p

    class Output(C.Structure):
        _fields_ = [("oper", vp), ("index", C.c_int)]

    for name, res, args in [
        ("TF_NewStatus", vp, []), ("TF_GetCode", C.c_int, [vp]), ("TF_Message", C.c_char_p, [vp]),
        ("TF_NewGraph", vp, []), ("TF_NewSessionOptions", vp, []),
        ("TF_LoadSessionFromSavedModel", vp,
         [vp, vp, C.c_char_p, C.POINTER(C.c_char_p), C.c_int, vp, vp, vp]),
        ("TF_GraphOperationByName", vp, [vp, C.c_char_p]),
        ("TF_AllocateTensor", vp, [C.c_int, C.POINTER(C.c_int64), C.c_int, C.c_size_t]),
        ("TF_TensorData", vp, [vp]), ("TF_TensorByteSize", C.c_size_t, [vp]),
        ("TF_SessionRun", None, [vp, vp, C.POINTER(Output), C.POINTER(vp), C.c_int,
                                 C.POINTER(Output), C.POINTER(vp), C.c_int, vp, C.c_int, vp, vp]),
        ("TF_DeleteTensor", None, [vp]), ("TF_CloseSession", None, [vp, vp]),
        ("TF_DeleteSession", None, [vp, vp]), ("TF_DeleteGraph", None, [vp]),
        ("TF_DeleteSessionOptions", None, [vp]), ("TF_DeleteStatus", None, [vp]),
    ]:
        getattr(lib, name).restype = res
        getattr(lib, name).argtypes = args

    export_dir, w = export
    images = random_images(16, seed=13)
    want, _ = numpy_forward(w, images)
    status, graph, opts = lib.TF_NewStatus(), lib.TF_NewGraph(), lib.TF_NewSessionOptions()
    tags = (C.c_char_p * 1)(b"serve")
    sess = lib.TF_LoadSessionFromSavedModel(opts, None, str(export_dir).encode(), tags, 1, graph,
                                            None, status)
    assert lib.TF_GetCode(status) == 0, lib.TF_Message(status)
    inp = Output(lib.TF_GraphOperationByName(graph, b"Placeholder"), 0)
    out = Output(lib.TF_GraphOperationByName(graph, b"dense_1/Softmax"), 0)
    assert inp.oper and out.oper
    dims = (C.c_int64 * 4)(*images.shape)
    t_in = lib.TF_AllocateTensor(1, dims, 4, images.nbytes)        # 1 = TF_FLOAT
    C.memmove(lib.TF_TensorData(t_in), images.ctypes.data, images.nbytes)
    t_out = vp()
    lib.TF_SessionRun(sess, None, C.byref(inp), C.byref(vp(t_in)), 1, C.byref(out),
                      C.byref(t_out), 1, None, 0, None, status)
    assert lib.TF_GetCode(status) == 0, lib.TF_Message(status)
    n = lib.TF_TensorByteSize(t_out) // 4
    got = np.ctypeslib.as_array((C.c_float * n).from_address(lib.TF_TensorData(t_out)))
    got = got.reshape(16, 10).copy()
    for t in (t_in, t_out):
        lib.TF_DeleteTensor(t)
    lib.TF_CloseSession(sess, status)
    lib.TF_DeleteSession(sess, status)
    lib.TF_DeleteGraph(graph)
    lib.TF_DeleteSessionOptions(opts)
    lib.TF_DeleteStatus(status)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
