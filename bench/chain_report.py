"""Tables and charts from //bench:event_chain's JSON output.

    bench/chain_report.py CHAIN_JSON OUT_DIR [README]

Writes OUT_DIR/event_chain.md (the tables) and, when matplotlib is present,
OUT_DIR/event_chain_rounds.png (time per round against N, log scale, one line
per implementation) and OUT_DIR/event_chain_rereg.png. With README, the
region between "<!-- event_chain tables -->" and "<!-- /event_chain tables
-->" in that file is replaced by the tables.

Every ratio is taken within one repetition (the floor and the implementation
measured in the same process run, minutes apart at most) and the median of
those ratios is shown, since these machines drift between runs.
"""
import collections
import json
import os
import statistics
import sys

FLOOR = "raw-epoll"        # keeps its registrations: the floor for a loop
REREG_FLOOR = "raw-epoll-rereg"

# The figures, measured beforehand (issue 11), at N = 9 900, A = 100,
# relative to raw epoll re-registering each round.
EXPECTED = {
    "raw-epoll": 0.48, "ours-epoll-declared": 0.59, "libev-epoll": 0.59,
    "libevent-epoll": 1.04, "libuv": 1.11, "ours-epoll-asked": 1.27,
    "raw-poll": 2.81, "ours-poll-declared": 3.26, "libevent-poll": 3.38,
    "libev-poll": 3.56,
}


def load(path):
    """{family: {impl: {args: {repetition: µs}}}}, the same for the ratio to
    the floor measured beside each run (vs_floor), and the skipped ones."""
    with open(path) as f:
        data = json.load(f)
    def nested():
        return collections.defaultdict(
            lambda: collections.defaultdict(lambda: collections.defaultdict(
                dict)))
    runs, vs_floor = nested(), nested()
    skipped = {}
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        parts = b["run_name"].split("/")
        family, impl = parts[0], parts[1]
        args = tuple(int(p.split(":")[1]) for p in parts[2:]
                     if ":" in p and p.split(":")[0] in ("N", "A"))
        if b.get("error_occurred"):
            skipped[(family, impl, args)] = b.get("error_message", "")
            continue
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3}[b["time_unit"]]
        rep = b.get("repetition_index", 0)
        runs[family][impl][args][rep] = b["real_time"] * scale
        if "vs_floor" in b:
            vs_floor[family][impl][args][rep] = b["vs_floor"]
    return data.get("context", {}), runs, vs_floor, skipped


def median_time(reps):
    return statistics.median(reps.values()) if reps else None


def median_ratio(vs_floor, impl, args):
    """The median over repetitions of the ratio to the floor measured beside
    each run, or None."""
    reps = vs_floor.get("Chain", {}).get(impl, {}).get(args)
    return statistics.median(reps.values()) if reps else None


def fmt_us(v):
    if v is None:
        return "—"
    return "{:,.0f}".format(v).replace(",", " ") if v >= 100 else "%.1f" % v


def order(impls):
    def key(name):
        return (not name.startswith("ours"), not name.startswith("raw"), name)
    return sorted(impls, key=key)


def chain_table(runs, vs_floor, skipped):
    chain = runs.get("Chain", {})
    all_args = sorted({a for impl in chain.values() for a in impl} |
                      {k[2] for k in skipped if k[0] == "Chain"})
    head = "| implementation | " + " | ".join(
        "N %d, A %d" % a for a in all_args) + " |"
    lines = [head, "| --- |" + " ---: |" * len(all_args)]
    impls = set(chain) | {k[1] for k in skipped if k[0] == "Chain"}
    for impl in order(impls):
        cells = []
        for a in all_args:
            reps = chain.get(impl, {}).get(a)
            if not reps:
                cells.append("skipped" if ("Chain", impl, a) in skipped
                             else "—")
                continue
            ratio = median_ratio(vs_floor, impl, a)
            cells.append("%s (%.2f×)" % (fmt_us(median_time(reps)), ratio)
                         if ratio else fmt_us(median_time(reps)))
        lines.append("| %s | %s |" % (impl, " | ".join(cells)))
    return "\n".join(lines)


def rereg_table(runs, skipped):
    rereg = runs.get("Rereg", {})
    ns = sorted({a for impl in rereg.values() for a in impl} |
                {k[2] for k in skipped if k[0] == "Rereg"})
    lines = ["| implementation | " + " | ".join("N %d" % a for a in ns) +
             " | ns per channel at N %d |" % ns[-1][0],
             "| --- |" + " ---: |" * (len(ns) + 1)]
    impls = set(rereg) | {k[1] for k in skipped if k[0] == "Rereg"}
    for impl in order(impls):
        cells = []
        for a in ns:
            reps = rereg.get(impl, {}).get(a)
            cells.append(fmt_us(median_time(reps)) if reps else "skipped")
        last = rereg.get(impl, {}).get(ns[-1])
        per = "%.0f" % (median_time(last) * 1000 / ns[-1][0]) if last else "—"
        lines.append("| %s | %s | %s |" % (impl, " | ".join(cells), per))
    return "\n".join(lines)


