#!/usr/bin/env python3
"""tests/gpu/report.py OUT: what one tests/gpu/run.sh run says about each speed switch.

run.sh prints every log's tables; this reads the same logs in OUT and puts the decisions in one
place, so that a short GPU session can flip defaults from one run:
  1. the step (bench_step.log, CUDA graph): ours against PyTorch (pytorch.log) and the goal, and
     each link of bench_step's engine chain (each engine is the one above it less one change):
     the time the change saves, and whether to keep it or flip its switch back; the same for
     each of GPU run 5's flips alone (FLIPPED: the defaults against the defaults with that
     switch at its old setting); and each candidate (the defaults with one switch runs 4 and 5
     timed slower, or not yet timed): make it the default or not;
  2. the kernels (bench_kernels.log) against the first GPU run's versions (bench_gemm1.log) and
     the libraries, the rows under 90% of them marked;
  3. the tile sweep (bench_sweep.log): the ops where another tile or split-K count beats the
     default by more than 5%;
  4. the captured graphs (launches, edges, programmatic edges, forks: train.log,
     bench_step.log) and the original job (job.log: steps/s, training time, test accuracy), its
     step against the bench's (ours-cuda, and the rows with
     MNIST's images and with the job's 12,000 steps: which one the job's extra time follows);
  5. with --full, each kernel's time inside one eager step (profile-ENGINE-BATCH.csv, written
     by ncu through tests/gpu/profile_step.sh), per engine, and their sums.
Missing logs are reported as such. Exit status 0 (a report, not a test); 2 on bad usage.
"""
import csv
import os
import re
import sys

