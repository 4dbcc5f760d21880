#!/usr/bin/env python3
"""test_report.py: tests/gpu/report.py on a made-up run folder (the log lines in the formats
bench_step_cuda, bench_kernels_cuda, pytorch_mnist.py, the backend and the trainer print), so
that the script a GPU session relies on to flip defaults is checked where there is no GPU.
Exit 0 when every check holds."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# batch 100: every change on the chain helps except item 17 (the gradient stream), which costs
# 20 us; the defaults just under the goal, 15 us faster than run 5's; of run 5's flips, each
# alone helps on the random images, conv1's split forward costs 4 us on MNIST; of the
# candidates (each against the defaults), fused4 is 5 us faster, fused5 10 us slower, streams2
# within the noise
STEP_MS = {
    "ours-cuda": 0.385, "ours-cuda-run5": 0.400, "ours-cuda-gemm4": 0.470,
    "ours-cuda-dense2": 0.478, "ours-cuda-graph1": 0.481,
    "ours-cuda-streams0": 0.461,
    "ours-cuda-pdl0": 0.476, "ours-cuda-dense1": 0.487, "ours-cuda-fused2": 0.536,
    "ours-cuda-fused1": 0.596, "ours-cuda-gemm3": 0.686, "ours-cuda-run3": 0.697,
    "ours-cuda-xent2": 0.395, "ours-cuda-convpool1": 0.425, "ours-cuda-dfp0": 0.415,
    "ours-cuda-fused4": 0.380, "ours-cuda-fused5": 0.395, "ours-cuda-streams2": 0.386,
    "ours-cuda-nopdl": 0.3855,
    # the job's factors: the job (2500 steps/s: 0.400 ms) is 15 us over ours-cuda
    "ours-cuda-mnist": 0.386, "ours-cuda-long": 0.395, "ours-cuda-mnist-long": 0.398,
    "ours-cuda-run5-mnist": 0.456, "ours-cuda-convpool1-mnist": 0.382,
    "ours-cuda-dfp0-mnist": 0.456,
    # on MNIST, level 2 is 20 us faster than the defaults; on random images 35 slower
    "ours-cuda-l2": 0.420, "ours-cuda-l2-mnist": 0.366,
    "ours-cuda-frompool2": 0.384, "ours-cuda-frompool2-mnist": 0.356,
    # dense1's data gradient where its input is alive: 20 us faster on MNIST and random images
    "ours-cuda-sparse": 0.365, "ours-cuda-sparse-mnist": 0.366,
    # dense1 over pool2's nonzeros, on top: 40 us faster on MNIST, 5 us slower on random images
    "ours-cuda-nz": 0.370, "ours-cuda-nz-mnist": 0.326,
    # GEMM version 6: 12 us faster than the defaults
    "ours-cuda-gemm6": 0.373,
}

# ncu's raw page (tests/gpu/profile_step.sh): ncu's own lines, the program's, a header row, a
# units row, one row per kernel (the GEMM twice: summed in the table)
PROFILE_RAW = """==PROF== Connected to process 4242 (bench_step_cuda)
bench_step_cuda: 60000 MNIST images from data/mnist
PROFILE ours-cuda eager batch=100
==PROF== Profiling "gather_kernel": 0%....50%....100% - 1 pass
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","gpu__time_duration.sum"
"","","","","","","","","","","","nsecond"
"0","4242","bench_step_cuda","127.0.0.1","void (anonymous namespace)::gather_kernel(const unsigned char *, float *, int)","1","7","(256, 1, 1)","(40, 1, 1)","0","9.0","4,960"
"1","4242","bench_step_cuda","127.0.0.1","void gemm_kernel<128, 64, (Epilogue)1>(GemmArgs, const float *)","1","7","(256, 1, 1)","(8, 16, 4)","0","9.0","33,100"
"2","4242","bench_step_cuda","127.0.0.1","void gemm_kernel<128, 64, (Epilogue)1>(GemmArgs, const float *)","1","7","(256, 1, 1)","(8, 16, 4)","0","9.0","30,000"
"3","4242","bench_step_cuda","127.0.0.1","conv_pool_bwd_filter_kernel<-2>","1","8","(256, 1, 1)","(20, 2, 25)","0","9.0","125,000"
"""
# the details page: one row per metric
PROFILE_DETAILS = """"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","7","bench_step_cuda","h","gather_kernel","1","7","(256, 1, 1)","(40, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","usecond","5.10"
"1","7","bench_step_cuda","h","gemm_kernel<64, 64, (Epilogue)1>","1","7","(256, 1, 1)","(16, 16, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","usecond","78.00"
"""


def write(folder, name, text):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write(text)


def make_run(folder):
    step = ["| engine | mode | batch | ms/step | images/s |", "|---|---|---|---|---|"]
    for engine, ms in STEP_MS.items():
        step.append(f"RESULT {engine} eager batch=100 ms_per_step={ms + 0.02:.4f}")
        step.append(f"RESULT {engine} cuda-graph batch=100 ms_per_step={ms:.4f}")
    step.append("cuda backend (fused 3, GEMM v4): captured step graph (key 0): 40 edges (25 "
                "programmatic), 4 forks")
    write(folder, "bench_step.log", "\n".join(step) + "\n")
    write(folder, "pytorch.log", "RESULT pytorch cuda-graph batch=100 ms_per_step=0.7730\n")
    header = ("| op | batch | ours us | lib us | ours | lib | ours vs lib | library |\n"
              "|---|---|---|---|---|---|---|---|\n")
    write(folder, "bench_kernels.log", header +
          "| conv2 14x14x32->64 bwd data |   100 |      85.0 |     125.9 |   23.62 TF/s   |"
          "   15.94 TF/s   |   148% | cuDNN |\n"
          "| softmax+xent fwd+bwd       |   100 |       5.2 |       3.5 |    0.01 TF/s   |"
          "    0.01 TF/s   |    67% | cuDNN |\n")
    write(folder, "bench_gemm1.log", header +
          "| conv2 14x14x32->64 bwd data |   100 |     170.0 |     125.9 |   11.81 TF/s   |"
          "   15.94 TF/s   |    74% | cuDNN |\n")
    write(folder, "bench_sweep.log",
          "| op | batch | default us | best | best us | default/best |\n"
          "| conv2 14x14x32->64 fwd+bias+relu |   100 |      94.0 | 128x128 s2     |      70.5 |"
          "   133% |\n"
          "| dense1 3136->1024 fwd+bias+relu |   100 |      30.0 | default        |      30.0 |"
          "   100% |\n")
    write(folder, "job.log",
          "INFO:tensorflow:Using config: {'steps': 12000, 'batch_size': 100}\n"
          "INFO:tensorflow:global_step/sec: 2500.0\nINFO:tensorflow:global_step/sec: 2500.0\n"
          "INFO:tensorflow:Saving dict for global step 12000: accuracy = 0.9876, loss = 0.07\n"
          "DEBUG:tensorflow:Wall time by phase: data and model 0.300 s (decoding 0.050 s beside "
          "the model's creation 0.300 s), resume 0.001 s, training 4.900 s (of which checkpoints "
          "and evaluations 0.010 s), evaluation 0.030 s, export 0.010 s more, last checkpoint's "
          "files 0.050 s more; total 5.291 s (checkpoint files written beside the job: 0.200 s; "
          "export files beside the evaluation: 0.040 s)\n")
    write(folder, "profile-ours-cuda-100.csv", PROFILE_RAW)
    write(folder, "profile-ours-cuda-fused2-100.csv", PROFILE_DETAILS)
    write(folder, "profile-ours-cuda-run5-100.csv", "==ERROR== the profiler failed\n")
    # a raw page without its units row: nanoseconds
    write(folder, "profile-ours-cuda-gemm4-1000.csv",
          '"ID","Kernel Name","Grid Size","gpu__time_duration.sum"\n'
          '"0","adam_kernel","(100, 1, 1)","34,800"\n')


def main():
    failures = 0

    def check(ok, what):
        nonlocal failures
        print(("PASS " if ok else "FAIL ") + what)
        failures += not ok

    with tempfile.TemporaryDirectory() as folder:
        make_run(folder)
        out = subprocess.run([sys.executable, os.path.join(HERE, "report.py"), folder],
                             capture_output=True, text=True, check=False)
        text = out.stdout
        check(out.returncode == 0, "report exits 0")
        lines = text.splitlines()

        def row(item):
            return next((l for l in lines if l.startswith(f"| {item} |")), "")

        check("ours-cuda 0.385" in text and "goal 0.39 ms: met" in text,
              "the step against the goal")
        check("(2.01x ours speed)" in text, "PyTorch's graph step against ours")
        check("batch 100 on MNIST: ours-cuda-mnist 0.386; PyTorch graph 0.773 (2.00x ours speed); "
              "goal 0.39 ms: met" in text, "the step on MNIST against PyTorch and the goal")
        check("batch 100 on MNIST, conv2's filter gradient on the defaults: fastest from the "
              "winners, version 2 (CNN_FROM_POOL_V=2) (from the winners, version 2 "
              "(CNN_FROM_POOL_V=2) 0.356; from the winners, version 1 (the default) 0.386)" in text
              and "batch 100 on MNIST, conv2's filter gradient on run 5's defaults: fastest its "
              "GEMM (CNN_CUDA_FUSED=2) (its GEMM (CNN_CUDA_FUSED=2) 0.366; from the winners "
              "(level 3) 0.456)" in text,
              "the ways of conv2's filter gradient on MNIST, each on its own base, fastest first")
        check("keep" in row("31+35+38") and "+15.0 us" in row("31+35+38"),
              "run 5's flips together save 15 us: keep")
        check("keep" in row("30") and "+70.0 us" in row("30"), "item 30 saves 70 us: keep")
        check("keep" in row("33") and "+8.0 us" in row("33"), "item 33 saves 8 us: keep")
        check("keep" in row("25") and "+3.0 us" in row("25"), "item 25 saves 3 us: keep")
        check("flip back (CNN_CUDA_STREAMS=0)" in row("17") and "-20.0 us" in row("17"),
              "item 17 costs 20 us: flip back, naming the switch")
        check("keep" in row("16") and "+15.0 us" in row("16"), "item 16: keep")
        check("keep" in row("15") and "+11.0 us" in row("15"), "item 15: keep")
        check(any("conv2 14x14x32->64 bwd data | 100 | 170.0 | 85.0 | +50% | 148%" in l
                  for l in lines), "a kernel against its version 1 and the library")
        check("faster: make it the default (CNN_CUDA_FUSED=4" in
              row("22 (level 4, its fused forward)") and
              "+5.0 us" in row("22 (level 4, its fused forward)"),
              "candidate 22 saves 5 us against the defaults: make it the default, naming the switch")
        check("slower: leave it off" in row("24 (level 5, its fused forward)") and
              "-10.0 us" in row("24 (level 5, its fused forward)"),
              "candidate 24 costs 10 us: leave it off")
        check("no difference: leave it off" in row("18"), "candidate 18: 1 us of 385 is noise")
        check("no difference" in row("16, on the defaults"), "0.5 us of 385: no difference")
        check("keep" in row("31") and "+10.0 us" in row("31"),
              "run 5's flip 31 saves 10 us: keep")
        check("keep" in row("35") and "+40.0 us" in row("35"),
              "run 5's flip 35 saves 40 us: keep")
        check("slower: flip back (CNN_CUDA_CONV_POOL_FWD=1)" in row("35 on MNIST") and
              "-4.0 us" in row("35 on MNIST"), "run 5's flip 35 costs 4 us on MNIST: flip back")
        check("keep" in row("31+35+38 on MNIST") and "+70.0 us" in row("31+35+38 on MNIST"),
              "run 5's flips together on MNIST: keep")
        check(not any(f"make it the default ({switch}" in text for switch in (
                  "CNN_XENT_V=3", "CNN_CUDA_CONV_POOL_FWD=0", "CNN_CUDA_DATA_FROM_POOL=1")),
              "no row advises a switch to what is already the default")
        check(any("conv2 14x14x32->64 bwd data | 100 | 170.0 | 85.0 | +50% | 148% |" in l
                  for l in lines), "a kernel against version 1 and the library")
        check(any("softmax+xent" in l and "(under 90%)" in l for l in lines),
              "a kernel under 90% of the library is marked")
        check(any("fwd+bias+relu batch 100: default 94.0 us, 128x128 s2 70.5 us (25% less)" in l
                  for l in lines), "a better tile from the sweep")
        check(not any(l.startswith("dense1") for l in lines),
              "a default within 5% of the best is not listed")
        check("40 edges (25 programmatic), 4 forks" in text, "the captured graph's edges")
        check("2500 steps/s" in text and "4.80 s of training for 12000 steps" in text,
              "the job's training time")
        check("test accuracy 98.76%" in text, "the job's accuracy")
        check("job: data and model 0.300 s (decoding 0.050 s" in text and "total 5.291 s" in text,
              "the job's phase times")
        check("faster: make it the default (CNN_CUDA_FUSED=2" in row("14 on MNIST, level 2") and
              "+20.0 us" in row("14 on MNIST, level 2"),
              "item 14 on MNIST: level 2 20 us faster than the defaults")
        check("slower" in row("14, level 2 (random images: conv2's ReLUs dead)"),
              "level 2 on the random images: slower")
        check("faster: make it the default (CNN_FROM_POOL_V=2" in row("37 on MNIST") and
              "+30.0 us" in row("37 on MNIST"), "item 37 on MNIST: version 2 30 us faster")
        check("keep" in row("38 on MNIST") and "+70.0 us" in row("38 on MNIST"),
              "run 5's flip 38 on MNIST: 70 us faster, keep")
        check("+30.0 us" in row("38 (random images: conv2's ReLUs dead)"),
              "run 5's flip 38 on the random images")
        check("faster: make it the default (CNN_CUDA_DENSE_DX_ALIVE=1" in row("39 on MNIST")
              and "+20.0 us" in row("39 on MNIST"), "item 39 on MNIST: 20 us faster")
        check("faster: make it the default (CNN_CUDA_DENSE_SPARSE=1" in row("40 on MNIST, on 39")
              and "+40.0 us" in row("40 on MNIST, on 39"), "item 40 on MNIST: 40 us faster")
        check("slower" in row("40, on 39 (random images: pool2's output all 0)"),
              "item 40 on the random images: slower")
        check("faster: make it the default (CNN_GEMM_V=6" in row("43") and "+12.0 us" in row("43"),
              "item 43: GEMM version 6 12 us faster than the defaults")
        check("the job's step 0.400 ms" in text and "ours-cuda 0.385 ms (+15.0 us)" in text and
              "ours-cuda-mnist 0.386 ms (+14.0 us)" in text and
              "ours-cuda-long 0.395 ms (+5.0 us)" in text and
              "ours-cuda-mnist-long 0.398 ms (+2.0 us)" in text, "the job's step against the bench's")
        check(row("kernel (grid)") == "| kernel (grid) | ours-cuda | ours-cuda-fused2 |",
              "the profile table: one column per engine with kernel rows")
        check(row("gather_kernel (40,1,1)") == "| gather_kernel (40,1,1) | 5.0 | 5.1 |",
              "a kernel's ns (raw page) and us (details page), its name without namespace, "
              "return type and parameters")
        check(row("gemm_kernel<128, 64, (Epilogue)1> (8,16,4)") ==
              "| gemm_kernel<128, 64, (Epilogue)1> (8,16,4) | 63.1 | - |",
              "a kernel's two launches summed, its template arguments kept")
        check(row("conv_pool_bwd_filter_kernel<-2> (20,2,25)").endswith("| 125.0 | - |"),
              "thousands separators read")
        check(row("**sum**") == "| **sum** | 193.1 (4 launches) | 83.1 (2 launches) |",
              "each engine's sum")
        check("ours-cuda-run5: no kernel rows" in text, "a failed profile is reported")
        check(row("adam_kernel (100,1,1)") == "| adam_kernel (100,1,1) | 34.8 |",
              "a raw page without a units row: its first row read, in nanoseconds")
        os.remove(os.path.join(folder, "bench_sweep.log"))
        text = subprocess.run([sys.executable, os.path.join(HERE, "report.py"), folder],
                              capture_output=True, text=True, check=False).stdout
        check("bench_sweep.log missing" in text, "a missing log is reported")
    bad = subprocess.run([sys.executable, os.path.join(HERE, "report.py")], capture_output=True,
                         check=False)
    check(bad.returncode == 2, "usage error: exit 2")
    print(f"SUMMARY test_report: {failures} failed -> {'FAIL' if failures else 'PASS'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
