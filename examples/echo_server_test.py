"""Integration test of examples/echo_server, run as a separate process.

Usage: echo_server_test.py PATH_TO_ECHO_SERVER

For every backend the binary offers (read from --help), starts the server on
127.0.0.1 port 0 and checks echoing (short, 1 MiB with partial reads, 50
concurrent clients driven by Python's own asyncore), that resetting clients
do not kill it, that it stays idle when idle, and that SIGTERM/SIGINT stop it
with status 0. Then checks the command-line errors. Prints the reason and
exits 1 on the first failure.
"""

import os
import select
import signal
import socket
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import HOST, IO_TIMEOUT, Failure, check, connect, recv_exactly  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asyncore  # an independent implementation drives the clients


def start_server(binary, backend):
    return testlib.Process([binary, "--port", "0", "--backend", backend],
                           name="echo_server[%s]" % backend)


def test_short_echo(server):
    with connect(server.port) as s:
        s.sendall(b"hello, echo\n")
        got = recv_exactly(s, 12, "short echo")
        check(got == b"hello, echo\n", "short echo returned %r" % got)
        # A second exchange on the same connection.
        s.sendall(b"again")
        got = recv_exactly(s, 5, "second echo")
        check(got == b"again", "second echo returned %r" % got)


def test_one_mebibyte(server):
    """Sends 1 MiB while reading the echo back in small, uneven pieces."""
    size = 1 << 20
    payload = bytes((i * 7 + (i >> 11)) & 0xFF for i in range(size))
    received = bytearray()
    sent = 0
    read_sizes = [1, 7, 100, 4096, 1500, 65536, 3]
    reads = 0
    with connect(server.port) as s:
        s.setblocking(False)
        deadline = time.monotonic() + IO_TIMEOUT
        while len(received) < size:
            left = deadline - time.monotonic()
            check(left > 0, "1 MiB echo: timed out with %d sent, %d received"
                  % (sent, len(received)))
            wants_write = [s] if sent < size else []
            r, w, _ = select.select([s], wants_write, [], min(left, 1.0))
            if w:
                try:
                    sent += s.send(payload[sent:sent + 65536])
                except BlockingIOError:
                    pass
            if r:
                try:
                    chunk = s.recv(read_sizes[reads % len(read_sizes)])
                except BlockingIOError:
                    continue
                check(chunk, "1 MiB echo: server closed after %d bytes" % len(received))
                received += chunk
                reads += 1
    if bytes(received) != payload:
        diff = next((i for i in range(min(len(received), size))
                     if received[i] != payload[i]), min(len(received), size))
        raise Failure("1 MiB echo: %d bytes back for %d sent, first difference at %d"
                      % (len(received), size, diff))
    check(reads > 100, "1 MiB echo: expected many partial reads, got %d" % reads)


class EchoClient(asyncore.dispatcher):
    """Python asyncore client: sends its message, expects it back, closes."""

    def __init__(self, port, message, sock_map):
        super().__init__(map=sock_map)
        self.message = message
        self.outbuf = message
        self.inbuf = b""
        self.done = False
        self.error = None
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect((HOST, port))

    def handle_connect(self):
        pass

    def writable(self):
        return not self.connected or bool(self.outbuf)

    def handle_write(self):
        sent = self.send(self.outbuf)
        self.outbuf = self.outbuf[sent:]

    def handle_read(self):
        self.inbuf += self.recv(65536)
        if len(self.inbuf) >= len(self.message):
            if self.inbuf != self.message:
                self.error = "got %r, want %r" % (self.inbuf[:80], self.message[:80])
            self.done = True
            self.close()

    def handle_close(self):
        if not self.done:
            self.error = "closed by server after %d bytes" % len(self.inbuf)
        self.close()

    def handle_error(self):
        self.error = "error: %r" % (sys.exc_info()[1],)
        self.close()


def test_concurrent_clients(server, count=50):
    sock_map = {}
    clients = [EchoClient(server.port, ("client %03d:" % i).encode() * (i + 1) + b"\n",
                          sock_map)
               for i in range(count)]
    deadline = time.monotonic() + IO_TIMEOUT
    try:
        while sock_map and time.monotonic() < deadline:
            asyncore.loop(timeout=0.1, map=sock_map, count=1)
    finally:
        asyncore.close_all(map=sock_map)
    for i, c in enumerate(clients):
        check(c.error is None, "concurrent client %d: %s" % (i, c.error))
        check(c.done, "concurrent client %d: no complete echo within %.0f s (%d bytes)"
              % (i, IO_TIMEOUT, len(c.inbuf)))


