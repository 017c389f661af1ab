// libFuzzer target for http_server's request parsing (examples/http_request.h):
// the input is the bytes a client sends on one connection. It is framed the
// way the server frames it (heads end at "\r\n\r\n", at most kMaxHeadBytes,
// then Content-Length bytes of body), and every head goes through
// parse_head, wants_keep_alive and parse_target, checking what the server
// relies on:
//   - parse_head answers 0, 400 or 505 and, on 0, a request whose method is
//     a token, whose header names are lower case and whose values hold no
//     CR, LF or NUL, and whose Content-Length is what the head says;
//   - a parsed target's path starts with '/', holds no NUL, and survives
//     percent_encode_path -> percent_decode unchanged (what a 301 Location
//     relies on).
// Seeds: examples/fuzz/http_corpus.py --write DIR. Run it with
// scripts/run_fuzzer.sh http_request SECONDS.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "examples/http_request.h"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "http_request_fuzzer: broken invariant: %s\n", what);
    std::abort();
  }
}

bool has_byte(std::string_view s, std::string_view bytes) {
  return s.find_first_of(bytes) != std::string_view::npos;
}

void check_request(const http::Request& req, std::string_view head) {
  check(!req.method.empty() && req.method.find(' ') == std::string::npos,
        "method is a token");
  check(!req.target.empty(), "target is not empty");
  check(req.minor_version >= 0 && req.minor_version <= 9, "minor version");
  for (const auto& [name, value] : req.headers) {
    check(!name.empty(), "header name not empty");
    for (char c : name) check(!(c >= 'A' && c <= 'Z'), "name is lower case");
    check(!has_byte(value, std::string_view("\r\n\0", 3)), "value bytes");
  }
  check(req.content_length == 0 || req.has("content-length"),
        "Content-Length comes from a header");
  check(head.find("\r\n\r\n") == std::string_view::npos, "one head");
  http::wants_keep_alive(req);
  if (auto target = http::parse_target(req.target)) {
    check(!target->path.empty() && target->path[0] == '/', "path has a /");
    check(target->path.find('\0') == std::string::npos, "path has no NUL");
    auto again = http::percent_decode(http::percent_encode_path(target->path));
    check(again && *again == target->path, "encode/decode round trip");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // At most this many requests per input: each costs at least 4 bytes.
  for (int requests = 0; requests < 1000 && !input.empty(); ++requests) {
    const size_t end = input.find(http::kHeadTerminator);
    // Incomplete: the server waits. Too long: 431, then the server closes.
    if (end == std::string_view::npos) return 0;
    if (end > http::kMaxHeadBytes) return 0;
    const std::string_view head = http::skip_empty_lines(input.substr(0, end));
    input.remove_prefix(end + http::kHeadTerminator.size());
    if (head.empty()) continue;
    http::Request req;
    const int status = http::parse_head(head, &req);
    check(status == 0 || status == 400 || status == 505, "status");
    if (status != 0) return 0;  // the server answers and closes
    check_request(req, head);
    if (req.content_length > input.size()) return 0;
    input.remove_prefix(static_cast<size_t>(req.content_length));
  }
  return 0;
}
