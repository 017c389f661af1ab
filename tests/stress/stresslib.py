"""What the stress suite's parts share (tests/stress/*.py).

Builds on examples/testlib.py (the integration tests' helpers: processes that
announce their port, bounded waits, /proc readings, socket chores) and adds
the suite's own: the figures every part adds to (Results), starting a server
with a given descriptor limit, "settle" (after a fault the server must come
back to its baseline descriptor count and use no CPU when idle), worker
processes that speak a line protocol on stdin/stdout, and small HTTP and echo
probes. Standard library only; every wait is bounded; every process started
is killed and reaped.
"""

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples")
sys.path.insert(0, EXAMPLES)
sys.path.insert(0, os.path.join(EXAMPLES, "fuzz"))

import testlib  # noqa: E402
from testlib import (HOST, IO_TIMEOUT, Failure, check, connect,  # noqa: E402,F401
                     recv_exactly, rst_close)

MIB = 1 << 20
KIB = 1 << 10
NOFILE_WANT = 20000  # the machine's hard limit; children inherit the soft one
IDLE_WINDOW = 1.0    # seconds of idle CPU measured after every fault
IDLE_LIMIT = 0.05    # CPU seconds allowed in that window ("near zero")
SETTLE_TIMEOUT = 20.0


class Results:
    """The figures of the results table, added to by every part."""

    def __init__(self):
        self.held = {}          # what -> concurrent connections held
        self.bytes = {}         # what -> bytes moved (and checked)
        self.faults = {}        # what -> faults injected
        self.inputs = {}        # what -> hostile inputs tried
        self.rss = {}           # what -> bytes of RSS per connection
        self.memcheck = {}      # server -> valgrind's verdict
        self.losses = 0         # bytes or connections lost (any fails a step)
        self.notes = []         # surprising behaviour seen (not failures)
        self.steps = []         # (name, ok, seconds, message)

    def add(self, table, what, n):
        table[what] = table.get(what, 0) + n

    def fault(self, what, n=1):
        self.add(self.faults, what, n)

    def moved(self, what, n):
        self.add(self.bytes, what, n)

    def hold(self, what, n):
        self.held[what] = max(self.held.get(what, 0), n)

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    def to_json(self):
        return {k: getattr(self, k) for k in
                ("held", "bytes", "faults", "inputs", "rss", "memcheck", "losses", "notes",
                 "steps")}


RESULTS = Results()


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard limit; the servers and workers that
    this process starts inherit it."""
    return testlib.raise_nofile(NOFILE_WANT)


def nofile_soft(pid):
    """The soft "Max open files" of a running process."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def start(binary, args=(), name=None, nofile=None, timeout=None):
    """A server (testlib.Process) announcing its port. With `nofile`, its
    soft descriptor limit is set to that through a shell that then execs it
    (same pid, so /proc readings are the server's)."""
    argv = [binary] + [str(a) for a in args]
    if nofile is not None:
        argv = ["/bin/sh", "-c", 'ulimit -n %d && exec "$0" "$@"' % nofile] + argv
    old = testlib.START_TIMEOUT
    if timeout is not None:
        testlib.START_TIMEOUT = timeout
    try:
        return testlib.Process(argv, name=name or os.path.basename(binary))
    finally:
        testlib.START_TIMEOUT = old


def fds(proc):
    n = testlib.fd_count(proc.pid)
    check(n is not None, "%s: cannot read /proc/%d/fd" % (proc.name, proc.pid))
    return n


def rss(proc):
    """Resident set size in bytes."""
    kib = testlib.status_kib(proc.pid, "VmRSS")
    check(kib is not None, "%s: cannot read VmRSS" % proc.name)
    return kib * KIB


def hwm(proc):
    kib = testlib.status_kib(proc.pid, "VmHWM")
    check(kib is not None, "%s: cannot read VmHWM" % proc.name)
    return kib * KIB


def check_idle(proc, what, window=IDLE_WINDOW, limit=IDLE_LIMIT):
    before = testlib.cpu_seconds(proc.pid)
    time.sleep(window)  # a measurement window
    used = testlib.cpu_seconds(proc.pid) - before
    check(used <= limit, "%s: %s used %.3f s CPU in %.1f s while idle"
          % (what, proc.name, used, window))
    return used


def settle(proc, baseline, what, timeout=SETTLE_TIMEOUT):
    """After a fault: alive, back to `baseline` descriptors, idle."""
    proc.check_alive(what)
    testlib.wait_until(
        lambda: fds(proc) == baseline,
        lambda: "%s: %s holds %s descriptors, baseline %d"
        % (what, proc.name, testlib.fd_count(proc.pid), baseline),
        timeout=timeout)
    check_idle(proc, what)
    proc.check_alive(what)


