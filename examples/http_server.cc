// An HTTP/1.1 file server on asynchat, grown from the request handler in
// Python's asynchat documentation: the terminator is "\r\n\r\n" while a
// request head is read, then the Content-Length of the body (an integer
// terminator), then "\r\n\r\n" again for the next request.
//
//   GET/HEAD /path  a file under --root (default: the current directory). A
//                   directory serves its index.html, or 403 without one (no
//                   listings); "/dir" redirects to "/dir/" so that relative
//                   links in its index.html work in a browser.
//   POST /echo      answers with the request body.
//
// HTTP/1.1 connections stay open (keep-alive) and may pipeline requests: the
// responses go out in request order. HTTP/1.0 closes after each response
// unless the request says "Connection: keep-alive"; "Connection: close" is
// honoured in both. Errors: 400 a malformed request line, header or target;
// 403 a path outside the root (after percent-decoding, once; symlinks that
// lead out count too) or a non-regular file; 404; 405 another standard
// method, 501 an unknown one; 408 a request head not received within
// --idle-timeout; 411 a POST without Content-Length (chunked request bodies
// are not supported); 413 a body over --max-body; 414 a request line over
// 8 KiB, 431 a request head over 8 KiB; 503 a file that cannot be opened now
// (out of descriptors); 505 an HTTP major version other than 1 (HTTP/1.x
// with x > 1 is served as HTTP/1.1, RFC 9110 section 6.2). Errors after
// which the input can no longer be split
// into requests close the connection once the response is sent. A request
// with "Expect: 100-continue" gets "100 Continue" before its body is read.
//
// Timeouts (--idle-timeout S, default 30): a connection that moves no byte
// for S seconds is closed; a request head must arrive whole within S of its
// first byte, or the answer is 408 (slowloris). SIGINT/SIGTERM stop
// accepting and let queued responses finish for --drain-seconds.
//
// (bazel run starts in the runfiles directory: pass --root.)
//   bazel run //examples:http_server -- --port 8080 --root /srv/www
//   curl -v http://127.0.0.1:8080/index.html
//   curl --data-binary @notes.txt http://127.0.0.1:8080/echo
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/async_chat.h"
#include "core/asyncore.h"
#include "examples/http_request.h"
#include "examples/server_common.h"

namespace {

namespace fs = std::filesystem;

using http::iequals;
using http::Request;
using http::Target;
constexpr uint64_t kDefaultMaxBody = 1 << 20;
// --idle-timeout: a connection that moves no byte either way this long is
// closed, and a request head must arrive whole this long after its first
// byte (a slowloris client sending one byte every few seconds is never idle).
constexpr double kDefaultIdleTimeout = 30;
// How long a closing connection waits for the client's FIN (see
// handle_close) before closing anyway.
constexpr double kLingerSeconds = 5;
// Bytes read from a file per FileProducer::more(): one AsyncChat send.
constexpr size_t kFileChunk = 64 * 1024;
// A client that sends requests but does not read the responses must not grow
// the server's memory: above this much queued output the handler stops
// reading (AsyncChat's back-pressure). Pipelined requests already read are
// still answered; each read is at most ac_in_buffer_size bytes, so what one
// read can queue is bounded too.
constexpr size_t kMaxQueued = 256 * 1024;

struct Config {
  fs::path root;  // canonical
  uint64_t max_body = kDefaultMaxBody;
  double idle_timeout = kDefaultIdleTimeout;  // 0: none
};

std::string_view content_type(const fs::path& file) {
  struct Type {
    std::string_view extension;
    std::string_view type;
  };
  static constexpr Type kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
      {".md", "text/markdown; charset=utf-8"},
      {".csv", "text/csv; charset=utf-8"},
      {".xml", "application/xml"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".webp", "image/webp"},
      {".ico", "image/x-icon"},
      {".pdf", "application/pdf"},
      {".wasm", "application/wasm"},
      {".woff", "font/woff"},
      {".woff2", "font/woff2"},
      {".mp4", "video/mp4"},
      {".webm", "video/webm"},
      {".mp3", "audio/mpeg"},
      {".zip", "application/zip"},
      {".gz", "application/gzip"},
  };
  const std::string extension = http::ascii_lower(file.extension().string());
  for (const Type& t : kTypes) {
    if (t.extension == extension) return t.type;
  }
  return "application/octet-stream";
}

// RFC 9110 IMF-fixdate; strftime's day and month names are the "C" locale's
// because the program never calls setlocale().
std::string http_date() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[40];
  const size_t n =
      std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

// --- Files ------------------------------------------------------------------

