"""A client process of the stress suite, driven by stresslib.Worker.

  worker.py echo PORT CONNS ROUNDS MAX_SIZE SEED
      Opens CONNS connections to an echo server and prints "connected N".
      On "go" (stdin) every connection exchanges ROUNDS messages of random
      size (log-uniform, 1..MAX_SIZE bytes, random content), all connections
      at once over one epoll selector, sending while reading; every byte that
      comes back is compared in order with what was sent. Prints
      "result {json}", then on "close" closes everything and prints "closed".

  worker.py storm PORT CONNS BURST PROTOCOL SEED
      A connect storm: bursts of BURST connections opened back to back, then
      each treated one of five ways (close at once, reset at once, request
      then close unread, request then reset, full verified exchange).
      PROTOCOL (echo, http, chat) says what a request is. Prints
      "result {json}".

Every wait is bounded (a deadline per phase); exits 1 on any error after
printing what went wrong as the result.
"""

import json
import math
import random
import selectors
import socket
import struct
import sys
import time

HOST = "127.0.0.1"
LINGER_RST = struct.pack("ii", 1, 0)


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def wait_for(word, timeout=600):
    # stdin is a pipe from the parent; a line or EOF (parent gone) ends the wait.
    line = sys.stdin.readline()
    if line.strip() != word:
        sys.exit(3)


class Conn:
    __slots__ = ("sock", "rng", "rounds", "msg", "sent", "got", "out", "inb", "error",
                 "writing")

    def __init__(self, sock, rng, rounds):
        self.sock = sock
        self.rng = rng
        self.rounds = rounds
        self.msg = b""
        self.sent = 0
        self.got = 0
        self.out = 0
        self.inb = 0
        self.error = None
        self.writing = False


def log_uniform(rng, max_size):
    return max(1, min(max_size, int(math.exp(rng.uniform(0, math.log(max_size + 1))))))


