// What the example programs share: the flags (--host, --port, --backend,
// --help, and for servers --drain-seconds, --threads, --idle-timeout; bad
// flags print the usage to stderr and exit 2), a listening dispatcher, and
// the main() that runs a server until SIGINT/SIGTERM and then drains it.
#ifndef ASYNCOREPP_EXAMPLES_SERVER_COMMON_H_
#define ASYNCOREPP_EXAMPLES_SERVER_COMMON_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/dispatcher.h"
#include "core/socket.h"

namespace examples {

// What a program accepts besides --host, --port, --backend and --help.
struct FlagSpec {
  std::string_view summary;  // the --help text's first paragraph
  // Program-specific flags: name (without "--") -> default value, and
  // their lines for --help.
  std::map<std::string, std::string> extra = {};
  std::string_view usage_extra = {};
  bool server = true;    // --drain-seconds S (default 2)
  bool threads = false;  // --threads N (default 1)
  // --idle-timeout S with this default (0: off).
  std::optional<double> idle_timeout = std::nullopt;
};

struct ServerFlags {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string backend = "auto";
  int threads = 1;
  double drain_seconds = 2;
  double idle_timeout = 0;
  // FlagSpec::extra, with the values given.
  std::map<std::string, std::string> extra;
};

// Parses argv. On --help prints usage to stdout and exits 0; on a bad flag,
// a bad value or an unavailable backend prints a message and the usage to
// stderr and exits 2.
ServerFlags parse_server_flags(int argc, char** argv, const FlagSpec& spec);

// The address to listen on, or exit 2 with a message if the host is bad.
asyncore::Address listen_address(const ServerFlags& flags);

// "auto|epoll|poll|select": the --backend choices this OS offers.
std::string backend_choices();

// Prints "listening on HOST:PORT" to stdout and flushes (tests wait for it).
void announce_listening(const asyncore::Address& bound);

// A listening TCP dispatcher: socket, SO_REUSEADDR (and SO_REUSEPORT when
// run_server runs several loops), bind, listen. Unlike Python's default
// handle_error(), which closes the listener and so stops the server, an
// accept() failure (EMFILE...) is logged and serving goes on.
class TcpListener : public asyncore::Dispatcher {
 public:
  // SOMAXCONN: a burst of connects must not wait for SYN retransmissions.
  explicit TcpListener(const asyncore::Address& address,
                       int backlog = SOMAXCONN);
  // Accepts up to kAcceptBurst pending connections per readiness event.
  void handle_accept() override;
  void handle_error() override;
  static constexpr int kAcceptBurst = 64;
  // Connections accepted so far.
  long accepted() const { return accepted_; }

 private:
  long accepted_ = 0;
};

// How run_server runs the server.
struct RunOptions {
  std::string backend = "auto";
  int threads = 1;  // loops, one per thread, each with its own listener
  double drain_seconds = 2;
};
RunOptions run_options(const ServerFlags& flags);

// The body of a server's main(): ignores SIGPIPE; on each of `threads`
// threads selects the backend in that thread's socket_map() and creates the
// server with make_server(address) (with several threads the listeners
// share the port through SO_REUSEPORT, and port 0 becomes the first one's
// port); prints "listening on HOST:PORT" once all listen, and runs the
// loops. SIGINT/SIGTERM drain every loop (ChannelMap::drain: listeners close
// at once, output is flushed for up to drain_seconds), then the loops end.
// With several threads each loop prints "loop N accepted K connections" at
// the end. Returns the exit status: 0 after a signal, 1 (with "program:
// error" on stderr) if anything throws.
using ServerFactory = std::function<std::shared_ptr<asyncore::Dispatcher>(
    const asyncore::Address&)>;
int run_server(std::string_view program, const RunOptions& options,
               const asyncore::Address& address,
               const ServerFactory& make_server);

}  // namespace examples

#endif  // ASYNCOREPP_EXAMPLES_SERVER_COMMON_H_
