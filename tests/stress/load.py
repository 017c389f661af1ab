"""Load: many concurrent echo connections with verified random traffic,
select up to FD_SETSIZE, http_server under wrk with idle keep-alive
connections held, and 100 MiB each way through port_forwarder."""

import hashlib
import os
import random
import re
import socket
import threading
import time

import stresslib as sl
from stresslib import RESULTS, Failure, check, connect
import testlib


def echo_load(bins, conns, nworkers, rounds, max_size, backend, tag="", server_args=()):
    what = "echo %s%s" % (backend, tag)
    with sl.start(bins["echo_server"], ["--port", 0, "--backend", backend] + list(server_args),
                  name="echo_server[%s]" % backend) as server:
        base = sl.baseline(server, lambda: sl.echo_ping(server.port))
        limit = sl.nofile_soft(server.pid)
        check(limit >= conns + 64, "%s: the server's soft descriptor limit is %s, too low for "
              "%d connections" % (what, limit, conns))
        rss0 = sl.rss(server)
        shares = [conns // nworkers + (1 if i < conns % nworkers else 0) for i in range(nworkers)]
        workers = []
        try:
            t0 = time.monotonic()
            for i, n in enumerate(shares):
                workers.append(sl.Worker(["echo", server.port, n, rounds, max_size, 17 + i],
                                         name="echo worker %d" % i))
            for w in workers:
                w.expect("connected", 180)
            testlib.wait_until(lambda: sl.fds(server) == base + conns,
                               lambda: "%s: server holds %d descriptors, want %d + %d"
                               % (what, sl.fds(server), base, conns), timeout=60)
            connect_s = time.monotonic() - t0
            rss_held = sl.rss(server)
            for w in workers:
                w.say("go")
            with sl.RssSampler(server.pid) as sampler:
                results = [w.expect_json("result", 900) for w in workers]
            peak = sampler.peak
            errors = [e for r in results for e in r.get("errors", [])]
            if "error" in str(results):
                errors += [r["error"] for r in results if "error" in r]
            lost = sum(r.get("nerrors", 0) for r in results)
            RESULTS.losses += lost
            check(not errors, "%s: %d connections failed, e.g. %s" % (what, lost, errors[:3]))
            done = sum(r["done"] for r in results)
            check(done == conns, "%s: %d of %d connections finished" % (what, done, conns))
            moved = sum(r["bytes_out"] + r["bytes_in"] for r in results)
            seconds = max(r["seconds"] for r in results)
            check(sl.fds(server) == base + conns, "%s: connections dropped during the exchange"
                  % what)
            rss_after = sl.rss(server)
            sl.echo_ping(server.port)  # a newcomer is served with all held
            for w in workers:
                w.say("close")
            for w in workers:
                w.expect("closed", 120)
        finally:
            sl.kill_all(workers)
        sl.settle(server, base, what + " after closing all")
        key = "%s%s" % (backend, tag)
        RESULTS.hold("echo connections, one server (%s)" % key, conns)
        RESULTS.moved("echo, every byte checked in order (%s)" % key, moved)
        RESULTS.rss["echo, idle connection (%s)" % key] = (rss_held - rss0) / conns
        RESULTS.rss["echo, connection after traffic (%s)" % key] = (rss_after - rss0) / conns
        print("     %s: %d connections held (connected in %.1f s), %d rounds each, %.1f MiB "
              "verified in %.1f s; RSS %.1f -> %.1f MiB held, %.1f MiB peak, %.1f after"
              % (what, conns, connect_s, rounds, moved / sl.MIB, seconds, rss0 / sl.MIB,
                 rss_held / sl.MIB, peak / sl.MIB, rss_after / sl.MIB), flush=True)


# --- select: up to FD_SETSIZE, then one refusal --------------------------------------

def echo_probe(s):
    s.sendall(b"x")
    return s.recv(1) == b"x"


def http_probe(s):
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
    status, _, _ = sl.read_response(s, "select probe", timeout=5)
    return status == 200


def select_limit(bins, site, server_name):
    binary = bins[server_name]
    args = ["--port", 0, "--backend", "select"]
    probe, ping = echo_probe, None
    if server_name == "http_server":
        args += ["--root", site, "--idle-timeout", 600]
        probe = http_probe
    what = "%s select" % server_name
    with sl.start(binary, args, name="%s[select]" % server_name) as server:
        def ping():
            with connect(server.port, timeout=5) as s:
                check(probe(s), "%s: probe failed" % what)
        base = sl.baseline(server, ping)
        out_lines = len(server.out) + len(server.err)
        held = []
        refused_at = None
        try:
            for i in range(1100):
                s = connect(server.port, timeout=10)
                try:
                    ok = probe(s)
                except (ConnectionResetError, Failure, socket.timeout, OSError):
                    ok = False
                if ok:
                    held.append(s)
                    continue
                refused_at = i
                s.close()
                break
            check(refused_at is not None, "%s: 1100 connections all served (no FD_SETSIZE limit?)"
                  % what)
            check(len(held) >= 1000, "%s: refused after only %d connections" % (what, len(held)))
            server.check_alive("after the refusal")
            check(sl.fds(server) == base + len(held), "%s: %d descriptors, want %d + %d"
                  % (what, sl.fds(server), base, len(held)))
            # Every held connection is still served.
            for s in held:
                check(probe(s), "%s: a held connection failed after the refusal" % what)
            def refusal_log():
                return [line for line in (server.out + server.err)[out_lines:] if line]
            testlib.wait_until(lambda: refusal_log(), "%s: the refusal's log line" % what)
            logged = refusal_log()
            check(len(logged) == 1, "%s: want one log line for the refusal, got %r"
                  % (what, logged[:5]))
            # A freed slot below FD_SETSIZE serves a newcomer.
            held.pop().close()
            testlib.wait_until(lambda: sl.fds(server) == base + len(held), "freeing one")
            ping()
        finally:
            for s in held:
                s.close()
        sl.settle(server, base, what + " after closing all")
        RESULTS.hold("%s, select backend (FD_SETSIZE)" % server_name, len(held) + 1)
        RESULTS.fault("connection refused above FD_SETSIZE")
        print("     %s: %d connections served, connection %d refused, server alive; its one log "
          "line: %s"
              % (what, len(held) + 1, refused_at + 1, logged[0]), flush=True)


# --- http under wrk with idle keep-alive connections held --------------------------

WRK = "/usr/bin/wrk"
WRK_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read")
UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def run_wrk(port, conns, seconds, path, script=None):
    argv = [WRK, "-t2", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "10s"]
    if script:
        argv += ["-s", script]
    argv.append("http://127.0.0.1:%d%s" % (port, path))
    res = testlib.run(argv, timeout=seconds + 60, text=True)
    out = res.stdout
    check(res.returncode == 0, "wrk exited %s: %s %s" % (res.returncode, out, res.stderr))
    m = WRK_REQUESTS.search(out)
    check(m, "cannot parse wrk's output: %r" % out)
    requests = int(m.group(1))
    read = float(m.group(4)) * UNITS.get(m.group(5), 1)
    check("Socket errors" not in out, "wrk saw socket errors: %s" % out)
    check("Non-2xx" not in out, "wrk saw non-2xx responses: %s" % out)
    check(requests > 0, "wrk made no request: %s" % out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return requests, int(read), float(rps.group(1)) if rps else 0.0


def http_wrk(bins, site, n_idle, seconds, wrk_conns=256, threads=1):
    what = "http wrk" + (" (%d threads)" % threads if threads > 1 else "")
    with sl.start(bins["http_server"], ["--port", 0, "--root", site, "--max-body", 1048576,
                                        "--idle-timeout", 600, "--threads", threads],
                  name="http_server") as server:
        base = sl.baseline(server, lambda: sl.http_ok(server.port))
        rss0 = sl.rss(server)
        idle = []
        try:
            for i in range(n_idle):
                s = connect(server.port, timeout=10)
                idle.append(s)
                s.sendall(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
                status, headers, _ = sl.read_response(s, "idle keep-alive %d" % i)
                check(status == 200 and headers.get("connection") != "close",
                      "idle connection %d: status %d, %r" % (i, status, headers))
            check(sl.fds(server) == base + n_idle, "%s: %d descriptors, want %d + %d"
                  % (what, sl.fds(server), base, n_idle))
            rss_idle = sl.rss(server)
            get = run_wrk(server.port, wrk_conns, seconds, "/index.html")
            post = run_wrk(server.port, wrk_conns, max(1, seconds // 2), "/echo",
                           os.path.join(sl.HERE, "post.lua"))
            server.check_alive("after wrk")
            # The idle ones are all still there and served.
            for i, s in enumerate(idle):
                s.sendall(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
                status, _, _ = sl.read_response(s, "idle connection %d after wrk" % i)
                check(status == 200, "idle connection %d after wrk: %d" % (i, status))
        finally:
            for s in idle:
                s.close()
        sl.settle(server, base, what + " after closing all")
        RESULTS.hold("http: idle keep-alive + wrk's (%d thread%s)"
                     % (threads, "s" if threads > 1 else ""), n_idle + wrk_conns)
        RESULTS.moved("http responses read by wrk (GET + POST /echo)", get[1] + post[1])
        if threads == 1:
            RESULTS.rss["http, idle keep-alive connection"] = (rss_idle - rss0) / n_idle
        print("     %s: %d idle keep-alive held; wrk %d conns: GET %d requests (%.0f/s), "
              "POST /echo %d requests (%.0f/s), 0 errors, 0 non-2xx"
              % (what, n_idle, wrk_conns, get[0], get[2], post[0], post[2]), flush=True)


# --- 100 MiB each way through port_forwarder -------------------------------------

def pattern(size, seed):
    return testlib.payload(size, seed)


def forwarder_bulk(bins, size, backend):
    what = "forwarder %s" % backend
    up = pattern(size, 101)
    down = pattern(size, 202)
    remote = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    remote.bind((sl.HOST, 0))
    remote.listen(4)
    remote.settimeout(30)
    result = {}
    errors = []

    def serve():
        try:
            conn, _ = remote.accept()
        except OSError as e:
            errors.append("remote accept: %r" % e)
            return
        with conn:
            conn.settimeout(120)
            t = threading.Thread(target=send_all, args=(conn, down, errors, "remote send"))
            t.start()
            result["remote_got"] = hash_until_eof(conn, errors, "remote recv")
            t.join(120)

    with sl.start(bins["port_forwarder"], ["-p", 0, "-P", remote.getsockname()[1],
                                           "--backend", backend],
                  name="port_forwarder[%s]" % backend) as fwd:
        base = sl.fds(fwd)
        rss0 = sl.rss(fwd)
        server_thread = threading.Thread(target=serve)
        server_thread.start()
        t0 = time.monotonic()
        with sl.RssSampler(fwd.pid) as sampler:
            try:
                with connect(fwd.port, timeout=120) as c:
                    t = threading.Thread(target=send_all, args=(c, up, errors, "client send"))
                    t.start()
                    client_got = hash_until_eof(c, errors, "client recv")
                    t.join(120)
            finally:
                server_thread.join(120)
                remote.close()
        seconds = time.monotonic() - t0
        check(not errors, "%s: %s" % (what, errors[:3]))
        want_up = (hashlib.sha256(up).hexdigest(), size)
        want_down = (hashlib.sha256(down).hexdigest(), size)
        if result.get("remote_got") != want_up or client_got != want_down:
            RESULTS.losses += 1
        check(result.get("remote_got") == want_up, "%s: upstream %r, want %r"
              % (what, result.get("remote_got"), want_up))
        check(client_got == want_down, "%s: downstream %r, want %r"
              % (what, client_got, want_down))
        peak = max(sampler.peak, sl.hwm(fwd))
        check(peak - rss0 < 16 * sl.MIB, "%s: RSS grew from %.1f to %.1f MiB"
              % (what, rss0 / sl.MIB, peak / sl.MIB))
        sl.settle(fwd, base, what)
    RESULTS.moved("forwarder, SHA-256 checked (%s)" % backend, 2 * size)
    print("     %s: %d MiB each way in %.1f s, SHA-256 equal both ways, RSS %.1f MiB, "
          "peak %.1f MiB" % (what, size // sl.MIB, seconds, rss0 / sl.MIB, peak / sl.MIB),
          flush=True)


def send_all(sock, data, errors, what):
    try:
        view = memoryview(data)
        for i in range(0, len(data), 1 << 20):
            sock.sendall(view[i:i + (1 << 20)])
        sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        errors.append("%s: %r" % (what, e))


def hash_until_eof(sock, errors, what):
    h = hashlib.sha256()
    n = 0
    buf = bytearray(1 << 20)
    try:
        while True:
            k = sock.recv_into(buf)
            if k == 0:
                break
            h.update(memoryview(buf)[:k])
            n += k
    except OSError as e:
        errors.append("%s after %d bytes: %r" % (what, n, e))
    return (h.hexdigest(), n)


# --- udp_echo -------------------------------------------------------------------------

def udp_counters():
    """Linux's UDP counters (/proc/net/snmp): name -> value."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))


def udp_flood(bins, count, window=8):
    """Datagrams in windows from 4 sockets at once; every one comes back
    intact. A datagram lost is a failure unless the kernel counted as many
    drops (a receive or send buffer overflow, which UDP allows)."""
    with sl.start(bins["udp_echo"], ["--port", 0], name="udp_echo") as server:
        base = sl.fds(server)
        errors = []
        lost = [0]
        moved = [0]

        def client(k):
            rng = random.Random(k)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                for start in range(0, count, window):
                    sent = {}
                    for i in range(start, min(count, start + window)):
                        data = b"%d:%d:" % (k, i) + rng.randbytes(rng.randint(0, 1400))
                        sent[data] = True
                        s.sendto(data, (sl.HOST, server.port))
                    for _ in range(len(sent)):
                        try:
                            got, _ = s.recvfrom(2048)
                        except socket.timeout:
                            lost[0] += 1
                            continue
                        if sent.pop(got, None) is None:
                            errors.append("client %d: unexpected datagram %r" % (k, got[:20]))
                            return
                        moved[0] += 2 * len(got)
        before = udp_counters()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        check(not errors, "; ".join(errors[:3]))
        after = udp_counters()
        dropped = sum(after.get(k, 0) - before.get(k, 0) for k in ("RcvbufErrors", "SndbufErrors"))
        if lost[0]:
            check(dropped >= lost[0], "%d of %d datagrams lost, the kernel dropped %d"
                  % (lost[0], 4 * count, dropped))
            RESULTS.note("udp flood: %d of %d datagrams dropped by the kernel (socket buffer "
                         "full), none by the server" % (lost[0], 4 * count))
        sl.settle(server, base, "after the UDP flood")
    RESULTS.moved("udp datagrams, checked", moved[0])
    print("     udp: %d datagrams from 4 sockets, %d echoed intact, %d dropped by the kernel"
          % (4 * count, 4 * count - lost[0], lost[0]), flush=True)
