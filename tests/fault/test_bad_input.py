"""Bad input through the programs: every damaged file, wrong record, empty or unreadable path
gives an error naming the file (and the record and its offset where there is one), a non-zero
exit, no signal and no sanitizer report. (tests/fault/conftest.py: helpers.)"""
import os
import pathlib
import resource
import shutil
import struct
import subprocess
import tempfile

import pytest

from conftest import (SAN_ENV, assert_clean_failure, assert_ok, example, frame, mnist_example,
                      program, run, write_mnist, write_tfrecord)

# ---- TFRecord framing: tfrecord verify / count ---------------------------------------------------


@pytest.fixture
def three(tmp_path):
    """Three MNIST records; returns (path, bytes, offsets of records 0..2, record lengths)."""
    recs = [mnist_example(i, i) for i in range(3)]
    path = write_tfrecord(tmp_path / "three.tfrecords", recs)
    offs, o = [], 0
    for r in recs:
        offs.append(o)
        o += 16 + len(r)
    return path, path.read_bytes(), offs, [len(r) for r in recs]


def verify(path, *extra):
    return run([program("tfrecord"), "verify", path, *extra])


def test_intact_file_verifies(three):
    assert_ok(verify(three[0]))


@pytest.mark.parametrize("where", ["header", "payload", "data_crc"])
def test_truncated_record(three, where):
    path, data, offs, lens = three
    cut = {"header": offs[1] + 5, "payload": offs[1] + 12 + lens[1] // 2,
           "data_crc": offs[1] + 12 + lens[1] + 2}[where]
    path.write_bytes(data[:cut])
    assert_clean_failure(verify(path), path, "record 1", f"offset {offs[1]}", "truncated")


@pytest.mark.parametrize("where,what", [(0, "length CRC"), (3, "length CRC"), (9, "length CRC"),
                                        (12 + 40, "data CRC"), (12 + 700, "data CRC"),
                                        (-2, "data CRC")])
def test_flipped_byte(three, where, what):
    """A flipped bit in the length, its CRC, the payload or the payload's CRC of record 2."""
    path, data, offs, lens = three
    at = offs[2] + where if where >= 0 else offs[2] + 16 + lens[2] + where
    b = bytearray(data)
    b[at] ^= 0x10
    path.write_bytes(bytes(b))
    for cmd in ("verify", "count"):
        res = run([program("tfrecord"), cmd, path])
        assert_clean_failure(res, path, "record 2", f"offset {offs[2]}", what)


