"""The conformance suites give the same events with automatic declared
interest on and forced off.

Runs every case of the given GoogleTest binaries (the CPython ports, the
S-cases, the asynchat suite), each in its own process, once with automatic
declared interest (the default) and once with ASYNCOREPP_AUTO_DECLARED=0
(every channel asked, as Python), and compares the events the loop
dispatched (ASYNCOREPP_EVENT_TRACE: wait, fd, channel, events, in order).
Readiness decides every handler call, so equal traces mean equal handler
calls. A case must pass in both modes and its traces must be equal; a case
whose trace differs is run again (up to ATTEMPTS times per mode), since a
few cases depend on timing (a connect completing, a timer firing), and is
a failure only if no run in one mode matches a run in the other.

Arguments: the test binaries.
"""
import concurrent.futures
import os
import subprocess
import sys
import tempfile

ATTEMPTS = 3
CASE_TIMEOUT = 20
# Enough failures to show the difference; the rest would only cost time.
MAX_FAILURES = 10


def list_cases(binary):
    out = subprocess.run([binary, "--gtest_list_tests"], check=True,
                         capture_output=True, text=True).stdout
    cases, suite = [], None
    for line in out.splitlines():
        if not line.strip() or line.startswith("Running main"):
            continue
        if not line.startswith(" "):
            suite = line.split()[0]
        else:
            cases.append(suite + line.split()[0])
    return cases


def run_case(binary, case, automatic, tmpdir):
    """(passed, trace) of one run of one case."""
    fd, trace = tempfile.mkstemp(dir=tmpdir, suffix=".trace")
    os.close(fd)
    env = dict(os.environ)
    env.update({
        "ASYNCOREPP_AUTO_DECLARED": "1" if automatic else "0",
        "ASYNCOREPP_EVENT_TRACE": trace,
        # The traces alone must show a difference (the in-loop check would
        # stop the automatic run first).
        "ASYNCOREPP_CHECK_DECLARED": "0",
    })
    try:
        proc = subprocess.run(
            [binary, "--gtest_filter=" + case, "--gtest_brief=1"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=CASE_TIMEOUT)
        passed = proc.returncode == 0
    except subprocess.TimeoutExpired:
        passed = False
    with open(trace) as f:
        lines = f.read().splitlines()
    os.unlink(trace)
    return passed, lines


def compare(binary, case, tmpdir):
    """(problem or None, attempts needed)."""
    runs = {True: [], False: []}
    for attempt in range(1, ATTEMPTS + 1):
        for automatic in (True, False):
            passed, trace = run_case(binary, case, automatic, tmpdir)
            if not passed:
                return "fails with automatic interest %s" % (
                    "on" if automatic else "off"), attempt
            runs[automatic].append(trace)
        if any(a == b for a in runs[True] for b in runs[False]):
            return None, attempt
    on, off = runs[True][0], runs[False][0]
    first = next((i for i, (a, b) in enumerate(zip(on, off)) if a != b),
                 min(len(on), len(off)))
    return ("events differ in every run: %d events on, %d off; first "
            "difference at event %d: on %r, off %r" %
            (len(on), len(off), first, on[first] if first < len(on) else None,
             off[first] if first < len(off) else None)), ATTEMPTS


def main(binaries):
    jobs = []
    for binary in binaries:
        jobs += [(binary, case) for case in list_cases(binary)]
    failures, retried, done = [], [], 0

    def job_result(job):
        if len(failures) >= MAX_FAILURES:
            return job, ("not run", 0)
        return job, compare(*job, tmpdir)

    with tempfile.TemporaryDirectory() as tmpdir, \
            concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for (binary, case), (problem, attempts) in pool.map(job_result, jobs):
            name = "%s %s" % (os.path.basename(binary), case)
            if problem == "not run":
                continue
            done += 1
            if problem:
                failures.append("%s: %s" % (name, problem))
            elif attempts > 1:
                retried.append("%s (equal at attempt %d)" % (name, attempts))
    for line in retried:
        print("timing-dependent:", line)
    for line in failures:
        print("FAIL", line)
    print("%d cases, %d run, %d with the same events in both modes (%d "
          "needed a retry), %d failed" % (len(jobs), done, done - len(failures),
                                         len(retried), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
