"""The CPU path under valgrind (memcheck): no invalid access, no use of uninitialised memory, no
leak (definite or indirect), on success and on error paths.

Valgrind needs a build without sanitizers: $VALGRIND_BUILD_DIR (default <repo>/build, the release
build). The short form (the test command) runs the three programs on small inputs, their error
paths, and the io/ unit suites; VALGRIND_ALL=1 (the long run, docs/hardening.md) runs every unit
suite too (CNN_TEST_QUICK=1 shrinks the slow ones, as in the sanitizer run).
"""
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import REPO, mnist_example, write_tfrecord

VBUILD = pathlib.Path(os.environ.get("VALGRIND_BUILD_DIR", REPO / "build"))
ALL = os.environ.get("VALGRIND_ALL") == "1"
VALGRIND = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
            "--suppressions=" + str(pathlib.Path(__file__).with_name("valgrind.supp")),
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
            "--num-callers=30"]
MODEL = "conv:4:3:same,relu,maxpool:2,flatten,dense:10"
IO_SUITES = ["test_example", "test_tfrecord", "test_idx", "test_tensor_bundle", "test_checkpoint",
             "test_savedmodel", "test_atomic_file"]


def vbin(name):
    p = VBUILD / "bin" / name
    if not p.exists():
        pytest.fail(f"{p} is missing (VALGRIND_BUILD_DIR={VBUILD})")
    return str(p)


def vrun(args, expect_ok=True, timeout=1800):
    if not shutil.which("valgrind"):
        pytest.fail("valgrind is not installed (.ci/setup installs it)")
    env = dict(os.environ, OMP_NUM_THREADS="2", CK_FORK="no", CNN_TEST_QUICK="1")
    res = subprocess.run(VALGRIND + [str(a) for a in args], capture_output=True, text=True,
                         errors="replace", timeout=timeout, env=env)
    report = "\n".join(l for l in res.stderr.splitlines() if l.startswith("=="))
    assert res.returncode != 99 and not report, f"valgrind reports:\n{report[-6000:]}"
    assert res.returncode >= 0, f"killed by signal {-res.returncode}"
    if expect_ok:
        assert res.returncode == 0, f"exit {res.returncode}:\n{res.stderr[-3000:]}"
    else:
        assert res.returncode > 0, "expected an error exit"
    return res


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("vg")
    train = write_tfrecord(d / "train.tfrecords", [mnist_example(i % 10, i) for i in range(64)])
    test = write_tfrecord(d / "test.tfrecords", [mnist_example(i % 10, i) for i in range(32)])
    bad = write_tfrecord(d / "bad.tfrecords",
                         [mnist_example(1), mnist_example(2, 0, {"label": ("int64", [12])})])
    return d, train, test, bad


def test_programs_under_valgrind(data):
    d, train, test, bad = data
    job = d / "job"
    vrun([vbin("tfrecord"), "verify", train, test])
    corrupt = d / "corrupt.tfrecords"
    corrupt.write_bytes(train.read_bytes()[:3000])
    vrun([vbin("tfrecord"), "verify", corrupt], expect_ok=False)
    args = [vbin("trainer"), "--train", train, "--test", test, "--job-dir", job, "--device", "cpu",
            "--model", MODEL, "--batch-size", "8", "--threads", "2", "--log-step-count-steps", "1"]
    vrun(args + ["--steps", "3", "--save-checkpoints-steps", "2"])
    vrun(args + ["--steps", "5"])                               # resume
    vrun(args[:2] + [bad] + args[3:] + ["--steps", "1"], expect_ok=False)
    export = sorted((job / "export" / "exporter").iterdir())[-1]
    inst = d / "in.json"
    inst.write_text("[" + ",".join("[" + ",".join("[1]" for _ in range(28)) + "]"
                                   for _ in range(28)) + "]\n")
    vrun([vbin("predict"), "--model-dir", export, "--json-instances", inst])
    inst.write_text("[[[1]]]\n")
    vrun([vbin("predict"), "--model-dir", export, "--json-instances", inst], expect_ok=False)


def unit_suites():
    if ALL:
        return sorted(p.stem for p in (REPO / "tests").glob("test_*.c"))
    return IO_SUITES


@pytest.mark.parametrize("suite", unit_suites())
def test_unit_suite_under_valgrind(suite):
    vrun([vbin(suite)])
