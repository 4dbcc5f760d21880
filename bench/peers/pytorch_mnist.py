#!/usr/bin/env python3
"""PyTorch peer for bench_step_cuda: the same MNIST CNN, Adam, FP32 (TF32 off), one training step
timed eagerly and as a captured CUDA graph, at batch 100 and 1000, on random data of MNIST's shape
resident on the GPU (raw 0..255 pixels, as our engine feeds).

Model: Conv 5x5x32 SAME + ReLU, MaxPool 2/2, Conv 5x5x64 SAME + ReLU, MaxPool 2/2, Dense 1024 +
ReLU, Dropout 0.4, Dense 10; sparse softmax cross-entropy (mean); Adam(1e-3, 0.9, 0.999, 1e-7).
cudnn.benchmark is on (cuDNN picks its fastest algorithms, as our cudnn backend does).
Timing: CUDA events around `steps` steps after 30 warm-up steps; the median of 5 such runs.
Usage: pytorch_mnist.py [--batches 100 1000] [--steps 200]
"""
import argparse
import statistics
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.dense1 = nn.Linear(7 * 7 * 64, 1024)
        self.dense2 = nn.Linear(1024, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.dense1(torch.flatten(x, 1)))
        x = F.dropout(x, 0.4, self.training)
        return self.dense2(x)


def make(batch, capturable):
    torch.manual_seed(0)
    model = Net().cuda().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7,
                           capturable=capturable)
    x = torch.randint(0, 256, (batch, 1, 28, 28), device="cuda").float()
    y = torch.randint(0, 10, (batch,), device="cuda")
    return model, opt, x, y


def step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def time_ms(fn, steps, runs=5):
    times = []
    for _ in range(runs):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(steps):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / steps)
    return statistics.median(times)


def bench_eager(batch, steps):
    model, opt, x, y = make(batch, False)
    for _ in range(30):
        step(model, opt, x, y)
    torch.cuda.synchronize()
    return time_ms(lambda: step(model, opt, x, y), steps)


def bench_graph(batch, steps):
    model, opt, x, y = make(batch, True)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up on a side stream, as the CUDA-graph recipe asks
        for _ in range(30):
            step(model, opt, x, y)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(g):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    for _ in range(10):
        g.replay()
    torch.cuda.synchronize()
    return time_ms(g.replay, steps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("pytorch_mnist: no GPU, skipped")
        return 77
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    print(f"pytorch_mnist: torch {torch.__version__}, {torch.cuda.get_device_name(0)}, FP32 "
          f"(TF32 off), cudnn.benchmark on")
    print("| peer | mode | batch | ms/step | images/s |")
    print("|---|---|---|---|---|")
    for batch in args.batches:
        steps = args.steps if batch <= 100 else max(20, args.steps // 4)
        for mode, fn in (("eager", bench_eager), ("cuda-graph", bench_graph)):
            ms = fn(batch, steps)
            print(f"| pytorch | {mode} | {batch} | {ms:.3f} | {batch / ms * 1000:,.0f} |",
                  flush=True)
            print(f"RESULT pytorch {mode} batch={batch} ms_per_step={ms:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
