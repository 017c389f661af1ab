"""Faults: resets mid-request, mid-response and right after a request,
half-close with output pending, clients that never read, descriptor
exhaustion (EMFILE) and recovery, connect storms, a handler that throws in
every event, and a channel that closes many others from one handler. After
each: the server is alive and serving, back to its baseline descriptor count,
and uses no CPU when idle (stresslib.settle)."""

import os
import select
import socket
import threading
import time

import stresslib as sl
from stresslib import RESULTS, Failure, check, connect, recv_exactly, rst_close
import testlib


class Ctx:
    """One server under test and what the fault steps need to know."""

    def __init__(self, server, base, backend, scale, probe, site=None):
        self.server = server
        self.port = server.port
        self.base = base
        self.backend = backend
        self.scale = scale
        self.probe = probe  # a new connection is served, or Failure
        self.site = site

    def settle(self, what):
        sl.settle(self.server, self.base, what)
        self.probe()


def pump(sock, limit, stall=0.2, timeout=10.0):
    """Sends (non-blocking) up to `limit` bytes without reading, until the
    peer stops taking them for `stall` seconds. Returns the bytes sent."""
    sock.setblocking(False)
    chunk = b"\xa5" * 65536
    sent = 0
    deadline = time.monotonic() + timeout
    while sent < limit and time.monotonic() < deadline:
        _, w, _ = select.select([], [sock], [], stall)
        if not w:
            break
        try:
            sent += sock.send(chunk[:min(len(chunk), limit - sent)])
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            break
    return sent


def closed_within(sock, timeout, what):
    """Reads (and drops) until EOF or reset within `timeout`."""
    deadline = time.monotonic() + timeout
    sock.setblocking(True)
    while True:
        left = deadline - time.monotonic()
        check(left > 0, "%s: not closed within %.0f s" % (what, timeout))
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return


# --- echo_server ---------------------------------------------------------------

def still_open(socks, timeout):
    """How many of `socks` are neither closed nor reset within `timeout`
    (whatever they receive is dropped)."""
    pending = set(socks)
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select(list(pending), [], [], left)
        for s in r:
            try:
                if s.recv(65536):
                    continue
            except OSError:
                pass
            pending.discard(s)
    return len(pending)


def echo_resets(ctx):
    n = 25 * ctx.scale
    for _ in range(n):
        rst_close(connect(ctx.port))
    RESULTS.fault("reset right after connect", n)
    for _ in range(n):
        s = connect(ctx.port)
        s.sendall(b"r" * 100)
        rst_close(s)
    RESULTS.fault("reset right after a request", n)
    for _ in range(n):
        s = connect(ctx.port)
        pump(s, 200000, stall=0.01)
        rst_close(s)
    RESULTS.fault("reset mid-request", n)
    for _ in range(n):
        s = connect(ctx.port)
        pump(s, 4 * sl.MIB, stall=0.05)
        select.select([s], [], [], 2.0)
        try:
            s.recv(65536)  # part of the response; the rest is still queued
        except OSError:
            pass
        rst_close(s)
    RESULTS.fault("reset mid-response", n)
    ctx.settle("after resets")


def echo_half_close(ctx):
    for size in (1, 65536, 300000, 4 * sl.MIB):
        data = testlib.payload(size, seed=size)
        with connect(ctx.port) as s:
            got = testlib.duplex(s, data, shut_wr=True, what="half-close %d B" % size)
            testlib.check_same(got, data, "echo after half-close (%d B)" % size)
        RESULTS.moved("echo half-close, checked", 2 * size)
    # Output pending at the EOF: send until the server stops reading (its
    # back-pressure), half-close before reading a byte, then read it all.
    with connect(ctx.port) as s:
        sent = pump(s, 8 * sl.MIB, stall=0.3)
        s.shutdown(socket.SHUT_WR)
        s.setblocking(True)
        got = testlib.recv_until_eof(s, "late half-close")
        testlib.check_same(got, b"\xa5" * sent, "echo of output pending at the EOF")
    RESULTS.moved("echo half-close, checked", 2 * sent)
    RESULTS.fault("half-close with output pending", 5)
    ctx.settle("after half-closes")


