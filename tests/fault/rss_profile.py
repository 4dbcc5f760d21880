#!/usr/bin/env python3
"""Memory profile of a long CPU training run (the "flat memory profile" check of
docs/hardening.md): runs the trainer on the shipped MNIST for --steps steps, samples its resident
set size every --every seconds, and reports the peak and the growth during training.

    python3 tests/fault/rss_profile.py --steps 2000 [--model SPEC] [--build-dir build]

Exit status 1 when the RSS grows by more than --max-growth (default 5%) between the end of the
first tenth of the training steps and the last training step (leaks grow with steps; the
evaluation at the end may take more, once). Not part of the test command: it takes minutes.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[2]


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--model", default=None, help="--model spec (default: the original CNN)")
    ap.add_argument("--build-dir", default=os.environ.get("BUILD_DIR", REPO / "build"))
    ap.add_argument("--every", type=float, default=2.0)
    ap.add_argument("--max-growth", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    bindir = pathlib.Path(a.build_dir) / "bin"
    with tempfile.TemporaryDirectory(prefix="rss_profile_") as d:
        d = pathlib.Path(d)
        for split, stem in (("train", "train"), ("test", "t10k")):
            subprocess.run([bindir / "tfrecord", "from-idx", "--images",
                            REPO / f"data/mnist/{stem}-images-idx3-ubyte.gz", "--labels",
                            REPO / f"data/mnist/{stem}-labels-idx1-ubyte.gz", "--out",
                            d / f"{split}.tfrecords"], check=True, capture_output=True)
        cmd = [bindir / "trainer", "--train", d / "train.tfrecords", "--test", d / "test.tfrecords",
               "--steps", str(a.steps), "--job-dir", d / "job", "--device", "cpu",
               "--save-checkpoints-steps", "500", "--log-step-count-steps", "100",
               "--threads", str(a.threads)]
        if a.model:
            cmd += ["--model", a.model]
        t0 = time.monotonic()
        p = subprocess.Popen([str(c) for c in cmd], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             text=True)
        samples, steps_at = [], []          # (t, rss kB); (t, global step) from the loss lines
        lines = []

        def reader():
            for line in p.stderr:
                lines.append(line)
                m = re.search(r"loss = \S+, step = (\d+)", line)
                if m:
                    steps_at.append((time.monotonic() - t0, int(m.group(1))))

        th = threading.Thread(target=reader)
        th.start()
        while p.poll() is None:
            r = rss_kb(p.pid)
            if r:
                samples.append((time.monotonic() - t0, r))
            time.sleep(a.every)
        th.join()
        wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.stderr.write("".join(lines[-30:]))
        print(f"trainer failed: exit {p.returncode}")
        return 1
    peak = max(r for _, r in samples)
    tenth = next((t for t, s in steps_at if s >= a.steps // 10), None)
    last = steps_at[-1][0] if steps_at else None
    train = [r for t, r in samples if tenth is not None and tenth <= t <= last]
    print(f"model: {a.model or 'the original CNN'}; steps: {a.steps}; wall: {wall:.0f} s; "
          f"samples: {len(samples)} every {a.every} s")
    print(f"peak RSS (sampled): {peak / 1024:.1f} MiB")
    if train:
        lo, hi = train[0], max(train)
        growth = (hi - lo) / lo
        print(f"RSS from step {a.steps // 10} to step {steps_at[-1][1]}: {lo / 1024:.1f} -> "
              f"max {hi / 1024:.1f} MiB (growth {100 * growth:.2f}%)")
        for t, r in samples[:: max(1, len(samples) // 12)]:
            print(f"  t={t:7.1f} s  rss={r / 1024:8.1f} MiB")
        if growth > a.max_growth:
            print("FAIL: memory grows during training")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
