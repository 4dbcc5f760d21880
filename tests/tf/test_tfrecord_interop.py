"""TFRecord / tf.train.Example interoperability with real TensorFlow, both directions.

- TF reads what we write: tf.data.TFRecordDataset (each compression type) returns exactly our
  records, and tf.io.parse_single_example / tf.train.Example see exactly our feature values.
- We read what TF writes: `tfrecord count/verify/dump --json` on files written by
  tf.io.TFRecordWriter (each compression type) holding Examples TF serialised.
- Corrupted copies (a flipped byte in a payload, a length, a CRC; a truncated tail) are errors
  naming the file, the record and its offset; TF agrees they are corrupt.
- `tfrecord from-idx` on the shipped MNIST gives images and labels byte-identical to the IDX files.
Binaries come from $BUILD_DIR/bin (default <repo>/build/bin); a missing binary is a failure.
"""
import gzip
import json
import os
import subprocess
import zlib

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(os.environ.get("BUILD_DIR", os.path.join(REPO, "build")), "bin")
MNIST = os.path.join(REPO, "data", "mnist")
COMPRESSIONS = ["none", "gzip", "zlib"]
TF_TYPE = {"none": "", "gzip": "GZIP", "zlib": "ZLIB"}


def binary(name):
    path = os.path.join(BIN, name)
    assert os.access(path, os.X_OK), f"{path} is missing: build the project first"
    return path


def run(args, expect=0):
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == expect, f"{args}: exit {p.returncode}, expected {expect}\n{p.stderr}"
    return p


# ---- the deterministic Examples of tests/tools/example_writer.c ---------------------------------
def expected_example(i):
    blob = bytes((i * 7 + k) & 255 for k in range(i % 300))
    feats = {
        "bytes": ("bytes_list", [blob, b"", b"label-%d" % i]),
        "floats": ("float_list", [np.float32(((i + 1) * 0.1) * (k + 1)) for k in range(i % 4 + 1)]),
        "int64s": ("int64_list", [i, -i, (1 << 62) + i, -(1 << 63) if i % 7 == 0 else (1 << 63) - 1]),
        "label": ("int64_list", [i % 10]),
    }
    if i % 2 == 0:
        feats["empty"] = ("float_list", [])
    return feats


def example_values(ex):
    """tf.train.Example -> {name: (kind, [values])}, floats as float32."""
    out = {}
    for name, f in ex.features.feature.items():
        kind = f.WhichOneof("kind")
        vals = list(getattr(f, kind).value) if kind else []
        if kind == "float_list":
            vals = [np.float32(v) for v in vals]
        out[name] = (kind, vals)
    return out


N_EXAMPLES = 500


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_tf_reads_our_examples(tmp_path, compression):
    path = str(tmp_path / f"ours.{compression}")
    run([binary("tool_example_writer"), path, compression, str(N_EXAMPLES)])
    ds = tf.data.TFRecordDataset(path, compression_type=TF_TYPE[compression])
    raw = list(ds.as_numpy_iterator())
    assert len(raw) == N_EXAMPLES
    for i, rec in enumerate(raw):
        assert example_values(tf.train.Example.FromString(rec)) == expected_example(i), f"record {i}"
    # the graph-side parser sees the same values
    spec = {
        "label": tf.io.FixedLenFeature([1], tf.int64),
        "int64s": tf.io.FixedLenFeature([4], tf.int64),
        "floats": tf.io.VarLenFeature(tf.float32),
        "bytes": tf.io.FixedLenFeature([3], tf.string),
    }
    for i in (0, 1, 7, 299, N_EXAMPLES - 1):
        parsed = tf.io.parse_single_example(raw[i], spec)
        want = expected_example(i)
        assert parsed["label"].numpy().tolist() == want["label"][1]
        assert parsed["int64s"].numpy().tolist() == want["int64s"][1]
        assert parsed["floats"].values.numpy().tolist() == [float(v) for v in want["floats"][1]]
        assert parsed["bytes"].numpy().tolist() == want["bytes"][1]


