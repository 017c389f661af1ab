// Time bookkeeping shared by the backends: the one place where a wait
// timeout is truncated to the backend's resolution (spec D5), and EINTR
// retries wait only for what is left of it (spec C17), never the whole
// timeout again.
#ifndef ASYNCOREPP_BACKENDS_INTERNAL_DEADLINE_H_
#define ASYNCOREPP_BACKENDS_INTERNAL_DEADLINE_H_

#include <sys/time.h>
#include <time.h>

#include <chrono>
#include <climits>

#include "backends/backend.h"

namespace asyncore::internal {

class Deadline {
 public:
  // `timeout` truncated to a multiple of `resolution` (Features).
  Deadline(Timeout timeout, std::chrono::nanoseconds resolution)
      : forever_(!timeout.has_value()),
        first_(forever_ ? std::chrono::nanoseconds(0)
                        : truncate(clamp(*timeout), resolution)),
        end_(forever_ ? Clock::time_point::max() : Clock::now() + first_) {}

  // What to wait for now: the truncated timeout itself the first time (so a
  // caller's whole milliseconds are not cut by the time spent since), what
  // is left of it after an EINTR.
  Timeout next() {
    if (forever_) return std::nullopt;
    if (!started_) {
      started_ = true;
      return first_;
    }
    return remaining();
  }

  // What is left, never negative; nullopt when waiting forever.
  Timeout remaining() const {
    if (forever_) return std::nullopt;
    auto left = end_ - Clock::now();
    return left.count() > 0 ? std::chrono::nanoseconds(left)
                            : std::chrono::nanoseconds(0);
  }

  // poll(2)/epoll_wait(2) argument: -1 forever, else whole milliseconds.
  // By reference: a by-value optional trips GCC 12's -Wmaybe-uninitialized
  // false positive at -O1 (the asan config), which -Werror turns into a
  // build failure.
  static int to_millis(const Timeout& t) {
    if (!t) return -1;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*t).count();
    if (ms < 0) return 0;
    return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
  }

  static timeval to_timeval(std::chrono::nanoseconds t) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(t).count();
    if (us < 0) us = 0;
    return timeval{static_cast<time_t>(us / 1000000),
                   static_cast<suseconds_t>(us % 1000000)};
  }

  static timespec to_timespec(std::chrono::nanoseconds t) {
    auto ns = t.count() < 0 ? 0 : t.count();
    return timespec{static_cast<time_t>(ns / 1000000000),
                    static_cast<long>(ns % 1000000000)};
  }

 private:
  using Clock = std::chrono::steady_clock;
  // A year is "forever enough" and keeps now() + timeout from overflowing.
  static std::chrono::nanoseconds clamp(std::chrono::nanoseconds t) {
    constexpr std::chrono::nanoseconds kMax = std::chrono::hours(24 * 365);
    return t < std::chrono::nanoseconds(0) ? std::chrono::nanoseconds(0)
                                           : (t > kMax ? kMax : t);
  }
  static std::chrono::nanoseconds truncate(std::chrono::nanoseconds t,
                                           std::chrono::nanoseconds unit) {
    return unit.count() > 1 ? t - t % unit : t;
  }

  bool forever_;
  bool started_ = false;
  std::chrono::nanoseconds first_;
  Clock::time_point end_;
};

}  // namespace asyncore::internal

#endif  // ASYNCOREPP_BACKENDS_INTERNAL_DEADLINE_H_
