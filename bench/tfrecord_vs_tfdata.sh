#!/usr/bin/env bash
# Read + verify + parse throughput of mnist_train.tfrecords: ours (bench_tfrecord_parse, which
# also times CRC32C) against tf.data (bench/peers/tfdata_parse.py) on the same file and machine,
# both pinned to one core. Prints both and the ratios (CPU time; wall time beside it).
#   [REPS=N] [TF_REPS=N] bench/tfrecord_vs_tfdata.sh [FILE]
# (REPS: our passes over the file, default 10; TF_REPS: tf.data's, default 3.) Needs build/bin/bench_tfrecord_parse (BUILD_DIR overrides build/) and python3 with tensorflow.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -le 1 && ${1:-} != -* ]] || { echo "usage: [REPS=N] [TF_REPS=N] $0 [FILE]" >&2; exit 2; }
FILE=${1:-data/mnist/mnist_train.tfrecords}
REPS=${REPS:-10}
TF_REPS=${TF_REPS:-3}
BIN=${BUILD_DIR:-build}/bin/bench_tfrecord_parse
[[ -x "$BIN" ]] || { echo "missing $BIN: cmake --build build --target bench_tfrecord_parse" >&2; exit 1; }
[[ -f "$FILE" ]] || { echo "missing $FILE: run data/prepare.sh" >&2; exit 1; }
PIN=()
if command -v taskset >/dev/null; then PIN=(taskset -c 0); fi

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "== ours"
ours=$("${PIN[@]}" "$BIN" "$FILE" --reps "$REPS")
grep -v '^RESULT' <<<"$ours"
echo "== tf.data"
peer=$("${PIN[@]}" python3 bench/peers/tfdata_parse.py "$FILE" --reps "$TF_REPS" 2>/dev/null)
grep -v '^RESULT' <<<"$peer"
get() { sed -n "s/^RESULT $1 //p" <<<"$ours$(printf '\n')$peer"; }
python3 - "$(get load_s)" "$(get load_wall_s)" "$(get tf_single_s)" "$(get tf_single_wall_s)" \
          "$(get tf_batched_s)" "$(get tf_batched_wall_s)" <<'PY'
import sys
ours, ours_w, single, single_w, batched, batched_w = map(float, sys.argv[1:])
print("== ratio (tf.data time / our time)")
print(f"vs map(parse_single_example):      {single / ours:6.1f}x CPU  ({single_w / ours_w:6.1f}x wall)")
print(f"vs batch(1000).map(parse_example): {batched / ours:6.1f}x CPU  ({batched_w / ours_w:6.1f}x wall)")
PY
