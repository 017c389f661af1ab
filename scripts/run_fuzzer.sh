#!/usr/bin/env bash
# Builds one of the project's libFuzzer targets with clang plus
# AddressSanitizer and UndefinedBehaviorSanitizer, and fuzzes it for SECONDS
# (default 60) from a copy of its seed corpus (new corpus entries stay in the
# temporary directory, not in the repo).
#   scripts/run_fuzzer.sh async_chat [SECONDS] [libFuzzer flags...]
#   scripts/run_fuzzer.sh http_request [SECONDS] [libFuzzer flags...]
# Exits non-zero if the build fails or the fuzzer finds a crash, a leak, UB
# or a broken invariant; the reproducer is copied to $FUZZ_ARTIFACTS (default
# /tmp/<target>_fuzz_artifacts) and its name printed. Replay one with:
#   scripts/run_fuzzer.sh TARGET 0 path/to/crash-...   (runs just that input)
# The Bazel build cannot use clang (its toolchain is gcc), hence a script;
# the *_fuzz_replay tests run the same targets over the seeds under gcc.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:?usage: scripts/run_fuzzer.sh async_chat|http_request [SECONDS] [flags...]}"
seconds="${2:-60}"
shift $(( $# >= 2 ? 2 : 1 ))
CXX="${CXX_FUZZ:-clang++}"
artifacts="${FUZZ_ARTIFACTS:-/tmp/${target}_fuzz_artifacts}"

work="$(mktemp -d "${TMPDIR:-/tmp}/${target}_fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"

case "$target" in
  async_chat)
    # The whole library (kqueue_backend.cc compiles to nothing where
    # <sys/event.h> is missing, as in Bazel).
    sources=(chat/fuzz/async_chat_fuzzer.cc)
    for f in backends/*.cc backends/internal/*.cc core/*.cc core/internal/*.cc \
             chat/*.cc; do
      [[ "$f" == *_test.cc ]] || sources+=("$f")
    done
    cp chat/fuzz/corpus/* "$work/corpus/"
    max_len=8192
    ;;
  http_request)
    sources=(examples/fuzz/http_request_fuzzer.cc examples/http_request.cc)
    python3 examples/fuzz/http_corpus.py --write "$work/corpus"
    max_len=20000
    ;;
  *)
    echo "run_fuzzer.sh: unknown target '$target' (async_chat, http_request)" >&2
    exit 2
    ;;
esac

scripts/ensure_packages.sh fuzz

echo "=== building the $target fuzzer with $CXX"
"$CXX" -std=c++20 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. "${sources[@]}" -o "$work/fuzzer"

if [ "$seconds" = 0 ] && [ "$#" -gt 0 ]; then
  exec "$work/fuzzer" "$@"
fi

echo "=== fuzzing $target for ${seconds}s"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
rc=0
"$work/fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$@" "$work/corpus" 2>"$work/log" || rc=$?
grep -v '^"' "$work/log" | tail -n 25 || true
if [ "$rc" -ne 0 ] || compgen -G "$work/artifacts/*" >/dev/null; then
  mkdir -p "$artifacts"
  cp "$work"/artifacts/* "$artifacts/" 2>/dev/null || true
  echo "run_fuzzer.sh: $target FAILED (exit $rc); reproducers in $artifacts:" >&2
  ls -1 "$artifacts" >&2 || true
  exit 1
fi
echo "run_fuzzer.sh: $target passed (${seconds}s, no crash)"
