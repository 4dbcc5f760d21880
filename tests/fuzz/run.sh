#!/usr/bin/env bash
# Runs every libFuzzer target of tests/fuzz/ for SECONDS each (default 10: the short run of the
# test command), after replaying its regression inputs (tests/fuzz/regressions/<target>/: every
# crash ever found, each must now pass).
#
#   tests/fuzz/run.sh            short run, 10 s per target
#   tests/fuzz/run.sh 600        the long run documented in docs/hardening.md (10 min per target)
#   FUZZ_TARGETS="fuzz_idx fuzz_tfrecord" tests/fuzz/run.sh 60     some targets only
#
# Seeds come from tests/fuzz/corpus/<target>/ (read only); what the fuzzer learns is kept in
# $FUZZ_BUILD_DIR/corpus/<target>/ (default build-fuzz/, not committed), so later runs go deeper.
# A crash, sanitizer report, leak, timeout (> 10 s for one input) or RSS over 2 GiB fails the run;
# the input is saved as build-fuzz/artifacts/<target>/crash-* (or leak-/timeout-/oom-): fix the
# bug, then copy the input to tests/fuzz/regressions/<target>/ so the short run replays it forever.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-10}
OUT=${FUZZ_BUILD_DIR:-$PWD/build-fuzz}
export FUZZ_BUILD_DIR=$OUT
tests/fuzz/build.sh >/dev/null

targets=${FUZZ_TARGETS:-$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$OUT/logs"
failed=()
for t in $targets; do
  bin="$OUT/$t"
  [ -x "$bin" ] || { echo "fuzz: $bin missing" >&2; failed+=("$t"); continue; }
  mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t"
  log="$OUT/logs/$t.log"
  : >"$log"
  regs=(tests/fuzz/regressions/"$t"/*)
  if [ -e "${regs[0]}" ]; then
    if ! "$bin" -rss_limit_mb=2048 -timeout=10 "${regs[@]}" >>"$log" 2>&1; then
      echo "fuzz: $t: a regression input fails again:"; tail -30 "$log"
      failed+=("$t"); continue
    fi
  else
    regs=()
  fi
  if "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -use_value_profile=1 \
       -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t/" \
       "$OUT/corpus/$t" "tests/fuzz/corpus/$t" >>"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    printf 'fuzz: %-20s ok  %3ss  %8s runs  %s  %d regression inputs\n' "$t" "$SECONDS_EACH" \
      "${runs:-?}" "${cov:-}" "${#regs[@]}"
  else
    echo "fuzz: $t FAILED (log: $log):"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written|==[0-9]+==' "$log" | head -20
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
