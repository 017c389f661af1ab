"""Valgrind memcheck over one short scenario per example server (and the
suite's fault_server): no invalid access, no uninitialised use, no
definite leak. Each server runs under
  valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
is driven through its scenario, then stopped with SIGTERM (its drain path)
and must exit 0 with "ERROR SUMMARY: 0 errors"."""

import os
import re
import signal
import socket
import tempfile

import stresslib as sl
from stresslib import RESULTS, check, connect, recv_exactly, rst_close
import testlib
import http_corpus

VALGRIND = "/usr/bin/valgrind"
START_TIMEOUT = 60.0
EXIT_TIMEOUT = 60.0


def valgrind_argv(log, binary, args):
    return [VALGRIND, "--tool=memcheck", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
            "--num-callers=30", "--log-file=" + log, binary] + [str(a) for a in args]


def under_valgrind(name, binary, args, scenario):
    fd, log = tempfile.mkstemp(prefix="memcheck-%s-" % name, suffix=".log")
    os.close(fd)
    try:
        proc = sl.start(VALGRIND, valgrind_argv(log, binary, args)[1:], name=name + " (valgrind)",
                        timeout=START_TIMEOUT)
        try:
            scenario(proc)
            proc.check_alive("after the scenario")
            proc.proc.send_signal(signal.SIGTERM)
            try:
                status = proc.proc.wait(timeout=EXIT_TIMEOUT)
            except Exception:
                raise sl.Failure("%s did not exit within %.0f s of SIGTERM under valgrind"
                                 % (name, EXIT_TIMEOUT))
        finally:
            proc.kill()
            held = getattr(proc, "_held", None)
            if held is not None:
                held.close()
        with open(log) as f:
            text = f.read()
        summary = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        definite = re.search(r"definitely lost: ([\d,]+) bytes", text)
        check(summary, "%s: no ERROR SUMMARY in valgrind's log:\n%s" % (name, text[-3000:]))
        errors = int(summary.group(1))
        lost = int(definite.group(1).replace(",", "")) if definite else 0
        check(status == 0 and errors == 0 and lost == 0,
              "%s under valgrind: exit status %s, %d errors, %d bytes definitely lost; log:\n%s"
              % (name, status, errors, lost, text[-6000:]))
        RESULTS.memcheck[name] = "0 errors, 0 B definitely lost"
        usage = re.search(r"total heap usage: ([\d,]+) allocs, ([\d,]+) frees, ([\d,]+) bytes",
                          text)
        in_use = re.search(r"in use at exit: ([\d,]+) bytes", text)
        print("     %s: 0 errors, 0 bytes definitely lost (%s allocs, %s bytes allocated; "
              "%s bytes still reachable at exit)"
              % (name, usage.group(1) if usage else "?", usage.group(3) if usage else "?",
                 in_use.group(1) if in_use else "?"), flush=True)
    finally:
        os.unlink(log)


# --- scenarios ---------------------------------------------------------------------

def echo_scenario(proc):
    port = proc.port
    sl.echo_ping(port, timeout=30)
    data = testlib.payload(300000, seed=1)
    with connect(port) as s:
        testlib.check_same(testlib.duplex(s, data, shut_wr=True), data, "echo under valgrind")
    socks = [connect(port) for _ in range(20)]
    for i, s in enumerate(socks):
        s.sendall(b"client %d\n" % i)
    for i, s in enumerate(socks):
        check(recv_exactly(s, len(b"client %d\n" % i), "crowd") == b"client %d\n" % i, "crowd")
    for s in socks[:10]:
        rst_close(s)
    for s in socks[10:]:
        s.close()
    s = connect(port)
    s.setblocking(False)
    try:
        s.send(b"y" * (2 << 20))
    except BlockingIOError:
        pass
    rst_close(s)
    held = connect(port)  # open at SIGTERM: the drain closes it
    held.sendall(b"z")
    recv_exactly(held, 1, "held")
    sl.echo_ping(port, timeout=30)
    proc._held = held