class RssSampler:
    """Samples a process's VmRSS in a thread; .peak in bytes."""

    def __init__(self, pid, period=0.02):
        self.pid = pid
        self.period = period
        self.peak = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_event.is_set():
            kib = testlib.status_kib(self.pid, "VmRSS")
            if kib is not None:
                self.peak = max(self.peak, kib * KIB)
            self.stop_event.wait(self.period)

    def stop(self):
        self.stop_event.set()
        self.thread.join(5)
        return self.peak

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class Worker:
    """A Python worker process (tests/stress/worker.py) speaking lines on
    stdin/stdout; its last line is one JSON object. Killed and reaped by
    kill() (or as a context manager)."""

    def __init__(self, args, name="worker"):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "worker.py")] + [str(a) for a in args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1)
        self.lines = queue.Queue()
        self.err = []
        threading.Thread(target=self._drain, daemon=True).start()
        threading.Thread(target=self._drain_err, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _drain_err(self):
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def expect(self, prefix, timeout):
        """The first line starting with `prefix` (earlier lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("%s: no %r line within %.0f s; stderr: %s"
                              % (self.name, prefix, timeout, "\n".join(self.err[-20:])))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(5)
                raise Failure("%s exited (%s) before a %r line; stderr: %s"
                              % (self.name, self.proc.returncode, prefix,
                                 "\n".join(self.err[-20:])))
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def expect_json(self, prefix, timeout):
        return json.loads(self.expect(prefix, timeout))

    def say(self, line):
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False


def kill_all(workers):
    for w in workers:
        w.kill()


# --- probes -------------------------------------------------------------------

def echo_ping(port, data=b"ping\n", timeout=10.0):
    """One echo round trip on a new connection."""
    with connect(port, timeout=timeout) as s:
        s.sendall(data)
        got = recv_exactly(s, len(data), "echo ping")
        check(got == data, "echo ping returned %r" % got[:40])


STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")


def read_response(sock, what, head_only=False, timeout=IO_TIMEOUT):
    """One HTTP response (status, headers dict, body) from a blocking socket
    that may hold more after it. Reads byte-exact: the head, then
    Content-Length bytes."""
    sock.settimeout(timeout)
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1)
        check(chunk, "%s: connection closed in a response head (%r)" % (what, bytes(buf[:200])))
        buf += chunk
        check(len(buf) < 65536, "%s: response head too long" % what)
    head = bytes(buf).split(b"\r\n")
    m = STATUS_LINE.match(head[0])
    check(m, "%s: bad status line %r" % (what, head[0]))
    headers = {}
    for line in head[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode("latin-1")
    length = int(headers.get("content-length", "0"))
    body = b"" if head_only else recv_exactly(sock, length, what + " body")
    return int(m.group(1)), headers, body


def http_get(port, path="/index.html", timeout=10.0):
    """GET on a new connection with Connection: close; (status, body)."""
    with connect(port, timeout=timeout) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, _, body = read_response(s, "GET " + path)
        return status, body


def http_ok(port, path="/index.html", want=None):
    status, body = http_get(port, path)
    check(status == 200, "GET %s: status %d" % (path, status))
    if want is not None:
        check(body == want, "GET %s: %d bytes, not the file's %d" % (path, len(body), len(want)))


def make_site(root, big_size=8 * MIB):
    """index.html, sub/file.txt (what http_corpus.py expects) and big.bin."""
    os.makedirs(os.path.join(root, "sub"), exist_ok=True)
    files = {
        "index.html": b"<!doctype html><title>stress</title><h1>It works</h1>\n",
        "sub/file.txt": b"a file in a subdirectory\n",
        "big.bin": testlib.payload(big_size, seed=7),
    }
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    return files


def chat_join(port, nick, timeout=10.0):
    """A chat client that joined (its own join announcement read)."""
    s = connect(port, timeout=timeout)
    s.sendall(nick.encode() + b"\n")
    line = read_line(s, "join " + nick)
    check(line == b"* " + nick.encode() + b" joined", "%s: join got %r" % (nick, line))
    return s


def read_line(sock, what, limit=1 << 16):
    buf = bytearray()
    while True:
        c = sock.recv(1)
        check(c, "%s: connection closed mid-line (%r)" % (what, bytes(buf[:80])))
        if c == b"\n":
            return bytes(buf)
        buf += c
        check(len(buf) < limit, "%s: line too long" % what)


def chat_ok(port):
    """Two chat clients: one's line reaches the other."""
    a = chat_join(port, "probe-a")
    try:
        b = chat_join(port, "probe-b")
        try:
            check(read_line(a, "probe-a") == b"* probe-b joined", "probe-a missed the join")
            b.sendall(b"hello probe\n")
            got = read_line(a, "probe-a")
            check(got == b"probe-b: hello probe", "probe-a got %r" % got)
        finally:
            b.close()
    finally:
        a.close()


def baseline(proc, probe):
    """The descriptor count once the server served a first client."""
    probe()
    time.sleep(0.1)
    return fds(proc)
