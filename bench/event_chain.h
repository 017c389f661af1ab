// The chain of //bench:event_chain (see event_chain.cc): the socketpairs,
// the round's state, and the interface each implementation provides.
// libevent's implementation lives in its own file because event2/event.h and
// libev's ev.h define the same names (EV_READ...).
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace event_chain {

constexpr int kWrites = 1000;  // W: bytes sent on per round

// The pairs and the state of the round in progress.
struct Chain {
  std::vector<int> read_ends, write_ends;
  long count = 0;     // bytes read this round
  long fired = 0;     // bytes written this round (primes included)
  long writes = 0;    // write budget left
  long failures = 0;  // a recv or send that moved no byte
  // Our channels own (and close) the read ends; the fd numbers stay here
  // for the floor that watches the same pairs.
  bool read_ends_adopted = false;

  explicit Chain(int n) {
    read_ends.reserve(n);
    write_ends.reserve(n);
    for (int i = 0; i < n; ++i) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                       sv) < 0) {
        throw std::runtime_error(
            "socketpair: " + std::string(std::strerror(errno)) + " at " +
            std::to_string(i) + " pairs");
      }
      read_ends.push_back(sv[0]);
      write_ends.push_back(sv[1]);
    }
  }
  Chain(const Chain&) = delete;
  Chain& operator=(const Chain&) = delete;
  ~Chain() {
    if (!read_ends_adopted) {
      for (int fd : read_ends) ::close(fd);
    }
    for (int fd : write_ends) ::close(fd);
  }
  int size() const { return static_cast<int>(write_ends.size()); }

  // What every implementation's read callback does (bench.c's read_cb).
  void on_readable(int fd, int index) {
    char byte;
    if (::recv(fd, &byte, 1, 0) == 1) {
      ++count;
    } else {
      ++failures;
    }
    after_read(index);
  }
  void after_read(int index) {
    if (writes == 0) return;
    int next = index + 1;
    if (next >= size()) next -= size();
    if (::send(write_ends[next], "e", 1, MSG_NOSIGNAL) != 1) ++failures;
    --writes;
    ++fired;
  }
};

// One event library (or raw loop) watching every read end of a Chain.
class Impl {
 public:
  virtual ~Impl() = default;
  // One iteration that does not block, dispatching whatever is ready.
  virtual void run_nowait() = 0;
  // Removes and re-adds every watcher (applied by the next run_nowait()).
  virtual void reregister() = 0;
};

// libevent with `method` ("epoll", "poll", "select"); throws if unavailable.
std::unique_ptr<Impl> make_libevent(Chain& chain, const std::string& method);

}  // namespace event_chain
