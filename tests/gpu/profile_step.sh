#!/usr/bin/env bash
# tests/gpu/profile_step.sh NCU BENCH_STEP OUT: each kernel's time inside one eager training step
# on MNIST's images (after bench_step's MNIST warm-up, one epoch), by Nsight Compute (ncu):
#   ours-cuda         the defaults (since GPU run 5: the first layer's forward split, item 35;
#                     conv2's data gradient from pool2's winners, item 38; cross-entropy
#                     version 3, item 31)
#   ours-cuda-run5    GPU run 5's defaults (the fused conv + pool forward, conv2's data gradient
#                     through pool2's backward and the GEMM, cross-entropy version 2)
#   ours-cuda-l2      conv2's filter gradient from its GEMM (fusion level 2) on run 5's
#                     defaults, not from pool2's winners: on MNIST ~5% of the winners pass the
#                     ReLU, yet a warp (32 channels) skips a position only when none of its 32
#                     does (item 36)
#   ours-cuda-frompool2  that gradient from the winners by version 2 (a warp per output channel,
#                     each dead winner skipped: item 37)
#   ours-cuda-gemm4   GEMM version 4 on run 5's defaults (dense1's backward: which of its GEMMs
#                     is slower on v5)
#   ours-cuda-nz      dense1's data gradient only where pool2's output is > 0 (item 39), and
#                     its forward and filter gradient over pool2's nonzeros (item 40)
# at batches 100 and 1000; and the defaults on the random images at batch 100 (profile-
# ours-cuda-random-100.csv), where conv2's ReLUs are all dead: item 36's explanation of run 4's
# level 2/3 puzzle. One ncu process per engine and batch (OUT/profile-ENGINE-BATCH.csv):
# bench_step_cuda --profile brackets the one step with cudaProfilerStart/Stop. The clocks and
# caches are left alone (--clock-control none, --cache-control none: METHOD.md; the L2 as the
# kernels before left it). ncu serialises the kernels, so the second stream's overlap is not in
# these times. tests/gpu/report.py prints the table (section 5).
set -uo pipefail
NCU=$1 BENCH=$2 OUT=$3
ENGINES=(ours-cuda ours-cuda-run5 ours-cuda-l2 ours-cuda-frompool2 ours-cuda-gemm4
         ours-cuda-nz)
failed=0
# profile NAME ENGINE BATCH [--data DIR]
profile() {
  local csv=$OUT/profile-$1-$3.csv
  if "$NCU" --profile-from-start off --clock-control none --cache-control none \
      --metrics gpu__time_duration.sum --csv --page raw \
      "$BENCH" "${@:4}" --profile "$2" "$3" > "$csv" 2> "$csv.err"; then
    echo "$1 batch $3: $(grep -c '^"[0-9]' "$csv") kernels"
  else
    echo "$1 batch $3: ncu failed: $(tail -3 "$csv.err" "$csv" | tr '\n' ' ')"
    failed=1
  fi
}
for batch in 100 1000; do
  for e in "${ENGINES[@]}"; do profile "$e" "$e" "$batch" --data data/mnist; done
done
profile ours-cuda-random ours-cuda 100
echo "SUMMARY per-kernel step profiles in $OUT/profile-*.csv (report.py section 5)"
exit $failed
