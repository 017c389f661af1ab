"""Integration test of examples/echo_client, run as a separate process.

Usage: echo_client_test.py PATH_TO_ECHO_CLIENT PATH_TO_ECHO_SERVER

For every backend the client offers, runs it against examples/echo_server
(one process each, 127.0.0.1, port 0) and checks that --message TEXT
--count N prints each reply on its own line N times and exits 0; against
scripted Python servers, that replies trickling in one byte at a time still
come out right and that a server hanging up early means status 1; with
nothing listening, status 1 and a clear message. Then the flag errors
(status 2).
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import check  # noqa: E402


def echo_client(binary, backend, port, *args):
    return testlib.run([binary, "--host", testlib.HOST, "--port", port,
                        "--backend", backend] + list(args))


def expect_replies(res, message, count, what):
    check(res.returncode == 0, "%s: exit status %s, want 0; stderr: %r"
          % (what, res.returncode, res.stderr))
    want = (message + "\n").encode() * count
    check(res.stdout == want, "%s: stdout %r (%d bytes), want %d lines of %r"
          % (what, res.stdout[:80], len(res.stdout), count, message[:40]))
    check(res.stderr == b"", "%s: stderr %r" % (what, res.stderr[:200]))


def test_replies(binary, backend, echo_port):
    res = echo_client(binary, backend, echo_port, "--message", "hello world",
                      "--count", "5")
    expect_replies(res, "hello world", 5, "5 x hello world")
    res = echo_client(binary, backend, echo_port)
    expect_replies(res, "hello", 1, "the defaults")
    res = echo_client(binary, backend, echo_port, "--message=d\u00e9j\u00e0 vu: \u2713",
                      "--count=3")
    expect_replies(res, "d\u00e9j\u00e0 vu: \u2713", 3, "UTF-8 message")
    big = "".join(chr(ord("a") + i % 26) for i in range(10000))
    res = echo_client(binary, backend, echo_port, "--message", big, "--count", "50")
    expect_replies(res, big, 50, "50 x 10000 bytes")
    res = echo_client(binary, backend, echo_port, "--count", "0")
    expect_replies(res, "", 0, "--count 0")


def trickle(conn):
    """Echoes byte by byte, each in its own segment, with pauses."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = conn.recv(4096)
        if not data:
            return
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            time.sleep(0.001)  # pacing the peer under test, not synchronisation


def test_partial_reads(binary, backend):
    with testlib.ThreadedServer(trickle) as server:
        res = echo_client(binary, backend, server.port, "--message", "piece by piece",
                          "--count", "4")
        expect_replies(res, "piece by piece", 4, "trickled replies")
        server.check_errors()


def test_server_hangs_up(binary, backend):
    """A server that echoes one reply, then closes: status 1, reason on stderr."""
    def one_reply(conn):
        # All three requests are read first, so closing sends a FIN, not a
        # reset that could overtake the reply.
        testlib.recv_exactly(conn, 12, "the requests")
        conn.sendall(b"ping")

    with testlib.ThreadedServer(one_reply) as server:
        res = echo_client(binary, backend, server.port, "--message", "ping",
                          "--count", "3")
    check(res.returncode == 1, "early close: exit status %s, want 1" % res.returncode)
    check(res.stdout == b"ping\n", "early close: stdout %r" % res.stdout)
    check(b"missing" in res.stderr, "early close: stderr %r does not say replies are "
          "missing" % res.stderr)


def test_nothing_listening(binary, backend):
    port = testlib.free_port()
    res = echo_client(binary, backend, port, "--message", "anyone?")
    check(res.returncode == 1, "nothing listening: exit status %s, want 1"
          % res.returncode)
    check(res.stdout == b"", "nothing listening: stdout %r" % res.stdout)
    err = res.stderr.decode("utf-8", "replace")
    check(err.startswith("echo_client: ") and "refused" in err.lower()
          and str(port) in err,
          "nothing listening: unclear message %r" % err)


def test_flag_errors(binary):
    for count in ("x", "-1", "", "1.5", "99999999999999999999"):
        res = testlib.run([binary, "--port", "1", "--count", count], timeout=10,
                          text=True)
        check(res.returncode == 2, "--count %r: exit status %s, want 2"
              % (count, res.returncode))
        check("--count" in res.stderr, "--count %r: message %r" % (count, res.stderr))
        check(res.stdout == "", "--count %r wrote to stdout" % count)
    res = testlib.run([binary, "--port", "1", "--message", ""], timeout=10, text=True)
    check(res.returncode == 2, "--message '': exit status %s, want 2" % res.returncode)
    testlib.expect_usage_error(binary, ["--port", "1", "--bogus"], ["--bogus"])
    testlib.expect_usage_error(binary, ["--port", "99999"])
    testlib.expect_usage_error(binary, ["--port", "1", "--backend", "nope"], ["nope"])
    testlib.expect_usage_error(binary, ["--port", "1", "--count"])


def body(args):
    testlib.check(len(args) == 2, "want PATH_TO_ECHO_CLIENT PATH_TO_ECHO_SERVER")
    binary, echo_binary = args
    backends = testlib.available_backends(binary)
    testlib.run_step("flags", test_flag_errors, binary)
    with testlib.Process([echo_binary, "--port", "0"], name="echo_server") as echo:
        for backend in backends:
            testlib.run_step(backend, test_replies, binary, backend, echo.port)
            testlib.run_step(backend, test_partial_reads, binary, backend)
            testlib.run_step(backend, test_server_hangs_up, binary, backend)
            testlib.run_step(backend, test_nothing_listening, binary, backend)
            echo.check_alive("after the %s clients" % backend)
        echo.expect_clean_exit()


if __name__ == "__main__":
    sys.exit(testlib.main(body, "PATH_TO_ECHO_CLIENT PATH_TO_ECHO_SERVER"))
