// The loop's one thread-safe entry point: callbacks posted from any thread,
// run on the loop's thread in the order they were posted, and the wake-up
// descriptor (eventfd on Linux, a pipe elsewhere) that interrupts a blocked
// wait.
//
// No lost wake-ups, no needless ones: the loop announces that it is about to
// wait (about_to_wait) and then checks for work; post() queues and then
// checks whether the loop waits. With both sides sequentially consistent, at
// least one of them sees the other, so either the loop does not block or the
// poster writes the wake-up. A poster writes only if the loop waits and no
// wake-up is already on its way: a loop that is awake costs posters no
// system call.
#ifndef ASYNCOREPP_CORE_INTERNAL_POST_QUEUE_H_
#define ASYNCOREPP_CORE_INTERNAL_POST_QUEUE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace asyncore::internal {

class PostQueue {
 public:
  // Creates the wake-up descriptor; throws std::system_error.
  PostQueue();
  ~PostQueue();
  PostQueue(const PostQueue&) = delete;
  PostQueue& operator=(const PostQueue&) = delete;

  // Any thread.
  void post(std::function<void()> fn);

  // The loop's side. The descriptor to watch for reading:
  int fd() const { return read_fd_; }
  bool has_work() const {
    return next_ < running_.size() || pending_.load(std::memory_order_seq_cst);
  }
  // Before the wait: true if work arrived meanwhile (then do not block).
  bool about_to_wait() {
    waiting_.store(true, std::memory_order_seq_cst);
    return has_work();
  }
  void awake() { waiting_.store(false, std::memory_order_relaxed); }
  // The descriptor was readable: consume the wake-up.
  void drain_wakeup();
  // Runs what was posted before this call (callbacks posted meanwhile wait
  // for the next call). An exception leaves the rest queued for the next.
  void run();
  // Wake-ups written so far (each is one system call).
  uint64_t wakeups_written() const {
    return wakeups_.load(std::memory_order_relaxed);
  }

 private:
  std::mutex mutex_;
  std::vector<std::function<void()>> queue_;    // guarded by mutex_
  std::vector<std::function<void()>> running_;  // the loop's
  size_t next_ = 0;                             // in running_
  std::atomic<bool> pending_{false};
  std::atomic<bool> waiting_{false};
  std::atomic<bool> woken_{false};  // a wake-up is written and not consumed
  std::atomic<uint64_t> wakeups_{0};
  int read_fd_ = -1;
  int write_fd_ = -1;  // == read_fd_ for an eventfd
};

}  // namespace asyncore::internal

#endif  // ASYNCOREPP_CORE_INTERNAL_POST_QUEUE_H_
