// Shared test helpers, one version of each: the backends to parameterise over
// and their test names, bounded loops, loopback sockets and TCP pairs, I/O
// with bounded waits, descriptor counts and limits, a log sink that captures
// lines, and MapTest: a fixture owning a ChannelMap on the parameter's
// backend that fails the test if a channel is left registered or an fd left
// open.
//
// Conventions: every wait is bounded; helpers that cannot do their job throw
// (std::system_error for a failed syscall, std::runtime_error for a timeout),
// which fails the calling test at once, with the message.
#ifndef ASYNCOREPP_TESTS_TEST_UTIL_H_
#define ASYNCOREPP_TESTS_TEST_UTIL_H_

#include <sys/resource.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "core/asyncore.h"
#include "gtest/gtest.h"

namespace testing_util {

// --- Backends ----------------------------------------------------------------

// Every backend this OS offers (the conformance suites run over all of them).
inline std::vector<std::string> all_backends() {
  return asyncore::available_backends();
}

// Names a case of a suite parameterised by backend name after the backend
// (".../epoll"): the name generator of every INSTANTIATE_TEST_SUITE_P here.
inline std::string backend_param_name(
    const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

// --- Loops -------------------------------------------------------------------

// Runs map.poll_once(timeout) until pred() is true, at most `max_iterations`
// times and at most `limit` of wall time. Returns pred().
inline bool loop_until(
    asyncore::ChannelMap& map, const std::function<bool()>& pred,
    int max_iterations = 1000, double timeout = 0.01,
    std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (int i = 0; i < max_iterations && !pred(); ++i) {
    if (std::chrono::steady_clock::now() > deadline) break;
    map.poll_once(asyncore::to_timeout(timeout));
  }
  return pred();
}

// One loop iteration of `map` waiting at most `timeout` seconds.
inline void iterate(asyncore::ChannelMap& map, double timeout = 0.01) {
  map.poll_once(asyncore::to_timeout(timeout));
}

// --- Addresses and sockets ---------------------------------------------------

// Loopback address of a family with port 0 (or a fresh AF_UNIX path under
// TEST_TMPDIR).
asyncore::Address any_loopback(int family);

// True if an IPv6 loopback socket can be bound here.
bool ipv6_available();

// Throws errno as a std::system_error saying `what` failed.
[[noreturn]] void throw_errno(const char* what);

// A non-blocking TCP listener on 127.0.0.1, port 0, outside any map; its
// address goes to *bound.
asyncore::Socket listening_socket(asyncore::Address* bound);

// A non-blocking socket whose connect to `to` is in progress (or done).
asyncore::Socket start_connect(const asyncore::Address& to);

// The next connection on `listener` (non-blocking, close-on-exec), or an
// invalid Socket if none arrives within `limit`.
asyncore::Socket accept_within(
    const asyncore::Socket& listener,
    std::chrono::milliseconds limit = std::chrono::seconds(5));

// A connected TCP pair over loopback: {client, server} (the connecting end
// first, the accepted end second), both non-blocking and close-on-exec.
// Unlike an AF_UNIX pair, a peer's close shows up as IN only (no HUP) on
// poll-like backends, so a reader can drain everything before EOF (spec A.6;
// C12 for AF_UNIX).
std::pair<asyncore::Socket, asyncore::Socket> tcp_pair();

// SO_LINGER {1, 0}: closing `fd` then sends an RST instead of a FIN.
void reset_on_close(int fd);

// --- I/O
// -----------------------------------------------------------------------

// Waits (outside any loop, EINTR retried) until fd reports one of `events`.
bool wait_fd(int fd, short events,
             std::chrono::milliseconds limit = std::chrono::seconds(5));

// Sends all of `data` on a (usually non-blocking) socket, waiting up to 5 s
// for room whenever it is full; throws if a send fails or no room comes.
void write_all(const asyncore::Socket& s, std::string_view data);

// What a non-blocking socket has to read now; *eof set when the peer closed.
std::string read_available(const asyncore::Socket& s, bool* eof = nullptr);

// Reads exactly n bytes from fd, waiting for each piece; less if EOF comes
// first or `limit` passes.
std::string read_exactly(
    int fd, size_t n,
    std::chrono::milliseconds limit = std::chrono::seconds(10));

// Bytes waiting in fd's receive queue (FIONREAD); 0 for an invalid fd.
int pending_input(int fd);

// --- Descriptors -------------------------------------------------------------

// The process's open fds, ascending (from /proc/self/fd or /dev/fd, without
// the directory's own fd; else by probing every fd below the soft limit).
std::vector<int> open_fds();
inline int count_open_fds() { return static_cast<int>(open_fds().size()); }

// Raises RLIMIT_NOFILE's soft limit to at least n while alive (restoring it
// after); ok() says whether n fits.
class FdLimitAtLeast {
 public:
  explicit FdLimitAtLeast(rlim_t n);
  ~FdLimitAtLeast();
  FdLimitAtLeast(const FdLimitAtLeast&) = delete;
  FdLimitAtLeast& operator=(const FdLimitAtLeast&) = delete;
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
  bool changed_ = false;
};

// --- Logs --------------------------------------------------------------------

// Captures what Dispatcher::log/log_info write while alive.
class CapturedLog {
 public:
  CapturedLog();
  ~CapturedLog();
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;
  const std::vector<std::string>& out() const { return out_; }  // stdout lines
  const std::vector<std::string>& err() const { return err_; }  // stderr lines

 private:
  std::vector<std::string> out_, err_;
  asyncore::LogSink previous_;
};

// --- Leak checks and the map fixture
// -------------------------------------------

// Adds a failure naming every channel still registered in `map` (`which`
// says which map), then closes them all, ignoring errors, so that what
// follows starts clean.
void expect_no_channels(asyncore::ChannelMap& map, std::string_view which);

// That a test leaves the process as it found it: socket_map() empty and the
// same fds open.
class LeakCheck {
 public:
  // Gives socket_map() its default backend (whose fd then belongs to the
  // process, not to the test) and records the open fds.
  void start();
  // Fails the test for any channel left in socket_map() (then closed), and
  // for every fd opened since start() and still open, or closed though open
  // at start(), naming what each one was.
  void finish();

 private:
  std::vector<int> fds_;
  bool started_ = false;
};

// Base fixture for suites parameterised by backend: map() is a ChannelMap on
// the parameter's backend (the parameter itself, or its `backend` member),
// created in SetUp. TearDown fails the test if map() or socket_map() still
// holds a channel, or if an fd opened during the test (the map's backend
// excepted, which is destroyed first) is still open. A test ends by closing
// what it opened. A derived SetUp calls MapTestWithParam::SetUp() first, a
// derived TearDown calls MapTestWithParam::TearDown() last.
template <class Param>
class MapTestWithParam : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    leaks_.start();
    map_.emplace(backend());
  }
  void TearDown() override {
    if (map_) {
      expect_no_channels(*map_, "the test's map");
      map_.reset();  // closes its backend's fd
    }
    leaks_.finish();
  }

  const std::string& backend() const { return backend_of(this->GetParam()); }
  // What the parameter's backend can do (asked of a fresh instance).
  asyncore::Features features() const {
    return asyncore::make_backend(backend())->features();
  }
  asyncore::ChannelMap& map() { return *map_; }

 private:
  static const std::string& backend_of(const std::string& param) {
    return param;
  }
  template <class P>
  static const std::string& backend_of(const P& param) {
    return param.backend;
  }
  template <class... Rest>
  static const std::string& backend_of(
      const std::tuple<std::string, Rest...>& param) {
    return std::get<0>(param);
  }

  std::optional<asyncore::ChannelMap> map_;
  LeakCheck leaks_;
};

// The usual case: parameterised by the backend name alone.
using MapTest = MapTestWithParam<std::string>;

}  // namespace testing_util

#endif  // ASYNCOREPP_TESTS_TEST_UTIL_H_