def target_table(runs, vs_floor):
    chain = runs.get("Chain", {})
    args = (9900, 100)
    floor = median_ratio(vs_floor, REREG_FLOOR, args)
    lines = ["| implementation | measured | expected (issue 11) |",
             "| --- | ---: | ---: |"]
    for impl in order(set(chain) & set(EXPECTED)):
        own = median_ratio(vs_floor, impl, args)
        ratio = own / floor if own and floor else None
        lines.append("| %s | %s | %.2f |" % (
            impl, "%.2f" % ratio if ratio else "—", EXPECTED[impl]))
    return "\n".join(lines)


def charts(runs, out_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chain_report.py: matplotlib missing, no charts "
              "(scripts/ensure_packages.sh bench_run)", file=sys.stderr)
        return []

    def log_log_chart(family, keep, xlabel, ylabel, title, name):
        """One line per implementation: median time against N, for the
        argument tuples `keep` accepts."""
        fig, ax = plt.subplots(figsize=(9, 5.5))
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
        results = runs.get(family, {})
        for impl in order(results):
            points = sorted((a[0], median_time(r))
                            for a, r in results[impl].items() if keep(a))
            if len(points) < 2:
                continue
            ours = impl.startswith("ours")
            style = "-" if ours else (":" if impl.startswith("raw") else "--")
            ax.plot([p[0] for p in points], [p[1] for p in points], style,
                    marker="o", label=impl, linewidth=2 if ours else 1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, ncol=2)
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return path

    return [
        log_log_chart("Chain", lambda a: a[1] == 100,
                      "socketpairs N (A = 100 active, W = 1000 writes)",
                      "time per round, dispatch only (µs)",
                      "//bench:event_chain (libevent's bench.c method)",
                      "event_chain_rounds.png"),
        log_log_chart("Rereg", lambda a: True, "socketpairs N",
                      "removing and re-adding all N watchers (µs)",
                      "//bench:event_chain, Rereg", "event_chain_rereg.png"),
    ]


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    context, runs, vs_floor, skipped = load(argv[1])
    out_dir = argv[2]
    os.makedirs(out_dir, exist_ok=True)
    by_reason = collections.defaultdict(set)
    for (_, impl, _), msg in skipped.items():
        by_reason["fd above FD_SETSIZE (1024)" if "FD_SETSIZE" in msg
                  else msg].add(impl)
    reasons = sorted("%s (%s)" % (", ".join(sorted(impls)), why)
                     for why, impls in by_reason.items())
    text = "\n\n".join([
        "Time per round (µs, median of the repetitions) and, in brackets, "
        "the ratio to raw epoll keeping its registrations, measured beside "
        "it: every benchmark run alternates its rounds with the floor's over "
        "the same pairs (median over the repetitions):",
        chain_table(runs, vs_floor, skipped),
        "Re-registering every watcher (remove, re-add, one loop iteration "
        "to apply it), µs:",
        rereg_table(runs, skipped),
        "At N = 9 900, A = 100, relative to raw epoll re-registering each "
        "round (bench.c re-adds every watcher before each round, untimed), "
        "beside the figures issue 11 expected:",
        target_table(runs, vs_floor),
    ] + (["Skipped: " + "; ".join(reasons) + "."] if reasons else []) + [
        "Machine: %s CPUs at %s MHz, %s; run %s." % (
            context.get("num_cpus", "?"), context.get("mhz_per_cpu", "?"),
            os.uname().release, context.get("date", "?")),
    ])
    with open(os.path.join(out_dir, "event_chain.md"), "w") as f:
        f.write(text + "\n")
    for path in charts(runs, out_dir):
        print("wrote", path)
    if len(argv) == 4:
        with open(argv[3]) as f:
            readme = f.read()
        start, end = "<!-- event_chain tables -->", "<!-- /event_chain tables -->"
        if start in readme and end in readme:
            before = readme[:readme.index(start) + len(start)]
            after = readme[readme.index(end):]
            with open(argv[3], "w") as f:
                f.write(before + "\n" + text + "\n" + after)
            print("updated", argv[3])
    print("wrote", os.path.join(out_dir, "event_chain.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
