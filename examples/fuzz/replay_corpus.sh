#!/bin/sh
# Writes the seeds of a corpus generator into a temporary directory and runs
# a fuzz target's replayer over them: replay_corpus.sh GENERATOR.py REPLAYER
set -eu
dir="${TEST_TMPDIR:-$(mktemp -d)}/corpus"
/usr/bin/python3 -B "$1" --write "$dir"
exec "$2" "$dir"