# ---- TF writes, we read ---------------------------------------------------------------------------
def tf_examples(n):
    """Examples with TF's own serialisation, including awkward values."""
    rng = np.random.default_rng(5)
    exs = []
    for i in range(n):
        floats = rng.standard_normal(i % 9).astype(np.float32).tolist() + [float("inf"), -0.0, 1e-45]
        ints = rng.integers(-(1 << 63), (1 << 63) - 1, size=i % 5, dtype=np.int64).tolist() + [-1, 0]
        blobs = [rng.bytes(i % 50), ("ünïcode-%d" % i).encode()]
        f = {
            "f": tf.train.Feature(float_list=tf.train.FloatList(value=floats)),
            "i": tf.train.Feature(int64_list=tf.train.Int64List(value=ints)),
            "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=blobs)),
            "nan": tf.train.Feature(float_list=tf.train.FloatList(value=[float("nan")])),
            "none": tf.train.Feature(),
        }
        exs.append(tf.train.Example(features=tf.train.Features(feature=f)))
    return exs


def write_tf(path, exs, compression):
    with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type=TF_TYPE[compression])) as w:
        for ex in exs:
            w.write(ex.SerializeToString())


def json_value(kind, values):
    if kind == "bytes_list":
        return [bytes.fromhex(v) for v in values]
    if kind == "float_list":
        return [np.float32(v) for v in values]   # numbers, or "nan"/"inf"/"-inf" strings
    return values


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_we_read_tf_examples(tmp_path, compression):
    exs = tf_examples(120)
    path = str(tmp_path / f"tf.{compression}")
    write_tf(path, exs, compression)
    out = run([binary("tfrecord"), "count", path]).stdout
    assert out.split("\t")[0] == "120"
    assert "120 records OK" in run([binary("tfrecord"), "verify", path]).stdout
    run([binary("tfrecord"), "count", path, "--compression", compression])   # forced
    lines = run([binary("tfrecord"), "dump", "--json", path]).stdout.splitlines()
    assert len(lines) == 120
    for i, line in enumerate(lines):
        rec = json.loads(line)
        assert rec["index"] == i and rec["file"] == path
        got = {}
        for name, v in rec["features"].items():
            (kind, values), = v.items()
            got[name] = (None if kind == "none" else kind, json_value(kind, values))
        want = example_values(exs[i])
        assert set(got) == set(want), f"record {i}"
        for name in want:
            assert got[name][0] == want[name][0], (i, name)
            if want[name][0] == "float_list":
                g = np.array(got[name][1], np.float32)
                w = np.array(want[name][1], np.float32)
                nan = np.isnan(w)
                assert np.array_equal(np.isnan(g), nan), (i, name)
                assert np.array_equal(g[~nan].view(np.uint32), w[~nan].view(np.uint32)), (i, name)
            else:
                assert got[name][1] == want[name][1], (i, name)


def test_wrong_forced_compression_is_an_error(tmp_path):
    path = str(tmp_path / "tf.gz")
    write_tf(path, tf_examples(3), "gzip")
    p = run([binary("tfrecord"), "count", path, "--compression", "none"], expect=1)
    assert path in p.stderr and "record 0 at offset 0" in p.stderr


# ---- corruption -------------------------------------------------------------------------------------
def record_starts(data):
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += 16 + int.from_bytes(data[pos:pos + 8], "little")
    return starts