def http_scenario(site):
    def run(proc):
        port = proc.port
        sl.http_ok(port)
        with open(os.path.join(site, "big.bin"), "rb") as f:
            big = f.read()
        sl.http_ok(port, "/big.bin", big)
        with connect(port) as s:
            body = testlib.payload(100000, seed=2)
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                      % len(body) + body + b"HEAD /index.html HTTP/1.1\r\nHost: t\r\n\r\n"
                      + b"GET /sub/ HTTP/1.1\r\nHost: t\r\n\r\n"
                      + b"GET /sub HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            status, _, got = sl.read_response(s, "POST")
            check(status == 200 and got == body, "POST /echo under valgrind")
            status, _, _ = sl.read_response(s, "HEAD", head_only=True)
            check(status == 200, "HEAD: %d" % status)
            status, _, _ = sl.read_response(s, "GET /sub/")
            check(status in (403, 404), "GET /sub/: %d" % status)
            status, _, _ = sl.read_response(s, "GET /sub")
            check(status == 301, "GET /sub: %d" % status)
        for name, data, want in http_corpus.CASES:
            with connect(port, timeout=30) as s:
                try:
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                testlib.recv_until_eof(s, "corpus case " + name, timeout=30, allow_reset=True)
        for _ in range(5):
            s = connect(port)
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            recv_exactly(s, 1000, "start of big.bin")
            rst_close(s)
        held = connect(port)
        held.sendall(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        sl.read_response(held, "held")
        proc._held = held
        sl.http_ok(port)
    return run


def chat_scenario(proc):
    port = proc.port
    sl.chat_ok(port)
    a = sl.chat_join(port, "alice")
    b = sl.chat_join(port, "bob")
    check(sl.read_line(a, "alice") == b"* bob joined", "alice: no join")
    b.sendall(b"hi alice\r\n")
    check(sl.read_line(a, "alice") == b"bob: hi alice", "alice: no message")
    c = connect(port)
    c.sendall(b"carol\n" + b"x" * 5000 + b"\n")  # a line too long
    got = testlib.recv_until_eof(c, "carol", allow_reset=True)
    check(b"! line too long" in got, "carol: %r" % got[-60:])
    c.close()
    d = connect(port)
    d.sendall(b"dave\n")
    rst_close(d)
    b.sendall(b"/quit\n")
    testlib.recv_until_eof(b, "bob", allow_reset=True)
    b.close()
    proc._held = a  # still in the room at SIGTERM


def forwarder_scenario(proc):
    port = proc.port
    sl.echo_ping(port, timeout=30)
    data = testlib.payload(1 << 20, seed=3)
    with connect(port) as s:
        testlib.check_same(testlib.duplex(s, data, shut_wr=True), data, "forwarder")
    for _ in range(5):
        s = connect(port)
        s.sendall(b"r" * 50000)
        rst_close(s)
    held = connect(port)
    held.sendall(b"h")
    recv_exactly(held, 1, "held")
    proc._held = held


def udp_scenario(proc):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        for size in (0, 1, 100, 1400, 9000, 65507):
            data = testlib.payload(size, seed=size)
            s.sendto(data, (sl.HOST, proc.port))
            got, _ = s.recvfrom(65536)
            check(got == data, "udp echo of %d bytes" % size)


def throw_scenario(proc):
    for i in range(10):
        with connect(proc.port, timeout=30) as s:
            data = testlib.payload(100000, seed=i)
            testlib.check_same(testlib.duplex(s, data, shut_wr=True), data, "throwing echo")


def closer_scenario(proc):
    socks = [connect(proc.port, timeout=30) for _ in range(30)]
    for s in socks:
        s.sendall(b"hi")
        recv_exactly(s, 2, "closer member")
    for s in socks[1:]:
        s.sendall(b"last")
    socks[0].sendall(b"KILL\n")
    check(sl.read_line(socks[0], "killer") == b"closed 29", "killer")
    for s in socks:
        s.close()


SERVERS = ["echo_server", "http_server", "chat_server", "port_forwarder", "udp_echo",
           "fault_server"]


def run(suite, bins, site, servers):
    if not os.access(VALGRIND, os.X_OK):
        suite.step("memcheck: valgrind present", lambda: sl.check(False, "no " + VALGRIND))
        return
    for name in servers:
        if name == "echo_server":
            for backend in ("epoll", "poll", "select"):
                suite.step("memcheck: echo_server (%s)" % backend, under_valgrind,
                           "echo_server[%s]" % backend, bins[name],
                           ["--port", 0, "--backend", backend], echo_scenario)
        elif name == "http_server":
            suite.step("memcheck: http_server", under_valgrind, name, bins[name],
                       ["--port", 0, "--root", site, "--max-body", 1048576],
                       http_scenario(site))
        elif name == "chat_server":
            suite.step("memcheck: chat_server", under_valgrind, name, bins[name],
                       ["--port", 0], chat_scenario)
        elif name == "port_forwarder":
            def forwarder_step():
                with sl.start(bins["echo_server"], ["--port", 0], name="echo_server") as echo:
                    under_valgrind("port_forwarder", bins["port_forwarder"],
                                   ["-p", 0, "-P", echo.port], forwarder_scenario)
            suite.step("memcheck: port_forwarder", forwarder_step)
        elif name == "udp_echo":
            suite.step("memcheck: udp_echo", under_valgrind, name, bins[name], ["--port", 0],
                       udp_scenario)
        elif name == "fault_server":
            suite.step("memcheck: fault_server --mode throw", under_valgrind,
                       "fault_server[throw]", bins[name], ["--port", 0, "--mode", "throw"],
                       throw_scenario)
            suite.step("memcheck: fault_server --mode closer", under_valgrind,
                       "fault_server[closer]", bins[name], ["--port", 0, "--mode", "closer"],
                       closer_scenario)
