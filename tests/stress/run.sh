#!/usr/bin/env bash
# The stress suite: load, faults, hostile input and valgrind memcheck against
# the example servers built with -c opt (see tests/stress/README.md).
#   tests/stress/run.sh            # --short: about 2 minutes (for CI)
#   tests/stress/run.sh --full     # about 5 minutes: the figures in README.md
# Other arguments go to suite.py (e.g. --only load,hostile, --json FILE).
# Prints "ok ..." per step, the results table, then "stress: N passed, N
# failed"; exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=--short
args=()
for arg in "$@"; do
  case "$arg" in
    --short | --full) mode="$arg" ;;
    *) args+=("$arg") ;;
  esac
done

# Bazel and the compiler; wrk and curl; valgrind and python3.
scripts/ensure_packages.sh build test stress

targets=(//examples:echo_server //examples:http_server //examples:chat_server
  //examples:port_forwarder //examples:udp_echo //tests/stress:fault_server)
./bazelw build -c opt "${targets[@]}"

# The output tree is shared with whoever else builds in this checkout: copy
# the binaries out at once, so that the suite runs what was just built.
bin_dir=$(mktemp -d "${TMPDIR:-/tmp}/asyncorepp-stress-bin.XXXXXX")
trap 'rm -rf "$bin_dir"' EXIT
out=$(bazel info -c opt bazel-bin 2>/dev/null)
for target in "${targets[@]}"; do
  path="${target#//}"
  cp "$out/${path%%:*}/${path#*:}" "$bin_dir/"
done

python3 tests/stress/suite.py --bin "$bin_dir" "$mode" "${args[@]+"${args[@]}"}"
