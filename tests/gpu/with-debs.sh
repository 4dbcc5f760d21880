#!/usr/bin/env bash
# tests/gpu/with-debs.sh: the GPU machines reach no package registry and lack cJSON and Check.
#   tests/gpu/with-debs.sh --fetch     (on a build machine) downloads the .debs into .debs/
#   tests/gpu/with-debs.sh CMD ARGS... (on the GPU machine, .debs/ carried along) unpacks them
#                                      into a private prefix and runs CMD with pkg-config and the
#                                      loader pointed there; the system's / is never touched.
# e.g. device run: tests/gpu/with-debs.sh bash tests/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PKGS=(libcjson-dev libcjson1 check libsubunit0 libsubunit-dev)
if [ "${1:-}" = "--fetch" ]; then
  mkdir -p .debs && (cd .debs && apt-get download "${PKGS[@]}")
  exit 0
fi
PREFIX=${DEBS_PREFIX:-/tmp/debs-prefix}
mkdir -p "$PREFIX"
for f in .debs/*.deb; do dpkg -x "$f" "$PREFIX"; done
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
# The .pc files name /usr: point them at the prefix.
sed -i -e "s|=/usr|=$PREFIX/usr|" "$LIBDIR"/pkgconfig/*.pc
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
exec "$@"