def corruptions(data):
    """(what, damaged bytes, index of the bad record) for each kind of damage."""
    starts = record_starts(data)
    k = 2
    s = starts[k]
    n = int.from_bytes(data[s:s + 8], "little")

    def flip(pos):
        b = bytearray(data)
        b[pos] ^= 0x01
        return bytes(b)

    return [
        ("payload", flip(s + 12 + n // 2), k),
        ("length", flip(s + 1), k),
        ("length crc", flip(s + 9), k),
        ("data crc", flip(s + 12 + n + 2), k),
        ("truncated tail", data[:starts[-1] + 20], len(starts) - 1),
        ("truncated header", data[:starts[-1] + 5], len(starts) - 1),
    ], starts


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_corrupt_copies_are_caught(tmp_path, compression):
    plain = str(tmp_path / "clean")
    write_tf(plain, tf_examples(6), "none")
    data = open(plain, "rb").read()
    cases, starts = corruptions(data)
    for what, bad, k in cases:
        path = str(tmp_path / f"bad-{what.replace(' ', '_')}.{compression}")
        if compression == "gzip":
            blob = gzip.compress(bad)
        elif compression == "zlib":
            blob = zlib.compress(bad)
        else:
            blob = bad
        with open(path, "wb") as f:
            f.write(blob)
        for cmd in ("verify", "count", "dump"):
            p = run([binary("tfrecord"), cmd, path], expect=1)
            where = f"{path}: record {k} at offset {starts[k]}"
            assert where in p.stderr, f"{what}/{cmd}: {p.stderr!r} lacks {where!r}"
            assert ("corrupted" in p.stderr) or ("truncated" in p.stderr), p.stderr
        ds = tf.data.TFRecordDataset(path, compression_type=TF_TYPE[compression])
        if what == "truncated header":
            # TF takes a partial header at the end for the end of the file and silently drops the
            # cut record; we report it (a lost record is an error here).
            assert sum(1 for _ in ds) == len(starts) - 1
            continue
        with pytest.raises(tf.errors.DataLossError):   # TF agrees the file is damaged
            for _ in ds:
                pass


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
def test_truncated_compressed_stream(tmp_path, compression):
    path = str(tmp_path / "cut")
    write_tf(path, tf_examples(40), compression)
    blob = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(blob[: len(blob) * 2 // 3])
    p = run([binary("tfrecord"), "verify", path], expect=1)
    assert path in p.stderr and "record" in p.stderr and "offset" in p.stderr


# ---- MNIST: from-idx is byte-identical, and TF reads it -------------------------------------------
def idx(path):
    data = gzip.open(path).read()
    ndims = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndims).reshape(dims)


MNIST_SPEC = {
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "depth": tf.io.FixedLenFeature([], tf.int64),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "image_raw": tf.io.FixedLenFeature([], tf.string),
}


def tf_read_mnist(path, compression):
    ds = tf.data.TFRecordDataset(path, compression_type=TF_TYPE[compression]).batch(10000)
    images, labels = [], []
    for batch in ds:
        p = tf.io.parse_example(batch, MNIST_SPEC)
        assert set(p["height"].numpy()) == {28} and set(p["width"].numpy()) == {28}
        assert set(p["depth"].numpy()) == {1}
        images.append(tf.io.decode_raw(p["image_raw"], tf.uint8).numpy())
        labels.append(p["label"].numpy())
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("split,compression", [("t10k", c) for c in COMPRESSIONS] + [("train", "none")])
def test_from_idx_is_byte_identical(tmp_path, split, compression):
    out = str(tmp_path / f"mnist_{split}.tfrecords")
    run([binary("tfrecord"), "from-idx", "--images", f"{MNIST}/{split}-images-idx3-ubyte.gz",
         "--labels", f"{MNIST}/{split}-labels-idx1-ubyte.gz", "--out", out,
         "--compression", compression])
    images, labels = tf_read_mnist(out, compression)
    want_images = idx(f"{MNIST}/{split}-images-idx3-ubyte.gz")
    want_labels = idx(f"{MNIST}/{split}-labels-idx1-ubyte.gz")
    assert images.shape == (want_images.shape[0], 784)
    assert images.tobytes() == want_images.tobytes()
    assert labels.astype(np.uint8).tobytes() == want_labels.tobytes()
    # the single-example parser agrees on the first records
    raw = list(tf.data.TFRecordDataset(out, compression_type=TF_TYPE[compression]).take(3))
    for i, r in enumerate(raw):
        p = tf.io.parse_single_example(r, MNIST_SPEC)
        assert p["label"].numpy() == want_labels[i]
        assert p["image_raw"].numpy() == want_images[i].tobytes()


# ---- the tool's command line ------------------------------------------------------------------------
def test_cli_usage_errors(tmp_path):
    t = binary("tfrecord")
    assert "usage: tfrecord" in run([t, "--help"]).stdout
    for cmd in ("from-idx", "verify", "count", "dump"):
        assert f"usage: tfrecord {cmd}" in run([t, cmd, "--help"]).stdout
    p = run([t, "frobnicate"], expect=2)
    assert "unknown command 'frobnicate'" in p.stderr and "usage:" in p.stderr
    p = run([t, "count", "--bogus-flag", "x"], expect=2)
    assert "unknown option '--bogus-flag'" in p.stderr
    run([t], expect=2)
    run([t, "count"], expect=2)
    p = run([t, "dump", "x", "--limit", "abc"], expect=2)
    assert "--limit: 'abc' is not an integer" in p.stderr
    p = run([t, "from-idx", "--images", "a"], expect=2)
    assert "required" in p.stderr
    p = run([t, "count", str(tmp_path / "nothing-*.tfrecord")], expect=2)
    assert "no files match" in p.stderr
    out = tmp_path / "o"
    p = run([t, "from-idx", "--images", str(tmp_path / "missing.gz"), "--labels", "x", "--out",
             str(out)], expect=1)
    assert "missing.gz" in p.stderr
    assert not out.exists() and os.listdir(tmp_path) == []
