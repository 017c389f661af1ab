"""Integration test of examples/http_client, run as a separate process.

Usage: http_client_test.py PATH_TO_HTTP_CLIENT

For every backend the client offers, fetches from Python's http.server (a
separate process serving a temporary directory on 127.0.0.1, port 0) and
checks that the body reaches stdout byte for byte (text, empty, and a 1 MiB
binary file), that -v prints the status line and headers to stderr, and the
exit status: 0 for 2xx, 1 for 404 and for a 301 (not followed). Scripted
Python servers add other status codes, a response trickling in one byte at
a time, the request the client sends, broken and truncated responses. Then:
nothing listening is status 1, a bad URL or flag status 2.
"""

import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import HOST, Failure, check  # noqa: E402

FILES = {
    "hello.txt": b"hello, world\n",
    "empty.txt": b"",
    # Header terminators and NULs inside the body must not confuse anything.
    "binary.bin": b"\r\n\r\n\0HTTP/1.0 200 OK\r\n\r\n" + testlib.payload(1 << 20, 1),
    "dir/index.html": b"<p>index</p>\n",
}


def fetch(binary, backend, url, verbose=False):
    args = [binary, "--backend", backend] + (["-v"] if verbose else []) + [url]
    return testlib.run(args)


def expect(res, status, body, what):
    check(res.returncode == status, "%s: exit status %s, want %s; stderr: %r"
          % (what, res.returncode, status, res.stderr[:300]))
    if body is not None and res.stdout != body:
        raise Failure("%s: stdout is %d bytes (sha256 %s), want %d (sha256 %s), first "
                      "difference at %d"
                      % (what, len(res.stdout), testlib.sha256(res.stdout)[:16],
                         len(body), testlib.sha256(body)[:16],
                         testlib.first_difference(res.stdout, body)))


def test_files(binary, backend, port):
    for name, content in FILES.items():
        res = fetch(binary, backend, "http://%s:%d/%s" % (HOST, port, name))
        expect(res, 0, content, "GET /" + name)
        check(res.stderr == b"", "GET /%s: stderr %r without -v" % (name, res.stderr))
    # No path at all is "/"; a directory with an index serves it.
    res = fetch(binary, backend, "http://%s:%d" % (HOST, port))
    expect(res, 0, None, "GET (no path)")
    check(b"hello.txt" in res.stdout, "GET (no path): no listing: %r" % res.stdout[:100])
    res = fetch(binary, backend, "http://%s:%d/dir/" % (HOST, port))
    expect(res, 0, FILES["dir/index.html"], "GET /dir/")


def test_verbose(binary, backend, port):
    res = fetch(binary, backend, "http://%s:%d/hello.txt" % (HOST, port), verbose=True)
    expect(res, 0, FILES["hello.txt"], "-v GET /hello.txt")
    err = res.stderr.decode("latin-1")
    check(err.endswith("\n\n") and "\r\n\r\n" not in err,
          "-v: stderr is not the head and a blank line: %r" % err)
    lines = err[:-2].split("\r\n")
    check(lines[0] == "HTTP/1.0 200 OK", "-v: status line %r" % lines[0])
    headers = [line.lower() for line in lines[1:]]
    check("content-length: %d" % len(FILES["hello.txt"]) in headers,
          "-v: no Content-Length header in %r" % err)
    check("content-type: text/plain" in headers, "-v: no Content-Type in %r" % err)


def test_not_found(binary, backend, port):
    res = fetch(binary, backend, "http://%s:%d/no/such/file" % (HOST, port),
                verbose=True)
    expect(res, 1, None, "GET a missing file")
    check(res.stderr.startswith(b"HTTP/1.0 404 "), "404: stderr %r" % res.stderr[:60])
    check(b"404" in res.stdout, "404: the error page is not on stdout: %r"
          % res.stdout[:100])


