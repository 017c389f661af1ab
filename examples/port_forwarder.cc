// The classic asyncore port forwarder: every connection accepted on the
// local address is relayed, byte for byte, to a new connection to the
// remote address (a Receiver for the client's side, a Sender for the
// remote's, as in the classic script).
//
// Beyond the classic script: half-closes are propagated (EOF on one side
// becomes shutdown(SHUT_WR) on the other once everything before it was
// written), a side that closes or fails closes the other after its pending
// output is flushed, and reading from a side stops while the other side has
// more than kHighWater bytes waiting (backpressure, bounded memory).
//
//   bazel run //examples:port_forwarder -- -p 9000 -r 127.0.0.1 -P 8080
#include <sys/socket.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "core/asyncore.h"
#include "core/byte_buffer.h"
#include "examples/server_common.h"

namespace {

constexpr size_t kReadChunk = 65536;
constexpr size_t kHighWater = 256 * 1024;

// One side of a relayed connection; its peer is the other side.
class Endpoint : public asyncore::Dispatcher {
 public:
  using Dispatcher::Dispatcher;

  void pair_with(Endpoint* peer) { peer_ = peer; }

  bool readable() override {
    return connected() && !read_eof_ && peer_ != nullptr &&
           peer_->out_.size() < kHighWater;
  }

  bool writable() override {
    return !connected() || !out_.empty() ||
           (shutdown_pending_ && !write_shut_) || close_when_flushed_;
  }

  void handle_read() override { relay_some(); }

  void handle_write() override { flush(); }

  // Hang-up, reset or a failed send: keep what can still be read, let the
  // other side flush it, and go.
  void handle_close() override {
    while (!read_eof_ && peer_ != nullptr && relay_some()) {
    }
    close();
  }

  void handle_error() override {
    try {
      throw;
    } catch (const std::exception& e) {
      log_info(std::string("connection failed: ") + e.what(), "error");
    }
    close();
  }

  void close() override {
    if (Endpoint* peer = std::exchange(peer_, nullptr)) peer->peer_closed();
    Dispatcher::close();
  }

 private:
  // Reads one chunk into the peer's output. False when nothing more will
  // come now (would block, EOF or error).
  bool relay_some() {
    ssize_t n = socket().recv_some(peer_->out_.prepare(kReadChunk), kReadChunk);
    if (n > 0) {
      peer_->out_.commit(static_cast<size_t>(n));
      peer_->flush();
      return peer_ != nullptr;
    }
    if (n == 0) {
      read_eof_ = true;
      peer_->shutdown_when_flushed();
      finish_if_done();
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      read_eof_ = true;  // a reset: nothing more will be read
      close();
    }
    return false;
  }

  // Writes what it can; then carries out a pending shutdown or close.
  void flush() {
    if (!connected()) return;
    if (!out_.empty()) out_.consume(send(out_.view()));
    if (!out_.empty() || registered_map() == nullptr) return;
    if (close_when_flushed_) {
      close();
    } else if (shutdown_pending_ && !write_shut_) {
      ::shutdown(socket().fileno(), SHUT_WR);
      write_shut_ = true;
      finish_if_done();
    }
  }

  void shutdown_when_flushed() {
    shutdown_pending_ = true;
    flush();
  }

  void peer_closed() {
    peer_ = nullptr;
    close_when_flushed_ = true;
    flush();
    if (!connected()) close();  // never connected: nothing to flush to
  }

  // Both directions finished: the connection is done.
  void finish_if_done() {
    if (read_eof_ && write_shut_) close();
  }

  Endpoint* peer_ = nullptr;
  asyncore::ByteBuffer out_;  // bytes from the peer, to write to this socket
  bool read_eof_ = false;
  bool shutdown_pending_ = false;
  bool write_shut_ = false;
  bool close_when_flushed_ = false;
};

// The client's side: an accepted connection.
class Receiver : public Endpoint {
 public:
  explicit Receiver(asyncore::Socket sock) : Endpoint(std::move(sock)) {}
};

// The remote's side: connects, then relays.
class Sender : public Endpoint {
 public:
  explicit Sender(const asyncore::Address& remote) {
    create_socket(remote.family(), SOCK_STREAM);
    connect(remote);
  }
  void handle_connect() override {}
};

class Forwarder : public examples::TcpListener {
 public:
  Forwarder(const asyncore::Address& local, asyncore::Address remote)
      : TcpListener(local), remote_(std::move(remote)) {}

