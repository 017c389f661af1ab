#!/usr/bin/env python3
"""User-space instructions per dispatched event and per re-registered
channel, for every implementation in //bench:event_chain (callgrind).

Each implementation runs alone under callgrind for a fixed number of rounds
(--iterations), collecting only inside the timed passes (timed_round,
timed_rereg: --toggle-collect), so the figures repeat whatever the machine's
load. Instructions per event = collected / (rounds x (A + W)); per channel =
collected / (passes x N). Everything in user space counts, the libc wrappers
of recv/send included (the raw loops pay them too).

  bazel build -c opt //bench:event_chain
  bench/chain_instructions.py bazel-bin/bench/event_chain [OUT.md [README]]
"""
import re
import subprocess
import sys
import tempfile

N, A, W = 1000, 100, 1000
ROUNDS = 10


def implementations(binary):
    out = subprocess.run([binary, "--benchmark_list_tests=true",
                          "--benchmark_filter=^Chain/"], check=True,
                         capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        m = re.match(r"^Chain/([^/]+)/", line)
        if m and m.group(1) not in names:
            names.append(m.group(1))
    return names


def collected(binary, bench_filter, function):
    """Instructions callgrind collected inside `function`, or None."""
    with tempfile.NamedTemporaryFile(suffix=".callgrind") as out:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out.name,
             "--toggle-collect=*" + function + "*", binary,
             "--benchmark_filter=" + bench_filter,
             "--iterations=%d" % ROUNDS],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if run.returncode != 0 or "error_message" in run.stdout or \
                "ERROR OCCURRED" in run.stdout:
            return None
        with open(out.name) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    return None


def main(argv):
    if len(argv) not in (2, 3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    binary = argv[1]
    rows = ["| implementation | instructions per event | instructions per "
            "re-registered channel |", "| --- | ---: | ---: |"]
    for impl in implementations(binary):
        event = collected(binary, "^Chain/%s/N:%d/A:%d/" % (impl, N, A),
                          "timed_round")
        rereg = None
        if not impl.endswith("-rereg"):
            rereg = collected(binary, "^Rereg/%s/N:%d(/|$)" % (impl, N),
                              "timed_rereg")
        rows.append("| %s | %s | %s |" % (
            impl,
            "%.0f" % (event / (ROUNDS * (A + W))) if event else "skipped",
            "%.0f" % (rereg / (ROUNDS * N)) if rereg else "—"))
        print(rows[-1], flush=True)
    text = ("User-space instructions (callgrind, N = %d, A = %d, W = %d, %d "
            "rounds):\n\n" % (N, A, W, ROUNDS)) + "\n".join(rows) + "\n"
    if len(argv) >= 3:
        with open(argv[2], "w") as f:
            f.write(text)
    if len(argv) == 4:  # README: the region between the markers
        with open(argv[3]) as f:
            readme = f.read()
        start = "<!-- event_chain instructions -->"
        end = "<!-- /event_chain instructions -->"
        if start in readme and end in readme:
            readme = (readme[:readme.index(start) + len(start)] + "\n" + text +
                      readme[readme.index(end):])
            with open(argv[3], "w") as f:
                f.write(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
