"""Shared helpers of the fault tests (tests/fault/): the programs, clean-failure checks, and
small MNIST-like inputs written without TensorFlow (so the tests start fast).

The programs come from $BUILD_DIR/bin (default <repo>/build). tests/run.sh points BUILD_DIR at the
ASan+UBSan build, so "no sanitizer report" is checked on every failure path these tests walk.
A missing program is a failure, never a skip.
"""
import gzip
import shutil
import os
import pathlib
import signal
import struct
import subprocess
import zlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD_DIR = pathlib.Path(os.environ.get("BUILD_DIR", REPO / "build"))
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:", "==ERROR")
# Leaks on error paths count as failures; UBSan stops at the first report.
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=99"}


def program(name):
    path = BUILD_DIR / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build the tree first (BUILD_DIR={BUILD_DIR})")
    return str(path)


def run(args, timeout=300, env=None, **kw):
    e = dict(os.environ)
    e.update(SAN_ENV)
    e.setdefault("OMP_NUM_THREADS", "1")
    if env:
        e.update(env)
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, errors="replace",
                          timeout=timeout, env=e, **kw)


def no_sanitizer_report(res):
    text = res.stdout + res.stderr
    for m in SANITIZER_MARKERS:
        assert m not in text, f"sanitizer report ({m!r}):\n{text[-4000:]}"


def assert_clean_failure(res, *needles, code=None):
    """A failure as users must see it: exit status > 0 (no signal), no sanitizer report, and an
    error naming every needle (the file, the record, the offset, ...)."""
    no_sanitizer_report(res)
    assert res.returncode > 0, (
        f"expected an error exit, got {res.returncode}"
        f"{' (' + signal.Signals(-res.returncode).name + ')' if res.returncode < 0 else ''}"
        f":\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    if code is not None:
        assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    for n in needles:
        assert str(n) in res.stderr, f"{n!r} not in the error:\n{res.stderr[-3000:]}"


def assert_ok(res):
    no_sanitizer_report(res)
    assert res.returncode == 0, f"exit {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


# ---- TFRecord + tf.train.Example, hand-encoded (the format spec: docs/formats-tf.md) --------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record):
    head = struct.pack("<Q", len(record))
    return head + struct.pack("<I", masked_crc(head)) + record + struct.pack("<I", masked_crc(record))


def write_tfrecord(path, records, compression="none"):
    raw = b"".join(frame(r) for r in records)
    if compression == "gzip":
        raw = gzip.compress(raw)
    elif compression == "zlib":
        raw = zlib.compress(raw)
    pathlib.Path(path).write_bytes(raw)
    return pathlib.Path(path)


def _varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    tag = _varint(num << 3 | wire)
    if wire == 2:
        return tag + _varint(len(payload)) + payload
    return tag + payload


def example(features):
    """features: {name: ("int64", [ints]) | ("float", [floats]) | ("bytes", [bytes])}."""
    entries = b""
    for name in sorted(features):
        kind, values = features[name]
        if kind == "int64":
            lst = _field(1, 2, b"".join(_varint(v) for v in values))
            feat = _field(3, 2, lst)
        elif kind == "float":
            lst = _field(1, 2, b"".join(struct.pack("<f", v) for v in values))
            feat = _field(2, 2, lst)
        else:
            lst = b"".join(_field(1, 2, v) for v in values)
            feat = _field(1, 2, lst)
        entries += _field(1, 2, _field(1, 2, name.encode()) + _field(2, 2, feat))
    return _field(1, 2, entries)


def mnist_image(label, i):
    """A 28x28 uint8 image a small CNN can learn: a bright 7x7 block whose position is the label,
    plus a little deterministic noise."""
    px = bytearray((i * 31 + k * 17) % 23 for k in range(784))
    r0, c0 = (label // 5) * 14 + 3, (label % 5) * 5 + 1
    for r in range(r0, r0 + 7):
        for c in range(c0, min(c0 + 5, 28)):
            px[r * 28 + c] = 255
    return bytes(px)


def mnist_example(label, i=0, override=None):
    """One MNIST record; override maps feature names to a replacement (None: left out)."""
    f = {"depth": ("int64", [1]), "height": ("int64", [28]), "width": ("int64", [28]),
         "label": ("int64", [label]), "image_raw": ("bytes", [mnist_image(label % 10, i)])}
    for k, v in (override or {}).items():
        if v is None:
            f.pop(k, None)
        else:
            f[k] = v
    return example(f)


def write_mnist(path, n, compression="none", start=0):
    return write_tfrecord(path, [mnist_example((start + i) % 10, start + i) for i in range(n)],
                          compression)


@pytest.fixture(scope="session")
def mnist_files(tmp_path_factory):
    """A small training set (512 records) and test set (200), plain TFRecords."""
    d = tmp_path_factory.mktemp("mnist")
    return write_mnist(d / "train.tfrecords", 512), write_mnist(d / "test.tfrecords", 200, start=7)


@pytest.fixture(scope="session")
def tf():
    """TensorFlow, imported once and only for the tests that read checkpoints with it."""
    import tensorflow as tf
    return tf


@pytest.fixture(scope="session")
def unprivileged():
    """A command prefix that runs a program without root's power to read anything (root ignores
    file modes): setpriv to nobody. Fails when that is impossible but we are root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.fail("running as root without setpriv: cannot test unreadable files")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
