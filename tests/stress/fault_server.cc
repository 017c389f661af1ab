// A server for the stress suite's handler faults (tests/stress/faults.py),
// built on the examples' server scaffolding (flags, signals, drain):
//
//   --mode throw        an echo server whose every event handler throws
//                       after doing its work: handle_accepted, handle_read,
//                       handle_write and handle_close. handle_error() counts
//                       the injected exception and keeps the channel open, so
//                       the echo must still be byte-exact.
//   --mode throw-close  handle_read echoes, then throws; the default
//                       handle_error() logs one line and closes the channel.
//   --mode closer       an echo server in which a connection that sends
//                       "KILL\n" closes every other connection from inside its
//                       own handle_read(), then answers "closed N\n".
//
// At exit it prints "injected N" (exceptions thrown and handled).
#include <cstdio>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include "core/asyncore.h"
#include "examples/server_common.h"

namespace {

long g_injected = 0;

// The exception the handlers throw on purpose.
class Injected : public std::runtime_error {
 public:
  explicit Injected(const char* where) : std::runtime_error(where) {}
};

class ThrowingEcho : public asyncore::DispatcherWithSend {
 public:
  using DispatcherWithSend::DispatcherWithSend;

  void handle_read() override {
    std::string data = recv(8192);
    if (!data.empty()) send(data);
    throw Injected("handle_read");
  }

  void handle_write() override {
    DispatcherWithSend::handle_write();
    throw Injected("handle_write");
  }

  void handle_close() override {
    close();
    throw Injected("handle_close");
  }

  void handle_error() override {
    try {
      throw;
    } catch (const Injected&) {
      ++g_injected;  // keep the channel: the next event throws again
    } catch (...) {
      Dispatcher::handle_error();  // a real error: log and close
    }
  }
};

// throw-close: the default handle_error() logs and closes.
class ThrowOnceEcho : public asyncore::DispatcherWithSend {
 public:
  using DispatcherWithSend::DispatcherWithSend;

  void handle_read() override {
    std::string data = recv(8192);
    if (data.empty()) return;
    send(data);
    ++g_injected;
    throw Injected("handle_read");
  }
};

class ThrowingServer : public examples::TcpListener {
 public:
  ThrowingServer(const asyncore::Address& address, bool keep_open)
      : TcpListener(address), keep_open_(keep_open) {}

  void handle_accepted(asyncore::Socket sock,
                       const asyncore::Address&) override {
    if (keep_open_) {
      asyncore::make<ThrowingEcho>(std::move(sock));
      throw Injected("handle_accepted");
    }
    asyncore::make<ThrowOnceEcho>(std::move(sock));
  }

  void handle_error() override {
    try {
      throw;
    } catch (const Injected&) {
      ++g_injected;
    } catch (...) {
      TcpListener::handle_error();
    }
  }

 private:
  bool keep_open_;
};

class Member;
using Members = std::set<Member*>;

class Member : public asyncore::DispatcherWithSend {
 public:
  Member(asyncore::Socket sock, Members* members)
      : DispatcherWithSend(std::move(sock)), members_(members) {
    members_->insert(this);
  }

  void handle_read() override {
    std::string data = recv(8192);
    if (data.empty()) return;
    if (data.find("KILL\n") == std::string::npos) {
      send(data);
      return;
    }
    // Close every other connection from this one handler; some of them
    // have events ready in this very iteration.
    Members others = *members_;
    long closed = 0;
    for (Member* m : others) {
      if (m == this || members_->count(m) == 0) continue;
      m->close();
      ++closed;
    }
    send("closed " + std::to_string(closed) + "\n");
  }

  void close() override {
    members_->erase(this);
    DispatcherWithSend::close();
  }

  ~Member() override { members_->erase(this); }

 private:
  Members* members_;
};

class CloserServer : public examples::TcpListener {
 public:
  using TcpListener::TcpListener;

  void handle_accepted(asyncore::Socket sock,
                       const asyncore::Address&) override {
    asyncore::make<Member>(std::move(sock), &members_);
  }

 private:
  Members members_;
};

}  // namespace

int main(int argc, char** argv) {
  auto flags = examples::parse_server_flags(
      argc, argv,
      {.summary = "Handler faults for the stress suite: --mode throw, "
                  "throw-close or closer.",
       .extra = {{"mode", "throw"}},
       .usage_extra = "  --mode MODE      throw, throw-close or closer "
                      "(default throw)\n"});
  const std::string mode = flags.extra.at("mode");
  if (mode != "throw" && mode != "throw-close" && mode != "closer") {
    std::fprintf(stderr, "fault_server: bad --mode '%s'\n", mode.c_str());
    return 2;
  }
  const int status = examples::run_server(
      "fault_server", examples::run_options(flags),
      examples::listen_address(flags),
      [&mode](const asyncore::Address& address)
          -> std::shared_ptr<asyncore::Dispatcher> {
        if (mode == "closer") return asyncore::make<CloserServer>(address);
        return asyncore::make<ThrowingServer>(address, mode == "throw");
      });
  std::printf("injected %ld\n", g_injected);
  std::fflush(stdout);
  return status;
}
