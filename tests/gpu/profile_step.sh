#!/usr/bin/env bash
# tests/gpu/profile_step.sh NCU BENCH_STEP OUT: each kernel's time inside one eager training step
# on MNIST's images, by Nsight Compute (ncu), for the engines whose differences GPU run 4 could
# not explain from bench_kernels' rows alone:
#   ours-cuda         the defaults
#   ours-cuda-gemm4   GEMM version 4 (dense1's backward: which of its GEMMs is slower on v5)
#   ours-cuda-dense1 / ours-cuda-fused2   the pair that differs only in conv2's filter gradient
#                     (from pool2's winners / from its GEMM): run 4 timed the step 49 us faster
#                     with the winners at batch 100 and 499 us at 1000, against bench_kernels'
#                     125 us for that kernel alone vs 78 for the GEMM
#   ours-cuda-convpool0   the first layer's forward split (item 35)
# at batches 100 and 1000. One ncu process per engine and batch (OUT/profile-ENGINE-BATCH.csv):
# bench_step_cuda --profile brackets the one step with cudaProfilerStart/Stop. The clocks and
# caches are left alone (--clock-control none, --cache-control none: METHOD.md; the L2 as the
# kernels before left it). ncu serialises the kernels, so the second stream's overlap is not in
# these times. tests/gpu/report.py prints the table.
set -uo pipefail
NCU=$1 BENCH=$2 OUT=$3
ENGINES=(ours-cuda ours-cuda-gemm4 ours-cuda-dense1 ours-cuda-fused2 ours-cuda-convpool0)
failed=0
for batch in 100 1000; do
  for e in "${ENGINES[@]}"; do
    csv=$OUT/profile-$e-$batch.csv
    if "$NCU" --profile-from-start off --clock-control none --cache-control none \
        --metrics gpu__time_duration.sum --csv --page raw \
        "$BENCH" --data data/mnist --profile "$e" "$batch" > "$csv" 2> "$csv.err"; then
      echo "$e batch $batch: $(grep -c '^"[0-9]' "$csv") kernels"
    else
      echo "$e batch $batch: ncu failed (rc $?): $(tail -3 "$csv.err" "$csv" | tr '\n' ' ')"
      failed=1
    fi
  done
done
echo "SUMMARY per-kernel step profiles in $OUT/profile-*.csv (report.py section 5)"
exit $failed
