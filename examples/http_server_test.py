"""Integration test of examples/http_server, run as a separate process.

Usage: http_server_test.py PATH_TO_HTTP_SERVER   (run by examples/py_test.sh)

For every backend the binary offers (read from --help), serves a temporary
directory (html, css, js, png, txt, a 5 MiB file, a subdirectory, symlinks
leading out of the root) and checks it with curl and with raw sockets: files,
HEAD, 404, 403 for every way out of the root, POST /echo, 411, 413, 414, 431, 405, 501,
505, 400, keep-alive, pipelining, a request split byte by byte, half-close,
Connection: close, HTTP/1.0, a browser's request, back-pressure against a
client that does not read; then wrk for 2 s if /usr/bin/wrk exists (SKIP
otherwise), idle CPU, and SIGTERM/SIGINT exiting 0. Then the command-line
errors. Prints the reason and exits 1 on the first failure.
"""

import os
import re
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

from testlib import (HOST, IO_TIMEOUT, Failure, Process, available_backends, check,
                     check_idle, connect, expect_usage_error, rst_close, run, run_step)
import testlib

CURL = "/usr/bin/curl"
WRK = "/usr/bin/wrk"
SMALL_MAX_BODY = 1000  # --max-body of the server that checks 413
MIB = 1 << 20

PNG_BYTES = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
             b"\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f"
             b"\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
SECRET = b"outside the root: must never be served\n"

# Files under the root: path -> (bytes, expected Content-Type).
FILES = {
    "index.html": (b"<!doctype html><title>asyncore++</title><h1>It works</h1>\n",
                   "text/html; charset=utf-8"),
    "style.css": (b"h1 { color: teal; }\n", "text/css; charset=utf-8"),
    "app.js": (b"console.log('hello');\n", "text/javascript; charset=utf-8"),
    "pixel.png": (PNG_BYTES, "image/png"),
    "notes.txt": (b"plain text\n" * 100, "text/plain; charset=utf-8"),
    "empty.txt": (b"", "text/plain; charset=utf-8"),
    "sub/index.html": (b"<p>sub index</p>\n", "text/html; charset=utf-8"),
    "sub/page.txt": (b"in the subdirectory\n", "text/plain; charset=utf-8"),
    "with space.txt": (b"spaces are escaped as %20\n", "text/plain; charset=utf-8"),
    "data.bin": (bytes(range(256)) * 4, "application/octet-stream"),
}
BIG_SIZE = 5 * MIB
CHROMIUM = "/usr/bin/chromium"
# A page whose script the browser must fetch and run, and which POSTs to
# /echo: the DOM Chromium dumps shows both worked.
BROWSER_PAGE = {
    "browser.html": b"""<!doctype html><html><head><title>t</title>
<script src="/browser.js"></script></head><body><p id="js">no script</p>
<p id="echo">no echo</p></body></html>
""",
    "browser.js": b"""window.addEventListener("load", () => {
  document.getElementById("js").textContent = "script ran";
  fetch("/echo", {method: "POST", body: "posted by the browser"})
      .then(r => r.text())
      .then(t => { document.getElementById("echo").textContent = "echo:" + t; });
});
""",
}


def make_site(base):
    """Creates base/root (served) and base/outside (not served)."""
    root = os.path.join(base, "root")
    outside = os.path.join(base, "outside")
    os.makedirs(os.path.join(root, "sub"))
    os.makedirs(os.path.join(root, "noindex"))
    os.makedirs(outside)
    for path, (data, _) in FILES.items():
        with open(os.path.join(root, path), "wb") as f:
            f.write(data)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(bytes((i * 31 + (i >> 13)) & 0xFF for i in range(BIG_SIZE)))
    with open(os.path.join(outside, "secret.txt"), "wb") as f:
        f.write(SECRET)
    os.symlink(outside, os.path.join(root, "escape"))
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "escape.txt"))
    os.symlink("../../outside/secret.txt", os.path.join(root, "sub", "relative-escape.txt"))
    os.symlink("page.txt", os.path.join(root, "sub", "link-inside.txt"))
    for path, data in BROWSER_PAGE.items():
        with open(os.path.join(root, path), "wb") as f:
            f.write(data)
    return root


def file_bytes(root, path):
    with open(os.path.join(root, path), "rb") as f:
        return f.read()


# --- HTTP over a raw socket -----------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<%d %r %r>" % (self.status, self.headers, self.body[:80])


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    check(len(parts) >= 2 and parts[0] == "HTTP/1.1" and parts[1].isdigit(),
          "bad status line %r" % lines[0])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        check(sep and name and name == name.strip(), "bad header line %r" % line)
        check(name.lower() not in headers, "header %s sent twice" % name)
        headers[name.lower()] = value.strip()
    return int(parts[1]), headers