def echo_non_readers(ctx):
    k = 10 * ctx.scale
    rss0 = sl.rss(ctx.server)
    socks = []
    try:
        for _ in range(k):
            socks.append(connect(ctx.port, rcvbuf=4096))
        total = 0
        for _round in range(3):
            for s in socks:
                total += pump(s, 16 * sl.MIB, stall=0.02, timeout=2)
        time.sleep(0.3)
        grown = sl.rss(ctx.server) - rss0
        # 1 MiB of queued output per connection (the high-water mark) plus
        # its 8 KiB read, plus the allocator's slack.
        bound = k * (5 * sl.MIB // 4) + 8 * sl.MIB
        check(grown < bound, "%d clients that never read grew the server by %.1f MiB (bound %.1f)"
              % (k, grown / sl.MIB, bound / sl.MIB))
        # Everyone else is still served, 1 MiB verified.
        data = testlib.payload(sl.MIB, seed=11)
        with connect(ctx.port) as s:
            testlib.check_same(testlib.duplex(s, data, want=len(data), timeout=10), data,
                               "1 MiB echo while %d clients never read" % k)
        sl.echo_ping(ctx.port)
    finally:
        for s in socks:
            s.close()
    RESULTS.fault("client that never reads", k)
    print("     %d clients that never read pushed %.1f MiB; server RSS +%.1f MiB; others served"
          % (k, total / sl.MIB, grown / sl.MIB), flush=True)
    ctx.settle("after clients that never read")


# --- http_server ---------------------------------------------------------------

GET_INDEX = b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n"
GET_BIG = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"


def http_resets(ctx):
    n = 20 * ctx.scale
    for _ in range(n):
        s = connect(ctx.port)
        s.sendall(b"GET /index.html HTTP/1.1\r\nHo")
        rst_close(s)
    RESULTS.fault("reset mid-request (head)", n)
    for _ in range(n):
        s = connect(ctx.port)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"b" * 5000)
        rst_close(s)
    RESULTS.fault("reset mid-request (body)", n)
    for _ in range(n):
        s = connect(ctx.port)
        s.sendall(GET_INDEX)
        rst_close(s)
    RESULTS.fault("reset right after a request", n)
    for _ in range(n):
        s = connect(ctx.port)
        s.sendall(GET_BIG)
        recv_exactly(s, 16384, "start of big.bin")
        rst_close(s)
    RESULTS.fault("reset mid-response", n)
    for _ in range(n):
        s = connect(ctx.port)
        s.sendall(GET_BIG * 20)
        rst_close(s)
    RESULTS.fault("reset with pipelined requests unanswered", n)
    ctx.settle("after resets")


def http_half_close(ctx):
    with open(os.path.join(ctx.site, "big.bin"), "rb") as f:
        big = f.read()
    with open(os.path.join(ctx.site, "index.html"), "rb") as f:
        index = f.read()
    with connect(ctx.port) as s:
        s.sendall(GET_INDEX * 30 + GET_BIG + GET_INDEX)
        s.shutdown(socket.SHUT_WR)
        for i in range(32):
            status, _, body = sl.read_response(s, "pipelined response %d" % i)
            check(status == 200, "pipelined response %d after half-close: %d" % (i, status))
            want = big if i == 30 else index
            check(body == want, "pipelined response %d: wrong body (%d bytes)" % (i, len(body)))
        closed_within(s, 10, "after the last pipelined response")
    RESULTS.moved("http half-close, checked", len(big) + 31 * len(index))
    # A POST body whose end is the half-close.
    body = testlib.payload(500000, seed=5)
    with connect(ctx.port) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        s.shutdown(socket.SHUT_WR)
        status, _, got = sl.read_response(s, "POST /echo after half-close")
        check(status == 200 and got == body, "POST /echo after half-close: %d, %d bytes"
              % (status, len(got)))
        closed_within(s, 10, "after the POST")
    RESULTS.fault("half-close with output pending", 2)
    ctx.settle("after half-closes")


