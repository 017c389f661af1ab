"""Hostile input: every case of examples/fuzz/http_corpus.py sent to a live
http_server, then shutdown(SHUT_WR); the answer (status codes in order, then
a close) must be the case's within a bounded time, and the server must be
alive and serving a normal GET after each case."""

import socket
import time

import stresslib as sl
from stresslib import RESULTS, check, connect
import http_corpus

CASE_TIMEOUT = 10.0  # seconds for one case's answers and close


def read_responses(sock, what, deadline):
    """The status codes of the responses up to EOF, and whether the end was
    a reset instead of a FIN."""
    statuses = []
    reset = False
    buf = bytearray()
    eof = False
    while not eof:
        left = deadline - time.monotonic()
        check(left > 0, "%s: no close within %.0f s (statuses so far %r, %d bytes buffered)"
              % (what, CASE_TIMEOUT, statuses, len(buf)))
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            chunk = b""
            reset = True
        if not chunk:
            eof = True
        buf += chunk
        # Parse as many whole responses as the buffer holds.
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buf[:end]).split(b"\r\n")
            m = sl.STATUS_LINE.match(head[0])
            check(m, "%s: bad status line %r" % (what, head[0][:80]))
            status = int(m.group(1))
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if status == 100:
                length = 0  # "100 Continue" has no body
            if len(buf) < end + 4 + length:
                break
            del buf[:end + 4 + length]
            if status != 100:
                statuses.append(status)
    check(not buf, "%s: %d stray bytes after the responses: %r" % (what, len(buf), bytes(buf[:80])))
    return statuses, reset


def send_case(sock, data, dribble):
    if not dribble:
        sock.sendall(data)
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        try:
            sock.sendall(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return  # the server answered and closed before the end: allowed


def corpus(bins, site, backend, dribble):
    mismatches = []
    slowest = (0.0, "")
    with sl.start(bins["http_server"], ["--port", 0, "--root", site, "--max-body", 1048576,
                                        "--backend", backend],
                  name="http_server[%s]" % backend) as server:
        base = sl.baseline(server, lambda: sl.http_ok(server.port))
        for name, data, want in http_corpus.CASES:
            what = "case %s" % name
            t0 = time.monotonic()
            with connect(server.port, timeout=CASE_TIMEOUT) as s:
                try:
                    send_case(s, data, dribble)
                    s.shutdown(socket.SHUT_WR)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # closed after answering: the responses are still readable
                got, reset = read_responses(s, what, t0 + CASE_TIMEOUT)
            seconds = time.monotonic() - t0
            slowest = max(slowest, (seconds, name))
            if got != want:
                mismatches.append("%s: got %r, want %r" % (name, got, want))
            elif reset and not dribble:
                # (Byte by byte, the server may answer and close before the
                # last bytes arrive; those then draw a reset: allowed.)
                mismatches.append("%s: closed with a reset, not a FIN" % name)
            server.check_alive("after " + what)
            sl.http_ok(server.port)  # still serving
        sl.settle(server, base, "after the corpus")
    n = len(http_corpus.CASES)
    RESULTS.inputs["malformed HTTP requests (%s%s)" % (backend, ", byte by byte" if dribble
                                                      else "")] = n
    check(len(http_corpus.CASES) >= 60, "the corpus has only %d cases" % n)
    check(not mismatches, "%d of %d cases answered wrongly: %s"
          % (len(mismatches), n, "; ".join(mismatches)))
    print("     %d cases, each answered as expected and closed; slowest %.3f s (%s)"
          % (n, slowest[0], slowest[1]), flush=True)
