#!/usr/bin/env bash
# Installs with apt (Debian/Ubuntu) the packages that one or more jobs of this
# repository need and the machine lacks; nothing already installed is touched
# (--no-upgrade), and nothing at all happens when everything is present.
#   scripts/ensure_packages.sh build            # Bazel and the compiler
#   scripts/ensure_packages.sh test bench fuzz  # several jobs at once
# Jobs: build, test (GoogleTest, Benchmark and the clients the integration
# tests drive), bench (the benchmarks and the peer libraries they compare
# with), fuzz (clang's libFuzzer), cmake, kqueue (what builds libkqueue),
# stress (valgrind), format (clang-format), bench_run (what bench/run_all.sh
# uses beyond the benchmarks: matplotlib for the charts, strace, callgrind).
# Prints one line when it installs; apt's own output goes to a log file whose
# path that line names. Exits 1 naming the packages apt could not install.
set -euo pipefail

# "package:path (a glob) that exists once it is installed", per job.
declare -A job_packages=(
  [build]="bazel-bootstrap:/usr/bin/bazel
           bazel-rules-java:/usr/share/bazel/rules/java
           bazel-platforms:/usr/share/bazel/tools/platforms
           g++:/usr/bin/g++"
  [test]="libgtest-dev:/usr/include/gtest/gtest.h
          libgmock-dev:/usr/include/gmock/gmock.h
          libbenchmark-dev:/usr/include/benchmark/benchmark.h
          python3:/usr/bin/python3
          curl:/usr/bin/curl
          wrk:/usr/bin/wrk
          chromium:/usr/bin/chromium"
  [bench]="libbenchmark-dev:/usr/include/benchmark/benchmark.h
           libev-dev:/usr/include/ev.h
           libevent-dev:/usr/include/event2/event.h
           libuv1-dev:/usr/include/uv.h"
  [fuzz]="clang:/usr/bin/clang++
          libclang-rt-dev:/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a"
  [cmake]="cmake:/usr/bin/cmake
           pkg-config:/usr/bin/pkg-config"
  [kqueue]="cmake:/usr/bin/cmake"
  [stress]="valgrind:/usr/bin/valgrind
            python3:/usr/bin/python3"
  [format]="clang-format:/usr/bin/clang-format"
  [bench_run]="python3-matplotlib:/usr/lib/python3/dist-packages/matplotlib
               strace:/usr/bin/strace
               valgrind:/usr/bin/valgrind"
)

missing=()
for job in "$@"; do
  if [ -z "${job_packages[$job]+set}" ]; then
    echo "ensure_packages.sh: unknown job '$job' (known: ${!job_packages[*]})" >&2
    exit 2
  fi
  for entry in ${job_packages[$job]}; do
    package="${entry%%:*}"
    path="${entry#*:}"
    compgen -G "$path" >/dev/null && continue
    case " ${missing[*]-} " in *" $package "*) ;; *) missing+=("$package") ;; esac
  done
done
[ "${#missing[@]}" -eq 0 ] && exit 0

log="${TMPDIR:-/tmp}/asyncorepp-apt.log"
list="${missing[*]}"
echo "installing ${list// /, } (first run only; apt's log: $log)" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
apt_install() {
  $sudo apt-get install -y --no-upgrade "$@" >>"$log" 2>&1
}
{ echo "=== $(date -u) apt-get update"; } >>"$log"
$sudo apt-get update >>"$log" 2>&1 || true  # offline lists may still do
if ! apt_install "${missing[@]}"; then
  # Name the culprits: retry one by one.
  failed=()
  for package in "${missing[@]}"; do
    apt_install "$package" || failed+=("$package")
  done
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "ensure_packages.sh: apt-get could not install: ${failed[*]} (see $log)" >&2
    exit 1
  fi
fi
