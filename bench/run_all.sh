#!/usr/bin/env bash
# Runs the benchmarks side by side and writes their tables and charts:
#   bench/run_all.sh            # about 15 minutes on 2 cores
#   bench/run_all.sh --smoke    # seconds: each benchmark once, tiny sizes (CI)
# Output: bench/results/ (JSON, event_chain.md, PNG charts); bench/README.md's
# event_chain tables are rewritten from the same run.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
case "${1-}" in
  "") ;;
  --smoke) smoke=1 ;;
  *) echo "usage: bench/run_all.sh [--smoke]" >&2; exit 2 ;;
esac

scripts/ensure_packages.sh bench bench_run
log="${TMPDIR:-/tmp}/asyncorepp-bench.log"
if ! ./bazelw build -c opt //bench:event_chain //bench:loop_scaling \
    //bench:echo_load //bench:echo_peers //examples:echo_server >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
bin=bazel-bin/bench
# Debian's python3 (the one python3-matplotlib installs into), whatever
# python3 comes first on PATH.
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
out=bench/results
if [ "$smoke" = 1 ]; then
  out="${TMPDIR:-/tmp}/asyncorepp-bench-smoke"
  mkdir -p "$out"
  "$bin/event_chain" --smoke --benchmark_out="$out/event_chain.json" \
    --benchmark_out_format=json >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  "$bin/loop_scaling" --benchmark_filter='/1$' --benchmark_min_time=0.01 \
    --benchmark_out="$out/loop_scaling.json" --benchmark_out_format=json \
    >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  "$py" bench/chain_report.py "$out/event_chain.json" "$out" >/dev/null
  "$py" bench/echo_bench.py bazel-bin "$out" --smoke >"$log" 2>&1 ||
    { cat "$log" >&2; exit 1; }
  # A smoke run must have measured every implementation, skipped none.
  "$py" - "$out/event_chain.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
errors = [b["name"] + ": " + b.get("error_message", "")
          for b in runs if b.get("error_occurred")]
if errors or not runs:
    sys.exit("event_chain smoke run failed: " + ("; ".join(errors) or "no runs"))
print("bench smoke: %d event_chain runs, loop_scaling and echo ok" % len(runs))
PY
  exit 0
fi

mkdir -p "$out"
# Repetitions interleaved: each implementation and its floor are measured
# in the same process run, alternating, so drift hits them alike.
flags=(--benchmark_repetitions=3 --benchmark_enable_random_interleaving=true)
echo "event_chain (about 7 minutes)..."
"$bin/event_chain" "${flags[@]}" --benchmark_min_time=0.2 \
  --benchmark_out="$out/event_chain.json" \
  --benchmark_out_format=json > "$out/event_chain.txt"
echo "loop_scaling (about 2 minutes)..."
"$bin/loop_scaling" "${flags[@]}" --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/loop_scaling.json" --benchmark_out_format=json \
  > "$out/loop_scaling.txt"
"$py" bench/chain_report.py "$out/event_chain.json" "$out" bench/README.md
echo "instructions per event (callgrind, about 1 minute)..."
"$py" bench/chain_instructions.py "$bin/event_chain" \
  "$out/event_chain_instructions.md" bench/README.md
echo "echo servers under load (about 4 minutes)..."
"$py" bench/echo_bench.py bazel-bin "$out" --readme bench/README.md
{ nproc; grep -m1 'model name' /proc/cpuinfo; uname -sr; } > "$out/machine.txt"
echo "results in $out/"
