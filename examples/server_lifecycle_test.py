"""How the example servers start, time out, run several loops and stop.

Usage: server_lifecycle_test.py ECHO_SERVER HTTP_SERVER CHAT_SERVER
                                PORT_FORWARDER UDP_ECHO
(run by examples/py_test.sh)

For every backend:
- graceful drain: SIGTERM while http_server sends a 20 MiB file, a chat
  member has a backlog of lines queued, and idle connections are open: the
  listeners close at once (new connections are refused), every byte of the
  response and every queued line arrives, and each server exits 0; a client
  that never reads does not hold a server past --drain-seconds;
- idle timeouts: http_server closes idle connections and answers 408 to a
  slowloris request head after --idle-timeout, but never cuts an active
  keep-alive connection or a download; chat_server disconnects a silent
  member and announces the leave;
- --threads 2 and 4: 200 concurrent clients are served, and every loop
  accepted some of them.
Then the flags: --help lists them with their defaults, bad values exit 2.
"""

import hashlib
import os
import re
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

from testlib import (HOST, IO_TIMEOUT, Failure, Process, available_backends,
                     check, connect, expect_usage_error, run, run_step)
import testlib

MIB = 1 << 20
BIG = 20 * MIB


def http_get(path, keep_alive=True):
    return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n"
            % (path, "" if keep_alive else "Connection: close\r\n")).encode()


def read_until_eof(sock, limit=IO_TIMEOUT):
    sock.settimeout(limit)
    data = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(data)
        data += chunk