# (newer engine, older engine, docs/gpu.md item, the switch that restores the older one)
CHAIN = [
    # GPU run 5's three flips together (items 31, 35, 38: the defaults since run 5)
    ("ours-cuda", "ours-cuda-run5", "31+35+38",
     "CNN_XENT_V=2 CNN_CUDA_CONV_POOL_FWD=1 CNN_CUDA_DATA_FROM_POOL=0"),
    ("ours-cuda-run5", "ours-cuda-gemm4", "30", "CNN_GEMM_V=4"),
    ("ours-cuda-gemm4", "ours-cuda-dense2", "33", "CNN_DENSE_V=2"),
    ("ours-cuda-dense2", "ours-cuda-graph1", "25", "CNN_CUDA_GRAPH_STEPS=1"),
    ("ours-cuda-graph1", "ours-cuda-streams0", "17", "CNN_CUDA_STREAMS=0"),
    ("ours-cuda-streams0", "ours-cuda-pdl0", "16", "CNN_CUDA_PDL=0"),
    ("ours-cuda-pdl0", "ours-cuda-dense1", "15", "CNN_DENSE_V=1"),
    ("ours-cuda-dense1", "ours-cuda-fused2", "14", "CNN_CUDA_FUSED=2"),
    ("ours-cuda-fused2", "ours-cuda-fused1", "13", "CNN_CUDA_FUSED=1"),
    ("ours-cuda-fused1", "ours-cuda-gemm3", "11", "CNN_GEMM_V=3"),
    ("ours-cuda-gemm3", "ours-cuda-run3", "8-10, 23", "CNN_POOL_V=2 CNN_ADAM_V=1 CNN_XENT_V=1"),
]
# GPU run 5's flips, each alone: (the defaults' engine, the defaults with the old setting,
# docs/gpu.md item, the switch that restores it), judged as the chain's links (keep or flip back).
FLIPPED = [
    ("ours-cuda-mnist", "ours-cuda-run5-mnist", "31+35+38 on MNIST",
     "CNN_XENT_V=2 CNN_CUDA_CONV_POOL_FWD=1 CNN_CUDA_DATA_FROM_POOL=0"),
    ("ours-cuda", "ours-cuda-xent2", "31", "CNN_XENT_V=2"),
    ("ours-cuda", "ours-cuda-convpool1", "35", "CNN_CUDA_CONV_POOL_FWD=1"),
    ("ours-cuda-mnist", "ours-cuda-convpool1-mnist", "35 on MNIST", "CNN_CUDA_CONV_POOL_FWD=1"),
    ("ours-cuda", "ours-cuda-dfp0", "38 (random images: conv2's ReLUs dead)",
     "CNN_CUDA_DATA_FROM_POOL=0"),
    ("ours-cuda-mnist", "ours-cuda-dfp0-mnist", "38 on MNIST", "CNN_CUDA_DATA_FROM_POOL=0"),
]
# Candidates not the default: (candidate engine, the engine it is judged against, docs/gpu.md
# item, the switch that makes the candidate the default). Each is judged against the defaults
# (ours-cuda, or ours-cuda-mnist on MNIST), the engine a flip would replace: levels 4 and 5 keep
# the fused conv + pool forward (their op is conv2's) and level 2 has neither item 35 nor 38, so
# each differs from the defaults by more than one switch, and run 5b's report, judging them
# against their one-switch neighbours, advised level 4 where it was 25 us slower than the
# defaults.
CANDIDATES = [
    ("ours-cuda-fused4", "ours-cuda", "22 (level 4, its fused forward)",
     "CNN_CUDA_FUSED=4 (fuse in backend_cuda.c)"),
    ("ours-cuda-fused5", "ours-cuda", "24 (level 5, its fused forward)",
     "CNN_CUDA_FUSED=5 (fuse in backend_cuda.c)"),
    ("ours-cuda-streams2", "ours-cuda", "18", "CNN_CUDA_STREAMS=2 (stream_mode in backend_cuda.c)"),
    ("ours-cuda-nopdl", "ours-cuda", "16, on the defaults", "CNN_CUDA_PDL=0"),
    ("ours-cuda-l2", "ours-cuda", "14, level 2 (random images: conv2's ReLUs dead)",
     "CNN_CUDA_FUSED=2 (fuse in backend_cuda.c)"),
    # on MNIST's images after one epoch (bench_step --data): the kernels that skip dead
    # ReLUs' winners do their real work there (item 36)
    ("ours-cuda-l2-mnist", "ours-cuda-mnist", "14 on MNIST, level 2",
     "CNN_CUDA_FUSED=2 (fuse in backend_cuda.c)"),
    ("ours-cuda-frompool2", "ours-cuda", "37", "CNN_FROM_POOL_V=2 (from_pool_version() in "
     "conv2d_pool.cu)"),
    ("ours-cuda-frompool2-mnist", "ours-cuda-mnist", "37 on MNIST", "CNN_FROM_POOL_V=2 "
     "(from_pool_version() in conv2d_pool.cu)"),
    # item 39 on the defaults (item 38 among them since run 5): dense1's data gradient only
    # where pool2's output is > 0
    ("ours-cuda-sparse", "ours-cuda", "39 (random images: pool2's output all 0)",
     "CNN_CUDA_DENSE_DX_ALIVE=1 (backend_cuda.c)"),
    ("ours-cuda-sparse-mnist", "ours-cuda-mnist", "39 on MNIST",
     "CNN_CUDA_DENSE_DX_ALIVE=1 (backend_cuda.c)"),
    # item 40 on top of item 39: dense1's forward and filter gradient over pool2's nonzeros
    ("ours-cuda-nz", "ours-cuda-sparse", "40, on 39 (random images: pool2's output all 0)",
     "CNN_CUDA_DENSE_SPARSE=1 (backend_cuda.c)"),
    ("ours-cuda-nz-mnist", "ours-cuda-sparse-mnist", "40 on MNIST, on 39",
     "CNN_CUDA_DENSE_SPARSE=1 (backend_cuda.c)"),
    # item 43: GEMM version 6, version 5's mma sums folded once per slice
    ("ours-cuda-gemm6", "ours-cuda", "43", "CNN_GEMM_V=6 (gemm_version() in gemm_cuda.cuh)"),
]
GOAL_MS = {100: 0.39}
NOISE = 0.005  # differences under 0.5% of a step are run-to-run noise (runs 2-3: < 0.5%)

RESULT = re.compile(r"^RESULT (\S+) (\S+) batch=(\d+) ms_per_step=([0-9.]+)")


