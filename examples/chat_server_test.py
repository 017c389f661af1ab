"""Integration test of examples/chat_server, run as a separate process.

Usage: chat_server_test.py PATH_TO_CHAT_SERVER

For every backend the binary offers, starts the server on 127.0.0.1 port 0
and checks, with Python's own socket and asynchat modules as independent
clients: nicknames, joins and leaves, that a line goes to every other client
as "nick: text" and not back to its sender, "\\r\\n" line ends, /quit, the
4 KiB line limit, 200 concurrent clients each receiving every other's message
exactly once, that a client that never reads neither blocks the others nor
grows the server without bound (it is dropped), that resetting clients do no
harm, and that SIGTERM/SIGINT stop it with status 0. Then the flag errors.
"""

import collections
import contextlib
import fcntl
import os
import signal
import socket
import struct
import sys
import termios
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import IO_TIMEOUT, check  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asynchat  # an independent implementation drives the crowd
    import asyncore

MAX_LINE = 4096          # the server's line limit (bytes, without the end)
MAX_QUEUED = 1 << 20     # output the server queues for a client before dropping it
CROWD = 200              # concurrent clients in test_crowd


class Client:
    """A blocking chat client that reads whole lines."""

    def __init__(self, port, nick=None, rcvbuf=None, end=b"\n"):
        self.nick = nick
        self.sock = testlib.connect(port, rcvbuf=rcvbuf)
        self.buf = b""
        if nick is not None:
            self.send(nick.encode() + end)

    def send(self, data):
        self.sock.sendall(data)

    def say(self, text, end=b"\n"):
        self.send(text.encode() + end)

    def line(self, timeout=IO_TIMEOUT):
        """The next line, without its "\\n"."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            check(left > 0, "%s: no complete line within %.0f s (have %r)"
                  % (self.nick, timeout, self.buf[:80]))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            check(chunk, "%s: EOF while waiting for a line (have %r)"
                  % (self.nick, self.buf[:80]))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def expect(self, want):
        got = self.line()
        check(got == want, "%s: got line %r, want %r" % (self.nick, got[:100], want[:100]))

    def expect_eof(self, allow_reset=False):
        rest = testlib.recv_until_eof(self.sock, "%s: EOF" % self.nick,
                                      allow_reset=allow_reset)
        check(self.buf + rest == b"", "%s: unexpected data before EOF: %r"
              % (self.nick, (self.buf + rest)[:100]))

    def close(self):
        self.sock.close()


@contextlib.contextmanager
def alice_and_bob(port):
    """Two clients in the room, each past the join announcements it gets."""
    # alice is in the room before bob connects: connections accepted in one
    # burst may be read in any order.
    alice = Client(port, "alice")
    bob = None
    try:
        alice.expect("* alice joined")
        bob = Client(port, "bob")
        alice.expect("* bob joined")
        bob.expect("* bob joined")
        yield alice, bob
    finally:
        alice.close()
        if bob is not None:
            bob.close()


def sync(sender, receivers, tag):
    """Sends a marker line from `sender`; each receiver's next line must be it.

    Since the server delivers to each client in order, this proves nothing
    else was pending for the receivers (and nothing for the sender, if it
    then gets a marker from a receiver).
    """
    sender.say(tag)
    for r in receivers:
        r.expect("%s: %s" % (sender.nick, tag))


def test_conversation(port):
    alice = Client(port, "alice")
    bob = cathy = None
    try:
        # A join is announced to everyone, the joiner included.
        alice.expect("* alice joined")
        bob = Client(port, "bob", end=b"\r\n")  # "\r\n" is tolerated
        bob.expect("* bob joined")
        alice.expect("* bob joined")
        # A line goes to everyone else, not back to its sender.
        alice.say("hello, bob")
        bob.expect("alice: hello, bob")
        bob.say("hi alice", end=b"\r\n")
        alice.expect("bob: hi alice")  # not "alice: hello, bob" echoed first
        # Empty lines and lines that look like commands are just lines.
        alice.say("")
        bob.expect("alice: ")
        alice.say("/nick x")
        bob.expect("alice: /nick x")
        # Several lines in one segment, one line across many segments.
        alice.send(b"one\ntwo\r\nthree\n")
        for word in ("one", "two", "three"):
            bob.expect("alice: " + word)
        for piece in (b"sp", b"li", b"t\r", b"\n"):
            alice.send(piece)
        bob.expect("alice: split")
        cathy = Client(port, "cathy")
        cathy.expect("* cathy joined")
        alice.expect("* cathy joined")
        bob.expect("* cathy joined")
        cathy.say("three of us")
        alice.expect("cathy: three of us")
        bob.expect("cathy: three of us")
        sync(bob, [alice, cathy], "sync")
        sync(alice, [bob, cathy], "sync")  # nothing else was pending for bob
        # An empty first line is no nickname.
        nobody = Client(port)
        try:
            nobody.send(b"\r\n")
            nobody.nick = "(no nick)"
            nobody.expect("! nickname required")
            nobody.say("dave")
            nobody.expect("* dave joined")
            for c in (alice, bob, cathy):
                c.expect("* dave joined")
        finally:
            nobody.close()
        for c in (alice, bob, cathy):
            c.expect("* dave left")
    finally:
        for c in (alice, bob, cathy):
            if c:
                c.close()


def test_quit(port):
    with alice_and_bob(port) as (alice, bob):
        bob.say("/quit", end=b"\r\n")
        bob.expect_eof()  # no "* bob left" for bob himself
        alice.expect("* bob left")
        # The room goes on without bob.
        carol = Client(port, "carol")
        try:
            carol.expect("* carol joined")
            alice.expect("* carol joined")
            alice.say("bye bob")
            carol.expect("alice: bye bob")
        finally:
            carol.close()
        alice.expect("* carol left")


def test_line_limit(port):
    with alice_and_bob(port) as (alice, bob):
        # Exactly the limit passes, with either line end.
        longest = "x" * MAX_LINE
        bob.say(longest)
        alice.expect("bob: " + longest)
        bob.say(longest, end=b"\r\n")
        alice.expect("bob: " + longest)
        # One byte more, even before its end arrives, is too long.
        bob.send(b"y" * (MAX_LINE + 1))
        bob.expect("! line too long")
        bob.expect_eof()
        alice.expect("* bob left")
        # A nickname line is a line too.
        nick = Client(port)
        try:
            nick.nick = "(long nick)"
            nick.send(b"n" * (MAX_LINE + 1))
            nick.expect("! line too long")
            nick.expect_eof()
        finally:
            nick.close()
        # A client streaming a huge line is cut off; the room is unharmed.
        flood = Client(port, "flood")
        try:
            flood.expect("* flood joined")
            alice.expect("* flood joined")
            flood.sock.settimeout(IO_TIMEOUT)
            try:
                flood.send(b"z" * (8 << 20))
            except (ConnectionResetError, BrokenPipeError):
                pass  # the server hung up on us mid-send, as it may
        finally:
            flood.close()
        alice.expect("* flood left")
        carol = Client(port, "carol")
        try:
            carol.expect("* carol joined")
            alice.expect("* carol joined")
            carol.say("still fine")
            alice.expect("carol: still fine")
        finally:
            carol.close()
        alice.expect("* carol left")


class CrowdMember(asynchat.async_chat):
    """One of the crowd: Python's asynchat splitting the server's lines."""

    def __init__(self, port, nick, sock_map):
        super().__init__(map=sock_map)
        self.nick = nick
        self.lines = []
        self.joined = False   # seen its own join
        self.talk = 0         # lines that are not announcements
        self.markers = 0      # "...: marker" lines
        self.parts = []
        self.error = None
        self.closed = False
        self.set_terminator(b"\n")
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect((testlib.HOST, port))
        self.push(nick.encode() + b"\n")

    def handle_connect(self):
        pass

    def collect_incoming_data(self, data):
        self.parts.append(data)

    def found_terminator(self):
        line = b"".join(self.parts).decode()
        self.parts = []
        self.lines.append(line)
        if line == "* %s joined" % self.nick:
            self.joined = True
        elif line.endswith(": marker"):
            self.markers += 1
        elif not line.startswith("* "):
            self.talk += 1

    def handle_close(self):
        self.closed = True
        self.close()

    def handle_error(self):
        self.error = repr(sys.exc_info()[1])
        self.close()


def run_crowd(sock_map, crowd, done, what):
    deadline = time.monotonic() + 2 * IO_TIMEOUT
    while not done():
        for c in crowd:
            check(c.error is None, "%s: %s: %s" % (what, c.nick, c.error))
            check(not c.closed, "%s: %s was disconnected" % (what, c.nick))
        check(time.monotonic() < deadline, "%s: not done within %.0f s"
              % (what, 2 * IO_TIMEOUT))
        asyncore.loop(timeout=0.1, map=sock_map, use_poll=True, count=1)


def test_crowd(port):
    """CROWD clients at once: every message reaches every other one once."""
    sock_map = {}
    crowd = []
    try:
        crowd = [CrowdMember(port, "c%03d" % i, sock_map) for i in range(CROWD)]
        nicks = [c.nick for c in crowd]
        # Everyone is in the room once they have seen their own join.
        run_crowd(sock_map, crowd, lambda: all(c.joined for c in crowd), "joining")
        for c in crowd:
            c.push(("%s says hi" % c.nick).encode() + b"\n")
        run_crowd(sock_map, crowd, lambda: all(c.talk >= CROWD - 1 for c in crowd),
                  "talking")
        # Markers: anything still in flight for a client arrives before them.
        crowd[0].push(b"marker\n")
        crowd[1].push(b"marker\n")
        markers = {c.nick: {"c000: marker", "c001: marker"} - {c.nick + ": marker"}
                   for c in crowd}
        run_crowd(sock_map, crowd,
                  lambda: all(c.markers >= len(markers[c.nick]) for c in crowd),
                  "markers")
        joined_seen = {}
        for c in crowd:
            check(c.lines[0] == "* %s joined" % c.nick,
                  "%s: first line %r, want its own join" % (c.nick, c.lines[0]))
            said = collections.Counter()
            joins = set()
            for line in c.lines[1:]:
                if line.startswith("* ") and line.endswith(" joined"):
                    joins.add(line[2:-7])
                elif line.endswith(" says hi"):
                    who, _, text = line.partition(": ")
                    check(text == who + " says hi", "%s: garbled line %r" % (c.nick, line))
                    said[who] += 1
                else:
                    check(line in markers[c.nick], "%s: unexpected line %r"
                          % (c.nick, line))
            check(c.nick not in said, "%s: got its own message back" % c.nick)
            wrong = {w: n for w, n in said.items() if n != 1}
            check(not wrong, "%s: messages received more than once: %r" % (c.nick, wrong))
            missing = set(nicks) - set(said) - {c.nick}
            check(not missing, "%s: %d messages missing, e.g. from %s"
                  % (c.nick, len(missing), sorted(missing)[:5]))
            check(c.nick not in joins, "%s: saw its own join twice" % c.nick)
            joined_seen[c.nick] = joins
        # Of any two clients, exactly the one that joined first saw the
        # other join.
        for i, a in enumerate(nicks):
            for b in nicks[i + 1:]:
                check((b in joined_seen[a]) != (a in joined_seen[b]),
                      "%s and %s: join announcements inconsistent" % (a, b))
    finally:
        asyncore.close_all(map=sock_map)


def test_slow_client(port):
    """A client that never reads: others are served; it is dropped at ~1 MiB."""
    # One at a time: connections accepted in one burst may be read in any
    # order, and each must hear the joins after its own.
    slow = Client(port, "slow", rcvbuf=4096)
    alice = bob = None
    try:
        testlib.wait_until(lambda: pending_bytes(slow) > 0, "slow's join")
        alice = Client(port, "alice")
        alice.expect("* alice joined")
        bob = Client(port, "bob")
        bob.expect("* bob joined")
        alice.expect("* bob joined")
        text = "." * 4000
        line_bytes = len("alice: 0000000 ") + len(text) + 1
        sent_lines = 0
        left_after = None  # lines sent when bob heard that slow was dropped
        limit = (64 << 20) // line_bytes
        # Each batch: alice sends 64 lines, and bob must get them all while
        # the slow client reads nothing.
        while left_after is None or sent_lines < left_after + 256:
            check(sent_lines < limit, "slow client not dropped after %d MiB of "
                  "broadcast" % (sent_lines * line_bytes >> 20))
            batch = range(sent_lines, sent_lines + 64)
            alice.send(b"".join(b"%07d %s\n" % (i, text.encode()) for i in batch))
            for i in batch:
                line = bob.line()
                if line == "* slow left":
                    # Dropped while line i or i - 1 was broadcast.
                    check(left_after is None, "bob: slow left twice")
                    left_after = i
                    line = bob.line()
                check(line == "alice: %07d %s" % (i, text),
                      "bob: got %r, want line %d" % (line[:40], i))
            sent_lines += 64
        alice.expect("* slow left")
        sent_to_slow = (left_after + 1) * line_bytes + 100  # + announcements
        check(sent_to_slow >= MAX_QUEUED,
              "slow client dropped after only %d bytes were sent its way"
              % sent_to_slow)
        # What reached the slow client's socket, then EOF; the ~1 MiB queued
        # in the server was dropped.
        got = testlib.recv_until_eof(slow.sock, "slow client", allow_reset=True)
        check(got.startswith(b"* slow joined\n"), "slow client got %r" % got[:40])
        check(len(got) <= sent_to_slow - (MAX_QUEUED - line_bytes),
              "slow client got %d of the %d bytes sent its way: less than 1 MiB "
              "was dropped" % (len(got), sent_to_slow))
        print("     slow client dropped after %d KiB sent its way, %d KiB delivered"
              % (sent_to_slow >> 10, len(got) >> 10), flush=True)
        sync(alice, [bob], "after slow")
        sync(bob, [alice], "after slow")
    finally:
        for c in (slow, alice, bob):
            if c is not None:
                c.close()


def pending_bytes(client):
    """Bytes waiting in the client's socket (FIONREAD), without reading."""
    return struct.unpack("i", fcntl.ioctl(client.sock.fileno(), termios.FIONREAD,
                                          b"\0\0\0\0"))[0]


