// The HTTP/1.0 client from Python's asyncore documentation, as a tool:
// fetches one URL, writes the body to stdout (as it arrives) and, with -v,
// the status line and headers to stderr. Exit status 0 for a 2xx answer,
// 1 otherwise (redirects are not followed); 2 for bad usage.
//
//   bazel run //examples:http_client -- http://127.0.0.1:8080/index.html
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "core/asyncore.h"

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
  if (slash != std::string_view::npos) out->path = std::string(url.substr(slash));
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
    std::string host = address.family() == AF_INET6 ? "[" + url.host + "]" : url.host;
    if (url.port != 80) host += ":" + std::to_string(url.port);
    buffer_ = "GET " + url.path + " HTTP/1.0\r\nHost: " + host + "\r\n\r\n";
    create_socket(address.family(), SOCK_STREAM);
    connect(address);
  }

  void handle_connect() override {}

  void handle_close() override {
    if (!headers_done_) {
      std::cerr << "http_client: connection closed before a complete response\n";
    }
    close();
  }

  void handle_read() override {
    std::string data = recv(8192);
    if (headers_done_) {
      std::fwrite(data.data(), 1, data.size(), stdout);
      return;
    }
    head_ += data;
    size_t end = head_.find("\r\n\r\n");
    if (end == std::string::npos) return;
    headers_done_ = true;
    std::string head = head_.substr(0, end);
    parse_status(head);
    if (verbose_) std::cerr << head << "\n\n";
    std::fwrite(head_.data() + end + 4, 1, head_.size() - end - 4, stdout);
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

 private:
  void parse_status(const std::string& head) {
    // "HTTP/1.x NNN reason"
    if (head.compare(0, 5, "HTTP/") != 0) return;
    size_t space = head.find(' ');
    if (space == std::string::npos || head.size() < space + 4) return;
    std::string code = head.substr(space + 1, 3);
    char* end = nullptr;
    long value = std::strtol(code.c_str(), &end, 10);
    if (*end == '\0' && value >= 100 && value <= 999) status_ = static_cast<int>(value);
  }

  bool verbose_;
  std::string buffer_;
  std::string head_;
  bool headers_done_ = false;
  int status_ = 0;
};

const char kUsage[] =
    "usage: http_client [-v] [--backend NAME] URL\n"
    "\n"
    "Fetches http://HOST[:PORT]/PATH with HTTP/1.0 and writes the body to stdout.\n"
    "Exit status: 0 for a 2xx response, 1 otherwise, 2 for bad usage.\n"
    "\n"
    "options:\n"
    "  -v, --verbose     print the status line and headers to stderr\n"
    "  --backend NAME    event backend: auto|epoll|poll|select (default auto)\n"
    "  -h, --help        show this help and exit\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "http_client: " << message << "\n\n" << kUsage;
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  bool verbose = false;
  std::string backend = "auto", target;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
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
  if (!parse_url(target, &url)) usage_error("not an http:// URL: '" + target + "'");
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
    return client->status() >= 200 && client->status() < 300 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "http_client: " << e.what() << "\n";
    return 1;
  }
}