def read(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def section(title, out, name):
    """Prints the section's title; returns the log's text, or None (said) when it is missing."""
    print(title)
    text = read(out, name)
    if text is None:
        print(f"{name} missing")
    return text


def results(*texts):
    """{(engine, mode, batch): ms} from RESULT lines."""
    got = {}
    for text in texts:
        for line in (text or "").splitlines():
            m = RESULT.match(line)
            if m:
                got[(m.group(1), m.group(2), int(m.group(3)))] = float(m.group(4))
    return got


def step_report(out):
    step = section("== 1. the step (CUDA graph, ms per step)", out, "bench_step.log")
    if step is None:
        return
    r = results(step, read(out, "pytorch.log"))
    for batch in sorted({b for (_, mode, b) in r if mode == "cuda-graph"}):
        ours = r.get(("ours-cuda", "cuda-graph", batch))
        peer = r.get(("pytorch", "cuda-graph", batch))
        line = f"batch {batch}: ours-cuda {ours:.3f}" if ours else f"batch {batch}: ours-cuda missing"
        if ours and peer:
            line += f"; PyTorch graph {peer:.3f} ({peer / ours:.2f}x ours speed)"
        if ours and batch in GOAL_MS:
            goal = GOAL_MS[batch]
            line += f"; goal {goal} ms: {'met' if ours <= goal else 'not met'}"
        print(line)
        # On MNIST (the job's data): the kernels that skip dead ReLUs' winners do their real
        # work there, while PyTorch's step does not depend on the data (item 36)
        mnist = r.get(("ours-cuda-mnist", "cuda-graph", batch))
        if mnist:
            line = f"batch {batch} on MNIST: ours-cuda-mnist {mnist:.3f}"
            if peer:
                line += f"; PyTorch graph {peer:.3f} ({peer / mnist:.2f}x ours speed)"
            if batch in GOAL_MS:
                goal = GOAL_MS[batch]
                line += f"; goal {goal} ms: {'met' if mnist <= goal else 'not met'}"
            print(line)
            # conv2's filter gradient on the job's data, each way against the others on the
            # same step: the fastest decides. From the winners by version 1 or 2 on the
            # defaults; from the winners or its GEMM (level 2, where neither item 35 nor 38
            # acts) on run 5's defaults.
            for where, group in (
                    ("the defaults", (
                        ("ours-cuda-mnist", "from the winners, version 1 (the default)"),
                        ("ours-cuda-frompool2-mnist",
                         "from the winners, version 2 (CNN_FROM_POOL_V=2)"))),
                    ("run 5's defaults", (
                        ("ours-cuda-run5-mnist", "from the winners (level 3)"),
                        ("ours-cuda-l2-mnist", "its GEMM (CNN_CUDA_FUSED=2)")))):
                ways = [(r.get((e, "cuda-graph", batch)), label) for e, label in group]
                timed = sorted((ms, label) for ms, label in ways if ms)
                if len(timed) > 1:
                    each = "; ".join(f"{label} {ms:.3f}" for ms, label in timed)
                    print(f"batch {batch} on MNIST, conv2's filter gradient on {where}: fastest "
                          f"{timed[0][1]} ({each})")
        print("| item | change (newer vs older engine) | newer | older | saves | verdict |")
        print("|---|---|---|---|---|---|")
        for newer, older, item, switch in CHAIN + FLIPPED:
            verdict_row(r, batch, newer, older, item, ("keep", f"slower: flip back ({switch})",
                                                       "no difference"))
        for cand, default, item, switch in CANDIDATES:
            verdict_row(r, batch, cand, default, item,
                        (f"faster: make it the default ({switch}) if the tests pass",
                         "slower: leave it off", "no difference: leave it off"))


def verdict_row(r, batch, newer, older, item, verdicts):
    """One table row: newer against older engine's graph step; verdicts = (faster, slower,
    within the noise)."""
    a, b = r.get((newer, "cuda-graph", batch)), r.get((older, "cuda-graph", batch))
    if a is None or b is None:
        print(f"| {item} | {newer} vs {older} | {a or '-'} | {b or '-'} | - | missing |")
        return
    saves = b - a
    verdict = verdicts[0] if saves > NOISE * b else verdicts[1] if saves < -NOISE * b else verdicts[2]
    print(f"| {item} | {newer} vs {older} | {a:.3f} | {b:.3f} | {saves * 1000:+.1f} us "
          f"| {verdict} |")


ROW = re.compile(r"^\|\s*(.+?)\s*\|\s*(\d+)\s*\|\s*([0-9.]+)\s*\|\s*([0-9.]+|-)\s*\|.*?\|.*?\|"
                 r"\s*(\d+)%\s*\|")


def kernel_rows(text):
    """{(op, batch): (ours_us, lib_us or None, pct or None)} from bench_kernels tables."""
    rows = {}
    for line in (text or "").splitlines():
        m = ROW.match(line)
        if m:
            lib = None if m.group(4) == "-" else float(m.group(4))
            rows[(m.group(1), int(m.group(2)))] = (float(m.group(3)), lib, int(m.group(5)))
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[1].isdigit():
            try:
                rows.setdefault((cells[0], int(cells[1])), (float(cells[2]), None, None))
            except ValueError:
                pass
    return rows


def kernel_report(out):
    now = section("\n== 2. kernels (us per call): now vs version 1 (bench_gemm1), and vs the "
                  "library", out, "bench_kernels.log")
    if now is None:
        return
    rows, before = kernel_rows(now), kernel_rows(read(out, "bench_gemm1.log"))
    print("| op | batch | version 1 | now | change | vs library |")
    print("|---|---|---|---|---|---|")
    for (op, batch), (us, lib, pct) in rows.items():
        old = before.get((op, batch))
        change = f"{(old[0] - us) / old[0] * 100:+.0f}%" if old else "-"
        vs = "-" if pct is None or lib is None else f"{pct}%{' (under 90%)' if pct < 90 else ''}"
        print(f"| {op} | {batch} | {old[0] if old else '-'} | {us} | {change} | {vs} |")


SWEEP_ROW = re.compile(r"^\|\s*(.+?)\s*\|\s*(\d+)\s*\|\s*([0-9.]+)\s*\|\s*(\S+(?: s\d+)?)\s*\|"
                       r"\s*([0-9.]+)\s*\|\s*(\d+)%\s*\|")


def sweep_report(out):
    text = section("\n== 3. tile sweep: ops where another tile beats the default by more than 5%",
                   out, "bench_sweep.log")
    if text is None:
        return
    found = False
    for line in text.splitlines():
        m = SWEEP_ROW.match(line)
        if not m:
            continue
        default, best = float(m.group(3)), float(m.group(5))
        if best < 0.95 * default:
            found = True
            print(f"{m.group(1)} batch {m.group(2)}: default {default} us, {m.group(4)} "
                  f"{best} us ({(default - best) / default * 100:.0f}% less)")
    if not found:
        print("none: the default tiles are within 5% of the best")


def graph_and_job_report(out):
    print("\n== 4. captured graphs and the original job")
    lines = set()
    for name in ("train.log", "bench_step.log"):
        for line in (read(out, name) or "").splitlines():
            if "captured step graph" in line:
                lines.add(line.strip())
    for line in sorted(lines):
        print(line)
    if not lines:
        print("no captured graph lines")
    job_report(out, "job.log", "job")
    job_gap_report(out)


def job_rate(out, name):
    """The job's mean global_step/sec over its log lines, or None."""
    rates = [float(x) for x in re.findall(r"global_step/sec: ([0-9.]+)", read(out, name) or "")]
    return sum(rates) / len(rates) if rates else None


def job_report(out, name, label):
    job = read(out, name)
    if job is None:
        print(f"{name} missing")
        return
    mean = job_rate(out, name)
    acc = re.findall(r"accuracy = ([0-9.]+)", job)
    steps = re.findall(r"'steps': (\d+)", job)
    if mean:
        logs = len(re.findall(r"global_step/sec", job))
        n = int(steps[0]) if steps else 12000
        print(f"{label}: {mean:.0f} steps/s (mean of {logs} logs): {n / mean:.2f} s of "
              f"training for {n} steps (goal: under 5 s)")
    if acc:
        print(f"{label}: test accuracy {float(acc[-1]) * 100:.2f}% (goal: 99%)")
    phases = re.search(r"Wall time by phase: (.*)$", job, re.M)
    if phases:  # the trainer's --verbosity DEBUG line: where the rest of the 5 s goes
        print(f"{label}: {phases.group(1)}")


def job_gap_report(out):
    """The job's step (1 / its mean steps/s) against bench_step's at batch 100: the defaults on
    random images (ours-cuda), on MNIST's (ours-cuda-mnist), over 12,000 steps in one timing
    (ours-cuda-long), and both (ours-cuda-mnist-long: the job's training less its host side).
    The row nearest the job's time names the factor that costs it."""
    rate = job_rate(out, "job.log")
    r = results(read(out, "bench_step.log"))
    rows = [(e, r.get((e, "cuda-graph", 100))) for e in
            ("ours-cuda", "ours-cuda-mnist", "ours-cuda-long", "ours-cuda-mnist-long")]
    if not rate or rows[0][1] is None:
        print("job vs bench: job.log or bench_step's ours-cuda at batch 100 missing")
        return
    job_ms = 1000.0 / rate
    parts = [f"{e} {ms:.3f} ms ({(job_ms - ms) * 1000:+.1f} us)" if ms else f"{e} missing"
             for e, ms in rows]
    print(f"job vs bench at batch 100: the job's step {job_ms:.3f} ms; the job's step less "
          f"each: {'; '.join(parts)}")


# ncu's CSV (--csv, --page raw: one row per kernel, a header row and a units row; or the
# details page: one row per metric, with "Metric Name", "Metric Unit", "Metric Value")
METRIC = "gpu__time_duration.sum"
TO_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3,
         "second": 1e6, "s": 1e6}


