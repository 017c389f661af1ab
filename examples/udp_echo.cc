// A UDP echo server: one SOCK_DGRAM dispatcher that sends every datagram
// back to where it came from.
//
//   bazel run //examples:udp_echo -- --port 9999

#include <cerrno>
#include <iostream>

#include "core/asyncore.h"
#include "examples/server_common.h"

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
      argc, argv, {.summary = "Echoes every UDP datagram back to its sender."});
  return examples::run_server("udp_echo", examples::run_options(flags),
                              examples::listen_address(flags),
                              [](const asyncore::Address& address) {
                                return asyncore::make<UdpEcho>(address);
                              });
}
