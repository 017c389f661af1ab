"""Integration test of examples/udp_echo, run as a separate process.

Usage: udp_echo_test.py PATH_TO_UDP_ECHO

For every backend the binary offers, starts the server on 127.0.0.1 port 0
and checks that datagrams of 0 bytes and 1 to 60000 bytes from several
client sockets come back whole, to the socket that sent them, from the
server's address; a burst from every client at once; that a client that
vanished (its echo then bounces with an ICMP error) does not disturb the
others; that it is idle when idle; and that SIGTERM/SIGINT stop it with
status 0. Then the flag errors.
"""

import os
import select
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import HOST, IO_TIMEOUT, Failure, check  # noqa: E402

CLIENTS = 5
SIZES = [0, 1, 2, 3, 100, 512, 1472, 1473, 4096, 8192, 9000, 16384, 32768, 50000,
         60000]
# Bytes in flight at once: well under the server's default receive buffer
# (212992 on Linux), so nothing is dropped on loopback for want of room.
WINDOW = 120000
RETRY_AFTER = 2.0  # seconds; UDP may drop, so one lost datagram is resent


def make_clients():
    clients = []
    for _ in range(CLIENTS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        clients.append(s)
    return clients


def datagram(client, size):
    return testlib.payload(size, seed=client * 100000 + size)


def receive_echo(sock, server, want, stale, what):
    """The echo of `want` (resent once after RETRY_AFTER); skips `stale` ones."""
    deadline = time.monotonic() + IO_TIMEOUT
    resend_at = time.monotonic() + RETRY_AFTER
    while True:
        now = time.monotonic()
        check(now < deadline, "%s: no echo within %.0f s" % (what, IO_TIMEOUT))
        if now >= resend_at:
            sock.sendto(want, server)
            resend_at = deadline
        r, _, _ = select.select([sock], [], [], min(resend_at, deadline) - now)
        if not r:
            continue
        data, source = sock.recvfrom(65536)
        check(source == server, "%s: echo came from %r, not the server %r"
              % (what, source, server))
        if data == want:
            return
        if data in stale:
            continue  # a late duplicate of an earlier round's resend
        raise Failure("%s: got %d bytes (sha256 %s), want %d (sha256 %s)"
                      % (what, len(data), testlib.sha256(data)[:16], len(want),
                         testlib.sha256(want)[:16]))


def test_sizes(server_port):
    """Every size from every client; as many in flight at once as fit WINDOW."""
    server = (HOST, server_port)
    clients = make_clients()
    try:
        previous = {}
        for size in SIZES:
            per_group = max(1, min(CLIENTS, WINDOW // max(size, 1)))
            for first in range(0, CLIENTS, per_group):
                group = range(first, min(CLIENTS, first + per_group))
                for i in group:
                    clients[i].sendto(datagram(i, size), server)
                for i in group:
                    receive_echo(clients[i], server, datagram(i, size),
                                 previous.get(i, ()), "client %d, %d bytes" % (i, size))
                    previous[i] = {datagram(i, size)}
    finally:
        for c in clients:
            c.close()


def test_burst(server_port):
    """Every client sends 20 datagrams at once: each gets its own 20 back."""
    server = (HOST, server_port)
    clients = make_clients()
    try:
        sent = {}
        for n in range(20):
            for i, c in enumerate(clients):
                data = b"client %d datagram %02d " % (i, n) + datagram(i, 100 + n)
                sent.setdefault(i, []).append(data)
                c.sendto(data, server)
        for i, c in enumerate(clients):
            got = []
            deadline = time.monotonic() + IO_TIMEOUT
            while len(got) < len(sent[i]):
                left = deadline - time.monotonic()
                check(left > 0, "client %d: %d of %d echoes" % (i, len(got), len(sent[i])))
                r, _, _ = select.select([c], [], [], left)
                if r:
                    data, source = c.recvfrom(65536)
                    check(source == server, "client %d: echo from %r" % (i, source))
                    got.append(data)
            check(sorted(got) == sorted(sent[i]), "client %d: echoes differ from what "
                  "it sent (another client's datagram?)" % i)
    finally:
        for c in clients:
            c.close()


def test_vanished_client(server_port):
    """Echoes to closed sockets bounce (ICMP); the server carries on."""
    server = (HOST, server_port)
    for n in range(10):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"gone %d" % n, server)
        s.close()
    clients = make_clients()
    try:
        for i, c in enumerate(clients):
            c.sendto(b"still there? %d" % i, server)
            receive_echo(c, server, b"still there? %d" % i, (), "after vanished clients")
    finally:
        for c in clients:
            c.close()


def test_signal_exit(binary, backend, signo):
    with testlib.Process([binary, "--port", "0", "--backend", backend],
                         name="udp_echo[%s]" % backend) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"hi", (HOST, server.port))
            receive_echo(s, (HOST, server.port), b"hi", (), "before the signal")
        server.expect_clean_exit(signo)


def test_sigterm(binary, backend):
    test_signal_exit(binary, backend, signal.SIGTERM)


def test_sigint(binary, backend):
    test_signal_exit(binary, backend, signal.SIGINT)


def test_flag_errors(binary):
    testlib.expect_usage_error(binary, ["--port", "0", "--bogus"], ["--bogus"])
    testlib.expect_usage_error(binary, ["--port", "99999"])
    testlib.expect_usage_error(binary, ["--port", "0", "--backend", "nope"], ["nope"])


def body(args):
    binary = args[0]
    backends = testlib.available_backends(binary, ["--port", "0"])
    testlib.run_step("flags", test_flag_errors, binary)
    for backend in backends:
        with testlib.Process([binary, "--port", "0", "--backend", backend],
                             name="udp_echo[%s]" % backend) as server:
            for test in (test_sizes, test_burst, test_vanished_client):
                testlib.run_step(backend, test, server.port)
                server.check_alive("during " + test.__name__)
            testlib.check_idle(server, "idle")
            server.expect_clean_exit(signal.SIGTERM)
        testlib.run_step(backend, test_sigterm, binary, backend)
        testlib.run_step(backend, test_sigint, binary, backend)


if __name__ == "__main__":
    sys.exit(testlib.main(body, "PATH_TO_UDP_ECHO"))
