// A UDP echo server: one SOCK_DGRAM dispatcher that sends every datagram
// back to where it came from.
//
//   bazel run //examples:udp_echo -- --port 9999
#include <signal.h>

#include <cerrno>
#include <iostream>

#include "core/asyncore.h"
#include "examples/server_flags.h"

namespace {

class UdpEcho : public asyncore::Dispatcher {
 public:
  explicit UdpEcho(const asyncore::Address& address) {
    create_socket(address.family(), SOCK_DGRAM);
    set_reuse_addr();
    bind(address);
  }

  void handle_read() override {
    char buf[65536];
    asyncore::Address from;
    ssize_t n = socket().recvfrom(buf, sizeof buf, &from);
    if (n < 0) return;  // EAGAIN, or an ICMP error for an earlier reply
    // A full send buffer drops the reply, as UDP may.
    socket().sendto(std::string_view(buf, static_cast<size_t>(n)), from);
  }

  bool writable() override { return false; }
};

}  // namespace

int main(int argc, char** argv) {
  auto flags = examples::parse_server_flags(
      argc, argv, "Echoes every UDP datagram back to its sender.");
  try {
    asyncore::socket_map().set_backend(flags.backend);
    auto server = asyncore::make<UdpEcho>(examples::listen_address(flags));
    asyncore::make<asyncore::SignalDispatcher>(std::vector<int>{SIGINT, SIGTERM});
    examples::announce_listening(server->socket().getsockname());
    asyncore::loop({.timeout = std::nullopt});
  } catch (const std::exception& e) {
    std::cerr << "udp_echo: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
