#include "examples/http_request.h"

#include <algorithm>
#include <cstdint>

namespace http {
namespace {

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

// Without the optional whitespace (spaces and tabs) around a field value.
std::string_view trim(std::string_view s) {
  const size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

// RFC 9110 token: methods and header names.
bool is_token(std::string_view s) {
  constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
    return is_digit(c) || (ascii_lower(c) >= 'a' && ascii_lower(c) <= 'z') ||
           kSymbols.find(c) != std::string_view::npos;
  });
}

// Field values may hold visible ASCII, spaces, tabs and non-ASCII bytes; any
// other control character (a bare CR or LF, NUL...) makes the request bad.
bool is_field_value(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

// The items of a comma-separated header list, trimmed, empty ones skipped.
std::vector<std::string_view> split_list(std::string_view value) {
  std::vector<std::string_view> items;
  while (!value.empty()) {
    const size_t comma = value.find(',');
    std::string_view item = trim(value.substr(0, comma));
    if (!item.empty()) items.push_back(item);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return items;
}

int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  c = ascii_lower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

}  // namespace

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_standard_method(std::string_view method) {
  for (std::string_view m : {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
                             "OPTIONS", "TRACE", "PATCH"}) {
    if (method == m) return true;
  }
  return false;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return std::nullopt;
    out += c;
  }
  return out;
}

std::string percent_encode_path(std::string_view s) {
  constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (is_digit(c) || (ascii_lower(c) >= 'a' && ascii_lower(c) <= 'z') ||
        std::string_view("-._~/").find(c) != std::string_view::npos) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 301:
      return "Moved Permanently";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 414:
      return "URI Too Long";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Internal Server Error";
  }
}

std::string_view skip_empty_lines(std::string_view head) {
  const size_t start = head.find_first_not_of("\r\n");
  return start == std::string_view::npos ? std::string_view()
                                         : head.substr(start);
}

std::vector<std::string_view> Request::values(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& [n, v] : headers) {
    if (n == name) out.push_back(v);
  }
  return out;
}

int parse_head(std::string_view head, Request* req) {
  std::vector<std::string_view> lines;
  for (size_t start = 0;;) {
    const size_t end = head.find("\r\n", start);
    lines.push_back(head.substr(start, end - start));
    if (end == std::string_view::npos) break;
    start = end + 2;
  }
  // Request line: method SP request-target SP HTTP-version, single spaces.
  const std::string_view line = lines[0];
  const size_t sp1 = line.find(' ');
  const size_t sp2 =
      sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return 400;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method) || target.empty() || !is_field_value(target))
    return 400;
  // "HTTP/" DIGIT "." DIGIT; the format is checked before the number.
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" ||
      !is_digit(version[5]) || version[6] != '.' || !is_digit(version[7])) {
    return 400;
  }
  req->method = method;
  req->target = target;
  req->minor_version = version[7] - '0';

  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view field = lines[i];
    const size_t colon = field.find(':');
    // No whitespace before the colon, no obsolete line folding (RFC 9112
    // section 5): both are how requests get smuggled past proxies.
    if (colon == std::string_view::npos || !is_token(field.substr(0, colon))) {
      return 400;
    }
    const std::string_view value = trim(field.substr(colon + 1));
    if (!is_field_value(value)) return 400;
    req->headers.emplace_back(ascii_lower(field.substr(0, colon)), value);
  }
  if (version[5] != '1') return 505;
  // HTTP/1.1 requires exactly one Host (RFC 9112 section 3.2).
  if (req->minor_version >= 1 && req->values("host").size() != 1) return 400;

  // Content-Length: digits, every copy the same; saturates so that a huge
  // value ends as 413 rather than as a parse error.
  std::optional<uint64_t> length;
  for (std::string_view v : req->values("content-length")) {
    const std::vector<std::string_view> items = split_list(v);
    if (items.empty()) return 400;
    for (std::string_view item : items) {
      uint64_t n = 0;
      for (char c : item) {
        if (!is_digit(c)) return 400;
        const uint64_t digit = c - '0';
        n = n > (UINT64_MAX - digit) / 10 ? UINT64_MAX : n * 10 + digit;
      }
      if (length && *length != n) return 400;
      length = n;
    }
  }
  req->content_length = length.value_or(0);
  return 0;
}

bool wants_keep_alive(const Request& req) {
  bool says_close = false;
  bool says_keep_alive = false;
  for (std::string_view v : req.values("connection")) {
    for (std::string_view option : split_list(v)) {
      says_close |= iequals(option, "close");
      says_keep_alive |= iequals(option, "keep-alive");
    }
  }
  return !says_close && (req.minor_version >= 1 || says_keep_alive);
}

std::optional<Target> parse_target(std::string_view target) {
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() > scheme.size() &&
        iequals(target.substr(0, scheme.size()), scheme)) {
      target.remove_prefix(scheme.size());
      const size_t slash = target.find('/');
      target = slash == std::string_view::npos ? "/" : target.substr(slash);
      break;
    }
  }
  if (target.empty() || target[0] != '/') return std::nullopt;
  const size_t question = target.find('?');
  Target out;
  if (question != std::string_view::npos) out.query = target.substr(question);
  std::optional<std::string> path = percent_decode(target.substr(0, question));
  if (!path) return std::nullopt;
  out.path = std::move(*path);
  return out;
}

}  // namespace http
