// The chain of //bench:event_chain (see event_chain.cc): the socketpairs,
// the round's state, and the interface each implementation provides.
// libevent's implementation lives in its own file because event2/event.h and
// libev's ev.h define the same names (EV_READ...).
#pragma once

#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace event_chain {

constexpr int kWrites = 1000;  // W: bytes sent on per round

// Above this many pairs both ends no longer fit the 20 000 open files of
// one process: the far ends go to a reflector process (reflector.cc) that
// sends back every byte it receives, so a byte written on a pair's near end
// makes that same end readable. This process does the same work per event
// (one recv, one send); the round also waits for the reflector's hop.
constexpr int kLargestInProcess = 9900;
// The threshold in use: kLargestInProcess, lower in --smoke runs so that
// they take the reflector's path too.
inline int g_largest_in_process = kLargestInProcess;

// The reflector: a child process that takes the far ends through
// `control` (SCM_RIGHTS) and echoes whatever arrives on them, until
// `control` closes. Returns its pid.
pid_t start_reflector(int control);
// Hands `fds` to the reflector (and closes them here).
void send_to_reflector(int control, const std::vector<int>& fds);
// Returns once the reflector watches every fd handed to it.
void wait_for_reflector(int control);

// The pairs and the state of the round in progress.
struct Chain {
  // read_ends: the ends the implementations watch; write_ends: where a byte
  // for pair i is sent (its far end, or in reflected mode the near end).
  std::vector<int> read_ends, write_ends;
  long count = 0;     // bytes read this round
  long fired = 0;     // bytes written this round (primes included)
  long writes = 0;    // write budget left
  long failures = 0;  // a recv or send that moved no byte
  // Our channels own (and close) the read ends; the fd numbers stay here
  // for the floor that watches the same pairs.
  bool read_ends_adopted = false;

  explicit Chain(int n) : reflected(n > g_largest_in_process) {
    read_ends.reserve(n);
    write_ends.reserve(n);
    if (reflected) {
      int control[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, control) < 0) {
        throw std::runtime_error("socketpair for the reflector failed");
      }
      reflector = start_reflector(control[1]);
      ::close(control[1]);
      control_ = control[0];
    }
    std::vector<int> far;
    for (int i = 0; i < n; ++i) {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                       sv) < 0) {
        const std::string why = std::strerror(errno);
        for (int fd : far) ::close(fd);
        release();
        throw std::runtime_error("socketpair: " + why + " at " +
                                 std::to_string(i) + " pairs");
      }
      read_ends.push_back(sv[0]);
      if (!reflected) {
        write_ends.push_back(sv[1]);
        continue;
      }
      write_ends.push_back(sv[0]);
      far.push_back(sv[1]);
      // Handed over in small batches: the pending ones count against this
      // process's limit too.
      if (far.size() == 32 || i + 1 == n) {
        send_to_reflector(control_, far);
        far.clear();
      }
    }
    if (reflected) wait_for_reflector(control_);
  }
  Chain(const Chain&) = delete;
  Chain& operator=(const Chain&) = delete;
  ~Chain() { release(); }
  int size() const { return static_cast<int>(read_ends.size()); }

  const bool reflected;
  pid_t reflector = -1;

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

 private:
  void release() {
    if (!read_ends_adopted) {
      for (int fd : read_ends) ::close(fd);
    }
    if (!reflected) {
      for (int fd : write_ends) ::close(fd);
    }
    read_ends.clear();
    write_ends.clear();
    if (control_ >= 0) ::close(control_);  // the reflector ends with it
    control_ = -1;
    if (reflector > 0) {
      ::kill(reflector, SIGKILL);
      int status;
      ::waitpid(reflector, &status, 0);
      reflector = -1;
    }
  }
  int control_ = -1;
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
