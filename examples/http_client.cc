// The HTTP/1.0 client from Python's asyncore documentation, as a tool:
// fetches one URL, writes the body to stdout (as it arrives) and, with -v,
// the status line and headers to stderr. Exit status 0 for a 2xx answer,
// 1 otherwise (redirects are not followed; a body cut short of its
// Content-Length is a failure too); 2 for bad usage.
//
//   bazel run //examples:http_client -- http://127.0.0.1:8080/index.html
#include <signal.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "core/asyncore.h"
#include "examples/server_common.h"

namespace {

struct Url {
  std::string host;
  uint16_t port = 80;
  std::string path = "/";
};

// http://host[:port][/path]; IPv6 hosts in brackets. False if malformed.
bool parse_url(std::string_view url, Url* out) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) return false;
  url.remove_prefix(kScheme.size());
  size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  if (slash != std::string_view::npos)
    out->path = std::string(url.substr(slash));
  size_t colon = authority.rfind(':');
  if (!authority.empty() && authority[0] == '[') {  // [::1]:8080
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    out->host = std::string(authority.substr(1, close - 1));
    colon = authority.size() > close + 1 && authority[close + 1] == ':'
                ? close + 1
                : std::string_view::npos;
  } else {
    out->host = std::string(authority.substr(0, colon));
  }
  if (colon != std::string_view::npos) {
    std::string port(authority.substr(colon + 1));
    char* end = nullptr;
    long p = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || p < 1 || p > 65535) return false;
    out->port = static_cast<uint16_t>(p);
  }
  return !out->host.empty();
}

class HttpClient : public asyncore::Dispatcher {
 public:
  HttpClient(const Url& url, bool verbose) : verbose_(verbose) {
    asyncore::Address address = asyncore::Address::inet(url.host, url.port);
    std::string host =
        address.family() == AF_INET6 ? "[" + url.host + "]" : url.host;
    if (url.port != 80) host += ":" + std::to_string(url.port);
    buffer_ = "GET " + url.path + " HTTP/1.0\r\nHost: " + host + "\r\n\r\n";
    create_socket(address.family(), SOCK_STREAM);
    connect(address);
  }

  void handle_connect() override {}

  void handle_close() override {
    if (!headers_done_) {
      std::cerr
          << "http_client: connection closed before a complete response\n";
    } else if (!complete()) {
      std::cerr << "http_client: connection closed after " << body_bytes_
                << " of " << content_length_ << " body bytes\n";
    }
    close();
  }

  void handle_read() override {
    std::string data = recv(8192);
    if (headers_done_) {
      std::fwrite(data.data(), 1, data.size(), stdout);
      body_bytes_ += data.size();
      return;
    }
    head_ += data;
    size_t end = head_.find("\r\n\r\n");
    if (end == std::string::npos) return;
    headers_done_ = true;
    std::string head = head_.substr(0, end);
    parse_status(head);
    parse_content_length(head);
    if (verbose_) std::cerr << head << "\n\n";
    std::fwrite(head_.data() + end + 4, 1, head_.size() - end - 4, stdout);
    body_bytes_ = head_.size() - end - 4;
    head_.clear();
  }

  bool writable() override { return !connected() || !buffer_.empty(); }

  void handle_write() override { buffer_.erase(0, send(buffer_)); }

  void handle_error() override {
    try {
      throw;
    } catch (const std::exception& e) {
      std::cerr << "http_client: " << e.what() << "\n";
    }
    close();
  }

  // The status code, 0 if no valid status line was seen.
  int status() const { return status_; }
  // False when a Content-Length promised more body than arrived.
  bool complete() const {
    return content_length_ < 0 || body_bytes_ >= content_length_;
  }

 private:
  void parse_status(const std::string& head) {
    // "HTTP/1.x NNN reason"
    if (head.compare(0, 5, "HTTP/") != 0) return;
    size_t space = head.find(' ');
    if (space == std::string::npos || head.size() < space + 4) return;
    std::string code = head.substr(space + 1, 3);
    char* end = nullptr;
    long value = std::strtol(code.c_str(), &end, 10);
    if (*end == '\0' && value >= 100 && value <= 999)
      status_ = static_cast<int>(value);
  }

  void parse_content_length(const std::string& head) {
    // "Content-Length: N" (the name in any case) on a line after the first.
    std::string lower = head;
    for (char& c : lower)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    constexpr std::string_view kName = "\r\ncontent-length:";
    size_t at = lower.find(kName);
    if (at == std::string::npos) return;
    const char* value = head.c_str() + at + kName.size();
    char* end = nullptr;
    long long n = std::strtoll(value, &end, 10);
    if (end != value && n >= 0 &&
        (*end == '\0' || *end == '\r' || *end == ' ')) {
      content_length_ = n;
    }
  }

  bool verbose_;
  std::string buffer_;
  std::string head_;
  bool headers_done_ = false;
  int status_ = 0;
  long long content_length_ = -1;  // -1: no Content-Length header
  long long body_bytes_ = 0;
};

std::string usage() {
  return std::string(
             "usage: http_client [-v] [--backend NAME] URL\n"
             "\n"
             "Fetches http://HOST[:PORT]/PATH with HTTP/1.0 and writes the "
             "body to stdout.\n"
             "Exit status: 0 for a 2xx response, 1 otherwise, 2 for bad "
             "usage.\n"
             "\n"
             "options:\n"
             "  -v, --verbose     print the status line and headers to "
             "stderr\n") +
         "  --backend NAME    event backend: " + examples::backend_choices() +
         " (default auto)\n" +
         std::string("  -h, --help        show this help and exit\n");
}

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "http_client: " << message << "\n\n" << usage();
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  bool verbose = false;
  std::string backend = "auto", target;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << usage();
      return 0;
    } else if (arg == "-v" || arg == "--verbose") {
      verbose = true;
    } else if (arg == "--backend" && i + 1 < argc) {
      backend = argv[++i];
    } else if (arg.rfind("--backend=", 0) == 0) {
      backend = arg.substr(10);
    } else if (arg[0] == '-' || !target.empty()) {
      usage_error("unexpected argument '" + arg + "'");
    } else {
      target = arg;
    }
  }
  Url url;
  if (target.empty()) usage_error("a URL is required");
  if (!parse_url(target, &url))
    usage_error("not an http:// URL: '" + target + "'");
  ::signal(SIGPIPE, SIG_IGN);
  try {
    try {
      asyncore::socket_map().set_backend(backend);
    } catch (const std::invalid_argument& e) {
      usage_error(e.what());
    }
    auto client = asyncore::make<HttpClient>(url, verbose);
    asyncore::loop({.timeout = std::nullopt});
    std::fflush(stdout);
    return client->status() >= 200 && client->status() < 300 &&
                   client->complete()
               ? 0
               : 1;
  } catch (const std::exception& e) {
    std::cerr << "http_client: " << e.what() << "\n";
    return 1;
  }
}
