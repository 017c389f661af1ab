// Shared test helpers: the backends to parameterise over, bounded loops,
// listening sockets on port 0, and a log sink that captures lines.
#ifndef ASYNCOREPP_TESTS_TEST_UTIL_H_
#define ASYNCOREPP_TESTS_TEST_UTIL_H_

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "core/asyncore.h"

namespace testing_util {

// Every backend this OS offers (the conformance suites run over all of them).
inline std::vector<std::string> all_backends() {
  return asyncore::available_backends();
}

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

// Loopback address of a family with port 0 (or a fresh AF_UNIX path under
// TEST_TMPDIR).
asyncore::Address any_loopback(int family);

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

// True if an IPv6 loopback socket can be bound here.
bool ipv6_available();

}  // namespace testing_util

#endif  // ASYNCOREPP_TESTS_TEST_UTIL_H_
