"""The trainer under faults: SIGKILL at random moments (many times), SIGTERM, a full disk.

Nothing may be lost: every rerun resumes from the newest complete checkpoint, finishes and
exports; no half-written checkpoint or export is ever taken for a complete one; a failed write
is reported and leaves the earlier checkpoints and exports intact. "Complete" is judged by
TensorFlow itself (tf.train.load_checkpoint reads every tensor, CRCs checked).

FAULT_KILLS (default 12) sets the number of SIGKILLs; the long run (docs/hardening.md) uses 200.
"""
import os
import pathlib
import random
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import SAN_ENV, assert_clean_failure, assert_ok, no_sanitizer_report, program, run

MODEL = "conv:4:3:same,relu,maxpool:2,flatten,dense:10"
KILLS = int(os.environ.get("FAULT_KILLS", "12"))


def trainer_args(train, test, job, steps, *extra):
    return [program("trainer"), "--train", train, "--test", test, "--job-dir", job, "--steps",
            str(steps), "--device", "cpu", "--model", MODEL, "--batch-size", "16",
            "--log-step-count-steps", "2", "--save-summary-steps", "2", "--threads", "1",
            *[str(e) for e in extra]]


def resume_point(job, done):
    """The checkpoint a rerun must restore, by TF's latest_checkpoint: the one the state file
    names when it is complete; else the newest complete one (done: complete_checkpoints)."""
    state = job / "checkpoint"
    named = re.search(r'^model_checkpoint_path: "(.*)"$', state.read_text(), re.M) \
        if state.exists() else None
    if named:
        path = named.group(1) if named.group(1).startswith("/") else str(job / named.group(1))
        if path in done.values():
            return path
    return done[max(done)] if done else None


def complete_checkpoints(tf, job):
    """Steps of the checkpoints in job that TensorFlow reads completely, {step: prefix}."""
    out = {}
    for index in job.glob("model.ckpt-*.index"):
        prefix = str(index)[: -len(".index")]
        m = re.fullmatch(r"model\.ckpt-(\d+)", pathlib.Path(prefix).name)
        if not m:
            continue
        try:
            r = tf.train.load_checkpoint(prefix)
            for name in r.get_variable_to_shape_map():
                r.get_tensor(name)
            if int(r.get_tensor("global_step")) != int(m.group(1)):
                raise ValueError("global_step differs from the file name")
        except Exception:   # noqa: BLE001  (incomplete: not taken)
            continue
        out[int(m.group(1))] = prefix
    return out


def check_listed_checkpoints_complete(tf, job):
    """Every checkpoint that the `checkpoint` state file names must be complete."""
    state = job / "checkpoint"
    if not state.exists():
        return
    listed = re.findall(r'^\w+: "([^"]*)"$', state.read_text(), re.M)
    done = complete_checkpoints(tf, job)
    for p in listed:
        path = p if os.path.isabs(p) else str(job / p)
        assert path in done.values(), f"`checkpoint` names {p}, which is not complete"


def check_exports(export_base, predict_input):
    """Every version directory (10 digits) is a complete export that predict can serve."""
    versions = sorted(p for p in export_base.glob("*") if re.fullmatch(r"\d{10}", p.name))
    for v in versions:
        res = run([program("predict"), "--model-dir", v, "--json-instances", predict_input])
        assert_ok(res)
    return versions


def temp_litter(job):
    return sorted(str(p.relative_to(job)) for p in job.rglob("*")
                  if ".tmp" in p.name or p.name.startswith("temp-"))


@pytest.fixture
def predict_input(tmp_path):
    p = tmp_path / "one.json"
    p.write_text("[" + ",".join("[" + ",".join("[0]" for _ in range(28)) + "]"
                                for _ in range(28)) + "]\n")
    return p


