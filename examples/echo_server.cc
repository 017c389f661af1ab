// The echo server from Python's asyncore documentation: an accepting
// dispatcher whose handle_accepted() makes one EchoHandler per connection.
//
//   bazel run //examples:echo_server -- --port 8080
//   printf 'hello\n' | nc -q1 127.0.0.1 8080
#include <signal.h>

#include <cstdio>
#include <iostream>

#include "core/asyncore.h"
#include "examples/server_flags.h"

class EchoHandler : public asyncore::DispatcherWithSend {
 public:
  using DispatcherWithSend::DispatcherWithSend;

  void handle_read() override {
    std::string data = recv(8192);
    if (!data.empty()) send(data);
  }
};

class EchoServer : public asyncore::Dispatcher {
 public:
  explicit EchoServer(const asyncore::Address& address) {
    create_socket(address.family(), SOCK_STREAM);
    set_reuse_addr();
    bind(address);
    listen(128);
  }

  void handle_accepted(asyncore::Socket sock, const asyncore::Address&) override {
    asyncore::make<EchoHandler>(std::move(sock));
  }

  // Python's default closes the listener (and so stops the server) on any
  // accept error, EMFILE included; a server should log and keep serving.
  void handle_error() override {
    try {
      throw;
    } catch (const std::exception& e) {
      log_info(std::string("accept failed: ") + e.what(), "error");
    }
  }
};

int main(int argc, char** argv) {
  auto flags = examples::parse_server_flags(
      argc, argv, "Echoes back whatever each client sends.");
  ::signal(SIGPIPE, SIG_IGN);
  try {
    asyncore::socket_map().set_backend(flags.backend);
    auto server = asyncore::make<EchoServer>(examples::listen_address(flags));
    asyncore::make<asyncore::SignalDispatcher>(std::vector<int>{SIGINT, SIGTERM});
    examples::announce_listening(server->socket().getsockname());
    asyncore::loop({.timeout = std::nullopt});
  } catch (const std::exception& e) {
    std::cerr << "echo_server: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
