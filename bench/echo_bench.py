#!/usr/bin/env python3
"""//bench:echo: echo servers under a closed-loop load, side by side.

Servers: ours (//examples:echo_server, each backend), a raw epoll server
(the floor), libevent's bufferevent and libuv's stream echo
(//bench:echo_peers), and Python 3.11's asyncore echo server from its
documentation (bench/echo_asyncore.py). The load is //bench:echo_load: C
connections, one 64-byte message outstanding each.

Per server and C: messages/s and p50/p99 round trip as the client sees them,
and the server's CPU time per message (/proc/PID/task/*/schedstat), the figure
that compares frameworks fairly when the client saturates its core; server
and client are pinned to different cores. Then, per server: system calls
per echoed message (strace -c -f over a fixed run of one connection) and
RSS per idle connection (after one exchange on each).

    bench/echo_bench.py BIN_DIR OUT_DIR [--smoke] [--readme FILE]

BIN_DIR holds bench/echo_load, bench/echo_peers, examples/echo_server (a
bazel-bin). Writes OUT_DIR/echo.json, echo.md and echo_cpu.png.
"""
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONNECTIONS = [1, 10, 100, 1000]
SECONDS = 2.0
REPETITIONS = 3
STRACE_MESSAGES = 5000
IDLE_CONNECTIONS = 2000
SERVER_CPU, CLIENT_CPU = "1", "0"


def servers(bin_dir):
    echo = os.path.join(bin_dir, "examples", "echo_server")
    peers = os.path.join(bin_dir, "bench", "echo_peers")
    out = []
    for backend in ("epoll", "poll", "select"):
        out.append(("ours-" + backend,
                    [echo, "--port", "0", "--backend", backend]))
    for impl in ("raw", "libevent", "libuv"):
        out.append((impl if impl != "raw" else "raw-epoll",
                    [peers, "--impl", impl, "--port", "0"]))
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
        else sys.executable
    out.append(("python-asyncore",
                [python, os.path.join(HERE, "echo_asyncore.py"), "0"]))
    return out


