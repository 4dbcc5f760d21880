#!/usr/bin/env bash
# Static instruction mix of the GEMM kernels' main loops (bench/sass_loop_mix.py) from the SASS
# of a CUDA build's kernels/conv2d.cu and kernels/dense.cu objects: no GPU needed. cuobjdump and
# nvdisasm come from the CUDA toolkit, or from NVIDIA's PyPI wheels (fetched into .whl/sass).
# Usage: bench/sass_mix.sh [build-dir=build-cuda]   (a build with -DWITH_CUDA=ON)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-cuda}
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DWITH_CUDA=ON >/dev/null
cmake --build "$BUILD" --target cnn_kernels -j "$(nproc)" >/dev/null
if ! command -v nvdisasm >/dev/null || ! command -v cuobjdump >/dev/null; then
  TOOLS=$PWD/.whl/sass
  if [ ! -x "$TOOLS/bin/nvdisasm" ]; then
    mkdir -p "$TOOLS/dl" "$TOOLS/bin"
    python3 -m pip download -q --no-deps nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm -d "$TOOLS/dl"
    for w in "$TOOLS"/dl/*.whl; do python3 -m zipfile -e "$w" "$TOOLS/x"; done
    find "$TOOLS/x" -type f \( -name cuobjdump -o -name nvdisasm \) -exec cp {} "$TOOLS/bin" \;
    chmod +x "$TOOLS"/bin/*
  fi
  export PATH=$TOOLS/bin:$PATH
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "SASS main-loop mix, $(git rev-parse --short HEAD 2>/dev/null), $(cuobjdump --version | tail -1)"
for f in conv2d dense; do
  obj=$(find -L "$BUILD/" -name "$f.cu.o" -path "*cnn_kernels*" | head -1)
  (cd "$WORK" && cuobjdump -xelf all "$OLDPWD/$obj" >/dev/null)
  cuobjdump -sass "$WORK"/$f.cu.*.cubin > "$WORK/$f.sass"
  echo; echo "## kernels/$f.cu"
  python3 bench/sass_loop_mix.py "$WORK/$f.sass" 'gemm_kernel'
done
