#!/usr/bin/env bash
# The whole test suite: the README's test command, and what CI runs.
#  1. Release build (CUDA code compiled where nvcc exists, warnings are errors), unit tests.
#  2. ASan + UBSan build of the CPU engine, the same unit tests.
#  3. TensorFlow interoperability tests (pytest, tests/tf/), against the release build; steps
#     3-5 run side by side (each uses about one core).
#  4. Fuzzing, short: every libFuzzer target of tests/fuzz/ for 8 s, its regressions replayed
#     (clang; the long runs: tests/fuzz/run.sh 600, docs/hardening.md).
#  5. Fault tests (tests/fault/): bad input, SIGKILL/SIGTERM/full disk, through the ASan + UBSan
#     programs; the CPU path under valgrind (release build); the trainer and predict on
#     --device cuda through the CUDA emulator (emu_trainer, emu_predict) against --device cpu.
# GPU tests (tests/gpu/) skip themselves where no GPU is present; tests/gpu/run.sh runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
# Each stage's start, seconds into the run (CI's limit: keep the whole under 20 minutes).
stage() { echo "== $1 (${SECONDS} s)"; }

stage "release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DWERROR=ON -DREQUIRE_CHECK=ON >/dev/null
cmake --build build -j "$JOBS"
stage "unit tests (release)"
(cd build && ctest --output-on-failure -j "$JOBS")

stage "sanitizer build (ASan + UBSan, CPU engine)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=ON -DWITH_CUDA=OFF -DWERROR=ON -DREQUIRE_CHECK=ON >/dev/null
cmake --build build-asan -j "$JOBS"
stage "unit tests (ASan + UBSan)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   CNN_TEST_QUICK=1 ctest --output-on-failure -j "$JOBS" -L unit)

# The last three stages use about one core each: they run side by side, the TensorFlow tests
# and the fuzzing in the background (their output follows the fault tests').
stage "TensorFlow interoperability tests and fuzzing (in the background)"
python3 -m pytest -q --durations=5 -p no:cacheprovider --basetemp=build/pytest-tf tests/tf \
  >build/tf-tests.log 2>&1 &
tf_pid=$!
tests/fuzz/run.sh 8 >build/fuzz.log 2>&1 &
fuzz_pid=$!
trap 'kill "$tf_pid" "$fuzz_pid" 2>/dev/null || true' EXIT
rc=0
stage "fault tests"
BUILD_DIR=build-asan VALGRIND_BUILD_DIR=build python3 -m pytest -q -rs --durations=5 tests/fault ||
  rc=1
stage "fuzz (short): its output"
wait "$fuzz_pid" || rc=1
cat build/fuzz.log
stage "TensorFlow interoperability tests: their output"
wait "$tf_pid" || rc=1
trap - EXIT
cat build/tf-tests.log
stage "done"
[ "$rc" -eq 0 ] || echo "FAILED: see the stages above" >&2
exit "$rc"
