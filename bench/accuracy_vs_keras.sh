#!/usr/bin/env bash
# Test accuracy of the original job (batch 100, Adam 0.001, raw pixels), ours on the CPU vs the
# same model in Keras/tensorflow-cpu, on the shipped MNIST, for each seed given. One thread each,
# the two side by side. Prints one RESULT line per engine and seed.
# Usage: bench/accuracy_vs_keras.sh [steps=12000] [seed...=0]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-12000}
shift || true
SEEDS=("${@:-0}")
BUILD=${BUILD_DIR:-build}
cmake --build "$BUILD" --target trainer tfrecord >/dev/null
[ -f data/mnist/mnist_train.tfrecords ] || TFRECORD="$BUILD/bin/tfrecord" bash data/prepare.sh >/dev/null
train=data/mnist/mnist_train.tfrecords test=data/mnist/mnist_test.tfrecords
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
for seed in "${SEEDS[@]}"; do
    dir=$(mktemp -d)
    python3 bench/peers/keras_mnist_accuracy.py "$train" "$test" "$STEPS" "$seed" 1 \
        > "$dir/keras.log" 2>&1 &
    keras=$!
    t0=$(date +%s)
    "$BUILD/bin/trainer" --train "$train" --test "$test" --steps "$STEPS" --seed "$seed" \
        --device cpu --threads 1 --job-dir "$dir/job" > "$dir/ours.log" 2>&1
    t1=$(date +%s)
    line=$(grep -o 'Saving dict for global step [0-9]*: accuracy = [0-9.]*, global_step = [0-9]*, loss = [0-9.]*' "$dir/ours.log" | tail -1)
    acc=$(sed -E 's/.*accuracy = ([0-9.]+).*/\1/' <<< "$line")
    loss=$(sed -E 's/.*loss = ([0-9.]+).*/\1/' <<< "$line")
    echo "RESULT engine=ours-cpu steps=$STEPS seed=$seed batch=100 accuracy=$acc loss=$loss train_s=$((t1 - t0))"
    wait "$keras" || { cat "$dir/keras.log" >&2; exit 1; }
    grep RESULT "$dir/keras.log"
    rm -rf "$dir"
done
