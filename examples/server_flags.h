// The flags every example server shares: --host, --port, --backend, --help.
// Bad flags print the usage to stderr and exit with status 2.
#ifndef ASYNCOREPP_EXAMPLES_SERVER_FLAGS_H_
#define ASYNCOREPP_EXAMPLES_SERVER_FLAGS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

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

}  // namespace examples

#endif  // ASYNCOREPP_EXAMPLES_SERVER_FLAGS_H_
