// The echo server from Python's asyncore documentation: an accepting
// dispatcher whose handle_accepted() makes one EchoHandler per connection.
//
//   bazel run //examples:echo_server -- --port 8080
//   printf 'hello\n' | nc -q1 127.0.0.1 8080
#include "core/asyncore.h"
#include "examples/server_common.h"

class EchoHandler : public asyncore::DispatcherWithSend {
 public:
  using DispatcherWithSend::DispatcherWithSend;

  void handle_read() override {
    std::string data = recv(8192);
    if (!data.empty()) send(data);
  }
};

class EchoServer : public examples::TcpListener {
 public:
  using TcpListener::TcpListener;

  void handle_accepted(asyncore::Socket sock,
                       const asyncore::Address&) override {
    asyncore::make<EchoHandler>(std::move(sock));
  }
};

int main(int argc, char** argv) {
  auto flags = examples::parse_server_flags(
      argc, argv,
      {.summary = "Echoes back whatever each client sends.", .threads = true});
  return examples::run_server("echo_server", examples::run_options(flags),
                              examples::listen_address(flags),
                              [](const asyncore::Address& address) {
                                return asyncore::make<EchoServer>(address);
                              });
}
