#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install build dependencies, build, turn the shipped
# MNIST (data/mnist/*.gz) into TFRecords, train the original CNN, evaluate on the test set and
# export a SavedModel, all into JOB_DIR (default jobs/mnist).
# STEPS (default 12000, the original job) and DEVICE (default auto) set the run; extra arguments go
# to the trainer, e.g. STEPS=500 ./job.sh --seed 7
set -euo pipefail
cd "$(dirname "$0")"
JOB_DIR=${JOB_DIR:-jobs/mnist}
STEPS=${STEPS:-12000}
DEVICE=${DEVICE:-auto}
bash .ci/setup
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target tfrecord trainer predict
bash data/prepare.sh
# The original job: 12,000 steps of batch 100 with Adam at 0.001. --device auto trains on the GPU
# when one is present; on a 2-core CPU use a smaller STEPS (see README).
exec build/bin/trainer \
  --train-file data/mnist/mnist_train.tfrecords \
  --eval-file data/mnist/mnist_test.tfrecords \
  --job-dir "$JOB_DIR" \
  --steps "$STEPS" --batch-size 100 --learning-rate 0.001 --device "$DEVICE" \
  "$@"
