// The HTTP/1.1 request parsing of http_server: request heads, request
// targets and the vocabulary around them, with no I/O, so that it can be
// unit-tested and fuzzed on its own (examples/http_request_test.cc,
// examples/fuzz/http_request_fuzzer.cc).
//
// Framing, as the server does it with AsyncChat terminators: a head ends at
// the first kHeadTerminator; more than kMaxHeadBytes before it is answered
// with 431; empty lines before a request are skipped (skip_empty_lines);
// then come Request::content_length bytes of body.
#ifndef ASYNCOREPP_EXAMPLES_HTTP_REQUEST_H_
#define ASYNCOREPP_EXAMPLES_HTTP_REQUEST_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace http {

inline constexpr std::string_view kHeadTerminator = "\r\n\r\n";
// Request line plus header lines, without the blank line.
inline constexpr size_t kMaxHeadBytes = 8 * 1024;

struct Request {
  std::string method;
  std::string target;
  int minor_version = 1;  // HTTP/1.<minor_version>
  std::vector<std::pair<std::string, std::string>> headers;  // names lower case
  uint64_t content_length = 0;
  std::string body;

  // Every value of the header `name` (lower case), in order.
  std::vector<std::string_view> values(std::string_view name) const;
  bool has(std::string_view name) const { return !values(name).empty(); }
};

// A head without the CRLFs clients may send between requests (RFC 9112
// section 2.2); empty if that is all it holds.
std::string_view skip_empty_lines(std::string_view head);

// Parses a request head: the request line and the header lines, separated by
// CRLF, without the blank line. Returns 0, or the status to answer with: 400
// for anything malformed, 505 for an HTTP major version other than 1.
// Content-Length must be digits, every copy the same; it saturates, so that a
// huge value ends as 413 (too large) rather than as a parse error.
int parse_head(std::string_view head, Request* req);

// "Connection: close" ends the connection after the response; without it an
// HTTP/1.1 connection stays open, an HTTP/1.0 one only with "keep-alive".
bool wants_keep_alive(const Request& req);

struct Target {
  std::string path;        // percent-decoded, starts with '/'
  std::string_view query;  // raw, with its '?', or empty
};

// Origin form ("/a/b?q") or absolute form ("http://host/a/b?q", which
// proxies send and servers must accept); nullopt for anything else,
// including a broken %-escape or an encoded NUL.
std::optional<Target> parse_target(std::string_view target);

// Decodes %XX escapes once (so "%252e" stays the name "%2e", never ".."):
// nullopt for a broken escape or a NUL byte, which no file name can hold.
std::optional<std::string> percent_decode(std::string_view s);
// Escapes everything but unreserved characters and '/' (for Location).
std::string percent_encode_path(std::string_view s);

// ASCII case-insensitive comparison (header names, tokens), and lower case.
bool iequals(std::string_view a, std::string_view b);
std::string ascii_lower(std::string_view s);
bool is_digit(char c);

// The methods of RFC 9110 and RFC 5789 (PATCH); methods are case-sensitive.
bool is_standard_method(std::string_view method);

// "OK", "Not Found"... for the statuses the server sends.
std::string_view reason_phrase(int status);

}  // namespace http

#endif  // ASYNCOREPP_EXAMPLES_HTTP_REQUEST_H_