@pytest.fixture(scope="module")
def kill_at(tmp_path_factory):
    """tests/fault/kill_at.c built as an LD_PRELOAD library."""
    out = tmp_path_factory.mktemp("kill_at") / "kill_at.so"
    src = pathlib.Path(__file__).with_name("kill_at.c")
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-O1", "-o", str(out), str(src),
                    "-ldl"], check=True)
    return str(out)


def test_sigkill_at_random_moments(tf, tmp_path, mnist_files, predict_input, kill_at):
    """KILLS runs killed, each rerun resuming from the checkpoint the state file names, always
    complete (one saved after it may be complete too, its state file not yet written); then one run
    to the end, which exports. Half the kills come at a random time, half at a random commit
    point (the entry of the Nth fsync/rename/mkdir/unlink: kill_at.c), i.e. in the middle of a
    checkpoint, state file, event file or export write."""
    train, test = mnist_files
    job = tmp_path / "job"
    steps = 40
    args = trainer_args(train, test, job, steps, "--save-checkpoints-steps", "2",
                        "--keep-checkpoint-max", "3", "--exports-to-keep", "2")
    rng = random.Random(int(os.environ.get("FAULT_SEED", "1")))
    # a whole run first: its duration and its number of commit points set the kill ranges
    count_file = tmp_path / "calls"
    t0 = time.monotonic()
    env_preload = {"LD_PRELOAD": kill_at, "ASAN_OPTIONS": SAN_ENV["ASAN_OPTIONS"] +
                   ":verify_asan_link_order=0"}
    assert_ok(run(args, env={**env_preload, "FAULT_COUNT_FILE": str(count_file)}))
    full = (time.monotonic() - t0) * 0.8    # most timed kills land before the end
    points = int(count_file.read_text().split()[0])
    assert points > 20, points
    shutil.rmtree(job)

    stats = {"killed_timed": 0, "killed_at_commit_point": 0, "finished": 0,
             "left_a_temp_file": 0, "resumed": 0}
    expect_restore = None
    for i in range(KILLS):
        env = {**os.environ, **SAN_ENV, "OMP_NUM_THREADS": "1"}
        targeted = i % 2 == 1
        if targeted:
            # (a resumed run makes fewer calls than a whole one: aim in its first two thirds)
            env.update(env_preload, FAULT_KILL_AT=str(rng.randint(1, points * 2 // 3)))
        litter_before = set(temp_litter(job)) if job.exists() else set()
        proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", env=env)
        if not targeted:
            time.sleep(rng.uniform(0.0, full))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        if proc.returncode == -signal.SIGKILL:
            stats["killed_at_commit_point" if targeted else "killed_timed"] += 1
            stats["left_a_temp_file"] += bool(set(temp_litter(job)) - litter_before
                                               if job.exists() else False)
        else:
            no_sanitizer_report(subprocess.CompletedProcess(args, proc.returncode, out, err))
            assert proc.returncode == 0, err[-3000:]
            stats["finished"] += 1
        restored = re.search(r"Restoring parameters from (\S+)", err)
        if expect_restore is None:
            assert restored is None, f"run {i}: restored {restored.group(1)} from an empty job dir"
        elif restored or proc.returncode == 0 or re.search(r"Saving checkpoints|loss = |Skipping", err):
            # (a run killed before it got to the resume step says nothing: nothing to check)
            assert restored, f"run {i} did not resume (newest complete: {expect_restore}):\n{err[-2000:]}"
            assert restored.group(1) == expect_restore, (
                f"run {i} resumed from {restored.group(1)}, newest complete is {expect_restore}")
            stats["resumed"] += 1
        # what the next run must find: the checkpoint the state file names (complete: the
        # state file is written last); nothing listed in `checkpoint` and no export version
        # directory is half-written
        done = complete_checkpoints(tf, job) if job.exists() else {}
        expect_restore = resume_point(job, done) if done else None
        if job.exists():
            check_listed_checkpoints_complete(tf, job)
            check_exports(job / "export" / "exporter", predict_input)
        if proc.returncode == 0:        # finished: start over, for more kills in training
            shutil.rmtree(job)
            expect_restore = None
    litter = temp_litter(job) if job.exists() else []
    print(f"SIGKILL loop: {stats}; temporary files left in the job dir: {len(litter)}")
    # the last word: a run that is not killed finishes from wherever the job dir is
    res = run(args)
    assert_ok(res)
    if expect_restore:
        assert f"Restoring parameters from {expect_restore}" in res.stderr
    done = complete_checkpoints(tf, job)
    assert max(done) == steps
    assert check_exports(job / "export" / "exporter", predict_input), "no export"
    if "Saving checkpoints" in res.stderr:      # a save removes the temporaries of killed saves
        assert [p for p in temp_litter(job) if not p.startswith("export")] == []
    assert stats["killed_timed"] + stats["killed_at_commit_point"] >= KILLS // 3, stats
    assert stats["resumed"] >= 1, stats


def test_sigterm_saves_and_exits_cleanly(tf, tmp_path, mnist_files, predict_input):
    """No log line or summary is due for a million steps, yet the signal is answered within
    seconds: a chunk of steps lasts about a second (it used to last until the next line)."""
    train, test = mnist_files
    job = tmp_path / "job"
    args = trainer_args(train, test, job, 1000000, "--save-checkpoints-secs", "3600",
                        "--log-step-count-steps", "1000000", "--save-summary-steps", "0")
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            env={**os.environ, **SAN_ENV, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (job / "model.ckpt-0.index").exists():
        time.sleep(0.1)
    time.sleep(3.0)                                   # some steps beyond the first checkpoint
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=120)
    assert time.monotonic() - sent < 15, err[-3000:]   # a chunk, a checkpoint (under ASan)
    res = subprocess.CompletedProcess(args, proc.returncode, out, err)
    no_sanitizer_report(res)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err[-3000:])
    m = re.search(r"Received SIGTERM at global step (\d+)", err)
    assert m, err[-3000:]
    step = int(m.group(1))
    assert step > 0
    done = complete_checkpoints(tf, job)
    assert max(done) == step, f"SIGTERM at step {step}, newest complete checkpoint {max(done)}"
    assert temp_litter(job) == []
    # the rerun resumes from there, finishes and exports
    res = run(trainer_args(train, test, job, step + 4))
    assert_ok(res)
    assert f"Restoring parameters from {done[step]}" in res.stderr
    assert max(complete_checkpoints(tf, job)) == step + 4
    assert check_exports(job / "export" / "exporter", predict_input)


def test_sigterm_during_the_final_export_lets_it_finish(tf, tmp_path, mnist_files,
                                                       predict_input, kill_at):
    """A stop signal after training (here a rerun at --steps, at the export's first commit
    point) lets the evaluation and export finish, then exits with the signal's status; it used to
    kill at once there, and to be ignored (exit 0) after training."""
    train, test = mnist_files
    job = tmp_path / "job"
    assert_ok(run(trainer_args(train, test, job, 4)))
    exports = sorted((job / "export" / "exporter").iterdir())
    res = run(trainer_args(train, test, job, 4),
              env={"LD_PRELOAD": kill_at, "FAULT_KILL_AT": "1",
                   "FAULT_SIGNAL": str(int(signal.SIGTERM)),
                   "ASAN_OPTIONS": SAN_ENV["ASAN_OPTIONS"] + ":verify_asan_link_order=0"})
    no_sanitizer_report(res)
    assert res.returncode == 128 + signal.SIGTERM, (res.returncode, res.stderr[-3000:])
    assert "Received SIGTERM after training: the final evaluation and export finished" \
        in res.stderr
    after = sorted((job / "export" / "exporter").iterdir())
    assert len(after) == len(exports) + 1
    assert check_exports(job / "export" / "exporter", predict_input)
    assert temp_litter(job) == []
    # a fresh job signalled at its last commit point (its final checkpoint's, evaluation's or
    # export's: after training): the same
    count = tmp_path / "count"
    assert_ok(run(trainer_args(train, test, tmp_path / "dry", 4),
                  env={"LD_PRELOAD": kill_at, "FAULT_COUNT_FILE": str(count),
                       "ASAN_OPTIONS": SAN_ENV["ASAN_OPTIONS"] + ":verify_asan_link_order=0"}))
    last = count.read_text().split()[-1]
    job2 = tmp_path / "job2"
    res = run(trainer_args(train, test, job2, 4),
              env={"LD_PRELOAD": kill_at, "FAULT_KILL_AT": last,
                   "FAULT_SIGNAL": str(int(signal.SIGTERM)),
                   "ASAN_OPTIONS": SAN_ENV["ASAN_OPTIONS"] + ":verify_asan_link_order=0"})
    no_sanitizer_report(res)
    assert res.returncode == 128 + signal.SIGTERM, (res.returncode, res.stderr[-3000:])
    assert "the final evaluation and export finished; stopping" in res.stderr
    assert check_exports(job2 / "export" / "exporter", predict_input)
    assert max(complete_checkpoints(tf, job2)) == 4


def test_a_cut_checkpoint_is_passed_over_with_a_warning_never_trained_over(tmp_path, mnist_files):
    """The checkpoint the state file names, cut short (a partial copy or sync): the newest
    complete one is restored, with a warning naming the cut one; when none is complete, the job
    stops before training and leaves the files as they were (it used to train afresh over them,
    without a word)."""
    train, test = mnist_files
    job = tmp_path / "job"
    assert_ok(run(trainer_args(train, test, job, 4, "--save-checkpoints-steps", "2",
                               "--keep-checkpoint-max", "0")))
    data4 = job / "model.ckpt-4.data-00000-of-00001"
    os.truncate(data4, data4.stat().st_size // 2)
    res = run(trainer_args(train, test, job, 6, "--save-checkpoints-steps", "2",
                           "--keep-checkpoint-max", "0"))
    assert_ok(res)
    assert re.search(r"WARNING:tensorflow:.*model\.ckpt-4, named by the checkpoint file, is "
                     r"missing or incomplete .*resuming from .*model\.ckpt-2", res.stderr), \
        res.stderr[-3000:]
    assert f"Restoring parameters from {job}/model.ckpt-2" in res.stderr
    # only cut checkpoints: refused before training, nothing written
    lone = tmp_path / "lone"
    assert_ok(run(trainer_args(train, test, lone, 2, "--keep-checkpoint-max", "1")))
    data2 = lone / "model.ckpt-2.data-00000-of-00001"
    os.truncate(data2, data2.stat().st_size // 2)
    before = {p.name: p.read_bytes() for p in lone.iterdir() if p.is_file()}
    res = run(trainer_args(train, test, lone, 4))
    assert_clean_failure(res, "no complete checkpoint to resume from", "model.ckpt-2", code=1)
    assert {p.name: p.read_bytes() for p in lone.iterdir() if p.is_file()} == before


def test_temporaries_of_killed_saves_are_removed(tf, tmp_path, mnist_files):
    """What a save killed mid-write leaves (.model.ckpt-N.*.tmp-PID-K, .checkpoint.tmp-PID-K;
    without the dot from earlier versions) is never read, and the next successful save removes
    it: preemptions do not fill the disk."""
    train, test = mnist_files
    job = tmp_path / "job"
    assert_ok(run(trainer_args(train, test, job, 2)))
    stale = [job / ".model.ckpt-4.data-00000-of-00001.tmp-999999-0",
             job / ".model.ckpt-4.index.tmp-999999-1", job / ".checkpoint.tmp-999999-2",
             job / "model.ckpt-4.data-00000-of-00001.tmp-999998-0",
             job / "model.ckpt-4.index.tmp-999998-1", job / "checkpoint.tmp-999998-2"]
    for p in stale:
        p.write_bytes(b"half a file")
    keep = [job / "model.ckpt-4.data.tmp-notes", job / "notes.tmp-999999-0",
            job / ".notes.tmp-999999-0"]   # not ours
    for p in keep:
        p.write_bytes(b"x")
    assert_ok(run(trainer_args(train, test, job, 4)))
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in keep)
    assert max(complete_checkpoints(tf, job)) == 4


def _limit_file_size(limit):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)    # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def _full_disk_case(tf, job, train, test, predict_input, fail_run, disk_error):
    """Run to step 4 (checkpoint + export), then fail_run() must fail on a write, reporting it,
    with step 4's checkpoint and export intact; then an unhindered run resumes and finishes."""
    assert_ok(run(trainer_args(train, test, job, 4)))
    before = complete_checkpoints(tf, job)
    assert max(before) == 4
    exports = check_exports(job / "export" / "exporter", predict_input)
    assert len(exports) == 1
    snapshot = {p: p.read_bytes() for p in job.rglob("*") if p.is_file() and "events" not in p.name}

    res = fail_run()
    assert_clean_failure(res, disk_error, code=1)
    assert re.search(r"ERROR:tensorflow:.*(/|model\.ckpt)", res.stderr), res.stderr[-2000:]
    after = complete_checkpoints(tf, job)
    assert after.get(4) == before[4], "step 4's checkpoint was lost"
    assert max(after) >= 4
    check_listed_checkpoints_complete(tf, job)
    assert check_exports(job / "export" / "exporter", predict_input)[:1] == exports
    for p, data in snapshot.items():
        if p.name != "checkpoint":
            assert p.exists() and p.read_bytes() == data, f"{p} changed or vanished"
    assert temp_litter(job) == [], "a failed write left its temporary file"

    res = run(trainer_args(train, test, job, 8))
    assert_ok(res)
    assert "Restoring parameters from" in res.stderr
    assert max(complete_checkpoints(tf, job)) == 8


def test_full_disk_file_size_limit(tf, tmp_path, mnist_files, predict_input):
    """RLIMIT_FSIZE below a checkpoint's size: the next save fails with EFBIG."""
    train, test = mnist_files
    job = tmp_path / "job"
    # the model's checkpoint data (weights + Adam slots) is ~95 KB; events and exports are smaller
    limit = 64 * 1024
    _full_disk_case(tf, job, train, test, predict_input,
                    lambda: run(trainer_args(train, test, job, 8), preexec_fn=_limit_file_size(limit)),
                    "File too large")


def test_full_disk_tmpfs(tf, tmp_path, mnist_files, predict_input):
    """A real full disk (ENOSPC) on a small tmpfs, where mounting is allowed."""
    train, test = mnist_files
    mnt = pathlib.Path(tempfile.mkdtemp(prefix="fault_tmpfs_"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); "
                    "test_full_disk_file_size_limit covers write errors")
    try:
        job = mnt / "job"

        def fill_and_run():
            filler = mnt / "filler"
            free = shutil.disk_usage(mnt).free
            with open(filler, "wb") as f:          # leave 32 KB: less than one checkpoint
                f.write(b"\0" * max(0, free - 32 * 1024))
            try:
                return run(trainer_args(train, test, job, 8))
            finally:
                filler.unlink()

        _full_disk_case(tf, job, train, test, predict_input, fill_and_run,
                        "No space left on device")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()


def test_failed_in_place_export_keeps_the_earlier_model(tf, tmp_path, mnist_files, kill_at):
    """Vertex AI's in-place export (--aip-model-dir): when the new tree cannot be renamed into
    place, the earlier SavedModel is moved back, whole, and the run fails naming the export;
    nothing of ours is left beside it, and a user's temp-<name> beside it is never touched."""
    train, test = mnist_files
    model = tmp_path / "out" / "model"
    theirs = tmp_path / "out" / "temp-model"
    theirs.mkdir(parents=True)
    (theirs / "notes.txt").write_text("mine")
    args = trainer_args(train, test, tmp_path / "job", 2, "--aip-model-dir", model)
    assert_ok(run(args))
    variables = str(model / "variables" / "variables")
    assert int(tf.train.load_checkpoint(variables).get_tensor("global_step")) == 2
    env = {"LD_PRELOAD": kill_at, "FAULT_FAIL_RENAME": ".model.tmp-",
           "ASAN_OPTIONS": SAN_ENV["ASAN_OPTIONS"] + ":verify_asan_link_order=0"}
    res = run(trainer_args(train, test, tmp_path / "job", 4, "--aip-model-dir", model), env=env)
    assert_clean_failure(res, ".model.tmp-", code=1)
    assert int(tf.train.load_checkpoint(variables).get_tensor("global_step")) == 2
    assert sorted(p.name for p in model.parent.iterdir()) == ["model", "temp-model"]
    assert (theirs / "notes.txt").read_text() == "mine"


def test_sagemaker_failure_file_and_checkpoint_dir(tmp_path, mnist_files):
    """On SageMaker (its /opt/ml moved by CNN_OPT_ML): a failed job writes its reason to
    /opt/ml/output/failure; without a job dir the checkpoints go to /opt/ml/checkpoints, which
    SageMaker syncs, and a restarted (spot) job resumes from there."""
    train, test = mnist_files
    root = tmp_path / "opt_ml"
    (root / "output").mkdir(parents=True)
    env = {"CNN_OPT_ML": str(root)}
    common = ["--test", test, "--device", "cpu", "--model", MODEL, "--batch-size", "16",
              "--threads", "1"]
    res = run([program("trainer"), "--train", tmp_path / "missing.tfrecords", *common,
               "--steps", "4"], env=env)
    assert_clean_failure(res, "missing.tfrecords")
    failure = (root / "output" / "failure").read_text()
    assert "missing.tfrecords" in failure, failure

    (root / "checkpoints").mkdir()
    res = run([program("trainer"), "--train", train, *common, "--steps", "4"], env=env)
    assert_ok(res)
    assert f"checkpoint directory as model directory: {root}/checkpoints" in res.stderr
    assert (root / "checkpoints" / "model.ckpt-4.index").exists()
    res = run([program("trainer"), "--train", train, *common, "--steps", "8"], env=env)
    assert_ok(res)
    assert f"Restoring parameters from {root}/checkpoints/model.ckpt-4" in res.stderr
    assert (root / "checkpoints" / "model.ckpt-8.index").exists()


def test_unwritable_job_dir_fails_before_any_work(mnist_files, unprivileged):
    """A job dir the job may not write into, or not make, is reported before the data is decoded
    or the model made: the error names it, and nothing is written. (A job whose data is bad
    leaves no job dir either: tests/tf/test_trainer_e2e.py.)"""
    train, test = mnist_files
    d = pathlib.Path(tempfile.mkdtemp(prefix="fault_readonly_"))
    try:
        d.chmod(0o755)
        job = d / "job"
        job.mkdir()
        job.chmod(0o555)
        res = run(unprivileged + trainer_args(train, test, job, 4))
        assert_clean_failure(res, str(job), "cannot write into the job dir", "Permission denied",
                             code=1)
        assert "Loaded" not in res.stderr
        assert list(job.iterdir()) == []
        # one to be made inside it: the error names the directory it cannot be made in
        res = run(unprivileged + trainer_args(train, test, job / "a" / "b", 4))
        assert_clean_failure(res, f"{job}/a/b: cannot make the job dir in {job}",
                             "Permission denied", code=1)
        assert list(job.iterdir()) == []
    finally:
        shutil.rmtree(d)