class Conn:
    """One client connection that reads responses off a byte stream."""

    def __init__(self, port, rcvbuf=None):
        self.sock = connect(port, rcvbuf=rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, what):
        chunk = self.sock.recv(1 << 20)
        check(chunk, "connection closed while reading %s (%d bytes buffered: %r)"
              % (what, len(self.buf), bytes(self.buf[:200])))
        self.buf += chunk

    def read_response(self, head_only=False):
        """Reads one response; head_only for the answer to a HEAD request."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            check(len(self.buf) < 65536, "no end of response head in %r"
                  % bytes(self.buf[:200]))
            self._fill("a response head")
        status, headers = parse_head(bytes(self.buf[:end]))
        del self.buf[:end + 4]
        length = 0 if head_only else int(headers.get("content-length", "-1"))
        check(length >= 0, "response without Content-Length: %r" % headers)
        while len(self.buf) < length:
            self._fill("a body of %d bytes" % length)
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return Response(status, headers, body)

    def expect_closed(self, what):
        """The server closes (FIN, not RST) and sent nothing more."""
        check(not self.buf, "%s: unexpected bytes after the response: %r"
              % (what, bytes(self.buf[:200])))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Failure("%s: the server did not close the connection" % what)
        except ConnectionResetError:
            raise Failure("%s: the server reset the connection" % what)
        check(chunk == b"", "%s: unexpected bytes instead of EOF: %r" % (what, chunk[:200]))

    def expect_open(self, what, wait=0.2):
        """Nothing arrives and the connection stays open for `wait` seconds."""
        check(not self.buf, "%s: unexpected bytes: %r" % (what, bytes(self.buf[:200])))
        readable, _, _ = select.select([self.sock], [], [], wait)
        if readable:
            chunk = self.sock.recv(65536)
            check(chunk, "%s: the server closed a keep-alive connection" % what)
            raise Failure("%s: unexpected bytes: %r" % (what, chunk[:200]))


def request(path, method="GET", headers=(), body=b"", version="HTTP/1.1", host=True):
    lines = ["%s %s %s" % (method, path, version)]
    if host:
        lines.append("Host: 127.0.0.1")
    lines.extend(headers)
    if body:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(port, data, head_only=False):
    """Sends data on a new connection and reads one response."""
    with Conn(port) as c:
        c.send(data)
        return c.read_response(head_only)


# --- curl -------------------------------------------------------------------

def curl(port, path, *args):
    """curl's view of one request: the final response (1xx skipped)."""
    cmd = [CURL, "--silent", "--show-error", "--include", "--path-as-is",
           "--max-time", str(int(IO_TIMEOUT))] + list(args) + [
               "http://%s:%d%s" % (HOST, port, path)]
    res = run(cmd, timeout=IO_TIMEOUT + 5)
    check(res.returncode == 0, "%s exited %d: %s"
          % (" ".join(cmd[-3:]), res.returncode, res.stderr.decode(errors="replace")))
    out = res.stdout
    while True:
        head, sep, out = out.partition(b"\r\n\r\n")
        check(sep, "curl printed no complete response head: %r" % head[:200])
        status, headers = parse_head(head)
        if status >= 200:
            return Response(status, headers, out)


def check_status(resp, status, what):
    check(resp.status == status, "%s: status %d, want %d (%r)"
          % (what, resp.status, status, resp))


def check_file_response(resp, data, ctype, what):
    check_status(resp, 200, what)
    check(resp.header("content-length") == str(len(data)),
          "%s: Content-Length %s, want %d" % (what, resp.header("content-length"), len(data)))
    check(resp.header("content-type") == ctype,
          "%s: Content-Type %r, want %r" % (what, resp.header("content-type"), ctype))
    check(resp.body == data, "%s: body differs (%d bytes, want %d)"
          % (what, len(resp.body), len(data)))


# --- Tests (each gets a Site: the servers and the root) -------------------

class Site:
    def __init__(self, root, backend, server, small_server):
        self.root = root
        self.backend = backend
        self.server = server
        self.port = server.port
        self.small_port = small_server.port  # --max-body SMALL_MAX_BODY


def start_server(binary, root, backend, *args):
    return Process([binary, "--port", "0", "--backend", backend, "--root", root] +
                   list(args), name="http_server[%s]" % backend)


