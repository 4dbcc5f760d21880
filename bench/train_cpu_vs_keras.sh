#!/usr/bin/env bash
# CPU training throughput, ours vs the same Keras model in tensorflow-cpu, on this machine, in one
# run: batch 100 on the shipped MNIST. Prints both RESULT lines and the ratio.
# Usage: bench/train_cpu_vs_keras.sh [steps=50] [threads=$(nproc)] [warmup=100]
# (warm-up steps before the timing, each side: see bench/train_cpu.c for why 100)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-50}
THREADS=${2:-$(nproc)}
WARMUP=${3:-100}
BUILD=${BUILD_DIR:-build}
cmake --build "$BUILD" --target bench_train_cpu tfrecord >/dev/null
[ -f data/mnist/mnist_train.tfrecords ] || TFRECORD="$BUILD/bin/tfrecord" bash data/prepare.sh >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%F)"
ours=$("$BUILD/bin/bench_train_cpu" data/mnist/mnist_train.tfrecords "$STEPS" "$THREADS" "$WARMUP")
echo "$ours"
keras=$(python3 bench/peers/keras_mnist_cpu.py data/mnist/mnist_train.tfrecords "$STEPS" "$THREADS" "$WARMUP")
echo "$keras"
a=$(sed -E 's/.*ms_per_step=([0-9.]+).*/\1/' <<< "$ours")
b=$(sed -E 's/.*ms_per_step=([0-9.]+).*/\1/' <<< "$keras")
awk -v a="$a" -v b="$b" 'BEGIN { printf "ratio: ours is %.2fx the speed of Keras/TF-CPU (wall ms/step %s vs %s)\n", b / a, a, b }'