def wait_eof(sock, within, what):
    """Waits up to `within` seconds for the peer to close; returns when."""
    sock.settimeout(within)
    start = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        raise Failure("%s: still open after %.1f s" % (what, within))
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def refused_within(port, within, what):
    """Connecting to port fails (refused) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection((HOST, port), timeout=1)
        except ConnectionRefusedError:
            return
        s.close()
        time.sleep(0.01)  # polling the listener's state, which no event shows
    raise Failure("%s: port %d still accepts after %.0f s" % (what, port, within))


def start(binary, backend, *args, name=None):
    return Process([binary, "--port", "0", "--backend", backend] + list(args),
                   name=name or "%s[%s]" % (os.path.basename(binary), backend))


def exit_status_within(proc, within, what):
    try:
        return proc.proc.wait(timeout=within)
    except Exception:
        raise Failure("%s: %s did not exit within %.1f s" % (what, proc.name, within))


# --- Graceful drain -----------------------------------------------------------

def test_http_drain(binaries, backend, root):
    """SIGTERM mid-download: the whole 20 MiB arrive, new connects fail."""
    with start(binaries["http_server"], backend, "--root", root,
               "--drain-seconds", "30") as server:
        idle = connect(server.port)  # an idle keep-alive connection
        idle.sendall(http_get("/index.html"))
        check(idle.recv(65536).startswith(b"HTTP/1.1 200"), "idle: no response")
        client = connect(server.port, rcvbuf=65536)
        client.sendall(http_get("/big.bin", keep_alive=False))
        first = client.recv(65536)  # the download is under way
        check(first.startswith(b"HTTP/1.1 200"), "download: %r" % first[:100])
        server.proc.send_signal(signal.SIGTERM)
        refused_within(server.port, 5, "after SIGTERM")
        wait_eof(idle, 5, "idle keep-alive connection during the drain")
        data = first + read_until_eof(client)
        head, _, body = data.partition(b"\r\n\r\n")
        check(len(body) == BIG, "got %d of %d bytes" % (len(body), BIG))
        check(hashlib.sha256(body).digest() == hashlib.sha256(big_bytes()).digest(),
              "the file arrived corrupted")
        check(exit_status_within(server, 10, "http drain") == 0,
              "exit status %s" % server.proc.poll())


def test_drain_deadline(binaries, backend, root):
    """A client that never reads is closed after --drain-seconds."""
    with start(binaries["http_server"], backend, "--root", root,
               "--drain-seconds", "1") as server:
        stuck = connect(server.port, rcvbuf=4096)
        stuck.sendall(http_get("/big.bin"))
        check(stuck.recv(1).startswith(b"H"), "no response started")
        begin = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        status = exit_status_within(server, 10, "drain deadline")
        took = time.monotonic() - begin
        check(status == 0, "exit status %s" % status)
        check(1.0 <= took < 6, "exited %.2f s after SIGTERM, want about 1" % took)
        stuck.close()


def test_chat_drain(binaries, backend, root):
    """Lines queued for a member who was not reading arrive after SIGTERM."""
    # A drain long enough for a sanitizer build on a busy machine (the
    # default 2 s ran out there); the server still exits once drained.
    with start(binaries["chat_server"], backend, "--drain-seconds", "30") as server:
        alice, bob, carol = (connect(server.port) for _ in range(3))
        for s, nick in ((alice, b"alice"), (bob, b"bob"), (carol, b"carol")):
            s.sendall(nick + b"\n")
        # Everyone is in the room before alice talks.
        heard = bytearray()
        alice.settimeout(IO_TIMEOUT)
        while b"* bob joined\n" not in heard or b"* carol joined\n" not in heard:
            chunk = alice.recv(65536)
            check(chunk, "alice: EOF")
            heard += chunk
        lines = [b"line %05d %s" % (i, b"x" * 80) for i in range(3000)]
        alice.sendall(b"".join(l + b"\n" for l in lines))
        # carol reads everything: then the server has queued it for bob too.
        want = b"".join(b"alice: " + l + b"\n" for l in lines)
        got = bytearray()
        carol.settimeout(IO_TIMEOUT)
        while got.count(b"alice: line ") < len(lines):
            chunk = carol.recv(65536)
            check(chunk, "carol: EOF")
            got += chunk
        server.proc.send_signal(signal.SIGTERM)
        refused_within(server.port, 5, "chat after SIGTERM")
        backlog = read_until_eof(bob)
        check(want in backlog, "bob lost queued lines: %d bytes, want %d more"
              % (len(backlog), len(want)))
        check(exit_status_within(server, 10, "chat drain") == 0, "exit status")


def test_echo_drain(binaries, backend, root):
    """SIGTERM in the middle of a 20 MiB echo: the client gets back an intact
    prefix of what it sent (what the server had read is flushed; what it had
    not read is dropped with the connection), and the server exits 0."""
    data = big_bytes()
    with start(binaries["echo_server"], backend, "--drain-seconds", "10") as server:
        s = connect(server.port)
        s.setblocking(False)
        sent = 0
        got = bytearray()
        signalled = False
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            check(time.monotonic() < deadline, "echo drain: timed out")
            if not signalled and len(got) >= 4 * MIB:
                server.proc.send_signal(signal.SIGTERM)
                signalled = True
            r, w, _ = select.select([s], [s] if sent < len(data) else [], [], 1)
            if w:
                try:
                    sent += s.send(data[sent:sent + 65536])
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    pass
            if r:
                try:
                    chunk = s.recv(1 << 20)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                got += chunk
        check(signalled, "the echo ended before the signal (%d bytes)" % len(got))
        check(got == data[:len(got)], "the echo is not a prefix of what was sent")
        check(exit_status_within(server, 10, "echo drain") == 0, "exit status")


def test_every_server_drains(binaries, backend, root):
    """Each server, with a connection open, exits 0 soon after SIGTERM."""
    for name in ("echo_server", "port_forwarder", "udp_echo"):
        args = ["--drain-seconds", "5"]
        if name == "port_forwarder":
            args = ["-P", str(testlib.free_port())] + args
        proc = Process([binaries[name], "--backend", backend] +
                       (["--port", "0"] if name != "port_forwarder" else ["-p", "0"]) +
                       args, name="%s[%s]" % (name, backend))
        with proc:
            if name == "udp_echo":
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.sendto(b"ping", (HOST, proc.port))
                s.settimeout(IO_TIMEOUT)
                check(s.recv(100) == b"ping", "udp_echo: no echo")
            else:
                s = connect(proc.port)
                if name == "echo_server":
                    s.sendall(b"ping")
                    check(s.recv(100) == b"ping", "echo_server: no echo")
            begin = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            status = exit_status_within(proc, 5, name)
            check(status == 0, "%s: exit status %s" % (name, status))
            check(time.monotonic() - begin < 4, "%s: slow to stop" % name)
            s.close()


# --- Idle timeouts ---------------------------------------------------------

def test_http_idle(binaries, backend, root):
    with start(binaries["http_server"], backend, "--root", root,
               "--idle-timeout", "1") as server:
        # Quiet from the start, and quiet after a response.
        quiet = connect(server.port)
        after = connect(server.port)
        after.sendall(http_get("/index.html"))
        check(after.recv(65536).startswith(b"HTTP/1.1 200"), "no response")
        begin = time.monotonic()
        for s, what in ((quiet, "a connection that sends nothing"),
                        (after, "an idle keep-alive connection")):
            took = wait_eof(s, 5, what)
        check(time.monotonic() - begin >= 0.9, "closed before the idle timeout")

        # An active keep-alive connection is never cut.
        busy = connect(server.port)
        for i in range(12):
            busy.sendall(http_get("/index.html"))
            check(busy.recv(65536).startswith(b"HTTP/1.1 200"),
                  "active keep-alive connection: no answer to request %d" % i)
            time.sleep(0.25)  # pacing the client, not synchronisation

        # Slowloris: one header byte every 0.25 s, never idle, cut anyway.
        slow = connect(server.port)
        request = http_get("/index.html")
        slow.settimeout(0.25)
        begin = time.monotonic()
        answer = b""
        for byte in request:
            try:
                slow.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                answer = slow.recv(65536)
                break  # answered (408) or closed
            except socket.timeout:
                pass
            check(time.monotonic() - begin < 5, "slowloris never cut off")
        took = time.monotonic() - begin
        check(answer == b"" or answer.startswith(b"HTTP/1.1 408"),
              "slowloris got %r" % answer[:80])
        check(took >= 0.9, "slowloris cut after %.2f s, before the timeout" % took)
        busy.close()


def test_chat_idle(binaries, backend, root):
    with start(binaries["chat_server"], backend, "--idle-timeout", "1") as server:
        alice = connect(server.port)
        bob = connect(server.port)
        alice.sendall(b"alice\n")
        bob.sendall(b"bob\n")
        bob.settimeout(IO_TIMEOUT)
        seen = bytearray()
        begin = time.monotonic()
        # bob keeps talking (so is not idle); alice only listens.
        while b"* alice left\n" not in seen:
            check(time.monotonic() - begin < 5, "alice was never disconnected")
            bob.sendall(b"hello\n")
            r, _, _ = select.select([bob], [], [], 0.2)
            if r:
                chunk = bob.recv(65536)
                check(chunk, "bob was disconnected")
                seen += chunk
        check(time.monotonic() - begin >= 0.9, "alice cut before the timeout")
        wait_eof(alice, 5, "alice's connection")


# --- Several loops ---------------------------------------------------------

def test_threads(binaries, backend, root):
    for n in (2, 4):
        for name, args in (("echo_server", []), ("http_server", ["--root", root])):
            proc = start(binaries[name], backend, "--threads", str(n), *args)
            with proc:
                clients = [connect(proc.port) for _ in range(200)]
                for i, c in enumerate(clients):
                    if name == "echo_server":
                        c.sendall(b"%d\n" % i)
                    else:
                        c.sendall(http_get("/index.html", keep_alive=False))
                for i, c in enumerate(clients):
                    c.settimeout(IO_TIMEOUT)
                    data = c.recv(65536)
                    if name == "echo_server":
                        check(data == b"%d\n" % i, "client %d got %r" % (i, data))
                    else:
                        check(data.startswith(b"HTTP/1.1 200"), "client %d: %r"
                              % (i, data[:60]))
                    c.close()
                check(exit_status_within_signal(proc) == 0, "exit status")
                counts = [int(m.group(2)) for m in
                          (re.match(r"loop (\d+) accepted (\d+) connections", l)
                           for l in proc.stdout().splitlines()) if m]
                check(len(counts) == n, "%s --threads %d: loop report %r"
                      % (name, n, proc.stdout()))
                check(sum(counts) == 200 and min(counts) > 0,
                      "%s --threads %d: accepts per loop %r" % (name, n, counts))


def exit_status_within_signal(proc):
    proc.proc.send_signal(signal.SIGTERM)
    status = exit_status_within(proc, 10, "--threads")
    for t in proc.threads:  # the loop report is on stdout
        t.join(IO_TIMEOUT)
    return status


# --- Flags -------------------------------------------------------------------

def test_flags(binaries):
    helps = {name: run([path, "--help"], timeout=10, text=True).stdout
             for name, path in binaries.items()}
    for name in binaries:
        check(re.search(r"--drain-seconds S .*\n.*\(default 2\)", helps[name]),
              "%s --help: no --drain-seconds (default 2): %s" % (name, helps[name]))
    for name in ("echo_server", "http_server"):
        check(re.search(r"--threads N .*\(default 1\)", helps[name]),
              "%s --help: no --threads (default 1)" % name)
    check(re.search(r"--idle-timeout S .*\(default 30\)", helps["http_server"]),
          "http_server --help: no --idle-timeout (default 30)")
    check(re.search(r"--idle-timeout S .*\(default 300\)", helps["chat_server"]),
          "chat_server --help: no --idle-timeout (default 300)")
    for name in ("echo_server", "http_server"):
        for bad in ("0", "x", "-1", "2.5", ""):
            expect_usage_error(binaries[name], ["--port", "0", "--threads", bad],
                               mentions=["--threads"])
    for bad in ("-1", "x", "1e99"):
        expect_usage_error(binaries["echo_server"], ["--drain-seconds", bad],
                           mentions=["--drain-seconds"])
        expect_usage_error(binaries["chat_server"], ["--idle-timeout", bad],
                           mentions=["--idle-timeout"])
    expect_usage_error(binaries["chat_server"], ["--threads", "2"],
                       mentions=["--threads"])  # only echo and http have it


_big = None


def big_bytes():
    global _big
    if _big is None:
        _big = bytes((i * 7 + (i >> 11)) & 0xFF for i in range(BIG))
    return _big


def body(argv):
    check(len(argv) == 5, "want the echo, http, chat, forwarder, udp binaries")
    binaries = dict(zip(("echo_server", "http_server", "chat_server",
                         "port_forwarder", "udp_echo"), argv))
    base = tempfile.mkdtemp(prefix="lifecycle.", dir=os.environ.get("TEST_TMPDIR"))
    try:
        root = os.path.join(base, "root")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "wb") as f:
            f.write(b"<p>hello</p>\n")
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(big_bytes())
        for backend in available_backends(binaries["echo_server"]):
            for test in (test_http_drain, test_drain_deadline, test_chat_drain,
                         test_echo_drain, test_every_server_drains, test_http_idle, test_chat_idle,
                         test_threads):
                run_step(backend, test, binaries, backend, root)
        run_step("flags", test_flags, binaries)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(testlib.main(body, "ECHO HTTP CHAT FORWARDER UDP"))