// What a GET or HEAD target maps to under the root.
struct Resource {
  int status = 404;      // 200, 301, 403 or 404
  fs::path file;         // 200: the file, canonical
  uint64_t size = 0;     // 200: its length
  std::string location;  // 301: the directory's URL, with its slash
};

Resource with_status(int status) {
  Resource r;
  r.status = status;
  return r;
}

bool is_within(const fs::path& path, const fs::path& root) {
  return std::mismatch(root.begin(), root.end(), path.begin(), path.end())
             .first == root.end();
}

// The canonical file for `path` (which must exist), or 403 when it, or a
// symlink on the way, leads out of the root.
Resource check_file(const fs::path& path, const fs::path& root) {
  std::error_code ec;
  Resource r;
  r.file = fs::canonical(path, ec);
  if (ec) {
    const bool missing = ec == std::errc::no_such_file_or_directory ||
                         ec == std::errc::not_a_directory;
    r.status = missing ? 404 : 403;
    return r;
  }
  if (!is_within(r.file, root)) {
    r.status = 403;
    return r;
  }
  struct stat st {};
  if (::stat(r.file.c_str(), &st) != 0) {
    r.status = 404;
  } else if (S_ISREG(st.st_mode)) {
    r.status = 200;
    r.size = static_cast<uint64_t>(st.st_size);
  } else {
    r.status = 403;  // directories are handled by resolve(); FIFOs, devices...
  }
  return r;
}

// Maps a decoded URL path to a file. ".." is resolved on the text first (a
// path climbing above the root is refused before touching the file system),
// then the result is canonicalised so that symlinks cannot lead out either.
// The file is opened later (FileProducer), so a symlink swapped in between
// could still escape; openat2(RESOLVE_BENEATH) would close that window.
Resource resolve(const fs::path& root, const Target& target) {
  std::vector<std::string_view> segments;
  std::string_view rest = target.path;
  while (!rest.empty()) {
    const size_t slash = rest.find('/');
    const std::string_view segment = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view()
                                           : rest.substr(slash + 1);
    if (segment.empty() || segment == ".") continue;
    if (segment != "..") {
      segments.push_back(segment);
    } else if (segments.empty()) {
      return with_status(403);
    } else {
      segments.pop_back();
    }
  }
  fs::path path = root;
  std::string normalised;  // the URL path again, for a redirect
  for (std::string_view segment : segments) {
    path /= segment;
    normalised += "/";
    normalised += segment;
  }
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    // "/file.html/" names a directory that is not there.
    return target.path.back() == '/' ? with_status(404)
                                     : check_file(path, root);
  }
  // A directory: first make sure it is one of ours.
  const fs::path dir = fs::canonical(path, ec);
  if (ec || !is_within(dir, root)) return with_status(ec ? 404 : 403);
  if (target.path.back() != '/') {
    Resource redirect = with_status(301);
    redirect.location =
        http::percent_encode_path(normalised + "/") + std::string(target.query);
    return redirect;
  }
  Resource index = check_file(dir / "index.html", root);
  if (index.status == 404) index.status = 403;  // no listings
  return index;
}

// Sends a response head and then `length` bytes of a file, kFileChunk per
// more(), so that a large file never sits in memory. The head goes out with
// the first chunk: one send, and no small segment for Nagle to hold back.
// The file is opened by the first more(), when the response reaches the head
// of the output queue: a burst of pipelined requests then holds one
// descriptor per connection, not one per request. If the file no longer has
// the bytes announced in Content-Length (removed or truncated since), the
// response cannot be completed and `abort` is called; it closes the
// connection, the only way left to tell the client (nginx does the same).
class FileProducer : public asynchat::Producer {
 public:
  // `unavailable` is called (with the errno) when the file cannot be opened
  // and returns the response to send instead (nothing was sent yet).
  FileProducer(std::string head, fs::path file, uint64_t length,
               std::function<void()> abort,
               std::function<std::string(int)> unavailable)
      : head_(std::move(head)),
        file_(std::move(file)),
        remaining_(length),
        abort_(std::move(abort)),
        unavailable_(std::move(unavailable)) {}

