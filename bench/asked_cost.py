#!/usr/bin/env python3
"""Instructions the interest phase spends per asked channel (callgrind).

Runs //bench:loop_scaling's asked rows under callgrind and divides the
instructions executed in ChannelMap::update_interest itself (the walk, not
the predicates it calls) by the number of readable() calls it made: one per
asked channel and iteration. Issue #10's target: <= 20 beyond the two
virtual calls (each call is a vtable load, the argument move and the call).

  bazel build -c opt //bench:loop_scaling
  bench/asked_cost.py bazel-bin/bench/loop_scaling [filter]
"""
import re
import subprocess
import sys
import tempfile

WALK = "asyncore::ChannelMap::update_interest()"
PREDICATE = re.compile(r"::readable\(\)$")


def parse(path):
    """(self instructions of WALK, calls from WALK to a readable())."""
    names = {}
    self_cost = calls = 0
    current = callee = None
    after_calls = False
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line)
            if m:
                kind, fid, name = m.groups()
                if name:
                    names[fid] = name
                if kind == "fn":
                    current, callee = names.get(fid), None
                else:
                    callee = names.get(fid)
                continue
            if current != WALK:
                continue
            if line.startswith("calls="):
                if callee and PREDICATE.search(callee):
                    calls += int(line.split("=")[1].split()[0])
                after_calls = True
                continue
            m = re.match(r"^[+\-*]?\d*\s+(\d+)$", line) or re.match(
                r"^\*\s+(\d+)$", line)
            if m:
                if not after_calls:
                    self_cost += int(m.group(1))
                after_calls = False
    return self_cost, calls


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = sys.argv[1]
    bench_filter = sys.argv[2] if len(sys.argv) > 2 else "epoll/asked/1000$"
    with tempfile.NamedTemporaryFile(suffix=".callgrind") as out:
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out.name,
             binary, "--benchmark_filter=" + bench_filter,
             "--benchmark_min_time=0.3"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self_cost, calls = parse(out.name)
    if calls == 0:
        print("no readable() calls from the interest phase", file=sys.stderr)
        return 1
    per = self_cost / calls
    print(f"{bench_filter}: {per:.1f} instructions per asked channel in the "
          f"interest phase ({calls} asked), {per - 6:.1f} beyond the two "
          f"virtual calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