class Server:
    """A server process pinned to SERVER_CPU, with its port and CPU time."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU] + argv, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"listening on [\d.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("server did not start: %r" % argv)

    def cpu_seconds(self):
        # schedstat's first field: nanoseconds on a CPU, user and system,
        # exact (utime/stime in /proc/PID/stat move in 10 ms ticks); summed
        # over the threads.
        total = 0
        task_dir = "/proc/%d/task" % self.proc.pid
        for task in os.listdir(task_dir):
            try:
                with open(os.path.join(task_dir, task, "schedstat")) as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                pass  # a thread that just ended
        return total / 1e9

    def rss_bytes(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def load(bin_dir, port, connections, seconds=None, messages=None):
    argv = ["taskset", "-c", CLIENT_CPU,
            os.path.join(bin_dir, "bench", "echo_load"), "--port", str(port),
            "--connections", str(connections)]
    argv += ["--seconds", str(seconds)] if seconds else \
        ["--messages", str(messages)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise RuntimeError("echo_load failed: " + run.stdout + run.stderr)
    return json.loads(run.stdout)


def syscalls_per_message(bin_dir, argv, messages):
    server = Server(argv)
    try:
        out = "/tmp/asyncorepp-echo-strace.%d" % os.getpid()
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-o", out, "-p", str(server.proc.pid)],
            stderr=subprocess.PIPE, text=True)
        # Attached once strace says so (for every thread).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "attached" in tracer.stderr.readline():
                break
        load(bin_dir, server.port, 1, messages=messages)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=10)
        calls = 0
        with open(out) as f:
            for line in f:
                parts = line.split()
                # "% time  seconds  usecs/call  calls  [errors]  total"
                if parts and parts[-1] == "total":
                    calls = int(parts[3])
        os.unlink(out)
        return calls / messages
    finally:
        server.stop()


def rss_per_idle_connection(argv, count):
    server = Server(argv)
    socks = []
    try:
        before = server.rss_bytes()
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", server.port))
            socks.append(s)
        # One byte there and back on each: every connection was accepted and
        # has its handler.
        for s in socks:
            s.sendall(b"x")
        for s in socks:
            s.settimeout(10)
            if s.recv(1) != b"x":
                raise RuntimeError("no echo")
        return (server.rss_bytes() - before) / count
    finally:
        for s in socks:
            s.close()
        server.stop()


def measure(bin_dir, smoke):
    connections = [1, 10] if smoke else CONNECTIONS
    seconds = 0.2 if smoke else SECONDS
    repetitions = 1 if smoke else REPETITIONS
    results = []
    for name, argv in servers(bin_dir):
        row = {"server": name, "runs": {}}
        for c in connections:
            if name == "ours-select" and c >= 1000:
                row["runs"][str(c)] = {"skipped": "select: FD_SETSIZE"}
                continue
            samples = []
            for _ in range(repetitions):
                server = Server(argv)
                try:
                    cpu0 = server.cpu_seconds()
                    sample = load(bin_dir, server.port, c, seconds=seconds)
                    cpu = server.cpu_seconds() - cpu0
                finally:
                    server.stop()
                sample["server_cpu_us_per_message"] = (
                    cpu * 1e6 / sample["messages"] if sample["messages"]
                    else None)
                samples.append(sample)
            # Each figure's median over the repetitions (a VM's wakeups
            # make single runs at small C move by 30 %).
            run = {key: statistics.median(s[key] for s in samples)
                   for key in samples[0]}
            run["repetitions"] = repetitions
            row["runs"][str(c)] = run
            print("%-16s C=%-5d %8.0f msg/s  server %.2f µs CPU/msg" % (
                name, c, run["messages_per_second"],
                run["server_cpu_us_per_message"] or 0), flush=True)
        row["syscalls_per_message"] = syscalls_per_message(
            bin_dir, argv, 500 if smoke else STRACE_MESSAGES)
        # select serves fds below FD_SETSIZE (1024) only.
        idle = 50 if smoke else (900 if name == "ours-select"
                                 else IDLE_CONNECTIONS)
        row["idle_connections"] = idle
        row["rss_per_idle_connection"] = rss_per_idle_connection(argv, idle)
        print("%-16s %.2f syscalls/msg, %.0f B RSS per idle connection" % (
            name, row["syscalls_per_message"],
            row["rss_per_idle_connection"]), flush=True)
        results.append(row)
    return {"connections": connections, "seconds": seconds,
            "results": results}


def tables(data):
    cs = data["connections"]
    lines = ["| server | " + " | ".join("C %d: msg/s" % c for c in cs) +
             " | " + " | ".join("C %d: server µs CPU/msg" % c for c in cs) +
             " | p50 / p99 µs at C %d | syscalls per message | RSS per idle "
             "connection (connections) |" % cs[-1],
             "| --- |" + " ---: |" * (2 * len(cs) + 3)]
    for row in data["results"]:
        rate, cpu = [], []
        for c in cs:
            run = row["runs"].get(str(c), {})
            if "skipped" in run:
                rate.append("skipped")
                cpu.append("skipped")
                continue
            rate.append("{:,.0f}".format(run["messages_per_second"])
                        .replace(",", " "))
            cpu.append("%.2f" % run["server_cpu_us_per_message"])
        last = row["runs"].get(str(cs[-1]), {})
        latency = ("%d / %d" % (last["p50_us"], last["p99_us"])
                   if "p50_us" in last else "—")
        lines.append("| %s | %s | %s | %s | %.2f | %s |" % (
            row["server"], " | ".join(rate), " | ".join(cpu), latency,
            row["syscalls_per_message"],
            "%.0f B (%d)" % (row["rss_per_idle_connection"],
                             row["idle_connections"])))
    return "\n".join(lines)


def chart(data, out_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("echo_bench.py: matplotlib missing, no chart", file=sys.stderr)
        return
    cs = data["connections"]
    fig, ax = plt.subplots(figsize=(9, 5))
    width = 0.8 / len(data["results"])
    for i, row in enumerate(data["results"]):
        values = [row["runs"].get(str(c), {}).get(
            "server_cpu_us_per_message") or 0 for c in cs]
        ax.bar([k + i * width for k in range(len(cs))], values, width,
               label=row["server"])
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(cs))])
    ax.set_xticklabels(["C = %d" % c for c in cs])
    ax.set_ylabel("server CPU time per echoed message (µs)")
    ax.set_yscale("log")
    ax.set_title("//bench:echo: 64-byte messages, closed loop")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.savefig(os.path.join(out_dir, "echo_cpu.png"), dpi=110,
                bbox_inches="tight")
    plt.close(fig)


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    smoke = "--smoke" in argv
    readme = None
    if "--readme" in argv:
        readme = argv[argv.index("--readme") + 1]
        args.remove(readme)
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    bin_dir, out_dir = args
    os.makedirs(out_dir, exist_ok=True)
    data = measure(bin_dir, smoke)
    with open(os.path.join(out_dir, "echo.json"), "w") as f:
        json.dump(data, f, indent=1)
    text = ("64-byte messages, closed loop, %g s per run, medians of %d "
            "runs; server on CPU %s, client on CPU %s:\n\n" % (
                data["seconds"], 1 if smoke else REPETITIONS, SERVER_CPU,
                CLIENT_CPU)) + tables(data)
    with open(os.path.join(out_dir, "echo.md"), "w") as f:
        f.write(text + "\n")
    chart(data, out_dir)
    if readme:
        with open(readme) as f:
            content = f.read()
        start, end = "<!-- echo tables -->", "<!-- /echo tables -->"
        if start in content and end in content:
            content = (content[:content.index(start) + len(start)] + "\n" +
                       text + "\n" + content[content.index(end):])
            with open(readme, "w") as f:
                f.write(content)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