  std::string more() override {
    if (!fd_.is_open() && remaining_ > 0 && !head_.empty()) {
      // O_NONBLOCK: a FIFO swapped in since the check must not block the loop.
      fd_ = asyncore::Socket(
          ::open(file_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
      if (!fd_.is_open()) {
        // Out of descriptors (EMFILE) or gone: the head is not sent yet, so
        // the client can still be told.
        const int err = errno;
        remaining_ = 0;
        head_.clear();
        return unavailable_(err);
      }
    }
    std::string chunk = std::exchange(head_, {});
    if (remaining_ == 0) return chunk;
    const size_t start = chunk.size();
    chunk.resize(start + std::min<uint64_t>(kFileChunk, remaining_));
    ssize_t n = -1;
    if (fd_.is_open()) {
      do {
        n = ::pread(fd_.fileno(), chunk.data() + start, chunk.size() - start,
                    static_cast<off_t>(offset_));
      } while (n < 0 && errno == EINTR);
    }
    if (n <= 0) {
      remaining_ = 0;
      fd_ = asyncore::Socket();
      abort_();
      return {};
    }
    chunk.resize(start + static_cast<size_t>(n));
    offset_ += static_cast<uint64_t>(n);
    remaining_ -= static_cast<uint64_t>(n);
    if (remaining_ == 0) fd_ = asyncore::Socket();  // done: release the fd now
    return chunk;
  }

 private:
  std::string head_;  // sent with the first chunk
  fs::path file_;
  asyncore::Socket fd_;  // Socket owns any descriptor, a file's too
  uint64_t offset_ = 0;
  uint64_t remaining_;
  std::function<void()> abort_;
  std::function<std::string(int)> unavailable_;
};

// --- The server -------------------------------------------------------------

class HttpHandler : public asynchat::AsyncChat {
 public:
  HttpHandler(asyncore::Socket sock, const Config* config)
      : AsyncChat(std::move(sock)), config_(config) {
    set_terminator(http::kHeadTerminator);
    // Responses are written as soon as they are ready: a head then a body,
    // several pipelined answers. Under Nagle's algorithm each small write
    // after the first waits for the client's delayed ACK, ~40 ms a response.
    // A failure only costs speed, so it is ignored.
    const int on = 1;
    ::setsockopt(socket().fileno(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    set_output_limit(kMaxQueued, kMaxQueued / 4);
    // A response being downloaded is activity too.
    set_idle_timeout(config_->idle_timeout, IdleMeasure::kTraffic);
  }

  void collect_incoming_data(std::string_view data) override {
    switch (state_) {
      case State::kHead:
        // (Records buffered behind one that closed the connection still
        // arrive, spec S23: no timer for a closed channel.)
        if (head_.empty() && config_->idle_timeout > 0 &&
            registered_map() != nullptr) {
          head_timer_ = registered_map()->call_later(
              config_->idle_timeout,
              [this] { fail(408, "request head not received in time\n"); });
        }
        if (head_.size() + data.size() > http::kMaxHeadBytes) {
          // The request line alone too long is 414 (RFC 9112 section 3).
          size_t line_end = head_.find("\r\n");
          if (line_end == std::string::npos) {
            const size_t in_data = data.find("\r\n");
            line_end = in_data == std::string_view::npos
                           ? std::string::npos
                           : head_.size() + in_data;
          }
          if (line_end <= http::kMaxHeadBytes) {
            fail(431, "request header fields too large\n");
          } else {
            fail(414, "request target too long\n");
          }
          return;
        }
        head_.append(data);
        return;
      case State::kBody:
        request_.body.append(data);
        return;
      case State::kDone:
        return;  // input after the last response: dropped
    }
  }

  void found_terminator() override {
    if (state_ == State::kHead) {
      head_timer_.cancel();
      start_request();
    } else if (state_ == State::kBody) {
      state_ = State::kHead;
      set_terminator(http::kHeadTerminator);
      respond();
    }
  }

  // Every end of a connection arrives here: a reset seen by recv or send,
  // HUP/ERR from the poller, the client's EOF once AsyncChat has sent the
  // responses still queued (drain_on_eof), and the close_when_done() marker.
  void handle_close() override {
    if (close_queued_ && queued_entries() == 0 && !reading_stopped() &&
        !lingering_) {
      // The marker after the last response. Closing now, with request bytes
      // still unread (an oversized body, say), would send a RST that can
      // destroy the response before the client reads it. Send FIN instead
      // and close when the client does, dropping what it still sends.
      lingering_ = true;
      ::shutdown(socket().fileno(), SHUT_WR);
      linger_timer_ =
          registered_map()->call_later(kLingerSeconds, [this] { close(); });
      return;
    }
    close();
  }

  void close() override {
    head_timer_.cancel();
    linger_timer_.cancel();
    AsyncChat::close();
  }

  // Their callbacks point here: a map cleared without closing must not
  // call them.
  ~HttpHandler() override {
    head_timer_.cancel();
    linger_timer_.cancel();
  }

  // Idle with half a request head: the answer is 408, as for a slow head.
  void handle_idle_timeout() override {
    if (state_ == State::kHead && !head_.empty()) {
      fail(408, "request head not received in time\n");
      return;
    }
    AsyncChat::handle_idle_timeout();
  }

  // A bug or an unexpected error (bad_alloc...) on one connection must not
  // stop the server: log it, drop the connection.
  void handle_error() override {
    try {
      throw;
    } catch (const std::exception& e) {
      log_info(std::string("closing connection: ") + e.what(), "error");
    } catch (...) {
      log_info("closing connection: unknown exception", "error");
    }
    close();
  }

 private:
  enum class State {
    kHead,  // reading a request line and headers, up to "\r\n\r\n"
    kBody,  // reading Content-Length bytes of body
    kDone,  // the connection ends after the queued output; input is dropped
  };

  void start_request() {
    const std::string head = std::exchange(head_, {});
    const std::string_view request_head = http::skip_empty_lines(head);
    if (request_head.empty()) return;
    request_ = Request{};
    keep_alive_ = false;  // until the request is known to be well-formed
    if (int status = http::parse_head(request_head, &request_)) {
      return fail(status, status == 505 ? "HTTP version not supported\n"
                                        : "malformed request\n");
    }
    keep_alive_ = http::wants_keep_alive(request_);
    // Without Content-Length the body cannot be delimited: refuse, and close
    // since the bytes that follow may be that body.
    if (request_.has("transfer-encoding")) {
      return fail(
          411,
          "chunked request bodies are not supported: send Content-Length\n");
    }
    if (request_.method == "POST" && !request_.has("content-length")) {
      return fail(411, "POST needs a Content-Length\n");
    }
    if (request_.content_length > config_->max_body) {
      return fail(413, "request body larger than " +
                           std::to_string(config_->max_body) + " bytes\n");
    }
    if (request_.content_length == 0) return respond();
    // curl, for one, waits for this before sending a large body.
    for (std::string_view expect : request_.values("expect")) {
      if (iequals(expect, "100-continue") && request_.minor_version >= 1) {
        push("HTTP/1.1 100 Continue\r\n\r\n");
      }
    }
    state_ = State::kBody;
    set_terminator(request_.content_length);
  }

  void respond() {
    const std::string& method = request_.method;
    if (method != "GET" && method != "HEAD" && method != "POST") {
      // RFC 9110 section 15.5.6 / 15.6.2: a method this server knows of
      // (but does not allow) is 405, an unknown one (methods are case
      // sensitive: "get" too) is 501.
      if (!http::is_standard_method(method)) {
        return send_text(501, "method not implemented\n");
      }
      return send_text(405, "method not allowed\n",
                       "Allow: GET, HEAD, POST\r\n");
    }
    std::optional<Target> target = http::parse_target(request_.target);
    if (!target) return send_text(400, "bad request target\n");
    if (method == "POST") {
      if (target->path != "/echo") {
        return send_text(405, "only /echo accepts POST\n",
                         "Allow: GET, HEAD\r\n");
      }
      return echo();
    }
    Resource resource = resolve(config_->root, *target);
    switch (resource.status) {
      case 200:
        return send_file(resource);
      case 301:
        return send_text(301, "moved to " + resource.location + "\n",
                         "Location: " + resource.location + "\r\n");
      case 403:
        return send_text(403, "forbidden\n");
      default:
        return send_text(404, "not found\n");
    }
  }

  void send_file(const Resource& resource) {
    std::string head =
        response_head(200, resource.size, content_type(resource.file));
    if (request_.method == "HEAD") {
      push(std::move(head));
    } else {
      push_with_producer(std::make_unique<FileProducer>(
          std::move(head), resource.file, resource.size,
          [this] { abort_response(); },
          [this, file = resource.file](int err) {
            return file_unavailable(file, err);
          }));
    }
    end_response();
  }

  void echo() {
    std::vector<std::string_view> types = request_.values("content-type");
    std::string type(types.empty() ? "application/octet-stream"
                                   : types.front());
    push(response_head(200, request_.body.size(), type));
    push(std::move(request_.body));
    end_response();
  }

  // A short text/plain response; a HEAD request gets the headers only.
  void send_text(int status, std::string_view text,
                 std::string_view extra_headers = {}) {
    std::string out = response_head(status, text.size(),
                                    "text/plain; charset=utf-8", extra_headers);
    if (request_.method != "HEAD") out += text;
    push(std::move(out));
    end_response();
  }

  // An error after which the input cannot be trusted to hold whole requests:
  // answer, then close.
  void fail(int status, std::string_view text) {
    keep_alive_ = false;
    send_text(status, text);
  }

  std::string response_head(int status, uint64_t length, std::string_view type,
                            std::string_view extra_headers = {}) const {
    std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
    out += http::reason_phrase(status);
    out +=
        "\r\nDate: " + http_date() + "\r\nServer: asyncore++\r\nContent-Type: ";
    out += type;
    out += "\r\nContent-Length: " + std::to_string(length) + "\r\n";
    out += extra_headers;
    if (!keep_alive_) {
      out += "Connection: close\r\n";
    } else if (request_.minor_version == 0) {
      out += "Connection: keep-alive\r\n";  // HTTP/1.0 needs it spelt out
    }
    out += "\r\n";
    return out;
  }

  void end_response() {
    request_ = Request{};
    if (!keep_alive_) {
      stop_parsing();
      queue_close();
    }
  }

  // Requests already buffered behind this one are dropped, not answered.
  void stop_parsing() {
    state_ = State::kDone;
    set_terminator(nullptr);
  }

  void queue_close() {
    close_queued_ = true;
    close_when_done();
  }

  // Called by a FileProducer that cannot deliver what its headers promised.
  // It runs inside AsyncChat::initiate_send(), which stops sending once the
  // channel is closed; the queue is left alone until the handler goes away.
  // A complete 503 in place of a file that could not be opened (EMFILE...);
  // the connection goes on (a close the request asked for is queued behind
  // it already), so the pipelined responses after it stay in order.
  std::string file_unavailable(const fs::path& file, int err) {
    log_info("cannot open " + file.string() + ": " + asyncore::strerror(err) +
                 "; answered 503",
             "error");
    const std::string text = "file temporarily unavailable\n";
    return "HTTP/1.1 503 " + std::string(http::reason_phrase(503)) +
           "\r\nDate: " + http_date() +
           "\r\nServer: asyncore++\r\nContent-Type: text/plain; "
           "charset=utf-8\r\nContent-Length: " +
           std::to_string(text.size()) + "\r\nRetry-After: 1\r\n\r\n" + text;
  }

  void abort_response() {
    log_info("file changed while being sent; closing connection", "error");
    stop_parsing();
    close();
  }

  const Config* config_;
  State state_ = State::kHead;
  std::string head_;  // the request head read so far
  Request request_;   // the request being read or answered
  bool keep_alive_ = false;
  bool close_queued_ = false;           // close_when_done() called
  bool lingering_ = false;              // FIN sent, waiting for the client's
  asyncore::TimerHandle head_timer_;    // a request head must come in time
  asyncore::TimerHandle linger_timer_;  // bounds the wait for the FIN
};

class HttpServer : public examples::TcpListener {
 public:
  HttpServer(const asyncore::Address& address, Config config)
      : TcpListener(address), config_(std::move(config)) {}

  void handle_accepted(asyncore::Socket sock,
                       const asyncore::Address&) override {
    asyncore::make<HttpHandler>(std::move(sock), &config_);
  }

 private:
  Config config_;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "http_server: " << message << "\n";
  std::exit(2);
}

Config parse_config(const examples::ServerFlags& flags) {
  Config config;
  const std::string& root = flags.extra.at("root");
  std::error_code ec;
  config.root = fs::canonical(root, ec);
  if (ec || !fs::is_directory(config.root, ec)) {
    usage_error("--root " + root + ": not a directory");
  }
  const std::string& max_body = flags.extra.at("max-body");
  char* end = nullptr;
  errno = 0;
  config.max_body = std::strtoull(max_body.c_str(), &end, 10);
  config.idle_timeout = flags.idle_timeout;
  if (max_body.empty() || !http::is_digit(max_body[0]) || *end != '\0' ||
      errno == ERANGE) {
    usage_error("--max-body " + max_body + ": not a byte count");
  }
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = examples::parse_server_flags(
      argc, argv,
      {.summary = "Serves the files under --root over HTTP/1.1 (GET, HEAD) "
                  "and answers POST /echo with the request body.",
       .extra = {{"root", "."}, {"max-body", std::to_string(kDefaultMaxBody)}},
       .usage_extra =
           "  --root DIR       directory to serve (default: the current "
           "directory)\n"
           "  --max-body N     largest request body in bytes (default "
           "1048576)\n",
       .threads = true,
       .idle_timeout = kDefaultIdleTimeout});
  const Config config = parse_config(flags);
  return examples::run_server("http_server", examples::run_options(flags),
                              examples::listen_address(flags),
                              [&config](const asyncore::Address& address) {
                                return asyncore::make<HttpServer>(
                                    address, config);  // one per loop
                              });
}