def test_huge_length_with_valid_crc(tmp_path):
    """A length field of 2^40 whose CRC is right: refused without allocating it."""
    head = struct.pack("<Q", 1 << 40)
    from conftest import masked_crc
    path = tmp_path / "huge.tfrecords"
    path.write_bytes(frame(mnist_example(1)) + head + struct.pack("<I", masked_crc(head)) + b"x" * 64)
    res = verify(path)
    assert_clean_failure(res, path, "record 1", "absurd length")


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
def test_compressed_damage(tmp_path, compression):
    path = write_mnist(tmp_path / f"c.{compression}", 20, compression)
    data = path.read_bytes()
    assert_ok(verify(path))
    path.write_bytes(data[: len(data) * 2 // 3])                      # truncated stream
    assert_clean_failure(verify(path), path, "record ", "offset ")
    b = bytearray(data)
    b[len(b) // 2] ^= 0xFF                                             # corrupt deflate data
    path.write_bytes(bytes(b))
    assert_clean_failure(verify(path), path, "record ", "offset ")
    path.write_bytes(data + b"trailing")                               # garbage after the stream
    assert_clean_failure(verify(path, "--compression", compression), path)


def test_record_that_is_not_an_example(tmp_path):
    path = write_tfrecord(tmp_path / "x.tfrecords",
                          [mnist_example(3), b"\x0a\xff\xff\xff\xff\x0f", mnist_example(4)])
    res = verify(path)
    assert_clean_failure(res, path, "record 1", "offset ", "malformed Example")


def test_empty_directory_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    for p in (tmp_path / "empty", tmp_path / "absent.tfrecords", tmp_path / "no*match*"):
        assert_clean_failure(verify(p), p)


def test_directory_where_a_file_is_expected(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    res = run([program("tfrecord"), "from-idx", "--images", imgs, "--labels", imgs, "--out",
               tmp_path / "o.tfrecords"])
    assert_clean_failure(res, imgs)
    res = run([program("tfrecord"), "count", "--compression", "none", "/proc/self/mem"])
    assert_clean_failure(res, "/proc/self/mem")                       # a read error (EIO)


def test_unreadable_file(unprivileged):
    # a directory anyone may enter (pytest's tmp_path is not), holding a file no one may read
    d = pathlib.Path(tempfile.mkdtemp(prefix="fault_unreadable_"))
    try:
        d.chmod(0o755)
        path = write_mnist(d / "secret.tfrecords", 2)
        path.chmod(0)
        res = run(unprivileged + [program("tfrecord"), "verify", path])
        assert_clean_failure(res, path, "Permission denied")
    finally:
        shutil.rmtree(d)


def test_dump_of_a_list_too_big_for_memory(tmp_path):
    """A record whose packed int64 list (3M values, 24 MB decoded) cannot be allocated: dump says
    so, naming the record, instead of writing through a NULL pointer."""
    from conftest import _field
    lst = _field(1, 2, b"\x01" * 3_000_000)
    rec = _field(1, 2, _field(1, 2, _field(1, 2, b"big") + _field(2, 2, _field(3, 2, lst))))
    path = write_tfrecord(tmp_path / "big.tfrecords", [rec])
    binary = program("tfrecord")
    asan = b"__asan_init" in pathlib.Path(binary).read_bytes()

    def limit_memory():   # the release build: 40 MB of address space; ASan: its own limit
        if not asan:
            resource.setrlimit(resource.RLIMIT_AS, (40 << 20, 40 << 20))
    res = run([binary, "dump", path], preexec_fn=limit_memory,
              env={"ASAN_OPTIONS": "detect_leaks=1:allocator_may_return_null=1:"
                                   "max_allocation_size_mb=16"})
    res.stderr = "\n".join(l for l in res.stderr.splitlines()
                           if "WARNING: AddressSanitizer failed to allocate" not in l)
    assert_clean_failure(res, path, "record 0", "offset 0", "out of memory", code=1)


# ---- IDX: tfrecord from-idx ------------------------------------------------------------------


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


@pytest.mark.parametrize("case", ["truncated", "trailing", "huge_dims", "label_10", "count",
                                  "bad_magic", "empty"])
def test_idx_damage(tmp_path, case):
    n = 4
    images = idx([n, 28, 28], bytes(784 * n))
    labels = idx([n], bytes([1, 2, 3, 4]))
    bad = {"truncated": ("images", images[:-100]), "trailing": ("labels", labels + b"\0"),
           "huge_dims": ("images", idx([1 << 20, 1 << 10, 1 << 10], bytes(64))),
           "label_10": ("labels", idx([n], bytes([1, 2, 10, 4]))),
           "count": ("labels", idx([n - 1], bytes([1, 2, 3]))),
           "bad_magic": ("images", b"\x00\x00\x09\x03" + images[4:]),
           "empty": ("labels", b"")}[case]
    files = {"images": images, "labels": labels}
    files[bad[0]] = bad[1]
    for k, v in files.items():
        (tmp_path / k).write_bytes(v)
    out = tmp_path / "out.tfrecords"
    res = run([program("tfrecord"), "from-idx", "--images", tmp_path / "images", "--labels",
               tmp_path / "labels", "--out", out])
    assert_clean_failure(res, tmp_path / bad[0])
    assert not out.exists(), "a failed conversion left its output"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out")] == []


# ---- MNIST records through the trainer --------------------------------------------------------

BAD_EXAMPLES = {
    "missing_image_raw": ({"image_raw": None}, "image_raw"),
    "short_image": ({"image_raw": ("bytes", [bytes(783)])}, "image_raw"),
    "long_image": ({"image_raw": ("bytes", [bytes(785)])}, "image_raw"),
    "two_images": ({"image_raw": ("bytes", [bytes(784), bytes(784)])}, "image_raw"),
    "label_10": ({"label": ("int64", [10])}, "label"),
    "label_negative": ({"label": ("int64", [-1])}, "label"),
    "label_float": ({"label": ("float", [3.0])}, "label"),
    "label_missing": ({"label": None}, "label"),
    "image_as_int64": ({"image_raw": ("int64", [0] * 784)}, "image_raw"),
    "height_27": ({"height": ("int64", [27])}, "height"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXAMPLES))
def test_trainer_rejects_bad_example(tmp_path, mnist_files, case):
    override, feature = BAD_EXAMPLES[case]
    recs = [mnist_example(i % 10, i) for i in range(5)]
    recs[3] = mnist_example(3, 3, override)
    path = write_tfrecord(tmp_path / "bad.tfrecords", recs)
    off = sum(16 + len(r) for r in recs[:3])
    job = tmp_path / "job"
    res = run([program("trainer"), "--train", path, "--test", mnist_files[1], "--steps", "1",
               "--job-dir", job, "--device", "cpu", "--model", "flatten,dense:10"])
    assert_clean_failure(res, path, "record 3", f"offset {off}", feature, "--train", code=2)
    assert not job.exists() or not any(job.glob("model.ckpt-*")), "bad data, yet work was done"


@pytest.mark.parametrize("case", ["empty_file", "empty_dir", "missing", "dir_of_dirs",
                                  "truncated", "job_dir_is_file"])
def test_trainer_bad_paths(tmp_path, mnist_files, case):
    train, test = mnist_files
    job = tmp_path / "job"
    if case == "empty_file":
        train = tmp_path / "empty.tfrecords"
        train.write_bytes(b"")
    elif case == "empty_dir":
        train = tmp_path / "channel"
        train.mkdir()
    elif case == "missing":
        train = tmp_path / "absent.tfrecords"
    elif case == "dir_of_dirs":
        train = tmp_path / "channel"
        (train / "sub").mkdir(parents=True)
    elif case == "truncated":
        train = tmp_path / "t.tfrecords"
        train.write_bytes(mnist_files[0].read_bytes()[:5000])
    elif case == "job_dir_is_file":
        job.write_text("not a directory")
    res = run([program("trainer"), "--train", train, "--test", test, "--steps", "2", "--job-dir",
               job, "--device", "cpu", "--model", "flatten,dense:10", "--batch-size", "8"])
    assert_clean_failure(res, job if case == "job_dir_is_file" else train)


# ---- predict: damaged exports and instances ----------------------------------------------------


@pytest.fixture(scope="session")
def export(tmp_path_factory, mnist_files):
    """A SavedModel of a small CNN, exported by the trainer."""
    job = tmp_path_factory.mktemp("export_job")
    res = run([program("trainer"), "--train", mnist_files[0], "--test", mnist_files[1], "--steps",
               "3", "--batch-size", "8", "--job-dir", job, "--device", "cpu", "--model",
               "conv:4:3:same,relu,maxpool:2,flatten,dense:10"])
    assert_ok(res)
    exports = sorted((job / "export" / "exporter").iterdir())
    assert len(exports) == 1, exports
    return exports[0]


def instances_file(tmp_path, n=2):
    img = "[" + ",".join("[" + ",".join("[%d]" % ((r * 28 + c) % 256) for c in range(28)) + "]"
                         for r in range(28)) + "]"
    p = tmp_path / "in.json"
    p.write_text("\n".join([img] * n) + "\n")
    return p


def predict(model_dir, inst):
    return run([program("predict"), "--model-dir", model_dir, "--json-instances", inst])


def test_predict_intact(export, tmp_path):
    res = predict(export, instances_file(tmp_path))
    assert_ok(res)
    assert res.stdout.startswith('{"predictions": [[')


def test_predict_signature_name(export, tmp_path):
    """gcloud's --signature-name: serving_default runs; another is a usage error naming it."""
    inst = instances_file(tmp_path)
    args = [program("predict"), "--model-dir", export, "--json-instances", inst]
    res = run(args + ["--signature-name", "serving_default"])
    assert_ok(res)
    assert res.stdout.startswith('{"predictions": [[')
    assert_clean_failure(run(args + ["--signature-name", "classify"]), "--signature-name",
                         "'classify'", code=2)


@pytest.mark.parametrize("case", ["pb_empty", "pb_truncated", "pb_missing", "pb_is_dir",
                                  "index_missing", "index_truncated", "index_flipped",
                                  "data_truncated", "data_flipped", "data_missing",
                                  "model_dir_is_file", "model_dir_missing"])
def test_predict_damaged_export(export, tmp_path, case):
    d = tmp_path / "export"
    shutil.copytree(export, d)
    pb, index = d / "saved_model.pb", d / "variables" / "variables.index"
    data = d / "variables" / "variables.data-00000-of-00001"
    named = {"pb_empty": pb, "pb_truncated": pb, "pb_missing": pb, "pb_is_dir": pb,
             "index_missing": index, "index_truncated": index, "index_flipped": index,
             "data_truncated": data, "data_flipped": data, "data_missing": data,
             "model_dir_is_file": d, "model_dir_missing": d}[case]
    if case == "pb_empty":
        pb.write_bytes(b"")
    elif case == "pb_truncated":
        pb.write_bytes(pb.read_bytes()[:-7])
    elif case == "pb_is_dir":
        pb.unlink()
        pb.mkdir()
    elif case.endswith("_missing") and case != "model_dir_missing":
        named.unlink()
    elif case.endswith("_truncated"):
        named.write_bytes(named.read_bytes()[: named.stat().st_size // 2])
    elif case.endswith("_flipped"):
        b = bytearray(named.read_bytes())
        b[len(b) // 3] ^= 0x40
        named.write_bytes(bytes(b))
    elif case == "model_dir_is_file":
        shutil.rmtree(d)
        d.write_text("x")
    elif case == "model_dir_missing":
        shutil.rmtree(d)
    res = predict(d, instances_file(tmp_path))
    assert_clean_failure(res, named, code=1 if case != "model_dir_missing" else None)


def test_predict_export_with_another_input_shape(export, tmp_path):
    """An export whose signature declares [N,7,7,1] but whose weights fit the engine's 28x28x1
    model: refused (it used to read 28x28 floats per 7x7 instance, past the end of the batch)."""
    from tensorflow.core.protobuf import saved_model_pb2
    d = tmp_path / "export"
    shutil.copytree(export, d)
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((d / "saved_model.pb").read_bytes())
    inp = list(sm.meta_graphs[0].signature_def["serving_default"].inputs.values())[0]
    inp.tensor_shape.dim[1].size = inp.tensor_shape.dim[2].size = 7
    (d / "saved_model.pb").write_bytes(sm.SerializeToString())
    row = "[" + ",".join("[" + ",".join("[1]" for _ in range(7)) + "]" for _ in range(7)) + "]\n"
    inst = tmp_path / "in.json"
    inst.write_text(row * 64)
    assert_clean_failure(predict(d, inst), d, "7x7x1", code=1)


@pytest.mark.parametrize("case", ["malformed", "wrong_shape", "not_number", "empty",
                                  "blank_lines", "directory", "missing"])
def test_predict_bad_instances(export, tmp_path, case):
    p = instances_file(tmp_path, 3)
    lines = p.read_text().splitlines()
    if case == "malformed":
        lines[1] = lines[1][:-3]
    elif case == "wrong_shape":
        lines[2] = "[[[1]]]"
    elif case == "not_number":
        lines[1] = lines[1].replace("[5]", '["5"]', 1)
    elif case in ("empty", "blank_lines"):
        lines = [] if case == "empty" else ["", "  "]
    p.write_text("\n".join(lines) + ("\n" if case != "empty" else ""))
    if case == "directory":
        p.unlink()
        p.mkdir()
    elif case == "missing":
        p.unlink()
    res = predict(export, p)
    # an empty upload is an error, as gcloud's ReadInstances makes it (it printed
    # '{"predictions": []}' with exit 0, as if a prediction had been made)
    no_instance = ["No valid instance was found in input file."]
    needles = [p] + ({"malformed": ["line 2"], "wrong_shape": ["line 3"],
                      "not_number": ["line 2"], "empty": no_instance,
                      "blank_lines": no_instance}.get(case, []))
    assert_clean_failure(res, *needles, code=1)
    assert res.stdout == ""


def test_predict_empty_request(export, tmp_path):
    p = tmp_path / "req.json"
    p.write_text('{"instances": []}\n')
    res = run([program("predict"), "--model-dir", export, "--json-request", p])
    assert_clean_failure(res, p, "No valid instance was found in input file.", code=1)
    assert res.stdout == ""


def run_to_full_device(args):
    """args with standard output on /dev/full: every write to it fails with ENOSPC."""
    with open("/dev/full", "w") as full:
        res = subprocess.run([str(a) for a in args], stdout=full, stderr=subprocess.PIPE,
                             text=True, errors="replace", timeout=300,
                             env={**os.environ, **SAN_ENV})
    res.stdout = ""   # went to /dev/full
    return res


def test_unwritable_standard_output(export, tmp_path):
    """A result that cannot be written is an error naming standard output, not a silent exit 0
    (tfrecord count and verify exited 0; dump and predict exited 1 without a word)."""
    path = write_tfrecord(tmp_path / "x.tfrecords", [mnist_example(3), mnist_example(4, 1)])
    for args in ([program("tfrecord"), "count", path], [program("tfrecord"), "verify", path],
                 [program("tfrecord"), "dump", path],
                 [program("predict"), "--model-dir", export, "--json-instances",
                  instances_file(tmp_path)]):
        res = run_to_full_device(args)
        assert_clean_failure(res, "writing to standard output: No space left on device", code=1)