def kernel_label(name, grid):
    """A kernel's name without its return type, namespaces and parameter list (its template
    arguments kept: they name the tile), and its grid."""
    name = name.strip()
    if name.startswith("void "):
        name = name[5:]
    name = name.replace("(anonymous namespace)::", "")
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):  # the parameter list: the first top-level "(" after a name
        if ch in "<":
            depth += 1
        elif ch in ">":
            depth -= 1
        elif ch == "(" and depth == 0 and i > 0:
            cut = i
            break
    return f"{name[:cut]} {grid.replace(' ', '')}".strip()


def profile_kernels(text):
    """[(kernel label, us)] in launch order from one ncu CSV, or None if it has no table."""
    rows = list(csv.reader(line for line in (text or "").splitlines() if line.startswith('"')))
    head = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
    if head is None:
        return None
    h = rows[head]
    name_at, grid_at = h.index("Kernel Name"), h.index("Grid Size") if "Grid Size" in h else None
    got = []
    def number(cell):
        return cell.replace(",", "").replace(".", "", 1).isdigit()

    if METRIC in h:  # raw page: the row after the header holds the units (ns if it does not)
        at = h.index(METRIC)
        units = rows[head + 1] if head + 1 < len(rows) else []
        has_units = len(units) > at and not number(units[at])
        unit = units[at] if has_units else "nsecond"
        for r in rows[head + 1 + has_units:]:
            if len(r) > at and number(r[at]):
                got.append((kernel_label(r[name_at], r[grid_at] if grid_at is not None else ""),
                            float(r[at].replace(",", "")) * TO_US.get(unit, 1e-3)))
    elif "Metric Name" in h:
        mn, mu, mv = h.index("Metric Name"), h.index("Metric Unit"), h.index("Metric Value")
        for r in rows[head + 1:]:
            if len(r) > mv and r[mn] == METRIC:
                got.append((kernel_label(r[name_at], r[grid_at] if grid_at is not None else ""),
                            float(r[mv].replace(",", "")) * TO_US.get(r[mu], 1e-3)))
    return got