  void handle_accepted(asyncore::Socket sock,
                       const asyncore::Address&) override {
    auto receiver = asyncore::make<Receiver>(std::move(sock));
    // A client that reset before we accepted it has no peer (getpeername
    // fails, so connected() is false): it would never be read, nor closed
    // by the select backend, which reports no hang-ups.
    if (!receiver->connected()) {
      receiver->close();
      return;
    }
    std::shared_ptr<Sender> sender;
    try {
      sender = asyncore::make<Sender>(remote_);
    } catch (const std::exception& e) {
      log_info(std::string("cannot reach remote: ") + e.what(), "error");
      receiver->close();
      return;
    }
    receiver->pair_with(sender.get());
    sender->pair_with(receiver.get());
  }

 private:
  asyncore::Address remote_;
};

struct Flags {
  std::string local_ip = "127.0.0.1";
  std::string local_port = "0";
  std::string remote_ip = "127.0.0.1";
  std::string remote_port;
  std::string backend = "auto";
  std::string drain_seconds;
};

std::string usage() {
  return std::string(
             "usage: port_forwarder [-l LOCAL_IP] [-p LOCAL_PORT] [-r "
             "REMOTE_IP] -P REMOTE_PORT\n"
             "                      [--backend NAME]\n"
             "\n"
             "Relays every connection made to the local address to the remote "
             "address.\n"
             "\n"
             "options:\n"
             "  -l, --local-ip IP      address to listen on (default "
             "127.0.0.1)\n"
             "  -p, --local-port PORT  port to listen on, 0 picks a free one "
             "(default 0)\n"
             "  -r, --remote-ip IP     address to forward to (default "
             "127.0.0.1)\n"
             "  -P, --remote-port PORT port to forward to (required)\n") +
         "  --backend NAME         event backend: " +
         examples::backend_choices() + " (default auto)\n" +
         "  --drain-seconds S      on SIGINT/SIGTERM, stop accepting and let "
         "output\n"
         "                         flush for up to S seconds (default 2)\n" +
         std::string("  -h, --help             show this help and exit\n");
}

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "port_forwarder: " << message << "\n\n" << usage();
  std::exit(2);
}

uint16_t parse_port(const std::string& text, const char* what) {
  char* end = nullptr;
  long port = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || port < 0 || port > 65535) {
    usage_error(std::string("bad ") + what + " '" + text + "' (0-65535)");
  }
  return static_cast<uint16_t>(port);
}

Flags parse_flags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << usage();
      std::exit(0);
    }
    std::string value;
    if (auto eq = arg.find('=');
        arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      usage_error("option " + arg + " needs a value");
    }
    if (arg == "-l" || arg == "--local-ip") {
      flags.local_ip = value;
    } else if (arg == "-p" || arg == "--local-port") {
      flags.local_port = value;
    } else if (arg == "-r" || arg == "--remote-ip") {
      flags.remote_ip = value;
    } else if (arg == "-P" || arg == "--remote-port") {
      flags.remote_port = value;
    } else if (arg == "--backend") {
      flags.backend = value;
    } else if (arg == "--drain-seconds") {
      flags.drain_seconds = value;
    } else {
      usage_error("unknown option " + arg);
    }
  }
  if (flags.remote_port.empty()) usage_error("-P/--remote-port is required");
  return flags;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags = parse_flags(argc, argv);
  uint16_t local_port = parse_port(flags.local_port, "local port");
  uint16_t remote_port = parse_port(flags.remote_port, "remote port");
  bool known = flags.backend == "auto";
  for (const std::string& b : asyncore::available_backends())
    known |= b == flags.backend;
  if (!known)
    usage_error("backend '" + flags.backend + "' is not available here");
  asyncore::Address local, remote;
  try {
    local = asyncore::Address::inet(flags.local_ip, local_port);
    remote = asyncore::Address::inet(flags.remote_ip, remote_port);
  } catch (const std::invalid_argument& e) {
    usage_error(e.what());
  }
  double drain_seconds = 2;
  if (!flags.drain_seconds.empty()) {
    char* end = nullptr;
    drain_seconds = std::strtod(flags.drain_seconds.c_str(), &end);
    if (*end != '\0' || !(drain_seconds >= 0) || drain_seconds > 1e9) {
      usage_error("bad --drain-seconds '" + flags.drain_seconds + "'");
    }
  }
  return examples::run_server(
      "port_forwarder",
      {.backend = flags.backend, .drain_seconds = drain_seconds}, local,
      [&remote](const asyncore::Address& address) {
        return asyncore::make<Forwarder>(address, remote);
      });
}
