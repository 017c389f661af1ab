"""Helpers shared by the examples' integration tests (examples/*_test.py).

Each test runs example programs as separate processes on 127.0.0.1, port 0,
and drives them with real sockets. This module starts a program and reads
the port it announces, waits for output with a deadline, kills and reaps
every process it started, and offers the socket chores the tests share.
Every wait here is bounded. Nothing sleeps in place of an event: the few
sleeps pace a peer, time a measurement window, or poll state that no event
announces (/proc, in wait_until).

The tests are plain scripts run by examples/py_test.sh with the system
Python 3.11 (Bazel 4.2.3's py_test needs toolchains that are not available
offline): they print "ok ..." lines, then PASS, or "FAIL: reason" and exit 1.
"""

import hashlib
import os
import random
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
START_TIMEOUT = 10.0   # seconds for a program to announce its port
IO_TIMEOUT = 30.0      # seconds for any one exchange
EXIT_TIMEOUT = 10.0    # seconds for a program to exit (after a signal, say)

# "listening on 127.0.0.1:PORT", as examples/server_flags.cc prints it.
LISTENING = re.compile(r"^listening on 127\.0\.0\.1:(\d+)$")


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


class Process:
    """A program under test, its stdout/stderr drained line by line by threads.

    With `port_pattern` (a regex whose group 1 is the port, matched against
    each stdout line), the constructor waits for it and sets self.port. Use
    as a context manager, or call kill() in a finally: the process is always
    killed and reaped.
    """

    def __init__(self, argv, name=None, port_pattern=LISTENING, env=None):
        self.argv = [str(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env)
        self.pid = self.proc.pid
        self.out = []
        self.err = []
        self.cond = threading.Condition()
        self.threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.out),
                             daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.err),
                             daemon=True),
        ]
        for t in self.threads:
            t.start()
        self.port = None
        if port_pattern is not None:
            try:
                m = self.wait_for_line(port_pattern, START_TIMEOUT)
                self.port = int(m.group(1))
                check(0 < self.port < 65536, "%s: bad port in %r"
                      % (self.name, m.group(0)))
            except BaseException:
                self.kill()
                raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False

    def _drain(self, stream, lines):
        for raw in iter(stream.readline, b""):
            with self.cond:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            lines.append(None)  # EOF marker
            self.cond.notify_all()

    def wait_for_line(self, pattern, timeout=IO_TIMEOUT, stderr=False, start=0):
        """The match of the first line (from line `start` on) matching `pattern`."""
        if isinstance(pattern, str):
            pattern = re.compile(pattern)
        lines = self.err if stderr else self.out
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in lines[start:]:
                    if line is None:
                        raise Failure("%s exited (status %s) before printing a line "
                                      "matching %r; stdout: %r; stderr: %s"
                                      % (self.name, self.proc.poll(), pattern.pattern,
                                         self.stdout(), self.stderr()))
                    m = pattern.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure("%s printed no line matching %r within %.0f s; "
                                  "stdout: %r; stderr: %s"
                                  % (self.name, pattern.pattern, timeout,
                                     self.stdout(), self.stderr()))
                self.cond.wait(left)

    def stdout(self):
        with self.cond:
            return "\n".join(l for l in self.out if l is not None)

    def stderr(self):
        with self.cond:
            return "\n".join(l for l in self.err if l is not None)

    def alive(self):
        return self.proc.poll() is None

    def check_alive(self, when):
        check(self.alive(), "%s died (status %s) %s; stdout: %r; stderr: %s"
              % (self.name, self.proc.poll(), when, self.stdout(), self.stderr()))

    def wait(self, timeout=EXIT_TIMEOUT):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure("%s did not exit within %.0f s" % (self.name, timeout))

    def stop_with(self, signo):
        """Sends signo and returns the exit status (bounded wait)."""
        self.proc.send_signal(signo)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Failure("%s did not exit within %.0f s of %s"
                          % (self.name, EXIT_TIMEOUT, signal.Signals(signo).name))

    def expect_clean_exit(self, signo=signal.SIGTERM):
        status = self.stop_with(signo)
        check(status == 0, "%s: exit status after %s is %s, want 0; stderr: %s"
              % (self.name, signal.Signals(signo).name, status, self.stderr()))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        for t in self.threads:
            t.join(timeout=EXIT_TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


class ThreadedServer:
    """A scripted TCP server on 127.0.0.1:0 inside the test: handler(conn)
    runs in a thread per connection (for peers with odd behaviour: slow,
    broken, not reading). Use as a context manager; exceptions the handler
    raises are kept in self.errors.
    """

    def __init__(self, handler):
        self.handler = handler
        self.errors = []
        self.connections = 0
        self.threads = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((HOST, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn):
        with conn:
            conn.settimeout(IO_TIMEOUT)
            try:
                self.handler(conn)
            except Exception as e:  # reported by check_errors()
                self.errors.append(e)

    def check_errors(self):
        check(not self.errors, "test server: %r" % (self.errors[:3],))

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        self.listener.close()
        self.acceptor.join(EXIT_TIMEOUT)
        for t in self.threads:
            t.join(IO_TIMEOUT)


def run(argv, timeout=IO_TIMEOUT, text=False, input=None):
    """Runs a program to completion (bounded); a CompletedProcess."""
    argv = [str(a) for a in argv]
    try:
        return subprocess.run(argv, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, text=text)
    except subprocess.TimeoutExpired:
        raise Failure("%s did not exit within %.0f s" % (" ".join(argv), timeout))


def available_backends(binary, args=()):
    """The --backend choices the program's --help lists (auto first)."""
    res = run([binary] + list(args) + ["--help"], timeout=10, text=True)
    check(res.returncode == 0, "%s --help exited %s; stderr: %s"
          % (binary, res.returncode, res.stderr))
    check(res.stdout.startswith("usage:"), "--help printed no usage on stdout: %r"
          % res.stdout)
    m = re.search(r"--backend NAME\s+event backend: ([\w|]+)", res.stdout)
    check(m, "cannot find the backend list in --help: %r" % res.stdout)
    names = m.group(1).split("|")
    check("auto" in names and "poll" in names and "select" in names,
          "unexpected backend list %r" % names)
    return names


def expect_usage_error(binary, args, mentions=()):
    """Runs binary with bad args: status 2, usage on stderr, nothing on stdout."""
    res = run([binary] + list(args), timeout=10, text=True)
    what = " ".join(args) or "(no arguments)"
    check(res.returncode == 2, "%s: exited %s, want 2; stderr: %r"
          % (what, res.returncode, res.stderr))
    check("usage:" in res.stderr, "%s: no usage on stderr: %r" % (what, res.stderr))
    check(res.stdout == "", "%s: wrote to stdout: %r" % (what, res.stdout))
    for word in mentions:
        check(word in res.stderr, "%s: message does not mention %r: %r"
              % (what, word, res.stderr))
    return res


def free_port():
    """A port with nothing listening on it (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def raise_nofile(want):
    """Raises RLIMIT_NOFILE's soft limit to `want` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def status_kib(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM), or None if unknown."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count(pid):
    """How many descriptors the process has open, or None if unknown."""
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_idle(proc, what, window=0.5, limit=0.25):
    """An idle program must block in its event loop, not spin."""
    if not os.path.exists("/proc/%d/stat" % proc.pid):
        return
    before = cpu_seconds(proc.pid)
    time.sleep(window)  # a measurement window, not synchronisation
    used = cpu_seconds(proc.pid) - before
    check(used < limit, "%s: %s used %.2f s CPU in %.1f s (busy loop?)"
          % (what, proc.name, used, window))


def wait_until(cond, what, timeout=IO_TIMEOUT):
    """Polls cond() (for state no event announces, like /proc) until true."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            raise Failure("%s: not within %.0f s"
                          % (what() if callable(what) else what, timeout))
        time.sleep(0.01)


def payload(size, seed=0):
    """`size` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def connect(port, timeout=IO_TIMEOUT, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:  # before connect, so the window is small from the start
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((HOST, port))
    except BaseException:
        s.close()
        raise
    return s


def recv_exactly(sock, n, what):
    data = bytearray()
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except socket.timeout:
            raise Failure("%s: timed out after %d of %d bytes" % (what, len(data), n))
        check(chunk, "%s: connection closed after %d of %d bytes" % (what, len(data), n))
        data += chunk
    return bytes(data)


def recv_until_eof(sock, what, limit=1 << 30, timeout=IO_TIMEOUT,
                   allow_reset=False):
    """Everything up to EOF (bounded). A reset counts as EOF if allow_reset."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        check(left > 0, "%s: no EOF within %.0f s (%d bytes read)"
              % (what, timeout, len(data)))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue  # the deadline check above reports it
        except ConnectionResetError:
            if allow_reset:
                return bytes(data)
            raise Failure("%s: connection reset after %d bytes" % (what, len(data)))
        if not chunk:
            return bytes(data)
        data += chunk
        check(len(data) <= limit, "%s: more than %d bytes before EOF" % (what, limit))


def rst_close(sock):
    """Closes with SO_LINGER 0: the peer sees a reset, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def duplex(sock, data, want=None, timeout=IO_TIMEOUT, shut_wr=False,
           read_sizes=(65536,), what="transfer"):
    """Sends `data` while reading, with select on a non-blocking socket.

    Returns what was received: `want` bytes, or (want=None) everything up to
    EOF. With shut_wr, shuts down the write side once all data is sent.
    """
    sock.setblocking(False)
    received = bytearray()
    sent = 0
    reads = 0
    shut = False
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    while want is None or len(received) < want:
        left = deadline - time.monotonic()
        check(left > 0, "%s: timed out with %d of %d bytes sent, %d received"
              % (what, sent, len(data), len(received)))
        if sent == len(data) and shut_wr and not shut:
            sock.shutdown(socket.SHUT_WR)
            shut = True
        wants_write = [sock] if sent < len(data) else []
        r, w, _ = select.select([sock], wants_write, [], min(left, 1.0))
        if w:
            try:
                sent += sock.send(view[sent:sent + 262144])
            except BlockingIOError:
                pass
        if r:
            try:
                chunk = sock.recv(read_sizes[reads % len(read_sizes)])
            except BlockingIOError:
                continue
            if not chunk:
                if want is not None:
                    raise Failure("%s: EOF after %d of %d bytes"
                                  % (what, len(received), want))
                check(sent == len(data), "%s: EOF with only %d of %d bytes sent"
                      % (what, sent, len(data)))
                break
            received += chunk
            reads += 1
    return bytes(received)


def first_difference(got, want):
    n = min(len(got), len(want))
    return next((i for i in range(n) if got[i] != want[i]), n)


def check_same(got, want, what):
    if got != want:
        raise Failure("%s: %d bytes (sha256 %s) for %d expected (sha256 %s), first "
                      "difference at %d" % (what, len(got), sha256(got)[:16], len(want),
                                            sha256(want)[:16], first_difference(got, want)))


def run_step(label, func, *args):
    """Runs one test function, naming it (and `label`) in any failure."""
    try:
        func(*args)
    except Failure as e:
        raise Failure("[%s] %s: %s" % (label, func.__name__, e))
    except OSError as e:
        raise Failure("[%s] %s: %r" % (label, func.__name__, e))
    print("ok   %-7s %s" % (label, func.__name__), flush=True)


def main(body, usage):
    """Runs body(argv[1:]) and maps the outcome to PASS / FAIL and a status."""
    argv = sys.argv
    if len(argv) < 2:
        print("usage: %s %s" % (argv[0], usage), file=sys.stderr)
        return 2
    try:
        body([os.path.abspath(a) for a in argv[1:]])
    except Failure as e:
        print("FAIL: %s" % e, flush=True)
        return 1
    print("PASS", flush=True)
    return 0