def test_get_files(site):
    for path, (data, ctype) in FILES.items():
        url = "/" + path.replace(" ", "%20")
        check_file_response(curl(site.port, url), data, ctype, "GET " + url)
    big = curl(site.port, "/big.bin")
    check_file_response(big, file_bytes(site.root, "big.bin"), "application/octet-stream",
                        "GET /big.bin")
    # A symlink that stays inside the root is fine; "." and ".." inside too.
    check_file_response(curl(site.port, "/sub/link-inside.txt"), FILES["sub/page.txt"][0],
                        "text/plain; charset=utf-8", "GET a symlink inside the root")
    check_file_response(curl(site.port, "/sub/./../sub/page.txt"), FILES["sub/page.txt"][0],
                        "text/plain; charset=utf-8", "GET /sub/./../sub/page.txt")
    check_file_response(curl(site.port, "/notes.txt?x=1&y=%2e%2e"), FILES["notes.txt"][0],
                        "text/plain; charset=utf-8", "GET with a query")
    # The absolute form that proxies send.
    resp = exchange(site.port, request("http://127.0.0.1:%d/style.css" % site.port))
    check_file_response(resp, *FILES["style.css"], "GET in absolute form")


def test_head(site):
    data, ctype = FILES["index.html"]
    resp = curl(site.port, "/index.html", "--head")
    check_status(resp, 200, "curl --head")
    check(resp.header("content-length") == str(len(data)) and
          resp.header("content-type") == ctype and resp.body == b"",
          "curl --head: %r" % resp)
    # On a raw connection: no body follows, so the next response parses.
    with Conn(site.port) as c:
        c.send(request("/big.bin", method="HEAD") + request("/app.js"))
        head = c.read_response(head_only=True)
        check(head.status == 200 and head.header("content-length") == str(BIG_SIZE),
              "HEAD /big.bin: %r" % head)
        check_file_response(c.read_response(), *FILES["app.js"], "GET after HEAD")
        c.send(request("/missing", method="HEAD"))
        check_status(c.read_response(head_only=True), 404, "HEAD /missing")
        c.expect_open("after HEAD")


def test_not_found(site):
    for path in ["/missing.html", "/sub/missing", "/index.html/x", "/index.html/",
                 "/%6dissing"]:
        check_status(curl(site.port, path), 404, "GET " + path)


def test_forbidden(site):
    escapes = [
        "/../etc/passwd",
        "/../../../../../../etc/passwd",
        "/sub/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/%2E%2E/%2e%2e/etc/passwd",
        "/%2e%2e%2fetc%2fpasswd",
        "/..%2fetc%2fpasswd",
        "/sub/..%2f..%2f..%2fetc/passwd",
        "/.%2e/outside/secret.txt",
        "/..",
        "/escape/secret.txt",
        "/escape/",
        "/escape",
        "/escape.txt",
        "/sub/relative-escape.txt",
        "/noindex/",
    ]
    for path in escapes:
        resp = curl(site.port, path)
        check_status(resp, 403, "GET " + path)
        check(SECRET not in resp.body and b"root:" not in resp.body,
              "GET %s leaked a file: %r" % (path, resp.body[:200]))
    # Double encoding is decoded once: "%252e%252e" names a file literally
    # called "%2e%2e", which is inside the root and does not exist.
    for path in ["/%252e%252e/etc/passwd", "/%252e%252e%252fetc%252fpasswd"]:
        resp = curl(site.port, path)
        check(resp.status in (403, 404), "GET %s: %r" % (path, resp))
        check(b"root:" not in resp.body, "GET %s leaked /etc/passwd" % path)
    # A NUL byte cannot be part of a file name.
    check_status(curl(site.port, "/index.html%00.txt"), 400, "GET with %00")
    check_status(curl(site.port, "/bad%zzescape"), 400, "GET with a bad escape")


def test_directories(site):
    resp = curl(site.port, "/sub")
    check_status(resp, 301, "GET /sub")
    check(resp.header("location") == "/sub/", "GET /sub: Location %r"
          % resp.header("location"))
    resp = curl(site.port, "/sub?a=b")
    check(resp.header("location") == "/sub/?a=b", "GET /sub?a=b: Location %r"
          % resp.header("location"))
    check_file_response(curl(site.port, "/sub/"), *FILES["sub/index.html"], "GET /sub/")
    check_file_response(curl(site.port, "/"), *FILES["index.html"], "GET /")
    # A redirect never names another host ("//evil.example/..." is
    # protocol-relative).
    os.makedirs(os.path.join(site.root, "evil.example"), exist_ok=True)
    resp = exchange(site.port, request("//evil.example"))
    check_status(resp, 301, "GET //evil.example")
    check(resp.header("location") == "/evil.example/", "GET //evil.example: Location %r"
          % resp.header("location"))


