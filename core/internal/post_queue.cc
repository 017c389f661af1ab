#include "core/internal/post_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <utility>

#include "backends/internal/throw_errno.h"

#if defined(__linux__)
#include <sys/eventfd.h>
#endif

namespace asyncore::internal {

PostQueue::PostQueue() {
#if defined(__linux__)
  read_fd_ = write_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (read_fd_ < 0) throw_errno(errno, "post: eventfd()");
#else
  int fds[2];
  if (::pipe(fds) < 0) throw_errno(errno, "post: pipe()");
  for (int fd : fds) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  read_fd_ = fds[0];
  write_fd_ = fds[1];
#endif
}

PostQueue::~PostQueue() {
  ::close(read_fd_);
  if (write_fd_ != read_fd_) ::close(write_fd_);
}

void PostQueue::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(fn));
    pending_.store(true, std::memory_order_seq_cst);
  }
  if (waiting_.load(std::memory_order_seq_cst) &&
      !woken_.exchange(true, std::memory_order_acq_rel)) {
#if defined(__linux__)
    const uint64_t one = 1;
#else
    const char one = 1;
#endif
    // EAGAIN (a full pipe) means a wake-up is pending already.
    wakeups_.fetch_add(1, std::memory_order_relaxed);
    ssize_t n;
    do {
      n = ::write(write_fd_, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
  }
}

void PostQueue::drain_wakeup() {
  char buf[64];
  while (::read(read_fd_, buf, sizeof buf) > 0) {
  }
  woken_.store(false, std::memory_order_release);
}

void PostQueue::run() {
  if (next_ == running_.size()) {
    running_.clear();
    next_ = 0;
    std::lock_guard<std::mutex> lock(mutex_);
    running_.swap(queue_);
    pending_.store(false, std::memory_order_seq_cst);
  }
  while (next_ < running_.size()) {
    std::function<void()> fn = std::move(running_[next_++]);
    fn();
  }
}

}  // namespace asyncore::internal
