"""The trainer and predict with --device cuda, their kernels run by the CUDA emulator (tests/emu:
emu_trainer and emu_predict, built where CUDA is off, as in CI's sanitizer build), against the
same programs on --device cpu. Most sessions have no GPU; this is what checks, on every commit,
that the whole job (resident data, checkpoints, evaluations, exports, resume) works through the
CUDA backend and computes what the CPU does. Kernel by kernel and the original model's fused
paths: emu_test_kernels and emu_test_backend_cuda. A small CNN of the original's shape keeps the
emulator's time to seconds (the original model takes ~1 minute a step under ASan).
"""
import re

import pytest

from conftest import BUILD_DIR, assert_clean_failure, assert_ok, program, run

MODEL = ("conv:8:5:same,relu,maxpool:2,conv:16:5:same,relu,maxpool:2,flatten,dense:32,relu,"
         "dropout:0.4,dense:10")


@pytest.fixture(scope="module")
def emu():
    if not (BUILD_DIR / "bin" / "emu_trainer").exists() and \
            (BUILD_DIR / "bin" / "gpu_test_kernels").exists():
        pytest.skip("a CUDA build: its trainer runs --device cuda on a GPU (tests/gpu/run.sh)")
    return program("emu_trainer"), program("emu_predict")


def train(trainer, device, job, steps, mnist_files):
    res = run([trainer, "--train", mnist_files[0], "--test", mnist_files[1], "--job-dir", job,
               "--steps", steps, "--batch-size", "8", "--device", device, "--model", MODEL,
               "--save-checkpoints-steps", "2", "--log-step-count-steps", "1", "--eval-steps",
               "2", "--eval-batch-size", "16", "--throttle-secs", "0", "--threads", "1"])
    assert_ok(res)
    return res.stderr


def numbers(log, pattern):
    return [float(x) for x in re.findall(pattern, log)]


def close(a, b, rel):
    return len(a) == len(b) and all(abs(x - y) <= rel * max(abs(y), 1e-3) for x, y in zip(a, b))


def test_the_job_on_the_emulated_gpu_computes_what_the_cpu_does(emu, tf, tmp_path, mnist_files):
    emu_trainer, emu_predict = emu
    logs = {}
    for device, trainer in (("cuda", emu_trainer), ("cpu", program("trainer"))):
        job = tmp_path / device
        first = train(trainer, device, job, "4", mnist_files)
        resumed = train(trainer, device, job, "6", mnist_files)   # from model.ckpt-4
        assert "Restoring parameters from" in resumed and "model.ckpt-4" in resumed
        logs[device] = (first + resumed, job)
    (cuda_log, cuda_job), (cpu_log, cpu_job) = logs["cuda"], logs["cpu"]
    assert "cuda emulator: thread order" in cuda_log   # ran on the emulator
    # the losses of steps 1-6 and every evaluation (steps 2, 4, 6), as the CPU's: the kernels
    # sum in other orders (test_train's bound for a run's first steps is 1e-3)
    loss = r"loss = ([0-9.e+-]+), step = \d+"
    assert len(numbers(cuda_log, loss)) == 6
    assert close(numbers(cuda_log, loss), numbers(cpu_log, loss), 1e-3), (cuda_log, cpu_log)
    for key in ("accuracy", "loss"):
        pattern = r"Saving dict for global step \d+: .*?\b%s = ([0-9.e+-]+)" % key
        assert len(numbers(cuda_log, pattern)) == 3
        assert close(numbers(cuda_log, pattern), numbers(cpu_log, pattern), 1e-3)
    # every variable of the last checkpoint, Adam's slots included, read by TF
    cuda_ckpt = tf.train.load_checkpoint(str(cuda_job / "model.ckpt-6"))
    cpu_ckpt = tf.train.load_checkpoint(str(cpu_job / "model.ckpt-6"))
    names = sorted(cpu_ckpt.get_variable_to_shape_map())
    assert sorted(cuda_ckpt.get_variable_to_shape_map()) == names
    assert any(n.endswith("/Adam_1") for n in names)
    for n in names:
        a, b = cuda_ckpt.get_tensor(n), cpu_ckpt.get_tensor(n)
        scale = max(float(abs(b).max()), 1e-6) if b.size else 1.0
        assert a.shape == b.shape and float(abs(a - b).max()) <= 1e-3 * scale, n
    # the last export served on the emulated GPU, as predict serves it on the CPU
    export = sorted((cuda_job / "export" / "exporter").iterdir())[-1]
    instances = export / "assets.extra" / "example_instances.json"
    got = run([emu_predict, "--model-dir", export, "--json-instances", instances, "--device",
               "cuda"])
    want = run([program("predict"), "--model-dir", export, "--json-instances", instances])
    assert_ok(got)
    assert_ok(want)
    probs = r"([0-9.]+(?:e-?\d+)?)"
    assert close(numbers(got.stdout, probs), numbers(want.stdout, probs), 1e-4)
    assert len(numbers(got.stdout, probs)) == 30


def test_cudnn_is_refused_on_the_emulator(emu, tmp_path, mnist_files):
    res = run([emu[0], "--train", mnist_files[0], "--test", mnist_files[1], "--job-dir",
               tmp_path / "job", "--steps", "1", "--device", "cudnn", "--model", MODEL])
    assert_clean_failure(res, "device cudnn", "emulator")
