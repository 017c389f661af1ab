#!/usr/bin/env python3
"""Malformed and hostile HTTP requests, with what http_server must answer.

One list serves two jobs: the seed corpus of the request-parser fuzzer
(examples/fuzz/http_request_fuzzer.cc; `http_corpus.py --write DIR` writes one
file per case) and the hostile-input stress test (tests/stress), which sends
each case to a live server, half-closes, and checks the answer.

Each case is (name, request bytes, expected), where expected is the list of
status codes of the responses, in order, after which the server closes the
connection; an empty list means a clean close with no response (the request
never became complete, so there is nothing to answer). The server runs with
--root on a directory holding index.html and sub/file.txt, and --max-body
1048576.
"""
import os
import sys

HOST = b"Host: test\r\n"


def get(target=b"/", version=b"HTTP/1.1", headers=HOST, method=b"GET"):
    return method + b" " + target + b" " + version + b"\r\n" + headers + b"\r\n"


def post(body, headers=b""):
    return (b"POST /echo HTTP/1.1\r\n" + HOST + headers + b"\r\n") + body


CASES = [
    # --- request lines -----------------------------------------------------
    ("no-target", b"GET\r\n" + HOST + b"\r\n", [400]),
    ("no-version", b"GET /\r\n" + HOST + b"\r\n", [400]),
    ("double-space", b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", [400]),
    ("trailing-space", b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n", [400]),
    ("tabs", b"GET\t/\tHTTP/1.1\r\n" + HOST + b"\r\n", [400]),
    ("method-not-token", get(method=b"G(T"), [400]),
    ("lowercase-version", get(version=b"http/1.1"), [400]),
    ("version-no-dot", get(version=b"HTTP/11"), [400]),
    ("version-letters", get(version=b"HTTP/1.x"), [400]),
    ("version-two-digits", get(version=b"HTTP/1.10"), [400]),
    ("version-2", get(version=b"HTTP/2.0"), [505]),
    ("version-0.9", get(version=b"HTTP/0.9", headers=b""), [505]),
    ("version-9", get(version=b"HTTP/9.9"), [505]),
    ("method-delete", get(method=b"DELETE"), [405]),
    ("method-put", get(method=b"PUT"), [405]),
    ("method-lowercase", get(method=b"get"), [501]),  # case-sensitive
    ("method-connect", b"CONNECT test:443 HTTP/1.1\r\n" + HOST + b"\r\n", [405]),
    ("target-asterisk", get(target=b"*"), [400]),
    ("target-relative", get(target=b"index.html"), [400]),
    ("target-ftp", get(target=b"ftp://test/index.html"), [400]),
    ("target-control-byte", get(target=b"/a\x01b"), [400]),
    ("target-del-byte", get(target=b"/a\x7fb"), [400]),
    ("target-huge", get(target=b"/" + b"a" * 9000), [414]),
    # --- header fields -----------------------------------------------------
    ("no-host-1.1", get(headers=b""), [400]),
    ("two-hosts", get(headers=HOST + HOST), [400]),
    ("header-no-colon", get(headers=HOST + b"NoColon\r\n"), [400]),
    ("space-before-colon", get(headers=HOST + b"X-A : b\r\n"), [400]),
    ("obs-fold", get(headers=HOST + b"X-A: b\r\n c\r\n"), [400]),
    ("empty-header-name", get(headers=HOST + b": b\r\n"), [400]),
    ("header-name-not-token", get(headers=HOST + b"X(A): b\r\n"), [400]),
    ("bare-cr-in-value", get(headers=HOST + b"X-A: b\rc\r\n"), [400]),
    ("bare-lf-in-value", get(headers=HOST + b"X-A: b\nc\r\n"), [400]),
    ("nul-in-value", get(headers=HOST + b"X-A: b\x00c\r\n"), [400]),
    ("nul-in-name", get(headers=HOST + b"X\x00A: b\r\n"), [400]),
    ("nul-in-method", b"G\x00T / HTTP/1.1\r\n" + HOST + b"\r\n", [400]),
    ("huge-header", get(headers=HOST + b"X-A: " + b"v" * 9000 + b"\r\n"), [431]),
    ("many-headers", get(headers=HOST + b"".join(
        b"X-%d: v\r\n" % i for i in range(2000))), [431]),
    ("bare-lf-lines", b"GET / HTTP/1.1\n" + b"Host: test\n\n", []),
    ("no-blank-line", b"GET / HTTP/1.1\r\n" + HOST, []),
    ("only-crlfs", b"\r\n\r\n\r\n\r\n", []),
    # --- Content-Length and bodies -------------------------------------------
    ("cl-negative", post(b"x", b"Content-Length: -1\r\n"), [400]),
    ("cl-plus", post(b"x", b"Content-Length: +1\r\n"), [400]),
    ("cl-hex", post(b"x" * 16, b"Content-Length: 0x10\r\n"), [400]),
    ("cl-space-inside", post(b"x", b"Content-Length: 1 2\r\n"), [400]),
    ("cl-empty", post(b"", b"Content-Length: \r\n"), [400]),
    ("cl-comma-only", post(b"", b"Content-Length: ,\r\n"), [400]),
    ("cl-letters", post(b"x", b"Content-Length: ten\r\n"), [400]),
    ("cl-overflow", post(b"x", b"Content-Length: 99999999999999999999999\r\n"),
     [413]),
    ("cl-too-large", post(b"x", b"Content-Length: 1048577\r\n"), [413]),
    ("cl-duplicate-differ", post(b"abc", b"Content-Length: 3\r\n"
                                 b"Content-Length: 4\r\n"), [400]),
    ("cl-list-differ", post(b"abc", b"Content-Length: 3, 4\r\n"), [400]),
    ("cl-duplicate-same", post(b"abc", b"Content-Length: 3\r\n"
                               b"Content-Length: 3\r\n") +
     get(headers=HOST + b"Connection: close\r\n"), [200, 200]),
    ("cl-body-short", post(b"ab", b"Content-Length: 10\r\n"), []),
    ("post-without-cl", post(b"abc"), [411]),
    ("chunked", post(b"3\r\nabc\r\n0\r\n\r\n",
                     b"Transfer-Encoding: chunked\r\n"), [411]),
    ("chunked-bad-size", post(b"zz\r\nabc\r\n0\r\n\r\n",
                              b"Transfer-Encoding: chunked\r\n"), [411]),
    ("chunked-and-cl", post(b"3\r\nabc\r\n0\r\n\r\n",
                            b"Transfer-Encoding: chunked\r\n"
                            b"Content-Length: 5\r\n"), [411]),
    ("expect-too-large", post(b"", b"Expect: 100-continue\r\n"
                              b"Content-Length: 2000000\r\n"), [413]),
    # --- targets that try to leave the root ----------------------------------
    ("traversal-plain", get(target=b"/../etc/passwd"), [403]),
    ("traversal-encoded", get(target=b"/%2e%2e/etc/passwd"), [403]),
    ("traversal-encoded-slash", get(target=b"/sub/..%2f..%2fetc/passwd"),
     [403]),
    ("traversal-mixed-case", get(target=b"/%2E%2e/%2E%2E/etc/passwd"), [403]),
    ("traversal-double-encoded", get(target=b"/%252e%252e/etc/passwd"), [404]),
    ("traversal-absolute-url", get(target=b"http://test/../../etc/passwd"),
     [403]),
    ("encoded-nul", get(target=b"/index.html%00.txt"), [400]),
    ("broken-escape", get(target=b"/%zz"), [400]),
    ("truncated-escape", get(target=b"/abc%4"), [400]),
    ("file-as-directory", get(target=b"/sub/file.txt/"), [404]),
    # --- not HTTP at all ---------------------------------------------------
    ("tls-client-hello", bytes.fromhex(
        "16030100a5010000a10303") + bytes(range(32)) + b"\r\n\r\n", [400]),
    ("ssh-banner", b"SSH-2.0-OpenSSH_9.2\r\n\r\n", [400]),
    ("binary-noise", bytes((i * 97 + 13) % 256 for i in range(300)) +
     b"\r\n\r\n", [400]),
    ("smtp", b"HELO example.com\r\nMAIL FROM:<a@b>\r\n\r\n", [400]),
    ("unknown-method", get(method=b"BREW"), [501]),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [505]),
    # --- pipelining: the bad one closes the connection -----------------------
    ("good-then-bad", get() + b"GET / HTTP/7.0\r\n" + HOST + b"\r\n", [200, 505]),
    ("bad-then-good", get(version=b"HTTP/1.x") + get(), [400]),
]


def write(directory):
    os.makedirs(directory, exist_ok=True)
    for i, (name, data, _) in enumerate(CASES):
        with open(os.path.join(directory, "%02d-%s" % (i, name)), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--write":
        sys.exit("usage: http_corpus.py --write DIR")
    write(sys.argv[2])