def test_redirect_not_followed(binary, backend, port):
    # http.server redirects /dir to /dir/ with a 301.
    res = fetch(binary, backend, "http://%s:%d/dir" % (HOST, port), verbose=True)
    expect(res, 1, b"", "GET /dir (301)")
    check(res.stderr.startswith(b"HTTP/1.0 301 "), "301: stderr %r" % res.stderr[:60])
    check(b"\r\nLocation: /dir/" in res.stderr, "301: no Location in %r" % res.stderr)
    # A scripted 302: exactly one connection is made.
    handler, requests = canned(b"HTTP/1.0 302 Found\r\nLocation: /elsewhere\r\n"
                               b"Content-Length: 4\r\n\r\nmoved")
    with testlib.ThreadedServer(handler) as server:
        res = fetch(binary, backend, "http://%s:%d/here" % (HOST, server.port))
    expect(res, 1, b"moved", "GET (302)")
    check(len(requests) == 1, "302: %d requests made, want 1" % len(requests))


def canned(response, trickle=False, reset=False, close_at_once=False):
    """A handler that reads one request and answers `response`."""
    requests = []

    def handler(conn):
        if close_at_once:
            return
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                break
            request += chunk
        requests.append(request)
        if trickle:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(response)):
                conn.sendall(response[i:i + 1])
                time.sleep(0.001)  # pacing the peer under test, not synchronisation
        else:
            conn.sendall(response)
        if reset:
            testlib.rst_close(conn)

    return handler, requests


def serve_canned(binary, backend, response, path="/", verbose=False, **kw):
    handler, requests = canned(response, **kw)
    with testlib.ThreadedServer(handler) as server:
        res = fetch(binary, backend, "http://%s:%d%s" % (HOST, server.port, path),
                    verbose)
        server.check_errors()
    return res, requests, server.port


def test_status_codes(binary, backend):
    for status, want in ((200, 0), (201, 0), (204, 0), (299, 0), (100, 1), (300, 1),
                         (304, 1), (400, 1), (404, 1), (500, 1), (503, 1)):
        body = b"" if status in (204, 304) else b"status %d\n" % status
        response = (b"HTTP/1.0 %d Whatever\r\nContent-Length: %d\r\n\r\n"
                    % (status, len(body)) + body)
        res, _, _ = serve_canned(binary, backend, response)
        expect(res, want, body, "status %d" % status)
    # HTTP/1.1 status line, no Content-Length: the body runs to EOF.
    res, _, _ = serve_canned(binary, backend, b"HTTP/1.1 200 OK\r\n\r\nto the end")
    expect(res, 0, b"to the end", "HTTP/1.1 without Content-Length")


def test_request(binary, backend):
    """What goes on the wire: an HTTP/1.0 GET with the path and Host."""
    res, requests, port = serve_canned(binary, backend,
                                       b"HTTP/1.0 200 OK\r\n\r\nok", "/a/b.txt?x=1&y=%20")
    expect(res, 0, b"ok", "GET with a query")
    want = b"GET /a/b.txt?x=1&y=%%20 HTTP/1.0\r\nHost: %s:%d\r\n\r\n" % (HOST.encode(), port)
    check(requests == [want], "request was %r, want %r" % (requests, want))