def echo(port, conns, rounds, max_size, seed):
    socks = []
    t0 = time.monotonic()
    for i in range(conns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(30)
        try:
            s.connect((HOST, port))
        except OSError as e:
            say("result " + json.dumps({"error": "connect %d of %d: %r" % (i, conns, e)}))
            return 1
        s.setblocking(False)
        socks.append(s)
    say("connected %d %.3f" % (len(socks), time.monotonic() - t0))
    wait_for("go")
    sel = selectors.EpollSelector()
    active = {}
    for i, s in enumerate(socks):
        c = Conn(s, random.Random(seed * 1000003 + i), rounds)
        active[s.fileno()] = c
        next_message(c, max_size)
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        c.writing = True
    t0 = time.monotonic()
    deadline = t0 + 300
    done = 0
    errors = []
    total_out = total_in = 0
    while active:
        left = deadline - time.monotonic()
        if left <= 0:
            errors.append("timed out with %d connections unfinished" % len(active))
            break
        for key, mask in sel.select(min(left, 1.0)):
            c = key.data
            if mask & selectors.EVENT_WRITE and c.sent < len(c.msg):
                try:
                    n = c.sock.send(memoryview(c.msg)[c.sent:c.sent + 262144])
                    c.sent += n
                    c.out += n
                except BlockingIOError:
                    pass
                except OSError as e:
                    c.error = "send: %r" % e
                if c.sent == len(c.msg) and c.writing and c.error is None:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                    c.writing = False
            if mask & selectors.EVENT_READ and c.error is None:
                try:
                    chunk = c.sock.recv(262144)
                except BlockingIOError:
                    chunk = None
                except OSError as e:
                    c.error = "recv: %r" % e
                    chunk = None
                if chunk is not None and c.error is None:
                    if not chunk:
                        c.error = "EOF after %d of %d bytes of a message" % (c.got, len(c.msg))
                    elif c.got + len(chunk) > c.sent or \
                            c.msg[c.got:c.got + len(chunk)] != chunk:
                        c.error = "byte %d of a %d-byte message differs (or was never sent)" \
                            % (c.got, len(c.msg))
                    else:
                        c.got += len(chunk)
                        c.inb += len(chunk)
                        if c.got == len(c.msg):
                            c.rounds -= 1
                            if c.rounds == 0:
                                sel.unregister(c.sock)
                                del active[c.sock.fileno()]
                                done += 1
                                total_out += c.out
                                total_in += c.inb
                            else:
                                next_message(c, max_size)
                                sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                                c.writing = True
            if c.error is not None:
                errors.append(c.error)
                sel.unregister(c.sock)
                del active[c.sock.fileno()]
    elapsed = time.monotonic() - t0
    for c in active.values():
        total_out += c.out
        total_in += c.inb
    say("result " + json.dumps({"done": done, "conns": conns, "errors": errors[:5],
                                "nerrors": len(errors), "bytes_out": total_out,
                                "bytes_in": total_in, "seconds": elapsed}))
    wait_for("close")
    for s in socks:
        s.close()
    say("closed")
    return 0 if not errors else 1


def next_message(c, max_size):
    c.msg = c.rng.randbytes(log_uniform(c.rng, max_size))
    c.sent = 0
    c.got = 0


def request_for(protocol, rng, i):
    if protocol == "echo":
        data = rng.randbytes(rng.randint(1, 2048))
        return data, len(data)
    if protocol == "http":
        return b"GET /index.html HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n", None
    return b"storm%d\nhello from %d\n/quit\n" % (i, i), None


def recv_all(sock, deadline, limit=1 << 22):
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no EOF")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise ValueError("too much data")


def verify(protocol, sock, request, want, deadline):
    """The full exchange of one storm connection."""
    sock.sendall(request)
    if protocol == "echo":
        got = bytearray()
        while len(got) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                return "echo timed out"
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                return "echo EOF after %d of %d" % (len(got), want)
            got += chunk
        return None if bytes(got) == request else "echo differs"
    if protocol == "http":
        resp = recv_all(sock, deadline)
        return None if resp.startswith(b"HTTP/1.1 200 ") else "http: %r" % resp[:60]
    # chat: our own join announcement, then the server closes after /quit
    resp = recv_all(sock, deadline)
    return None if b" joined\n" in resp else "chat: %r" % resp[:60]


def storm(port, conns, burst, protocol, seed):
    rng = random.Random(seed)
    counts = {"close": 0, "rst": 0, "request-close": 0, "request-rst": 0, "exchange": 0}
    errors = []
    connect_errors = 0
    t0 = time.monotonic()
    opened = 0
    while opened < conns:
        socks = []
        for _ in range(min(burst, conns - opened)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(30)
            try:
                s.connect((HOST, port))
            except OSError as e:
                connect_errors += 1
                errors.append("connect: %r" % e)
                s.close()
                continue
            socks.append(s)
        opened += burst
        deadline = time.monotonic() + 30
        for i, s in enumerate(socks):
            kind = rng.choice(list(counts))
            counts[kind] += 1
            try:
                if kind == "close":
                    s.close()
                elif kind == "rst":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                    s.close()
                else:
                    request, want = request_for(protocol, rng, opened + i)
                    if kind == "exchange":
                        err = verify(protocol, s, request, want, deadline)
                        if err:
                            errors.append(err)
                        s.close()
                    else:
                        s.sendall(request)
                        if kind == "request-rst":
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                        s.close()
            except OSError as e:
                errors.append("%s: %r" % (kind, e))
                s.close()
    say("result " + json.dumps({"counts": counts, "errors": errors[:5], "nerrors": len(errors),
                                "connect_errors": connect_errors,
                                "seconds": time.monotonic() - t0}))
    return 0 if not errors else 1


def main(argv):
    cmd = argv[1]
    if cmd == "echo":
        port, conns, rounds, max_size, seed = map(int, argv[2:7])
        return echo(port, conns, rounds, max_size, seed)
    if cmd == "storm":
        port, conns, burst = map(int, argv[2:5])
        return storm(port, conns, burst, argv[5], int(argv[6]))
    say("result " + json.dumps({"error": "unknown command %r" % cmd}))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
