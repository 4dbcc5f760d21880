#!/usr/bin/env bash
# Turns the shipped MNIST IDX files (data/mnist/*.gz) into the TFRecords the job reads:
#   data/mnist/mnist_train.tfrecords (60,000 Examples), data/mnist/mnist_test.tfrecords (10,000).
# Checks the MD5 of each decompressed IDX file against data/mnist/MD5SUMS first, then converts with
# build/bin/tfrecord from-idx and verifies the result. Outputs that are already newer than their
# inputs are kept.
# Environment: TFRECORD (default build/bin/tfrecord), DATA_DIR (default data/mnist: a directory with
# the four *-ubyte.gz files), OUT_DIR (default DATA_DIR), COMPRESSION (none|gzip|zlib, default none).
# Fashion-MNIST (Debian package dataset-fashion-mnist), same command:
#   DATA_DIR=/usr/share/datasets/fashion-mnist OUT_DIR=data/fashion-mnist data/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TFRECORD=${TFRECORD:-build/bin/tfrecord}
DATA_DIR=${DATA_DIR:-data/mnist}
OUT_DIR=${OUT_DIR:-$DATA_DIR}
COMPRESSION=${COMPRESSION:-none}

if [[ ! -x "$TFRECORD" ]]; then
  echo "prepare.sh: $TFRECORD not found: build it first (cmake --build build --target tfrecord)" >&2
  exit 1
fi
if [[ -f "$DATA_DIR/MD5SUMS" ]]; then
  while read -r sum name; do
    got=$(gzip -dc "$DATA_DIR/$name.gz" | md5sum | cut -d' ' -f1)
    if [[ "$got" != "$sum" ]]; then
      echo "prepare.sh: $DATA_DIR/$name.gz: md5 of the decompressed file is $got, expected $sum" >&2
      exit 1
    fi
  done < "$DATA_DIR/MD5SUMS"
fi
mkdir -p "$OUT_DIR"
for split in train:train t10k:test; do
  src=${split%%:*} dst=${split##*:}
  images=$DATA_DIR/$src-images-idx3-ubyte.gz labels=$DATA_DIR/$src-labels-idx1-ubyte.gz
  out=$OUT_DIR/mnist_$dst.tfrecords
  if [[ -f "$out" && "$out" -nt "$images" && "$out" -nt "$labels" && "$out" -nt "$TFRECORD" ]]; then
    echo "prepare.sh: $out is up to date"
    continue
  fi
  "$TFRECORD" from-idx --images "$images" --labels "$labels" --out "$out" --compression "$COMPRESSION"
  "$TFRECORD" verify "$out"
done
