#!/usr/bin/env bash
# Builds the libFuzzer targets tests/fuzz/fuzz_*.c with clang (libFuzzer + ASan + UBSan) directly
# against the parser sources they exercise (io/*.c; cli/model_graph.c, cli/predict_input.c,
# cli/train_config.c, cli/args.c, cli/tf_log.c and core/model_spec.c for the programs' own parsers). No CMake:
# the engine's build is untouched.
#
#   tests/fuzz/build.sh            -> $FUZZ_BUILD_DIR (default <repo>/build-fuzz)/fuzz_<name>
#
# Objects are rebuilt only when their source or a header they include changed (clang -MMD).
# Needs clang and its sanitizer/fuzzer runtimes (Debian/Ubuntu: clang, libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${FUZZ_BUILD_DIR:-$PWD/build-fuzz}
CC=${FUZZ_CC:-clang}
JOBS=${JOBS:-2}
command -v "$CC" >/dev/null || { echo "fuzz/build.sh: $CC not found (apt install clang libclang-rt-14-dev)" >&2; exit 1; }
mkdir -p "$OUT/obj"

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-std=c11 -g -O1 -fno-omit-frame-pointer $SAN -Wall -Wextra -Werror -I. -Itests/fuzz \
  -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE"
CJSON_CFLAGS=$(pkg-config --cflags libcjson 2>/dev/null || true)
CJSON_LIBS=$(pkg-config --libs libcjson 2>/dev/null || echo -lcjson)
# io/fs*.c, io/http.c: gs:// and s3:// through libcurl and OpenSSL
NET_LIBS=$(pkg-config --libs libcurl openssl 2>/dev/null || echo -lcurl -lssl -lcrypto)

# Is $2 (an object) older than its source $1 or any header listed in its .d file?
stale() {
  local src=$1 obj=$2 dep
  [ -f "$obj" ] && [ -f "${obj%.o}.d" ] || return 0
  [ "$src" -nt "$obj" ] && return 0
  for dep in $(sed -e 's/^[^:]*://' -e 's/\\$//' "${obj%.o}.d"); do
    [ "$dep" -nt "$obj" ] && return 0
  done
  return 1
}

# compile SRC OBJ EXTRA_FLAGS...: in the background, at most $JOBS at a time
pids=()
compile() {
  local src=$1 obj=$2; shift 2
  stale "$src" "$obj" || return 0
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  echo "  cc $src"
  "$CC" $CFLAGS "$@" -MMD -MF "${obj%.o}.d" -c "$src" -o "$obj" &
  pids+=($!)
}

LIB_SRCS=(io/*.c cli/model_graph.c cli/predict_input.c cli/train_config.c cli/args.c cli/tf_log.c
          core/model_spec.c)
LIB_OBJS=()
for src in "${LIB_SRCS[@]}"; do
  obj="$OUT/obj/$(echo "${src%.c}" | tr / _).o"
  compile "$src" "$obj" -fsanitize=fuzzer-no-link $CJSON_CFLAGS
  LIB_OBJS+=("$obj")
done
TARGETS=()
for src in tests/fuzz/fuzz_*.c; do
  name=$(basename "${src%.c}")
  compile "$src" "$OUT/obj/$name.o" -fsanitize=fuzzer-no-link $CJSON_CFLAGS
  TARGETS+=("$name")
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ $fail -eq 0 ] || { echo "fuzz/build.sh: compile failed" >&2; exit 1; }

for name in "${TARGETS[@]}"; do
  bin="$OUT/$name"
  newest=$(ls -t "$OUT/obj/$name.o" "${LIB_OBJS[@]}" | head -1)
  if [ ! -f "$bin" ] || [ "$newest" -nt "$bin" ]; then
    echo "  ld $name"
    "$CC" -fsanitize=fuzzer $SAN "$OUT/obj/$name.o" "${LIB_OBJS[@]}" -lz -lm $CJSON_LIBS $NET_LIBS -o "$bin"
  fi
done
# the seed generator (a plain program, see make_seeds.c)
compile tests/fuzz/make_seeds.c "$OUT/obj/make_seeds.o"
wait
if [ ! -f "$OUT/make_seeds" ] || [ "$OUT/obj/make_seeds.o" -nt "$OUT/make_seeds" ]; then
  "$CC" $SAN "$OUT/obj/make_seeds.o" "${LIB_OBJS[@]}" -lz -lm $CJSON_LIBS $NET_LIBS -o "$OUT/make_seeds"
fi
echo "fuzz targets in $OUT: ${TARGETS[*]}"