def profile_report(out):
    print("\n== 5. each kernel's time inside one eager step (ncu; us; the kernels serialised, "
          "so the gradient stream's overlap is not in the sums)")
    names = sorted(f for f in os.listdir(out) if f.startswith("profile-") and f.endswith(".csv"))
    if not names:
        print("no profile-*.csv (tests/gpu/run.sh --full runs tests/gpu/profile_step.sh)")
        return
    by_batch = {}
    for f in names:
        engine, batch = f[len("profile-"):-len(".csv")].rsplit("-", 1)
        by_batch.setdefault(int(batch), {})[engine] = profile_kernels(read(out, f))
    for batch in sorted(by_batch):
        engines = by_batch[batch]
        cols = [e for e in engines if engines[e]]
        for e in engines:
            if not engines[e]:
                print(f"batch {batch}: {e}: no kernel rows (see profile-{e}-{batch}.csv.err)")
        if not cols:
            continue
        # one row per kernel label (its calls in the step summed), in order of first launch
        order, us = [], {}
        for e in cols:
            for label, t in engines[e]:
                if label not in order:
                    order.append(label)
                us[(e, label)] = us.get((e, label), 0.0) + t
        print(f"batch {batch}:")
        print("| kernel (grid) | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for label in order:
            cells = [f"{us[(e, label)]:.1f}" if (e, label) in us else "-" for e in cols]
            print(f"| {label} | " + " | ".join(cells) + " |")
        sums = [f"{sum(t for _, t in engines[e]):.1f} ({len(engines[e])} launches)" for e in cols]
        print("| **sum** | " + " | ".join(sums) + " |")


def main(argv):
    if len(argv) != 2 or not os.path.isdir(argv[1]):
        print("usage: tests/gpu/report.py OUT (the folder of a tests/gpu/run.sh run's logs)",
              file=sys.stderr)
        return 2
    out = argv[1]
    step_report(out)
    kernel_report(out)
    sweep_report(out)
    graph_and_job_report(out)
    profile_report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