def http_non_readers(ctx):
    k = 10 * ctx.scale
    rss0 = sl.rss(ctx.server)
    socks = []
    with open(os.path.join(ctx.site, "big.bin"), "rb") as f:
        big = f.read()
    try:
        for _ in range(k):
            s = connect(ctx.port, rcvbuf=4096)
            socks.append(s)
            s.setblocking(False)
            try:
                s.send(GET_BIG * 200)  # 1.6 GB of responses asked for, never read
            except BlockingIOError:
                pass
        time.sleep(0.5)
        grown = sl.rss(ctx.server) - rss0
        bound = k * sl.MIB + 8 * sl.MIB
        check(grown < bound, "%d clients that never read grew the server by %.1f MiB (bound %.1f)"
              % (k, grown / sl.MIB, bound / sl.MIB))
        sl.http_ok(ctx.port, "/big.bin", big)
        sl.http_ok(ctx.port)
    finally:
        for s in socks:
            s.close()
    RESULTS.fault("client that never reads", k)
    print("     %d clients pipelining 200 x 8 MiB GETs, never reading: server RSS +%.1f MiB; "
          "others served" % (k, grown / sl.MIB), flush=True)
    ctx.settle("after clients that never read")


# --- chat_server ---------------------------------------------------------------

def chat_resets(ctx):
    n = 10 * ctx.scale
    obs = sl.chat_join(ctx.port, "observer")
    try:
        for i in range(n):
            s = connect(ctx.port)
            nick = b"r%d" % i
            s.sendall(nick + b"\n")
            check(sl.read_line(s, "reset client") == b"* " + nick + b" joined", "no join")
            check(sl.read_line(obs, "observer") == b"* " + nick + b" joined", "observer: no join")
            if i % 2:
                s.sendall(b"half a li")
            rst_close(s)
            check(sl.read_line(obs, "observer") == b"* " + nick + b" left",
                  "observer: no leave for %r" % nick)
        RESULTS.fault("reset (chat member)", n)
        # Half-close with a line in flight: it is delivered, then the leave.
        s = connect(ctx.port)
        s.sendall(b"half\n")
        check(sl.read_line(obs, "observer") == b"* half joined", "observer: no join")
        s.sendall(b"last words\n")
        s.shutdown(socket.SHUT_WR)
        check(sl.read_line(obs, "observer") == b"half: last words", "observer: line lost")
        check(sl.read_line(obs, "observer") == b"* half left", "observer: no leave")
        closed_within(s, 10, "half-closed chat client")
        s.close()
        RESULTS.fault("half-close with output pending", 1)
    finally:
        obs.close()
    ctx.settle("after resets")


