#!/usr/bin/env python3
"""tf.data peer for bench_tfrecord_parse: read + verify + parse an MNIST TFRecord file with
`tf.data.TFRecordDataset(file).map(parse_single_example)` (the original job's input pipeline), on
one core (intra/inter-op threads 1, sequential map), then decode image_raw to uint8 as the job
does. Also times the batched form (batch(1000).map(parse_example)), TF's fastest parsing path.
Timing: best of --reps full passes after one warm-up pass (file in the page cache), each pass run
inside TF (Dataset.reduce in a tf.function), so no Python runs per record. CPU time of the process
(all its threads) is the figure compared; wall time is printed beside it.
Prints "RESULT key value" lines for bench/tfrecord_vs_tfdata.sh.
Usage: tfdata_parse.py FILE [--reps N]
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

SPEC = {
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "depth": tf.io.FixedLenFeature([], tf.int64),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "image_raw": tf.io.FixedLenFeature([], tf.string),
}


def parse_one(record):
    f = tf.io.parse_single_example(record, SPEC)
    image = tf.reshape(tf.io.decode_raw(f["image_raw"], tf.uint8), [28, 28, 1])
    return image, tf.cast(f["label"], tf.int32)


def parse_batch(records):
    f = tf.io.parse_example(records, SPEC)
    images = tf.reshape(tf.io.decode_raw(f["image_raw"], tf.uint8), [-1, 28, 28, 1])
    return images, tf.cast(f["label"], tf.int32)


def best_pass(make, reps):
    """Runs the whole pipeline inside TF (Dataset.reduce counting images), as a training input
    pipeline runs: no Python per element."""
    ds = make()
    count_fn = tf.function(lambda: ds.reduce(tf.constant(0, tf.int64),
                                             lambda acc, x: acc + tf.cast(tf.size(x[1]), tf.int64)))
    best, best_wall, count = float("inf"), float("inf"), 0
    for r in range(reps + 1):
        c0, w0 = time.process_time(), time.perf_counter()
        count = int(count_fn())
        c, w = time.process_time() - c0, time.perf_counter() - w0
        if r > 0:
            best, best_wall = min(best, c), min(best_wall, w)
    return best, best_wall, count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    opts = tf.data.Options()
    opts.threading.private_threadpool_size = 1
    opts.autotune.enabled = False

    def single():
        return tf.data.TFRecordDataset(args.file).map(parse_one).with_options(opts)

    def batched():
        return tf.data.TFRecordDataset(args.file).batch(1000).map(parse_batch).with_options(opts)

    t1, w1, n1 = best_pass(single, args.reps)
    t2, w2, n2 = best_pass(batched, args.reps)
    mb = os.path.getsize(args.file) / 1e6
    for what, t, w, n in (("map(parse_single_example)", t1, w1, n1),
                          ("batch(1000).map(parse_example)", t2, w2, n2)):
        print(f"tf {tf.__version__} {what}: {t * 1e3:.1f} ms CPU ({w * 1e3:.1f} ms wall), "
              f"{n / t:.0f} records/s, {mb / t:.1f} MB/s")
    print(f"RESULT tf_version {tf.__version__}")
    print(f"RESULT tf_records {n1}")
    print(f"RESULT tf_single_s {t1:.6f}")
    print(f"RESULT tf_single_wall_s {w1:.6f}")
    print(f"RESULT tf_batched_s {t2:.6f}")
    print(f"RESULT tf_batched_wall_s {w2:.6f}")


if __name__ == "__main__":
    main()
