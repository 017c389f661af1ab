"""The stress suite: load, faults, hostile input, valgrind memcheck.

  suite.py --bin DIR [--short|--full] [--only PART,...] [--json FILE]

DIR holds the -c opt binaries (echo_server, http_server, chat_server,
port_forwarder, udp_echo, fault_server; tests/stress/run.sh builds and copies
them). Parts: load, faults, hostile, memcheck. Prints "ok ..." per step (or
"FAIL: ..." and goes on with the next step), then the results table, then
"N passed, N failed"; exits 1 if any step failed.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

import stresslib as sl
from stresslib import RESULTS, Failure

import faults
import hostile
import load
import memcheck

PARTS = ("load", "faults", "hostile", "memcheck")

# Sizes of the two modes. --full gives the README's figures.
MODES = {
    "short": dict(echo_conns=2000, echo_workers=2, echo_rounds=3, echo_max=65536,
                  echo_backends=["epoll"], echo_at_limit=False,
                  select_servers=["echo_server"],
                  wrk_idle=1000, wrk_seconds=3, wrk_threads=[1], echo_threads=False,
                  udp_count=5000, fwd_size=100 * sl.MIB, fwd_backends=["epoll"],
                  fault_backends=["epoll", "select"], fault_scale=1,
                  hostile_backends=["epoll"], hostile_dribble=False,
                  memcheck_servers=memcheck.SERVERS),
    "full": dict(echo_conns=9000, echo_workers=4, echo_rounds=4, echo_max=262144,
                 echo_backends=["epoll", "poll"], echo_at_limit=True,
                 select_servers=["echo_server", "http_server"],
                 wrk_idle=1000, wrk_seconds=15, wrk_threads=[1, 2], echo_threads=True,
                 udp_count=50000, fwd_size=100 * sl.MIB,
                 fwd_backends=["epoll", "poll", "select"],
                 fault_backends=["epoll", "poll", "select"], fault_scale=4,
                 hostile_backends=["epoll", "poll", "select"], hostile_dribble=True,
                 memcheck_servers=memcheck.SERVERS),
}


class Suite:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def step(self, name, func, *args):
        t0 = time.monotonic()
        try:
            func(*args)
        except Failure as e:
            return self._fail(name, t0, str(e))
        except OSError as e:
            return self._fail(name, t0, "%r\n%s" % (e, traceback.format_exc(limit=4)))
        except Exception as e:  # a bug in the suite: report and go on
            return self._fail(name, t0, "%r\n%s" % (e, traceback.format_exc()))
        seconds = time.monotonic() - t0
        self.passed += 1
        RESULTS.steps.append((name, True, seconds, ""))
        print("ok   %-48s %6.1f s" % (name, seconds), flush=True)
        return True

    def _fail(self, name, t0, message):
        seconds = time.monotonic() - t0
        self.failed += 1
        RESULTS.steps.append((name, False, seconds, message))
        print("FAIL: [%s] %s" % (name, message), flush=True)
        return False


def fmt_bytes(n):
    if n >= sl.MIB:
        return "%.1f MiB" % (n / sl.MIB)
    if n >= sl.KIB:
        return "%.1f KiB" % (n / sl.KIB)
    return "%d B" % n


def table(mode, wall):
    r = RESULTS
    rows = []
    for what, n in sorted(r.held.items()):
        rows.append(("connections held", what, "%d" % n))
    for what, n in sorted(r.bytes.items()):
        rows.append(("bytes moved", what, fmt_bytes(n)))
    rows.append(("bytes moved", "total", fmt_bytes(sum(r.bytes.values()))))
    for what, n in sorted(r.faults.items()):
        rows.append(("faults injected", what, "%d" % n))
    rows.append(("faults injected", "total", "%d" % sum(r.faults.values())))
    for what, n in sorted(r.inputs.items()):
        rows.append(("inputs tried", what, "%d" % n))
    if r.inputs:
        rows.append(("inputs tried", "total", "%d" % sum(r.inputs.values())))
    for what, n in sorted(r.rss.items()):
        rows.append(("RSS per connection", what, fmt_bytes(n)))
    for what, verdict in sorted(r.memcheck.items()):
        rows.append(("valgrind memcheck", what, verdict))
    rows.append(("losses", "bytes or connections lost", "%d" % r.losses))
    w1 = max(len(a) for a, _, _ in rows)
    w2 = max(len(b) for _, b, _ in rows)
    print()
    print("results (--%s, %.0f s wall):" % (mode, wall))
    print("| %-*s | %-*s | %s |" % (w1, "figure", w2, "what", "value"))
    print("| %s | %s | ---: |" % ("-" * w1, "-" * w2))
    for a, b, c in rows:
        print("| %-*s | %-*s | %s |" % (w1, a, w2, b, c))
    if r.notes:
        print()
        print("notes:")
        for n in r.notes:
            print("  - " + n)


def interrupted(signo, frame):
    raise KeyboardInterrupt("signal %d" % signo)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--short", dest="mode", action="store_const", const="short")
    g.add_argument("--full", dest="mode", action="store_const", const="full")
    ap.add_argument("--only", default=",".join(PARTS))
    ap.add_argument("--json")
    args = ap.parse_args()
    mode = args.mode or "short"
    cfg = MODES[mode]
    parts = [p for p in args.only.split(",") if p]
    for p in parts:
        if p not in PARTS:
            ap.error("unknown part %r (choose from %s)" % (p, ", ".join(PARTS)))
    bins = {}
    for name in ("echo_server", "http_server", "chat_server", "port_forwarder", "udp_echo",
                 "fault_server"):
        path = os.path.join(args.bin, name)
        if not os.access(path, os.X_OK):
            ap.error("%s: not an executable" % path)
        bins[name] = path
    # A SIGTERM (a CI timeout, say) unwinds like ^C: every with-block kills
    # and reaps the processes it started.
    signal.signal(signal.SIGTERM, interrupted)
    soft = sl.raise_nofile()
    print("stress suite --%s: RLIMIT_NOFILE soft %d (inherited by the servers)" % (mode, soft),
          flush=True)
    suite = Suite()
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="asyncorepp-stress-")
    try:
        site = os.path.join(tmp, "site")
        sl.make_site(site)
        if "load" in parts:
            for backend in cfg["echo_backends"]:
                suite.step("load: echo %d connections (%s)" % (cfg["echo_conns"], backend),
                           load.echo_load, bins, cfg["echo_conns"], cfg["echo_workers"],
                           cfg["echo_rounds"], cfg["echo_max"], backend)
            if cfg["echo_at_limit"]:
                # As many as the descriptor limit allows: the server's soft
                # limit (inherited) less a margin for its own descriptors.
                n = sl.raise_nofile() - 100
                suite.step("load: echo %d connections, the fd limit (epoll)" % n,
                           load.echo_load, bins, n, 8, 2, 65536, "epoll", ", fd limit")
            for server in cfg["select_servers"]:
                suite.step("load: %s select up to FD_SETSIZE" % server,
                           load.select_limit, bins, site, server)
            for threads in cfg["wrk_threads"]:
                suite.step("load: http wrk + %d idle keep-alive (%d thread%s)"
                           % (cfg["wrk_idle"], threads, "s" if threads > 1 else ""),
                           load.http_wrk, bins, site, cfg["wrk_idle"], cfg["wrk_seconds"], 256,
                           threads)
            if cfg["echo_threads"]:
                suite.step("load: echo %d connections (epoll, 2 threads)" % cfg["echo_conns"],
                           load.echo_load, bins, cfg["echo_conns"], cfg["echo_workers"],
                           cfg["echo_rounds"], 65536, "epoll", ", 2 threads", ["--threads", 2])
            suite.step("load: udp flood", load.udp_flood, bins, cfg["udp_count"])
            for backend in cfg["fwd_backends"]:
                suite.step("load: forwarder %d MiB each way (%s)" % (cfg["fwd_size"] // sl.MIB,
                                                                    backend),
                           load.forwarder_bulk, bins, cfg["fwd_size"], backend)
        if "faults" in parts:
            faults.run(suite, bins, site, cfg["fault_backends"], cfg["fault_scale"])
        if "hostile" in parts:
            for backend in cfg["hostile_backends"]:
                suite.step("hostile: http corpus (%s)" % backend, hostile.corpus, bins, site,
                           backend, False)
            if cfg["hostile_dribble"]:
                suite.step("hostile: http corpus byte by byte (epoll)", hostile.corpus, bins,
                           site, "epoll", True)
        if "memcheck" in parts:
            memcheck.run(suite, bins, site, cfg["memcheck_servers"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.monotonic() - t0
    table(mode, wall)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(RESULTS.to_json(), mode=mode, wall=wall), f, indent=1)
    print()
    print("stress: %d passed, %d failed" % (suite.passed, suite.failed), flush=True)
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