def test_post_echo(site):
    body = bytes(range(256)) * 40
    resp = curl(site.port, "/echo", "--data-binary", "@-", "-H",
                "Content-Type: application/x-test")
    # (--data-binary @- with no stdin: an empty body, still with a length.)
    check_status(resp, 200, "POST /echo, empty body")
    check(resp.body == b"", "POST /echo with an empty body returned %r" % resp.body[:80])
    path = os.path.join(site.root, "..", "post-body.bin")
    for size in [1, 10240, MIB]:  # MIB == the default --max-body: allowed
        with open(path, "wb") as f:
            f.write((body * (size // len(body) + 1))[:size])
        resp = curl(site.port, "/echo", "--data-binary", "@" + path,
                    "-H", "Content-Type: application/x-test")
        check_status(resp, 200, "POST /echo (%d bytes)" % size)
        check(resp.header("content-type") == "application/x-test",
              "POST /echo: Content-Type %r" % resp.header("content-type"))
        check(resp.body == file_bytes(site.root, path), "POST /echo: %d bytes back for %d"
              % (len(resp.body), size))
    # Expect: 100-continue is answered before the body is sent.
    with Conn(site.port) as c:
        c.send(request("/echo", method="POST",
                       headers=["Content-Length: 5", "Expect: 100-continue"]))
        interim = c.read_response(head_only=True)
        check_status(interim, 100, "Expect: 100-continue")
        c.send(b"hello")
        resp = c.read_response()
        check(resp.status == 200 and resp.body == b"hello", "POST after 100: %r" % resp)
    # POST anywhere else: 405.
    resp = exchange(site.port, request("/index.html", method="POST", body=b"x"))
    check_status(resp, 405, "POST /index.html")
    check(resp.header("allow") == "GET, HEAD", "POST /index.html: Allow %r"
          % resp.header("allow"))


def test_length_required(site):
    with Conn(site.port) as c:
        c.send(request("/echo", method="POST"))
        check_status(c.read_response(), 411, "POST without Content-Length")
        c.expect_closed("after 411")
    with Conn(site.port) as c:
        c.send(request("/echo", method="POST",
                       headers=["Transfer-Encoding: chunked"]) + b"5\r\nhello\r\n0\r\n\r\n")
        check_status(c.read_response(), 411, "POST with Transfer-Encoding: chunked")
        c.expect_closed("after 411 (chunked)")


def test_too_large(site):
    path = os.path.join(site.root, "..", "too-large.bin")
    with open(path, "wb") as f:
        f.write(b"z" * (SMALL_MAX_BODY + 1))
    resp = curl(site.small_port, "/echo", "--data-binary", "@" + path)
    check_status(resp, 413, "curl POST %d bytes over --max-body %d"
                 % (SMALL_MAX_BODY + 1, SMALL_MAX_BODY))
    check(resp.header("connection") == "close", "413 without Connection: close: %r" % resp)
    # Exactly --max-body is fine.
    ok = os.path.join(site.root, "..", "max-body.bin")
    with open(ok, "wb") as f:
        f.write(b"y" * SMALL_MAX_BODY)
    resp = curl(site.small_port, "/echo", "--data-binary", "@" + ok)
    check(resp.status == 200 and resp.body == b"y" * SMALL_MAX_BODY,
          "POST of exactly --max-body: %r" % resp)
    # A client that sends the whole oversized body without waiting still
    # gets the 413 intact: the server must not reset the connection while
    # the unread body is in its receive buffer.
    with Conn(site.small_port) as c:
        c.send(request("/echo", method="POST", body=b"b" * 200000))
        check_status(c.read_response(), 413, "raw POST of 200000 bytes")
        c.expect_closed("after 413")
    # A huge Content-Length is a 413 too, not a parse error.
    resp = exchange(site.small_port, request("/echo", method="POST",
                                             headers=["Content-Length: 99999999999999999999999"]))
    check_status(resp, 413, "Content-Length: 10^23")


def test_header_too_large(site):
    big = "X-Padding: " + "a" * 9000
    resp = curl(site.port, "/index.html", "-H", big)
    check_status(resp, 431, "curl with a 9 KiB header")
    with Conn(site.port) as c:
        c.send(request("/index.html", headers=["X-Filler-%d: %s" % (i, "b" * 100)
                                               for i in range(90)]))
        check_status(c.read_response(), 431, "90 headers of 100 bytes")
        c.expect_closed("after 431")
    # A whole request with a 9 KiB target: 414, the request line is at fault.
    with Conn(site.port) as c:
        c.send(request("/" + "a" * 9000))
        check_status(c.read_response(), 414, "a 9 KiB request target")
    # A request line with no end at all: 414 as soon as 8 KiB have arrived.
    with Conn(site.port) as c:
        c.send(b"GET /" + b"a" * 9000)
        check_status(c.read_response(), 414, "a 9000-byte request line without end")
        c.expect_closed("after 414 (no end)")
    # Just under the limit is fine.
    resp = exchange(site.port, request("/index.html", headers=["X-Pad: " + "c" * 7900]))
    check_file_response(resp, *FILES["index.html"], "a 7.9 KiB header")


def test_method_not_allowed(site):
    for method in ["DELETE", "PUT", "OPTIONS", "PATCH"]:
        resp = curl(site.port, "/index.html", "-X", method)
        check_status(resp, 405, method)
        check(resp.header("allow") == "GET, HEAD, POST", "%s: Allow %r"
              % (method, resp.header("allow")))
    # Unknown methods (they are case-sensitive) are not implemented.
    for method in ["get", "BREW"]:
        check_status(curl(site.port, "/index.html", "-X", method), 501, method)
    # 405 keeps the connection, even when the request had a body.
    with Conn(site.port) as c:
        c.send(request("/x", method="DELETE", body=b"body") + request("/style.css"))
        check_status(c.read_response(), 405, "DELETE with a body")
        check_file_response(c.read_response(), *FILES["style.css"], "GET after 405")


def test_version(site):
    for version in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.0"]:
        with Conn(site.port) as c:
            c.send(request("/index.html", version=version))
            check_status(c.read_response(), 505, version)
            c.expect_closed("after 505")
    # HTTP/1.x with x > 1 is served as HTTP/1.1 (RFC 9110 section 6.2).
    resp = exchange(site.port, request("/index.html", version="HTTP/1.2"))
    check_file_response(resp, *FILES["index.html"], "HTTP/1.2")


def test_bad_request(site):
    bad = [
        b"garbage\r\n\r\n",
        b"GET /index.html\r\n\r\n",                                 # HTTP/0.9 style
        b"GET  /index.html HTTP/1.1\r\nHost: x\r\n\r\n",            # double space
        b"GET /index.html HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /index.html http/1.1\r\nHost: x\r\n\r\n",
        b"GET /index.html HTTP/1.10\r\nHost: x\r\n\r\n",
        b"G(T /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",     # TLS-ish bytes
        b"GET /index.html HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: x\r\nName : value\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: x\r\n: no name\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-A: bare\rcr\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\n\r\n",                        # no Host
        b"GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Content-Length: 6\r\n\r\nhello!",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ]
    for data in bad:
        with Conn(site.port) as c:
            c.send(data)
            resp = c.read_response()
            check_status(resp, 400, repr(data))
            c.expect_closed("after 400 for %r" % data)
    # A target that is not a path is a 400 too, but the request was framed
    # fine: the connection stays.
    with Conn(site.port) as c:
        c.send(request("index.html") + request("/app.js"))
        check_status(c.read_response(), 400, "target without '/'")
        check_file_response(c.read_response(), *FILES["app.js"], "GET after a bad target")


def test_keep_alive(site):
    with Conn(site.port) as c:
        for path in ["index.html", "notes.txt", "pixel.png"]:
            c.send(request("/" + path))
            resp = c.read_response()
            check_file_response(resp, *FILES[path], "keep-alive GET /" + path)
            check(resp.header("connection") is None, "keep-alive: %r" % resp.headers)
        c.expect_open("HTTP/1.1 keep-alive")
    # curl reuses one connection for several URLs on the same host.
    url = "http://%s:%d" % (HOST, site.port)
    res = run([CURL, "-sS", "-v", "--max-time", str(int(IO_TIMEOUT)), "-o", "/dev/null",
               "-o", "/dev/null", url + "/index.html", url + "/app.js"],
              timeout=IO_TIMEOUT + 5, text=True)
    check(res.returncode == 0, "curl with two URLs: %s" % res.stderr)
    check("Re-using existing connection" in res.stderr or
          "Reusing existing connection" in res.stderr,
          "curl did not reuse the connection: %s" % res.stderr[-2000:])


def test_latency(site):
    """Request, response, request... on one connection: a response written
    in two pieces must not wait for the client's delayed ACK (Nagle), which
    costs ~40 ms a request; 100 requests then take 4 s instead of a few ms."""
    for path, body in [("/index.html", b""), ("/echo", b"e" * 100)]:
        with Conn(site.port) as c:
            start = time.monotonic()
            for _ in range(50):
                c.send(request(path, method="POST" if body else "GET", body=body))
                check_status(c.read_response(), 200, "sequential " + path)
            elapsed = time.monotonic() - start
        check(elapsed < 1.0, "50 sequential requests for %s took %.2f s (Nagle?)"
              % (path, elapsed))


def test_pipelining(site):
    with Conn(site.port) as c:
        c.send(request("/index.html") +
               request("/echo", method="POST", body=b"in the middle\r\n\r\nGET /x") +
               request("/sub/page.txt"))
        check_file_response(c.read_response(), *FILES["index.html"], "pipelined 1")
        resp = c.read_response()
        check(resp.status == 200 and resp.body == b"in the middle\r\n\r\nGET /x",
              "pipelined 2 (POST /echo): %r" % resp)
        check_file_response(c.read_response(), *FILES["sub/page.txt"], "pipelined 3")
        c.expect_open("after three pipelined requests")
        # Many at once, mixing HEAD, 404 and a big file; order must hold.
        paths = ["/big.bin", "/missing", "/app.js", "/style.css"] * 5
        c.send(b"".join(request(p, method="HEAD" if i % 3 == 1 else "GET")
                        for i, p in enumerate(paths)))
        big = file_bytes(site.root, "big.bin")
        for i, p in enumerate(paths):
            head_only = i % 3 == 1
            resp = c.read_response(head_only)
            if p == "/missing":
                check_status(resp, 404, "pipelined %s" % p)
                continue
            want = big if p == "/big.bin" else FILES[p[1:]][0]
            check(resp.status == 200 and resp.header("content-length") == str(len(want)),
                  "pipelined #%d %s: %r" % (i, p, resp))
            check(head_only or resp.body == want, "pipelined #%d %s: body differs" % (i, p))
        # "Connection: close" in the middle: answered, then the rest dropped.
        c.send(request("/app.js") + request("/style.css", headers=["Connection: close"]) +
               request("/index.html"))
        check_file_response(c.read_response(), *FILES["app.js"], "before close")
        resp = c.read_response()
        check_file_response(resp, *FILES["style.css"], "with Connection: close")
        c.expect_closed("requests after Connection: close")


def test_byte_by_byte(site):
    data = (request("/echo", method="POST", body=b"split\r\n\r\nbody") +
            b"\r\n" +  # a stray CRLF between requests is allowed
            request("/app.js"))
    with Conn(site.port) as c:
        for i in range(len(data)):
            c.send(data[i:i + 1])
            time.sleep(0.002)  # separate segments, so separate reads
        resp = c.read_response()
        check(resp.status == 200 and resp.body == b"split\r\n\r\nbody",
              "byte-by-byte POST: %r" % resp)
        check_file_response(c.read_response(), *FILES["app.js"], "byte-by-byte GET")


def test_connection_close(site):
    with Conn(site.port) as c:
        c.send(request("/index.html", headers=["Connection: close"]))
        resp = c.read_response()
        check_file_response(resp, *FILES["index.html"], "Connection: close")
        check(resp.header("connection") == "close", "no Connection: close in %r"
              % resp.headers)
        c.expect_closed("Connection: close")
    # Big response, then close: all 5 MiB arrive before the FIN.
    with Conn(site.port) as c:
        c.send(request("/big.bin", headers=["Connection: keep-alive, Close"]))
        resp = c.read_response()
        check(resp.status == 200 and len(resp.body) == BIG_SIZE,
              "big file with Connection: close: %d bytes" % len(resp.body))
        c.expect_closed("Connection: close after a big file")


def test_http10(site):
    with Conn(site.port) as c:
        c.send(request("/index.html", version="HTTP/1.0", host=False))
        resp = c.read_response()
        check_file_response(resp, *FILES["index.html"], "HTTP/1.0")
        c.expect_closed("HTTP/1.0 without keep-alive")
    with Conn(site.port) as c:
        for _ in range(2):
            c.send(request("/app.js", version="HTTP/1.0", headers=["Connection: keep-alive"]))
            resp = c.read_response()
            check_file_response(resp, *FILES["app.js"], "HTTP/1.0 keep-alive")
            check(resp.header("connection") == "keep-alive",
                  "HTTP/1.0 keep-alive: %r" % resp.headers)
        c.expect_open("HTTP/1.0 keep-alive")
    resp = curl(site.port, "/notes.txt", "--http1.0")
    check_file_response(resp, *FILES["notes.txt"], "curl --http1.0")


def test_half_close(site):
    """A client that sends its requests and shuts down its side still gets
    every response (AsyncChat alone would drop queued output on EOF)."""
    with Conn(site.port) as c:
        c.send(request("/big.bin") + request("/index.html"))
        c.sock.shutdown(socket.SHUT_WR)
        resp = c.read_response()
        check(resp.status == 200 and len(resp.body) == BIG_SIZE,
              "half-close: big file %r" % resp)
        check_file_response(c.read_response(), *FILES["index.html"], "half-close: second")
        c.expect_closed("after half-close")


def test_browser(site):
    """The requests a browser sends for a page, on one keep-alive connection."""
    chrome = [
        "Connection: keep-alive",
        'sec-ch-ua: "Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"',
        "sec-ch-ua-mobile: ?0",
        'sec-ch-ua-platform: "Linux"',
        "Upgrade-Insecure-Requests: 1",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
        "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
        "Sec-Fetch-Site: none",
        "Sec-Fetch-Mode: navigate",
        "Sec-Fetch-User: ?1",
        "Sec-Fetch-Dest: document",
        "Accept-Encoding: gzip, deflate, br",
        "Accept-Language: en-US,en;q=0.9,fr;q=0.8",
        "Cache-Control: max-age=0",
        "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT",
    ]
    with Conn(site.port) as c:
        c.send(request("/", headers=chrome).replace(
            b"Host: 127.0.0.1", b"Host: 127.0.0.1:%d" % site.port))
        check_file_response(c.read_response(), *FILES["index.html"], "browser GET /")
        c.send(request("/style.css", headers=chrome[:7] + ["Accept: text/css,*/*;q=0.1"]))
        check_file_response(c.read_response(), *FILES["style.css"], "browser GET css")
        c.send(request("/favicon.ico", headers=chrome[:7] + ["Accept: image/*"]))
        check_status(c.read_response(), 404, "browser GET /favicon.ico")
        c.expect_open("browser connection")


def test_real_browser(site):
    """Headless Chromium loads a page, runs its script and POSTs to /echo."""
    if not os.path.exists(CHROMIUM):
        print("SKIP %-7s browser: %s is not installed" % (site.backend, CHROMIUM), flush=True)
        return
    profile = tempfile.mkdtemp(prefix="chromium.", dir=os.environ.get("TEST_TMPDIR"))
    try:
        # Flags: no sandbox (root), and no background traffic to the outside.
        res = run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                   "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                   "--user-data-dir=" + profile, "--virtual-time-budget=5000", "--dump-dom",
                   "http://127.0.0.1:%d/browser.html" % site.port], timeout=60, text=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    check(res.returncode == 0, "chromium exited %s: %s" % (res.returncode, res.stderr[-2000:]))
    check("script ran" in res.stdout, "browser did not run /browser.js: %r" % res.stdout)
    check("echo:posted by the browser" in res.stdout,
          "browser POST /echo failed: %r" % res.stdout)


def test_backpressure(site):
    """A client that pipelines requests but never reads: the server stops
    reading instead of queueing every response, and keeps serving others."""
    count, size = 48, MIB  # 48 MiB of echo responses if nothing held back
    bodies = [bytes([i]) * size for i in range(count)]
    data = b"".join(request("/echo", method="POST", body=b) for b in bodies)
    with Conn(site.port, rcvbuf=65536) as c:
        c.sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + IO_TIMEOUT
        while sent < len(data) and time.monotonic() < deadline:
            try:
                sent += c.sock.send(data[sent:sent + 65536])
            except BlockingIOError:
                _, writable, _ = select.select([], [c.sock], [], 0.5)
                if not writable:
                    break  # stalled for 0.5 s: the server stopped reading
        check(sent < len(data) // 2,
              "a client that does not read got %d of %d request bytes accepted: no "
              "back-pressure?" % (sent, len(data)))
        # Other clients are still served meanwhile.
        check_file_response(curl(site.port, "/index.html"), *FILES["index.html"],
                            "GET while a client is stuck")
        # Now read everything: every response arrives, in order.
        c.sock.settimeout(IO_TIMEOUT)
        rest = data[sent:]
        sender = threading.Thread(target=lambda: c.sock.sendall(rest), daemon=True)
        sender.start()
        for i, body in enumerate(bodies):
            resp = c.read_response()
            check(resp.status == 200 and resp.body == body,
                  "back-pressure: response %d wrong (%d bytes)" % (i, len(resp.body)))
        sender.join(IO_TIMEOUT)
        check(not sender.is_alive(), "back-pressure: the sender never finished")
    print("     back-pressure: a non-reading client got %.1f of %.0f MiB accepted"
          % (sent / MIB, len(data) / MIB), flush=True)


def test_resets(site):
    """Clients that reset mid-response must not kill the server."""
    for _ in range(3):
        s = connect(site.port)
        s.sendall(request("/big.bin") * 3)
        check(s.recv(1) != b"", "resets: no response started")  # mid-send now
        rst_close(s)
    check_file_response(curl(site.port, "/app.js"), *FILES["app.js"], "GET after resets")


def test_idle(site):
    with Conn(site.port) as c:  # an idle keep-alive connection
        c.send(request("/index.html"))
        c.read_response()
        check_idle(site.server, "with an idle keep-alive connection")


def test_wrk(site):
    """Load from a real benchmark client: only 2xx answers, no socket errors."""
    if not os.path.exists(WRK):
        print("SKIP %-7s wrk: %s is not installed" % (site.backend, WRK), flush=True)
        return
    res = run([WRK, "-t2", "-c8", "-d2s", "--timeout", "5s",
               "http://%s:%d/index.html" % (HOST, site.port)], timeout=30, text=True)
    check(res.returncode == 0, "wrk exited %d: %s %s" % (res.returncode, res.stdout,
                                                         res.stderr))
    out = res.stdout
    total = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    check(total and rate and int(total.group(1)) > 0, "wrk made no requests: %s" % out)
    check("Socket errors" not in out, "wrk saw socket errors: %s" % out)
    check("Non-2xx" not in out, "wrk saw non-2xx responses: %s" % out)
    print("     %-7s wrk: %s requests, %s requests/s (2 threads, 8 connections, 2 s)"
          % (site.backend, total.group(1), rate.group(1)), flush=True)


TESTS = [test_get_files, test_head, test_not_found, test_forbidden, test_directories,
         test_post_echo, test_length_required, test_too_large, test_header_too_large,
         test_method_not_allowed, test_version, test_bad_request, test_keep_alive,
         test_latency, test_pipelining, test_byte_by_byte, test_connection_close,
         test_http10, test_half_close, test_browser, test_real_browser, test_backpressure, test_resets,
         test_idle, test_wrk]


def test_signal_exit(binary, root, backend, signo):
    with start_server(binary, root, backend) as server:
        # An open keep-alive connection must not keep the server alive.
        with Conn(server.port) as c:
            c.send(request("/index.html"))
            c.read_response()
            server.expect_clean_exit(signo)


def test_backend(binary, root, backend):
    with start_server(binary, root, backend) as server, \
            start_server(binary, root, backend, "--max-body", str(SMALL_MAX_BODY)) as small:
        site = Site(root, backend, server, small)
        for test in TESTS:
            run_step(backend, test, site)
            for s in (server, small):
                s.check_alive("during " + test.__name__)
        for s in (server, small):
            s.expect_clean_exit(signal.SIGTERM)
            check(s.stderr() == "", "%s: unexpected stderr: %s" % (s.name, s.stderr()))
    for signo in (signal.SIGINT, signal.SIGTERM):
        test_signal_exit(binary, root, backend, signo)
    print("ok   %-7s signals" % backend, flush=True)


def test_flag_errors(binary, root):
    expect_usage_error(binary, ["--port", "0", "--bogus"], ["--bogus"])
    expect_usage_error(binary, ["--port", "99999"], ["port"])
    expect_usage_error(binary, ["--port", "0", "--backend", "nope"], ["nope"])
    expect_usage_error(binary, ["--port", "0", "--max-body"], ["--max-body"])
    # Values the shared flag parser accepts but this program refuses.
    for args in (["--root", os.path.join(root, "missing")],
                 ["--root", os.path.join(root, "index.html")],
                 ["--max-body", "lots"], ["--max-body", "-1"]):
        res = run([binary, "--port", "0"] + args, timeout=10, text=True)
        check(res.returncode == 2, "%s exited %s, want 2" % (args, res.returncode))
        check(args[0] in res.stderr, "%s: message does not mention %s: %r"
              % (args, args[0], res.stderr))
        check(res.stdout == "", "%s wrote to stdout: %r" % (args, res.stdout))
    res = run([binary, "--port", "0", "--help"], timeout=10, text=True)
    check(res.returncode == 0 and "--root DIR" in res.stdout and
          "--max-body" in res.stdout and res.stderr == "",
          "--help: status %s, stdout %r" % (res.returncode, res.stdout))


def body(argv):
    check(len(argv) == 1, "want one argument, the http_server binary")
    binary = argv[0]
    check(os.path.exists(CURL), "%s is missing; this test drives the server with "
          "curl. Install it (./bazelw does: apt-get install curl)." % CURL)
    base = tempfile.mkdtemp(prefix="http_server_test.", dir=os.environ.get("TEST_TMPDIR"))
    try:
        root = make_site(base)
        for backend in available_backends(binary):
            test_backend(binary, root, backend)
        test_flag_errors(binary, root)
        print("ok   flag errors", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(testlib.main(body, "PATH_TO_HTTP_SERVER"))
