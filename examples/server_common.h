// What the example servers share: the flags (--host, --port, --backend,
// --help; bad flags print the usage to stderr and exit 2), a listening
// dispatcher, and the main() that runs a server until SIGINT/SIGTERM.
#ifndef ASYNCOREPP_EXAMPLES_SERVER_COMMON_H_
#define ASYNCOREPP_EXAMPLES_SERVER_COMMON_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "core/dispatcher.h"
#include "core/socket.h"

namespace examples {

struct ServerFlags {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string backend = "auto";
  // Program-specific flags: name (without "--") -> value; filled for the
  // names given to parse_server_flags as `extra`, with their defaults.
  std::map<std::string, std::string> extra;
};

// Parses argv. `extra` maps additional flag names to default values;
// `usage_extra` documents them. On --help prints usage to stdout and exits 0;
// on a bad flag, a bad port or an unavailable backend prints a message and
// the usage to stderr and exits 2.
ServerFlags parse_server_flags(int argc, char** argv, std::string_view summary,
                               std::map<std::string, std::string> extra = {},
                               std::string_view usage_extra = {});

// The address to listen on, or exit 2 with a message if the host is bad.
asyncore::Address listen_address(const ServerFlags& flags);

// "auto|epoll|poll|select": the --backend choices this OS offers.
std::string backend_choices();

// Prints "listening on HOST:PORT" to stdout and flushes (tests wait for it).
void announce_listening(const asyncore::Address& bound);

// A listening TCP dispatcher: socket, SO_REUSEADDR, bind, listen. Unlike
// Python's default handle_error(), which closes the listener and so stops
// the server, an accept() failure (EMFILE...) is logged and serving goes on.
class TcpListener : public asyncore::Dispatcher {
 public:
  // SOMAXCONN: a burst of connects must not wait for SYN retransmissions.
  explicit TcpListener(const asyncore::Address& address,
                       int backlog = SOMAXCONN);
  void handle_error() override;
};

// The body of a server's main(): ignores SIGPIPE, selects `backend`, creates
// the server with make_server(address), stops on SIGINT/SIGTERM, prints
// "listening on HOST:PORT" and runs the loop. Returns the exit status: 0
// after a signal, 1 (with "program: error" on stderr) if anything throws.
using ServerFactory = std::function<std::shared_ptr<asyncore::Dispatcher>(
    const asyncore::Address&)>;
int run_server(std::string_view program, std::string_view backend,
               const asyncore::Address& address,
               const ServerFactory& make_server);

}  // namespace examples

#endif  // ASYNCOREPP_EXAMPLES_SERVER_COMMON_H_
