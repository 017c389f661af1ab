// epoll(7) backend (Linux). Level-triggered, with poll2()'s semantics
// (spec A.8): IN|PRI for readable, OUT for writable, nothing registered for a
// channel that wants nothing. One epoll_ctl per interest *change*, none per
// iteration.
//
// epoll refuses regular files (EPERM) although select and poll report them
// always ready; such fds are kept aside and reported ready for what they want
// on every wait, which then does not block (spec A.8.5). An fd closed behind
// the map's back (EBADF on ADD/MOD) is reported as POLLNVAL, as poll(2)
// would, until it is unregistered; one whose interest never changes again is
// silently dropped by the kernel and cannot be noticed (spec C10).
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "backends/backend.h"
#include "backends/internal/always_ready_files.h"
#include "backends/internal/deadline.h"
#include "backends/internal/throw_errno.h"

namespace asyncore {
namespace {

// Ready bits are passed on as they are: epoll's must be poll's.
static_assert(EPOLLIN == POLLIN && EPOLLPRI == POLLPRI && EPOLLOUT == POLLOUT &&
              EPOLLERR == POLLERR && EPOLLHUP == POLLHUP);

class EpollBackend final : public Backend {
 public:
  EpollBackend() : epfd_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (epfd_ < 0)
      internal::throw_errno(errno, "epoll backend: epoll_create1()");
  }
  ~EpollBackend() override { ::close(epfd_); }
  EpollBackend(const EpollBackend&) = delete;
  EpollBackend& operator=(const EpollBackend&) = delete;

  std::string_view name() const override { return "epoll"; }
  Features features() const override { return {.o1_wait = true}; }

  void update(int fd, unsigned old_mask, unsigned new_mask) override {
    uint32_t was = epoll_events(old_mask);
    uint32_t want = epoll_events(new_mask);
    if (was == want) return;
    if (auto bad = std::find(invalid_.begin(), invalid_.end(), fd);
        bad != invalid_.end()) {
      if (want == 0) {
        *bad = invalid_.back();
        invalid_.pop_back();
      }
      return;
    }
    if (files_.update(fd, new_mask)) return;  // never in the epoll set
    if (want == 0) {
      // ENOENT/EBADF: already gone (closed behind our back); nothing to undo.
      if (ctl(EPOLL_CTL_DEL, fd, 0) < 0 && errno != ENOENT && errno != EBADF) {
        internal::throw_errno(errno, "epoll backend: EPOLL_CTL_DEL");
      }
      --registered_;
      return;
    }
    int op = was == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (ctl(op, fd, want) == 0) {
      if (was == 0) ++registered_;
      return;
    }
    // libevent's retries: the kernel's view differs from ours when an fd
    // number was closed and reused without going through update().
    if (op == EPOLL_CTL_MOD && errno == ENOENT &&
        ctl(EPOLL_CTL_ADD, fd, want) == 0) {
      return;
    }
    if (op == EPOLL_CTL_ADD && errno == EEXIST &&
        ctl(EPOLL_CTL_MOD, fd, want) == 0) {
      ++registered_;
      return;
    }
    if (op == EPOLL_CTL_ADD && errno == EPERM) {
      files_.add(fd, new_mask);  // a regular file
      return;
    }
    if (errno == EBADF) {
      if (was != 0) --registered_;  // the kernel dropped it with the close
      invalid_.push_back(fd);
      return;
    }
    internal::throw_errno(errno, op == EPOLL_CTL_ADD
                                     ? "epoll backend: EPOLL_CTL_ADD"
                                     : "epoll backend: EPOLL_CTL_MOD");
  }

  void wait(Timeout timeout, std::vector<ReadyEvent>* ready) override {
    if (!files_.empty() || !invalid_.empty())
      timeout = std::chrono::nanoseconds(0);
    // One slot per registered fd: every ready fd is seen in one call.
    size_t want = std::max<size_t>(64, static_cast<size_t>(registered_));
    if (buffer_.size() < want) buffer_.resize(want);
    internal::Deadline deadline(timeout, features().timeout_resolution);
    int n;
    for (;;) {
      n = ::epoll_wait(epfd_, buffer_.data(), static_cast<int>(buffer_.size()),
                       internal::Deadline::to_millis(deadline.next()));
      if (n >= 0) break;
      if (errno != EINTR)
        internal::throw_errno(errno, "epoll backend: epoll_wait()");
    }
    // Sized once and filled in place: no capacity check per event.
    const size_t base = ready->size();
    ready->resize(base + static_cast<size_t>(n));
    ReadyEvent* out = ready->data() + base;
    for (int i = 0; i < n; ++i) {
      const epoll_event& e = buffer_[static_cast<size_t>(i)];
      out[i] = {e.data.fd, e.events & (EPOLLIN | EPOLLPRI | EPOLLOUT |
                                       EPOLLERR | EPOLLHUP)};
    }
    files_.report(ready);
    for (int fd : invalid_) ready->push_back({fd, events::kNval});
  }

 private:
  static uint32_t epoll_events(unsigned mask) {
    uint32_t ev = 0;
    if (mask & kInterestRead) ev |= EPOLLIN | EPOLLPRI;
    if (mask & kInterestWrite) ev |= EPOLLOUT;
    return ev;
  }

  int ctl(int op, int fd, uint32_t ev) {
    epoll_event e{};
    e.events = ev;
    e.data.fd = fd;
    return ::epoll_ctl(epfd_, op, fd, &e);
  }

  int epfd_;
  int registered_ = 0;
  std::vector<epoll_event> buffer_;
  internal::AlwaysReadyFiles files_;  // regular files (EPERM from epoll)
  std::vector<int> invalid_;  // closed behind our back: reported as NVAL
};

}  // namespace

std::unique_ptr<Backend> make_epoll_backend() {
  return std::make_unique<EpollBackend>();
}

}  // namespace asyncore
