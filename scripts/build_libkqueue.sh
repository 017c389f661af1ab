#!/usr/bin/env bash
# Builds libkqueue (a userspace kqueue over epoll, for running the kqueue
# backend's tests on Linux; never part of the library) from the tarball in
# the shared third_party directory into third_party/libkqueue/install, where
# //third_party/libkqueue:kqueue finds it (--config=libkqueue).
#   scripts/build_libkqueue.sh        # once; about 20 s; does nothing if built
# The tarball is looked for in $ASYNCOREPP_THIRD_PARTY, then ../shared/
# third_party next to this repository (or next to the one a local clone
# came from). Exits 3 (and says so) when it is nowhere, so that CI can
# report the kqueue job as not run.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
dest="$root/third_party/libkqueue"
[ -f "$dest/install/lib/libkqueue.a" ] && exit 0

# A local clone also looks next to the repository it was cloned from.
origin=$(git config --get remote.origin.url 2>/dev/null || true)
[ -d "$origin" ] || origin="$root"
tarball=""
for dir in ${ASYNCOREPP_THIRD_PARTY:+"$ASYNCOREPP_THIRD_PARTY"} \
           "$root/../shared/third_party" "$origin/../shared/third_party"; do
  for f in "$dir"/libkqueue-*.tar.gz; do
    [ -f "$f" ] && tarball="$f" && break 2
  done
done
if [ -z "$tarball" ]; then
  echo "build_libkqueue.sh: no libkqueue-*.tar.gz in \$ASYNCOREPP_THIRD_PARTY or ../shared/third_party" >&2
  exit 3
fi

scripts/ensure_packages.sh kqueue
log="${TMPDIR:-/tmp}/asyncorepp-libkqueue.log"
echo "building libkqueue from $(basename "$tarball") (first run only; log: $log)" >&2
rm -rf "$dest/src" "$dest/build" "$dest/install"  # not BUILD.bazel
mkdir -p "$dest/src"
tar xzf "$tarball" -C "$dest/src" --strip-components=1
if ! { cmake -S "$dest/src" -B "$dest/build" -DCMAKE_INSTALL_PREFIX="$dest/install" \
         -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_POSITION_INDEPENDENT_CODE=ON &&
       cmake --build "$dest/build" -j2 &&
       cmake --install "$dest/build"; } >"$log" 2>&1; then
  tail -20 "$log" >&2
  echo "build_libkqueue.sh: the build failed (log: $log)" >&2
  exit 1
fi
ls "$dest/install/lib/libkqueue.a" >/dev/null