def test_dead_clients(port):
    with alice_and_bob(port) as (alice, bob):
        # Reset before sending a nickname: nobody hears of it.
        testlib.rst_close(testlib.connect(port))
        # Reset after joining.
        dead = Client(port, "dead")
        dead.expect("* dead joined")
        alice.expect("* dead joined")
        bob.expect("* dead joined")
        testlib.rst_close(dead.sock)
        alice.expect("* dead left")
        bob.expect("* dead left")
        # Reset with output queued for it (its sends then fail).
        stuck = Client(port, "stuck", rcvbuf=4096)
        stuck.expect("* stuck joined")
        alice.expect("* stuck joined")
        bob.expect("* stuck joined")
        text = "#" * 4000
        for i in range(100):
            alice.say("%03d %s" % (i, text))
        for i in range(100):
            bob.expect("alice: %03d %s" % (i, text))
        testlib.rst_close(stuck.sock)
        bob.expect("* stuck left")
        alice.expect("* stuck left")
        # Reset in the middle of a line.
        half = Client(port, "half")
        half.expect("* half joined")
        alice.expect("* half joined")
        bob.expect("* half joined")
        half.send(b"no end in sight")
        testlib.rst_close(half.sock)
        alice.expect("* half left")
        bob.expect("* half left")
        sync(alice, [bob], "alive")
        sync(bob, [alice], "alive")


