#!/bin/sh
# Runs one of the examples' integration tests (examples/*_test.py) with the
# system Python 3.11, which still ships asyncore and asynchat; Bazel 4.2.3's
# py_test needs toolchains that are not available offline.
# Arguments: the .py script, then its own arguments (the binaries it drives).
set -eu
script="$1"
shift
exec /usr/bin/python3 -B "$script" "$@"
