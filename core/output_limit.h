// Back-pressure for the buffered channels (DispatcherWithSend, AsyncChat):
// once `high` bytes of output are queued, the channel stops reading until the
// queue has drained to `low`. The gap keeps a queue near the mark from
// turning reading off and on at every send. A peer that sends without
// reading then waits in its own TCP buffers instead of growing the server's
// memory: what one connection can hold is bounded by `high` plus what one
// handler queues per read.
#ifndef ASYNCOREPP_CORE_OUTPUT_LIMIT_H_
#define ASYNCOREPP_CORE_OUTPUT_LIMIT_H_

#include <cstddef>
#include <cstdint>

namespace asyncore {

class OutputLimit {
 public:
  static constexpr size_t kDefaultHigh = 1 << 20;  // 1 MiB per connection
  static constexpr size_t kDefaultLow = 256 << 10;
  static constexpr size_t kMax = UINT32_MAX;  // 4 GiB: the marks are 32-bit

  // high == 0 removes the limit; low is at most high; both at most kMax.
  void set(size_t high, size_t low) {
    high_ = static_cast<uint32_t>(high < kMax ? high : kMax);
    low_ = static_cast<uint32_t>(low < high_ ? low : high_);
  }
  size_t high() const { return high_; }
  size_t low() const { return low_; }

  // Re-evaluated whenever the queue changes; true while reading is paused.
  bool update(size_t queued) {
    if (paused_) {
      paused_ = queued > low_;
    } else {
      paused_ = high_ != 0 && queued >= high_;
    }
    return paused_;
  }
  bool paused() const { return paused_; }

 private:
  uint32_t high_ = kDefaultHigh;
  uint32_t low_ = kDefaultLow;
  bool paused_ = false;
};

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_OUTPUT_LIMIT_H_