def test_signal_exit(binary, backend, signo):
    with testlib.Process([binary, "--port", "0", "--backend", backend],
                         name="chat_server[%s]" % backend) as server:
        clients = []
        try:
            for i in range(3):
                clients.append(Client(server.port, "n%d" % i))
                clients[-1].expect("* n%d joined" % i)
            server.expect_clean_exit(signo)
            for c in clients:  # the rest of the joins, then EOF
                testlib.recv_until_eof(c.sock, "client at exit", allow_reset=True)
        finally:
            for c in clients:
                c.close()


def test_sigterm_with_clients(binary, backend):
    test_signal_exit(binary, backend, signal.SIGTERM)


def test_sigint_with_clients(binary, backend):
    test_signal_exit(binary, backend, signal.SIGINT)


def test_flag_errors(binary):
    testlib.expect_usage_error(binary, ["--port", "0", "--bogus"], ["--bogus"])
    testlib.expect_usage_error(binary, ["--port", "99999"])
    testlib.expect_usage_error(binary, ["--port", "x"])
    testlib.expect_usage_error(binary, ["--port"])
    testlib.expect_usage_error(binary, ["--port", "0", "--backend", "nope"], ["nope"])
    testlib.expect_usage_error(binary, ["--port", "0", "stray"])


def test_backend(binary, backend):
    label = backend
    with testlib.Process([binary, "--port", "0", "--backend", backend],
                         name="chat_server[%s]" % backend) as server:
        for test in (test_conversation, test_quit, test_line_limit, test_crowd,
                     test_slow_client, test_dead_clients):
            testlib.run_step(label, test, server.port)
            server.check_alive("during " + test.__name__)
        server.expect_clean_exit(signal.SIGTERM)
    testlib.run_step(label, test_sigterm_with_clients, binary, backend)
    testlib.run_step(label, test_sigint_with_clients, binary, backend)


def body(args):
    binary = args[0]
    # CROWD clients here plus as many in the server, with room to spare.
    testlib.raise_nofile(4 * CROWD + 256)
    backends = testlib.available_backends(binary, ["--port", "0"])
    testlib.run_step("flags", test_flag_errors, binary)
    for backend in backends:
        test_backend(binary, backend)


if __name__ == "__main__":
    sys.exit(testlib.main(body, "PATH_TO_CHAT_SERVER"))
