// An echo client: sends --message --count times and prints each echoed
// reply as it comes back (replies may arrive in any number of pieces).
// Exits 1 with a message when it cannot connect or the server goes away
// early.
//
//   bazel run //examples:echo_client -- --port 8080 --message hello --count 3
#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <string>

#include "core/asyncore.h"
#include "examples/server_common.h"

namespace {

class EchoClient : public asyncore::DispatcherWithSend {
 public:
  EchoClient(const asyncore::Address& server, std::string message, long count)
      : message_(std::move(message)), left_(count) {
    create_socket(server.family(), SOCK_STREAM);
    connect(server);
  }

  void handle_connect() override {
    for (long i = 0; i < left_; ++i) send(message_);
    if (left_ == 0) close();
  }

  void handle_read() override {
    received_ += recv(65536);
    // Print whole replies only: a reply is as long as the message.
    while (left_ > 0 && received_.size() >= message_.size()) {
      std::cout << received_.substr(0, message_.size()) << std::endl;
      received_.erase(0, message_.size());
      --left_;
    }
    if (left_ == 0) close();
  }

  void handle_close() override {
    if (left_ > 0) {
      std::cerr << "echo_client: connection closed with " << left_
                << " replies missing\n";
      failed = true;
    }
    close();
  }

  void handle_error() override {
    try {
      throw;
    } catch (const std::exception& e) {
      std::cerr << "echo_client: " << e.what() << "\n";
    }
    failed = true;
    close();
  }

  bool failed = false;

 private:
  std::string message_;
  long left_;
  std::string received_;
};

}  // namespace

int main(int argc, char** argv) {
  auto flags = examples::parse_server_flags(
      argc, argv,
      {.summary = "Sends a message to an echo server and prints the replies.",
       .extra = {{"message", "hello"}, {"count", "1"}},
       .usage_extra = "  --message TEXT   what to send (default hello)\n"
                      "  --count N        how many times (default 1)\n",
       .server = false});
  char* end = nullptr;
  errno = 0;
  long count = std::strtol(flags.extra["count"].c_str(), &end, 10);
  if (flags.extra["count"].empty() || *end != '\0' || count < 0 ||
      errno == ERANGE) {
    std::cerr << "echo_client: bad --count '" << flags.extra["count"] << "'\n";
    return 2;
  }
  if (flags.extra["message"].empty()) {
    std::cerr << "echo_client: --message must not be empty\n";
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  try {
    asyncore::socket_map().set_backend(flags.backend);
    auto client = asyncore::make<EchoClient>(examples::listen_address(flags),
                                             flags.extra["message"], count);
    asyncore::loop({.timeout = std::nullopt});
    return client->failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "echo_client: " << e.what() << "\n";
    return 1;
  }
}
