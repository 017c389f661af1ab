"""Integration test of examples/port_forwarder, run as a separate process.

Usage: port_forwarder_test.py PORT_FORWARDER ECHO_SERVER [HTTP_SERVER]

For every backend the forwarder offers, puts it (on 127.0.0.1, port 0) in
front of examples/echo_server and checks: 10 MiB each way at once on several
connections (SHA-256 compared), half-closes in both directions, an HTTP
download of 5 MiB through it (examples/http_server, or Python's http.server
when no HTTP_SERVER is given), backpressure (50 MiB towards a remote that
does not read: the forwarder stops reading and its memory stays bounded,
then everything arrives once the remote reads), an unreachable remote,
clients that reset mid-transfer, that no descriptors leak, and that
SIGTERM/SIGINT stop it with status 0. Then the command-line errors.
"""

import os
import select
import signal
import socket
import sys
import tempfile
import threading
import time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import HOST, IO_TIMEOUT, Failure, check  # noqa: E402

MIB = 1 << 20
RSS_LIMIT_KIB = 64 * 1024   # the forwarder's resident memory must stay below


def start_forwarder(binary, backend, remote_port, long_flags=False):
    if long_flags:
        args = ["--local-ip=127.0.0.1", "--local-port", "0", "--remote-ip", HOST,
                "--remote-port=%d" % remote_port]
    else:
        args = ["-l", HOST, "-p", "0", "-r", HOST, "-P", str(remote_port)]
    return testlib.Process([binary] + args + ["--backend", backend],
                           name="port_forwarder[%s]" % backend)


def test_bulk_both_ways(fwd):
    """10 MiB each way at once, on three connections in parallel."""
    size = 10 * MIB
    results = {}

    def one(seed):
        data = testlib.payload(size, seed)
        try:
            with testlib.connect(fwd.port) as s:
                got = testlib.duplex(s, data, want=size, timeout=2 * IO_TIMEOUT,
                                     read_sizes=(65536, 1000, 300000),
                                     what="connection %d" % seed)
            results[seed] = (testlib.sha256(got) == testlib.sha256(data), len(got))
        except (Failure, OSError) as e:
            results[seed] = e

    threads = [threading.Thread(target=one, args=(seed,)) for seed in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * IO_TIMEOUT)
        check(not t.is_alive(), "a transfer thread did not finish")
    for seed, result in sorted(results.items()):
        if isinstance(result, Exception):
            raise Failure("connection %d: %s" % (seed, result))
        same, length = result
        check(same, "connection %d: %d bytes back, SHA-256 differs from the 10 MiB "
              "sent" % (seed, length))
    check(len(results) == 3, "only %d of 3 transfers reported" % len(results))


def test_half_close(fwd):
    """Client shuts down its write side: it still gets every echoed byte, then EOF."""
    data = testlib.payload(256 * 1024, 7)
    with testlib.connect(fwd.port) as s:
        got = testlib.duplex(s, data, want=None, shut_wr=True, what="half-close")
    testlib.check_same(got, data, "half-close echo")
    # Nothing sent at all: EOF both ways.
    with testlib.connect(fwd.port) as s:
        s.shutdown(socket.SHUT_WR)
        rest = testlib.recv_until_eof(s, "empty half-close")
        check(rest == b"", "empty half-close: got %r" % rest[:40])


