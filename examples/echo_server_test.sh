#!/bin/sh
# Runs echo_server_test.py with the system Python 3.11 (which still ships
# asyncore); Bazel 4.2.3's py_test needs toolchains that are not available
# offline. Arguments: the echo_server binary, then the .py script.
set -eu
exec /usr/bin/python3 "$2" "$1"
