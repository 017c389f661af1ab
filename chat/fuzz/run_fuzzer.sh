#!/usr/bin/env bash
# Builds chat/fuzz/async_chat_fuzzer.cc with clang's libFuzzer plus
# AddressSanitizer and UndefinedBehaviorSanitizer, and fuzzes for SECONDS
# (default 60) starting from a copy of the seed corpus in chat/fuzz/corpus
# (new corpus entries stay in the temporary directory, not in the repo).
#   chat/fuzz/run_fuzzer.sh [SECONDS] [extra libFuzzer flags...]
# Exits non-zero if the build fails or the fuzzer finds a crash, a leak, UB
# or a broken invariant; the reproducer is copied to $FUZZ_ARTIFACTS (default
# /tmp/async_chat_fuzz_artifacts) and its name printed. Replay one with:
#   chat/fuzz/run_fuzzer.sh 0 path/to/crash-...   (runs just that input)
# The Bazel build cannot use clang (its toolchain is gcc), hence a script;
# //chat:async_chat_fuzz_replay runs the same target over the corpus under
# gcc as an ordinary test.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${1:-60}"
shift || true
CXX="${CXX_FUZZ:-clang++}"
artifacts="${FUZZ_ARTIFACTS:-/tmp/async_chat_fuzz_artifacts}"

if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "run_fuzzer.sh: $CXX not found (install clang)" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/async_chat_fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The library sources the channel needs (kqueue_backend.cc compiles to
# nothing where <sys/event.h> is missing, as in Bazel).
sources=(
  chat/fuzz/async_chat_fuzzer.cc
  chat/async_chat.cc
  core/channel_map.cc core/dispatcher.cc core/dispatcher_with_send.cc
  core/file_dispatcher.cc core/log.cc core/loop.cc core/signals.cc
  core/socket.cc
  backends/epoll_backend.cc backends/kqueue_backend.cc backends/kqueue_logic.cc
  backends/poll_backend.cc backends/registry.cc backends/select_backend.cc
)

echo "=== building the fuzzer with $CXX"
"$CXX" -std=c++20 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. "${sources[@]}" -o "$work/async_chat_fuzzer"

if [ "$seconds" = 0 ] && [ "$#" -gt 0 ]; then
  exec "$work/async_chat_fuzzer" "$@"
fi

mkdir -p "$work/corpus" "$work/artifacts"
cp chat/fuzz/corpus/* "$work/corpus/"

echo "=== fuzzing for ${seconds}s"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
rc=0
"$work/async_chat_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -max_len=8192 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$@" "$work/corpus" 2>"$work/log" || rc=$?
grep -v '^"' "$work/log" | tail -n 25 || true
if [ "$rc" -ne 0 ] || compgen -G "$work/artifacts/*" >/dev/null; then
  mkdir -p "$artifacts"
  cp "$work"/artifacts/* "$artifacts/" 2>/dev/null || true
  echo "run_fuzzer.sh: FAILED (exit $rc); reproducers in $artifacts:" >&2
  ls -1 "$artifacts" >&2 || true
  exit 1
fi
echo "run_fuzzer.sh: passed (${seconds}s, no crash)"