def test_resetting_clients(server):
    # Connect and reset at once.
    for _ in range(5):
        testlib.rst_close(connect(server.port))
    # Reset with a request in flight.
    s = connect(server.port)
    s.sendall(b"x" * 1000)
    testlib.rst_close(s)
    # Reset while the server has lots of output queued for us (its sends
    # then fail with EPIPE/ECONNRESET, which must not raise SIGPIPE).
    s = connect(server.port)
    s.setblocking(False)
    try:
        s.send(b"y" * (4 << 20))
    except BlockingIOError:
        pass
    testlib.rst_close(s)
    # The server is still alive and serving.
    test_short_echo(server)
    check(server.alive(), "server died after resetting clients; stderr: %s" % server.stderr())


def test_idle_is_idle(server):
    """An idle server with an idle client must block, not spin (spec C3)."""
    with connect(server.port) as s:
        s.sendall(b"ping")
        recv_exactly(s, 4, "idle ping")
        testlib.check_idle(server, "idle with an idle client")


def test_signal_exit(binary, backend, signo, with_client):
    with start_server(binary, backend) as server:
        client = connect(server.port) if with_client else None
        try:
            if client:
                client.sendall(b"hi")
                recv_exactly(client, 2, "echo before signal")
            status = server.stop_with(signo)
        finally:
            if client:
                client.close()
        check(status == 0, "[%s] exit status after %s is %s, want 0; stderr: %s"
              % (backend, signal.Signals(signo).name, status, server.stderr()))


def run_flags(binary, args):
    return testlib.run([binary] + args, timeout=10, text=True)


def test_flag_errors(binary, backends):
    # --port 0 first: a parser that ignored the bad flag must not grab 8080.
    res = run_flags(binary, ["--port", "0", "--bogus"])
    check(res.returncode == 2, "--bogus exited %s, want 2" % res.returncode)
    check("usage:" in res.stderr, "--bogus printed no usage on stderr: %r" % res.stderr)
    check("--bogus" in res.stderr, "--bogus: message does not name the flag: %r"
          % res.stderr)
    check(res.stdout == "", "--bogus wrote to stdout: %r" % res.stdout)

    res = run_flags(binary, ["--port", "99999"])
    check(res.returncode == 2, "--port 99999 exited %s, want 2" % res.returncode)
    check("usage:" in res.stderr, "--port 99999 printed no usage: %r" % res.stderr)

    for bad_port in ["-1", "http", ""]:
        res = run_flags(binary, ["--port", bad_port])
        check(res.returncode == 2, "--port %r exited %s, want 2" % (bad_port, res.returncode))

    res = run_flags(binary, ["--port", "0", "--backend", "nope"])
    check(res.returncode == 2, "--backend nope exited %s, want 2" % res.returncode)
    first_line = res.stderr.splitlines()[0] if res.stderr else ""
    for name in backends:
        check(name in first_line, "--backend nope: message %r does not name %r"
              % (first_line, name))

    res = run_flags(binary, ["--port"])
    check(res.returncode == 2, "--port without a value exited %s, want 2" % res.returncode)

    res = run_flags(binary, ["--port", "0", "--help"])
    check(res.returncode == 0 and "usage:" in res.stdout and res.stderr == "",
          "--help: status %s, stdout %r, stderr %r" % (res.returncode, res.stdout, res.stderr))


def test_backend(binary, backend):
    with start_server(binary, backend) as server:
        for test in (test_short_echo, test_one_mebibyte, test_concurrent_clients,
                     test_resetting_clients, test_idle_is_idle):
            testlib.run_step(backend, test, server)
            check(server.alive(), "[%s] server died during %s; stderr: %s"
                  % (backend, test.__name__, server.stderr()))
        status = server.stop_with(signal.SIGTERM)
        check(status == 0, "[%s] exit status after SIGTERM is %s; stderr: %s"
              % (backend, status, server.stderr()))
    test_signal_exit(binary, backend, signal.SIGINT, with_client=True)
    test_signal_exit(binary, backend, signal.SIGTERM, with_client=False)
    print("ok   %-7s signals" % backend, flush=True)


def body(args):
    binary = args[0]
    backends = testlib.available_backends(binary, ["--port", "0"])
    test_flag_errors(binary, [b for b in backends if b != "auto"])
    print("ok   flags (backends: %s)" % ", ".join(backends), flush=True)
    for backend in backends:
        test_backend(binary, backend)


if __name__ == "__main__":
    sys.exit(testlib.main(body, "PATH_TO_ECHO_SERVER"))