def test_trickled_response(binary, backend):
    """Status line, headers and body arriving one byte per segment."""
    body = b"line one\r\n\r\nline two after a blank line\n"
    response = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d"
                b"\r\n\r\n" % len(body)) + body
    res, _, _ = serve_canned(binary, backend, response, verbose=True, trickle=True)
    expect(res, 0, body, "trickled response")
    check(res.stderr.startswith(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"),
          "trickled response: stderr %r" % res.stderr)


def test_broken_responses(binary, backend):
    # Closed without a word.
    res, _, _ = serve_canned(binary, backend, b"", close_at_once=True)
    expect(res, 1, b"", "no response")
    check(b"http_client: " in res.stderr, "no response: no message: %r" % res.stderr)
    # Headers never finished.
    res, _, _ = serve_canned(binary, backend, b"HTTP/1.0 200 OK\r\nContent-Le")
    expect(res, 1, b"", "unfinished head")
    check(b"before a complete response" in res.stderr, "unfinished head: stderr %r"
          % res.stderr)
    # Not HTTP.
    res, _, _ = serve_canned(binary, backend, b"SSH-2.0-OpenSSH\r\n\r\n")
    expect(res, 1, None, "not HTTP")
    # A body cut short of its Content-Length (closed, or reset).
    for reset in (False, True):
        res, _, _ = serve_canned(binary, backend,
                                 b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n" +
                                 b"x" * 50, reset=reset)
        what = "truncated body (%s)" % ("reset" if reset else "closed")
        check(res.returncode == 1, "%s: exit status %s, want 1"
              % (what, res.returncode))
        check(res.stdout == b"x" * 50 or (reset and b"x" * 50).startswith(res.stdout),
              "%s: stdout %r" % (what, res.stdout))
        check(b"http_client: " in res.stderr, "%s: no message" % what)
    # The length in another case and with spaces still counts.
    res, _, _ = serve_canned(binary, backend,
                             b"HTTP/1.0 200 OK\r\ncontent-LENGTH:  3 \r\n\r\nabc")
    expect(res, 0, b"abc", "content-LENGTH")


def test_nothing_listening(binary, backend):
    port = testlib.free_port()
    res = fetch(binary, backend, "http://%s:%d/" % (HOST, port))
    check(res.returncode == 1, "nothing listening: exit status %s, want 1"
          % res.returncode)
    check(res.stdout == b"", "nothing listening: stdout %r" % res.stdout)
    check(b"http_client: " in res.stderr and b"refused" in res.stderr.lower(),
          "nothing listening: unclear message %r" % res.stderr)


def test_flag_errors(binary):
    port = testlib.free_port()
    for url in ("ftp://%s/" % HOST, "http://", "http:///path", "http://%s:99999/" % HOST,
                "http://%s:0/" % HOST, "http://%s:x/" % HOST, "http://%s:/" % HOST,
                "http://[::1/", "%s:%d/" % (HOST, port), "HTTP//x"):
        testlib.expect_usage_error(binary, [url])
    testlib.expect_usage_error(binary, [])
    testlib.expect_usage_error(binary, ["-q", "http://%s:%d/" % (HOST, port)], ["-q"])
    testlib.expect_usage_error(binary, ["http://%s:%d/" % (HOST, port), "extra"])
    testlib.expect_usage_error(binary, ["--backend", "nope", "http://%s:%d/" % (HOST, port)],
                               ["nope"])
    res = testlib.run([binary, "--help"], timeout=10, text=True)
    check(res.returncode == 0 and res.stdout.startswith("usage:"),
          "--help: status %s, stdout %r" % (res.returncode, res.stdout[:60]))


def body(args):
    binary = args[0]
    backends = testlib.available_backends(binary)
    testlib.run_step("flags", test_flag_errors, binary)
    with tempfile.TemporaryDirectory() as root:
        for name, content in FILES.items():
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content)
        with testlib.Process(
                ["/usr/bin/python3", "-u", "-m", "http.server", "0", "--bind", HOST,
                 "--directory", root],
                name="python http.server", port_pattern=r"port (\d+)") as web:
            for backend in backends:
                for test in (test_files, test_verbose, test_not_found,
                             test_redirect_not_followed):
                    testlib.run_step(backend, test, binary, backend, web.port)
                for test in (test_status_codes, test_request, test_trickled_response,
                             test_broken_responses, test_nothing_listening):
                    testlib.run_step(backend, test, binary, backend)
                web.check_alive("after the %s requests" % backend)


if __name__ == "__main__":
    sys.exit(testlib.main(body, "PATH_TO_HTTP_CLIENT"))