def serve_one(listener, handler, results):
    """Accepts one connection on `listener` in a thread; handler(conn)."""
    def run():
        try:
            listener.settimeout(IO_TIMEOUT)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(IO_TIMEOUT)
                results["value"] = handler(conn)
        except Exception as e:  # reported by the caller
            results["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def listener(rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # accepted sockets inherit it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((HOST, 0))
    s.listen(8)
    return s


def test_remote_half_close(binary, backend):
    """The remote shuts down its write side: the client gets EOF, can still send."""
    greeting = b"hello from the remote\n"
    upload = testlib.payload(MIB, 11)

    def remote(conn):
        conn.sendall(greeting)
        conn.shutdown(socket.SHUT_WR)
        return testlib.recv_until_eof(conn, "remote reading the upload")

    with listener() as lsn:
        results = {}
        t = serve_one(lsn, remote, results)
        with start_forwarder(binary, backend, lsn.getsockname()[1]) as fwd:
            with testlib.connect(fwd.port) as s:
                got = testlib.recv_until_eof(s, "client reading the greeting")
                check(got == greeting, "client got %r, want the greeting" % got[:60])
                s.sendall(upload)
                s.shutdown(socket.SHUT_WR)
                rest = testlib.recv_until_eof(s, "client after its shutdown")
                check(rest == b"", "client got %r after EOF" % rest[:40])
            t.join(IO_TIMEOUT)
            check(not t.is_alive(), "remote did not see EOF")
            if "error" in results:
                raise Failure("remote: %r" % (results["error"],))
            testlib.check_same(results["value"], upload, "upload after the remote's "
                               "half-close")
            fwd.check_alive("after the remote's half-close")


def start_http_server(http_binary, root):
    if http_binary:
        return testlib.Process([http_binary, "--port", "0", "--root", root],
                               name="http_server")
    return testlib.Process(
        ["/usr/bin/python3", "-u", "-m", "http.server", "0", "--bind", HOST,
         "--directory", root],
        name="python http.server", port_pattern=r"port (\d+)")


def http_get(port, path):
    conn = http.client.HTTPConnection(HOST, port, timeout=IO_TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_http_download(binary, backend, http_binary):
    """GET a 5 MiB file through the forwarder: byte-exact (SHA-256)."""
    data = testlib.payload(5 * MIB, 5)
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(data)
        with open(os.path.join(root, "small.txt"), "wb") as f:
            f.write(b"small\n")
        with start_http_server(http_binary, root) as web, \
                start_forwarder(binary, backend, web.port, long_flags=True) as fwd:
            status, body = http_get(fwd.port, "/big.bin")
            check(status == 200, "GET /big.bin: status %d" % status)
            check(testlib.sha256(body) == testlib.sha256(data),
                  "GET /big.bin: %d bytes, SHA-256 differs" % len(body))
            # Two more requests on one connection (kept alive through the relay).
            conn = http.client.HTTPConnection(HOST, fwd.port, timeout=IO_TIMEOUT)
            try:
                for path, want in (("/small.txt", b"small\n"), ("/big.bin", data)):
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    got = resp.read()
                    check(resp.status == 200 and got == want,
                          "GET %s: status %d, %d bytes" % (path, resp.status, len(got)))
            finally:
                conn.close()
            status, _ = http_get(fwd.port, "/missing")
            check(status == 404, "GET /missing: status %d" % status)
            fwd.check_alive("after the downloads")


def test_backpressure(binary, backend):
    """50 MiB towards a remote that does not read: memory stays bounded."""
    data = testlib.payload(50 * MIB, 50)
    with listener(rcvbuf=4096) as lsn, \
            start_forwarder(binary, backend, lsn.getsockname()[1]) as fwd:
        client = testlib.connect(fwd.port)
        lsn.settimeout(IO_TIMEOUT)
        remote, _ = lsn.accept()
        try:
            client.setblocking(False)
            remote.setblocking(False)
            sent = 0
            # Phase 1: the remote reads nothing. Send until the client has
            # not been writable for a while: the forwarder stopped reading.
            deadline = time.monotonic() + IO_TIMEOUT
            while sent < len(data):
                check(time.monotonic() < deadline, "phase 1 took over %.0f s"
                      % IO_TIMEOUT)
                _, w, _ = select.select([], [client], [], 0.5)
                if not w:
                    break
                try:
                    sent += client.send(data[sent:sent + 262144])
                except BlockingIOError:
                    pass
            rss = testlib.status_kib(fwd.pid, "VmRSS")
            check(sent < len(data), "the forwarder took all 50 MiB while the remote "
                  "read nothing")
            check(rss is None or rss < RSS_LIMIT_KIB, "forwarder RSS %d KiB with "
                  "%d MiB stuck in it" % (rss or 0, sent >> 20))
            stuck = sent
            # Phase 2: the remote reads; everything arrives, in order.
            got = bytearray()
            deadline = time.monotonic() + 2 * IO_TIMEOUT
            while len(got) < len(data):
                left = deadline - time.monotonic()
                check(left > 0, "phase 2: %d of %d bytes arrived" % (len(got), len(data)))
                r, w, _ = select.select([remote], [client] if sent < len(data) else [],
                                        [], min(left, 1.0))
                if w:
                    try:
                        sent += client.send(data[sent:sent + 262144])
                    except BlockingIOError:
                        pass
                if r:
                    chunk = remote.recv(MIB)
                    check(chunk, "phase 2: remote got EOF after %d bytes" % len(got))
                    got += chunk
            check(testlib.sha256(got) == testlib.sha256(data),
                  "50 MiB arrived with a different SHA-256")
            peak = testlib.status_kib(fwd.pid, "VmHWM")
            check(peak is None or peak < RSS_LIMIT_KIB, "forwarder peak RSS %d KiB"
                  % (peak or 0))
            print("     %s: %d MiB stuck while the remote did not read; forwarder "
                  "RSS %s KiB, peak %s KiB" % (backend, stuck >> 20, rss, peak),
                  flush=True)
        finally:
            client.close()
            remote.close()


def test_unreachable_remote(binary, backend):
    """Nothing listens on -P: each client is closed, the forwarder keeps going."""
    with start_forwarder(binary, backend, testlib.free_port()) as fwd:
        for i in range(3):
            with testlib.connect(fwd.port) as s:
                if i == 1:
                    try:
                        s.sendall(b"anyone there?")
                    except (ConnectionResetError, BrokenPipeError):
                        pass
                rest = testlib.recv_until_eof(s, "client %d" % i, allow_reset=True)
                check(rest == b"", "client %d got %r" % (i, rest[:40]))
            fwd.check_alive("after unreachable remote %d" % i)
        fwd.wait_for_line(r"refused")  # it says why


def test_client_reset(fwd):
    """Clients resetting mid-transfer: the next client is served; nothing leaks."""
    data = testlib.payload(5 * MIB, 9)
    # Reset while data flows both ways.
    s = testlib.connect(fwd.port)
    s.setblocking(False)
    sent = 0
    received = 0
    deadline = time.monotonic() + IO_TIMEOUT
    while received < MIB:
        check(time.monotonic() < deadline, "echo stalled at %d bytes" % received)
        r, w, _ = select.select([s], [s], [], 1.0)
        if w:
            try:
                sent += s.send(data[sent:sent + 65536])
            except BlockingIOError:
                pass
        if r:
            chunk = s.recv(65536)
            check(chunk, "EOF mid-transfer")
            received += len(chunk)
    testlib.rst_close(s)
    # Reset while the forwarder has output queued for the client (it does
    # not read its echo).
    s = testlib.connect(fwd.port)
    s.setblocking(False)
    try:
        s.send(data)
    except BlockingIOError:
        pass
    testlib.rst_close(s)
    # Reset at once, and reset after a half-close: often before the
    # forwarder accepts, which then finds the connection already gone.
    for _ in range(20):
        testlib.rst_close(testlib.connect(fwd.port))
        s = testlib.connect(fwd.port)
        s.shutdown(socket.SHUT_WR)
        testlib.rst_close(s)
    fwd.check_alive("after resetting clients")
    # The next client is served in full.
    with testlib.connect(fwd.port) as s:
        got = testlib.duplex(s, data, want=len(data), what="after resets")
    testlib.check_same(got, data, "echo after resets")


def test_no_leak_no_spin(fwd, baseline):
    """Every relayed connection, done or reset, closes both its sockets; idle
    again, the forwarder blocks."""
    testlib.wait_until(lambda: testlib.fd_count(fwd.pid) in (None, baseline),
                       lambda: "forwarder back to its %d descriptors (has %s)"
                       % (baseline, testlib.fd_count(fwd.pid)))
    testlib.check_idle(fwd, "after all clients left")


def test_signal_exit(binary, backend, echo_port, signo):
    with start_forwarder(binary, backend, echo_port) as fwd:
        with testlib.connect(fwd.port) as s:
            s.sendall(b"ping")
            got = testlib.recv_exactly(s, 4, "echo before the signal")
            check(got == b"ping", "echo before the signal: %r" % got)
            fwd.expect_clean_exit(signo)
            testlib.recv_until_eof(s, "client after the forwarder exited",
                                   allow_reset=True)


def test_sigterm(binary, backend, echo_port):
    test_signal_exit(binary, backend, echo_port, signal.SIGTERM)


def test_sigint(binary, backend, echo_port):
    test_signal_exit(binary, backend, echo_port, signal.SIGINT)


def test_flag_errors(binary):
    usage_error = testlib.expect_usage_error
    usage_error(binary, [], ["-P"])
    usage_error(binary, ["-p", "0"], ["-P"])
    usage_error(binary, ["-P", "80", "--bogus", "1"], ["--bogus"])
    usage_error(binary, ["-P", "80", "-x", "1"], ["-x"])
    usage_error(binary, ["-P"])
    usage_error(binary, ["-P", "99999"])
    usage_error(binary, ["-P", "port"])
    usage_error(binary, ["-P", "80", "-p", "-1"])
    usage_error(binary, ["-P", "80", "--backend", "nope"], ["nope"])
    usage_error(binary, ["-P", "80", "-l", "not an address"])
    usage_error(binary, ["-P", "80", "-r", "999.1.1.1"])
    res = testlib.run([binary, "--help"], timeout=10, text=True)
    check(res.returncode == 0 and res.stdout.startswith("usage:") and res.stderr == "",
          "--help: status %s, stdout %r, stderr %r"
          % (res.returncode, res.stdout[:60], res.stderr))
    for flag in ("--local-ip", "--local-port", "--remote-ip", "--remote-port"):
        check(flag in res.stdout, "--help does not mention %s" % flag)


def test_backend(binary, echo_binary, http_binary, backend):
    label = backend
    with testlib.Process([echo_binary, "--port", "0"], name="echo_server") as echo:
        with start_forwarder(binary, backend, echo.port) as fwd:
            baseline = testlib.fd_count(fwd.pid)
            for test in (test_bulk_both_ways, test_half_close, test_client_reset):
                testlib.run_step(label, test, fwd)
                fwd.check_alive("during " + test.__name__)
                echo.check_alive("during " + test.__name__)
            testlib.run_step(label, test_no_leak_no_spin, fwd, baseline)
            fwd.expect_clean_exit(signal.SIGTERM)
        testlib.run_step(label, test_sigterm, binary, backend, echo.port)
        testlib.run_step(label, test_sigint, binary, backend, echo.port)
    testlib.run_step(label, test_remote_half_close, binary, backend)
    testlib.run_step(label, test_http_download, binary, backend, http_binary)
    testlib.run_step(label, test_backpressure, binary, backend)
    testlib.run_step(label, test_unreachable_remote, binary, backend)


def body(args):
    check(len(args) in (2, 3), "want PORT_FORWARDER ECHO_SERVER [HTTP_SERVER]")
    binary, echo_binary = args[0], args[1]
    http_binary = args[2] if len(args) == 3 else None
    print("     HTTP server: %s" % (http_binary or "python3 -m http.server"), flush=True)
    backends = testlib.available_backends(binary)
    testlib.run_step("flags", test_flag_errors, binary)
    for backend in backends:
        test_backend(binary, echo_binary, http_binary, backend)


if __name__ == "__main__":
    sys.exit(testlib.main(body, "PORT_FORWARDER ECHO_SERVER [HTTP_SERVER]"))