def chat_non_readers(ctx):
    """Members that never read are dropped once 1 MiB is queued for them,
    from inside the talker's handler (its broadcast closes them); the
    reading member gets every line, in order, and every leave."""
    k = 20 * ctx.scale
    max_lines = 60000  # 60 MB: the kernel's socket buffers take a few MB each
    rss0 = sl.rss(ctx.server)
    reader = sl.chat_join(ctx.port, "reader")
    talker = sl.chat_join(ctx.port, "talker")
    dead = []
    errors = []
    got = {"lines": 0, "left": set()}
    text = b"x" * 990
    try:
        check(sl.read_line(reader, "reader") == b"* talker joined", "reader: no join")
        for i in range(k):
            s = connect(ctx.port, rcvbuf=4096)
            s.sendall(b"nr%d\n" % i)
            dead.append(s)
            check(sl.read_line(reader, "reader") == b"* nr%d joined" % i, "reader: no join")

        def read_all():
            try:
                reader.settimeout(30)
                lines_in = reader.makefile("rb")
                n = 0
                while True:
                    line = lines_in.readline(2000)
                    check(line.endswith(b"\n"), "reader: connection closed (%r)" % line[:40])
                    line = line[:-1]
                    if line.startswith(b"* "):
                        got["left"].add(line)
                        continue
                    if line == b"talker: END":
                        return
                    want = b"talker: %06d " % n + text
                    if line != want:
                        errors.append("line %d: %r" % (n, line[:40]))
                        return
                    n += 1
                    got["lines"] = n
            except (Failure, OSError) as e:
                errors.append("reader: %s (after %d lines, %d leaves)"
                              % (e, got["lines"], len(got["left"])))

        t = threading.Thread(target=read_all)
        t.start()
        sent = 0
        # The talker never reads either, but gets only the leaves (small).
        with sl.RssSampler(ctx.server.pid) as sampler:
            while len(got["left"]) < k and sent < max_lines and not errors:
                for _ in range(500):
                    talker.sendall(b"%06d " % sent + text + b"\n")
                    sent += 1
                deadline = time.monotonic() + 5
                while got["lines"] < sent - 200 and time.monotonic() < deadline and not errors:
                    time.sleep(0.005)  # pace the talker to the reader
            talker.sendall(b"END\n")
            t.join(60)
        check(not t.is_alive(), "reader: stuck after %d lines" % got["lines"])
        check(not errors, "; ".join(errors[:3]))
        check(got["lines"] == sent, "reader got %d of %d lines" % (got["lines"], sent))
        want_left = {b"* nr%d left" % i for i in range(k)}
        check(got["left"] == want_left, "reader saw %d of %d leaves after %d lines"
              % (len(got["left"] & want_left), k, sent))
        for i, s in enumerate(dead):
            closed_within(s, 10, "non-reading member %d" % i)
        grown = sampler.peak - rss0
        bound = k * (5 * sl.MIB // 4) + 8 * sl.MIB
        check(grown < bound, "chat RSS grew by %.1f MiB (bound %.1f)"
              % (grown / sl.MIB, bound / sl.MIB))
    finally:
        for s in dead + [reader, talker]:
            s.close()
    RESULTS.fault("chat member that never reads (dropped by another's broadcast)", k)
    RESULTS.moved("chat lines, checked in order", sent * 1001)
    print("     %d non-reading members dropped by the talker's broadcasts; reader got all %d "
          "lines in order; peak RSS +%.1f MiB" % (k, sent, grown / sl.MIB), flush=True)
    ctx.settle("after non-reading members")


# --- port_forwarder --------------------------------------------------------------

def forwarder_faults(ctx):
    n = 10 * ctx.scale
    for _ in range(n):
        rst_close(connect(ctx.port))
    for _ in range(n):
        s = connect(ctx.port)
        s.sendall(b"r" * 100000)
        rst_close(s)
    for _ in range(n):
        s = connect(ctx.port)
        pump(s, 4 * sl.MIB, stall=0.05)
        select.select([s], [], [], 2.0)
        try:
            s.recv(65536)
        except OSError:
            pass
        rst_close(s)
    RESULTS.fault("reset (forwarder client side)", 3 * n)
    data = testlib.payload(4 * sl.MIB, seed=44)
    with connect(ctx.port) as s:
        testlib.check_same(testlib.duplex(s, data, shut_wr=True), data,
                           "4 MiB through the forwarder, then half-close")
    RESULTS.fault("half-close with output pending", 1)
    RESULTS.moved("forwarder half-close, checked", 2 * len(data))
    ctx.settle("after client faults")


def forwarder_remote_faults(bins, backend, scale):
    """The remote resets mid-stream, or refuses: the client is closed in
    bounded time and the forwarder comes back to its baseline."""
    n = 5 * scale

    def resetter(conn):
        conn.recv(1000)
        rst_close(conn)

    with testlib.ThreadedServer(resetter) as remote:
        with sl.start(bins["port_forwarder"], ["-p", 0, "-P", remote.port, "--backend",
                                               backend], name="port_forwarder") as fwd:
            base = sl.fds(fwd)
            for i in range(n):
                s = connect(fwd.port)
                try:
                    s.sendall(b"q" * 300000)
                except (ConnectionResetError, BrokenPipeError):
                    pass
                closed_within(s, 10, "client of a remote that reset (%d)" % i)
                s.close()
            sl.settle(fwd, base, "after remote resets")
    RESULTS.fault("reset (forwarder remote side)", n)
    dead_port = testlib.free_port()
    with sl.start(bins["port_forwarder"], ["-p", 0, "-P", dead_port, "--backend", backend],
                  name="port_forwarder") as fwd:
        base = sl.fds(fwd)
        for i in range(n):
            with connect(fwd.port) as s:
                closed_within(s, 10, "client of an unreachable remote (%d)" % i)
        sl.settle(fwd, base, "after refused remotes")
    RESULTS.fault("remote refuses (forwarder)", n)


# --- idle timeouts and slowloris ------------------------------------------------------

def http_idle_timeouts(bins, site, backend, scale, timeout=2):
    """Connections that go quiet (nothing sent, half a request head, idle
    keep-alive after a response) are all closed after --idle-timeout; one
    that trickles a head byte by byte gets 408 once the head's time is up."""
    n = min(900, 300 * scale)
    with sl.start(bins["http_server"], ["--port", 0, "--root", site, "--backend", backend,
                                        "--idle-timeout", timeout],
                  name="http_server[%s]" % backend) as server:
        base = sl.baseline(server, lambda: sl.http_ok(server.port))
        socks = []
        try:
            for i in range(n):
                s = connect(server.port)
                socks.append(s)
                if i % 3 == 1:
                    s.sendall(b"GET /index.html HTTP/1.1\r\nHo")
                elif i % 3 == 2:
                    s.sendall(GET_INDEX)
            trickler = connect(server.port)
            t0 = time.monotonic()
            status = None
            trickler.settimeout(0.25)
            for c in GET_INDEX[:-1]:
                try:
                    trickler.sendall(bytes([c]))
                    data = trickler.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    break
                status = data[:12]
                break
            took = time.monotonic() - t0
            trickler.close()
            check(status == b"HTTP/1.1 408", "trickled head: got %r after %.1f s, want 408"
                  % (status, took))
            testlib.wait_until(lambda: sl.fds(server) == base,
                               lambda: "idle connections not all closed (%d descriptors, "
                               "baseline %d)" % (sl.fds(server), base), timeout=timeout + 10)
            outcome = {}
            for i, s in enumerate(socks):
                got = testlib.recv_until_eof(s, "idle connection %d" % i, timeout=5,
                                             allow_reset=True)
                statuses = tuple(int(line.split()[1]) for line in got.split(b"\r\n")
                                 if line.startswith(b"HTTP/1.1 "))
                outcome[(i % 3, statuses)] = outcome.get((i % 3, statuses), 0) + 1
            check(outcome.get((2, (200,)), 0) == n // 3,
                  "keep-alive connections: %r" % outcome)
            partial = [k for k in outcome if k[0] == 1]
            if partial == [(1, ())]:
                RESULTS.note("http_server: a connection that sent half a request head and then "
                             "nothing is closed at --idle-timeout without a 408 (the idle timer "
                             "fires before the head timer); a client trickling bytes gets 408")
        finally:
            for s in socks:
                s.close()
        sl.settle(server, base, "after idle timeouts")
    RESULTS.fault("idle or slowloris connection timed out", n + 1)
    print("     %d quiet connections closed after %d s; trickled head answered 408 after %.1f s; "
          "outcomes %r" % (n, timeout, took, sorted(outcome.items())), flush=True)


# --- EMFILE ---------------------------------------------------------------------

def echo_emfile_probe(s):
    s.sendall(b"e")
    return s.recv(1) == b"e"


def http_emfile_probe(s):
    s.sendall(GET_INDEX)
    status, _, _ = sl.read_response(s, "emfile probe", timeout=5)
    return status == 200


def chat_emfile_probe(s):
    s.sendall(b"m%d\n" % s.fileno())
    return sl.read_line(s, "emfile probe").endswith(b" joined")


EMFILE_PROBES = {"echo_server": echo_emfile_probe, "http_server": http_emfile_probe,
                 "chat_server": chat_emfile_probe}


def try_probe(probe, s):
    s.settimeout(5)
    try:
        return probe(s)
    except (Failure, OSError):
        return False


def emfile(bins, site, server_name, backend, limit=64):
    """Descriptors exhausted on purpose (the server's soft limit is `limit`),
    then freed."""
    probe = EMFILE_PROBES[server_name]
    args = ["--port", 0, "--backend", backend]
    if server_name == "http_server":
        args += ["--root", site]
    what = "%s EMFILE (%s)" % (server_name, backend)
    with sl.start(bins[server_name], args, name="%s[%s]" % (server_name, backend),
                  nofile=limit) as server:
        check(sl.nofile_soft(server.pid) == limit, "%s: soft limit %s, want %d"
              % (what, sl.nofile_soft(server.pid), limit))

        def ping():
            with connect(server.port, timeout=5) as s:
                check(try_probe(probe, s), "%s: a new connection is not served" % what)
        base = sl.baseline(server, ping)
        held, shed = [], 0
        try:
            for _ in range(limit + 20):
                s = connect(server.port, timeout=5)
                if try_probe(probe, s):
                    held.append(s)
                else:
                    shed += 1
                    s.close()
            check(shed >= 20, "%s: only %d of %d connections shed" % (what, shed, limit + 20))
            check(len(held) >= limit - base - 4, "%s: only %d connections served under a limit "
                  "of %d (baseline %d)" % (what, len(held), limit, base))
            server.check_alive("while out of descriptors")
            cpu = sl.check_idle(server, what + " while exhausted")
            # More clients while exhausted: each is closed promptly, not left
            # hanging in the backlog, and the loop does not spin afterwards.
            # (One of them may get a descriptor the server freed since; it
            # is then an ordinary idle connection.)
            burst = []
            for _ in range(20):
                burst.append(connect(server.port, timeout=5))
            open_ones = still_open(burst, 3)
            for s in burst:
                s.close()
            check(open_ones <= 1, "%s: %d of 20 clients neither served nor closed within 3 s "
                  "while exhausted" % (what, open_ones))
            cpu = max(cpu, sl.check_idle(server, what + " after a burst while exhausted"))
            logged = sum(1 for line in server.out + server.err
                         if line and ("accept" in line or "Too many" in line))
            check(logged > 0, "%s: nothing logged for EMFILE" % what)
            # Held connections are still served (a chat member's second line
            # would be a message to everyone, not a join: not probed).
            again = None if server_name == "chat_server" else probe
            failed_held = sum(1 for s in held if again and not try_probe(again, s))
            if failed_held:
                RESULTS.note("%s: %d of %d connections held at the limit failed a further "
                             "request while out of descriptors" % (what, failed_held, len(held)))
            aborted = sum(1 for line in server.out if "file changed while being sent" in line)
            if aborted:
                RESULTS.note("%s: %d requests on connections accepted at the limit were "
                             "closed without a response (the file could not be opened: "
                             "EMFILE), logged as 'file changed while being sent'"
                             % (what, aborted))
        finally:
            for s in held:
                s.close()
        testlib.wait_until(lambda: sl.fds(server) == base, "%s: descriptors back" % what)
        # Recovery: a crowd is served again.
        crowd = []
        try:
            for _ in range(limit - base - 8):
                s = connect(server.port, timeout=5)
                crowd.append(s)
                check(try_probe(probe, s), "%s: not served after recovery" % what)
        finally:
            for s in crowd:
                s.close()
        sl.settle(server, base, what + " after recovery")
    RESULTS.fault("EMFILE: connection shed", shed + 20)
    RESULTS.fault("EMFILE episode (exhausted, then freed)")
    print("     %s: %d served, %d shed at the limit; CPU %.3f s/s while exhausted; "
          "recovered" % (what, len(held), shed + 20, cpu / sl.IDLE_WINDOW), flush=True)


# --- connect storms ---------------------------------------------------------------

def storm(port, protocol, per_worker, workers=2, burst=200):
    ws = []
    try:
        for i in range(workers):
            ws.append(sl.Worker(["storm", port, per_worker, burst, protocol, 31 + i],
                                name="storm worker %d" % i))
        results = [w.expect_json("result", 300) for w in ws]
    finally:
        sl.kill_all(ws)
    errors = [e for r in results for e in r["errors"]]
    check(not errors, "storm (%s): %d errors, e.g. %s"
          % (protocol, sum(r["nerrors"] for r in results), errors[:3]))
    total = sum(sum(r["counts"].values()) for r in results)
    RESULTS.fault("connect storm connection (%s)" % protocol, total)
    return total, max(r["seconds"] for r in results)


def storm_step(ctx, protocol, per_worker):
    def run():
        total, seconds = storm(ctx.port, protocol, per_worker)
        print("     storm: %d connections in %.1f s (close, reset, request+close, "
              "request+reset, verified exchange)" % (total, seconds), flush=True)
        ctx.settle("after a connect storm")
    return run


# --- handler faults (fault_server) --------------------------------------------------

def throwing_handlers(bins, backend, scale):
    """Every event handler throws (handle_error keeps the channel): the echo
    must still be exact for every connection."""
    conns = 100 * scale
    with sl.start(bins["fault_server"], ["--port", 0, "--mode", "throw", "--backend", backend],
                  name="fault_server[throw]") as server:
        base = sl.baseline(server, lambda: sl.echo_ping(server.port))
        ws = []
        try:
            for i in range(2):
                ws.append(sl.Worker(["echo", server.port, conns // 2, 3, 65536, 51 + i],
                                    name="throw worker %d" % i))
            for w in ws:
                w.expect("connected", 60)
            for w in ws:
                w.say("go")
            results = [w.expect_json("result", 120) for w in ws]
            for w in ws:
                w.say("close")
                w.expect("closed", 30)
        finally:
            sl.kill_all(ws)
        errors = [e for r in results for e in r.get("errors", [])]
        check(not errors, "throwing handlers: %s" % errors[:3])
        moved = sum(r["bytes_out"] + r["bytes_in"] for r in results)
        sl.settle(server, base, "after throwing handlers")
        sl.echo_ping(server.port)
        server.expect_clean_exit()
        injected = int(server.wait_for_line(r"^injected (\d+)$", 10).group(1))
    check(injected >= 4 * conns, "only %d exceptions injected for %d connections"
          % (injected, conns))
    RESULTS.fault("exception thrown by a handler", injected)
    RESULTS.moved("echo with throwing handlers, verified", moved)
    print("     %d connections, %d exceptions thrown by handle_accepted/read/write/close; "
          "every byte echoed" % (conns, injected), flush=True)


def throw_close(bins, backend, scale):
    """handle_read throws, the default handle_error logs and closes."""
    n = 50 * scale
    with sl.start(bins["fault_server"], ["--port", 0, "--mode", "throw-close", "--backend",
                                         backend], name="fault_server[throw-close]") as server:
        base = sl.fds(server)
        for i in range(n):
            with connect(server.port, timeout=10) as s:
                s.sendall(b"t%04d" % i)
                got = testlib.recv_until_eof(s, "throw-close %d" % i, allow_reset=True)
                check(got == b"t%04d" % i, "throw-close %d: got %r" % (i, got))
        sl.settle(server, base, "after handlers that throw and close")
        logged = sum(1 for line in server.out if line.startswith("error: uncaptured exception"))
        check(logged == n, "want %d 'uncaptured exception' lines, got %d" % (n, logged))
    RESULTS.fault("exception closing its channel", n)


def closer(bins, backend, scale):
    """One handler closes every other connection, some of them ready in the
    same iteration; none of them sees an event afterwards."""
    n = min(1000, 250 * scale) if backend == "select" else 500 * scale
    if backend == "select":
        n = min(n, 1000)
    with sl.start(bins["fault_server"], ["--port", 0, "--mode", "closer", "--backend", backend],
                  name="fault_server[closer]") as server:
        base = sl.baseline(server, lambda: sl.echo_ping(server.port))
        socks = []
        try:
            for i in range(n):
                s = connect(server.port, timeout=10)
                socks.append(s)
                s.sendall(b"hi")
                check(recv_exactly(s, 2, "closer member %d" % i) == b"hi", "no echo")
            killer = socks[n // 2]
            others = socks[:n // 2] + socks[n // 2 + 1:]
            for s in others:
                s.sendall(b"last")  # ready in the same wait as the killer
            killer.sendall(b"KILL\n")
            line = sl.read_line(killer, "killer")
            check(line == b"closed %d" % (n - 1), "killer got %r, want closed %d" % (line, n - 1))
            for i, s in enumerate(others):
                got = testlib.recv_until_eof(s, "closed member %d" % i, timeout=10,
                                             allow_reset=True)
                check(got in (b"", b"last"), "closed member %d got %r" % (i, got))
            killer.sendall(b"still here")
            check(recv_exactly(killer, 10, "killer") == b"still here", "killer not served")
            sl.echo_ping(server.port)
        finally:
            for s in socks:
                s.close()
        sl.settle(server, base, "after one handler closed %d channels" % (n - 1))
    RESULTS.fault("channel closed by another's handler", n - 1)


# --- the plan ----------------------------------------------------------------------

def group(suite, label, start, steps):
    """Runs `steps` (name, func(ctx)) against one server that start() returns
    as (Process, ctx); a failing start fails the group's first step."""
    holder = {}

    def begin():
        holder["proc"], holder["ctx"] = start()
    if not suite.step("%s: start" % label, begin):
        return
    try:
        for name, func in steps:
            suite.step("%s: %s" % (label, name), func, holder["ctx"])
    finally:
        holder["proc"].kill()


def run(suite, bins, site, backends, scale):
    per_storm = 1000 * scale
    for backend in backends:
        def start_echo(backend=backend):
            p = sl.start(bins["echo_server"], ["--port", 0, "--backend", backend],
                         name="echo_server[%s]" % backend)
            probe = lambda: sl.echo_ping(p.port)  # noqa: E731
            return p, Ctx(p, sl.baseline(p, probe), backend, scale, probe)
        group(suite, "faults: echo (%s)" % backend, start_echo, [
            ("resets", echo_resets),
            ("half-close", echo_half_close),
            ("clients that never read", echo_non_readers),
            ("connect storm", lambda c: storm_step(c, "echo", per_storm)()),
        ])

        def start_http(backend=backend):
            p = sl.start(bins["http_server"], ["--port", 0, "--root", site, "--backend",
                                               backend], name="http_server[%s]" % backend)
            probe = lambda: sl.http_ok(p.port)  # noqa: E731
            return p, Ctx(p, sl.baseline(p, probe), backend, scale, probe, site)
        group(suite, "faults: http (%s)" % backend, start_http, [
            ("resets", http_resets),
            ("half-close", http_half_close),
            ("clients that never read", http_non_readers),
            ("connect storm", lambda c: storm_step(c, "http", per_storm)()),
        ])

        def start_chat(backend=backend):
            p = sl.start(bins["chat_server"], ["--port", 0, "--backend", backend],
                         name="chat_server[%s]" % backend)
            probe = lambda: sl.chat_ok(p.port)  # noqa: E731
            return p, Ctx(p, sl.baseline(p, probe), backend, scale, probe)
        group(suite, "faults: chat (%s)" % backend, start_chat, [
            ("resets and half-close", chat_resets),
            ("members that never read", chat_non_readers),
            ("connect storm", lambda c: storm_step(c, "chat", per_storm // 2)()),
        ])

        holder = {}

        def start_forwarder(backend=backend):
            echo = sl.start(bins["echo_server"], ["--port", 0, "--backend", backend],
                            name="echo_server (remote)")
            holder["echo"] = echo
            p = sl.start(bins["port_forwarder"], ["-p", 0, "-P", echo.port, "--backend",
                                                  backend], name="port_forwarder[%s]" % backend)
            probe = lambda: sl.echo_ping(p.port)  # noqa: E731
            probe()
            return p, Ctx(p, sl.baseline(p, probe), backend, scale, probe)
        try:
            group(suite, "faults: forwarder (%s)" % backend, start_forwarder, [
                ("client resets and half-close", forwarder_faults),
                ("connect storm", lambda c: storm_step(c, "echo", per_storm // 2)()),
            ])
        finally:
            if "echo" in holder:
                holder["echo"].kill()
        suite.step("faults: forwarder remote resets/refuses (%s)" % backend,
                   forwarder_remote_faults, bins, backend, scale)

        suite.step("faults: http idle timeouts and slowloris (%s)" % backend,
                   http_idle_timeouts, bins, site, backend, scale)
        for server in ("echo_server", "http_server", "chat_server"):
            suite.step("faults: %s EMFILE (%s)" % (server, backend), emfile, bins, site,
                       server, backend)
        suite.step("faults: every handler throws (%s)" % backend, throwing_handlers, bins,
                   backend, scale)
        suite.step("faults: handle_error closes (%s)" % backend, throw_close, bins, backend,
                   scale)
        suite.step("faults: one handler closes all others (%s)" % backend, closer, bins,
                   backend, scale)
