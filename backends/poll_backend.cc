// poll(2) backend: Python's poll2(), but with a persistent pollfd array.
// Each fd has an index slot (muduo's Poller), so registering, changing and
// removing interest are O(1); removal swaps the last entry into the hole.
#include <poll.h>

#include <cerrno>

#include "backends/backend.h"
#include "backends/internal/deadline.h"
#include "backends/internal/throw_errno.h"

namespace asyncore {
namespace {

class PollBackend final : public Backend {
 public:
  std::string_view name() const override { return "poll"; }
  Features features() const override { return {.reports_closed_fds = true}; }

  void update(int fd, unsigned old_mask, unsigned new_mask) override {
    short want = poll_events(new_mask);
    bool was = poll_events(old_mask) != 0;
    if (fd < 0) return;
    if (static_cast<size_t>(fd) >= slot_.size()) {
      if (want == 0) return;
      slot_.resize(static_cast<size_t>(fd) + 1, -1);
    }
    int& index = slot_[static_cast<size_t>(fd)];
    if (want == 0) {  // Python does not register an fd that wants nothing
      if (was && index >= 0) {
        pollfd& last = fds_.back();
        fds_[static_cast<size_t>(index)] = last;
        slot_[static_cast<size_t>(last.fd)] = index;
        fds_.pop_back();
        index = -1;
      }
      return;
    }
    if (index < 0) {
      index = static_cast<int>(fds_.size());
      fds_.push_back(pollfd{fd, want, 0});
    } else {
      fds_[static_cast<size_t>(index)].events = want;
    }
  }

  void wait(Timeout timeout, std::vector<ReadyEvent>* ready) override {
    internal::Deadline deadline(timeout, features().timeout_resolution);
    for (;;) {
      int n = ::poll(fds_.data(), fds_.size(),
                     internal::Deadline::to_millis(deadline.next()));
      if (n < 0) {
        if (errno == EINTR) continue;
        internal::throw_errno(errno, "poll backend: poll()");
      }
      for (const pollfd& p : fds_) {
        if (n == 0) break;
        if (p.revents) {
          ready->push_back({p.fd, static_cast<unsigned>(p.revents)});
          --n;
        }
      }
      return;
    }
  }

 private:
  static short poll_events(unsigned mask) {
    short ev = 0;
    if (mask & kInterestRead) ev |= POLLIN | POLLPRI;
    if (mask & kInterestWrite) ev |= POLLOUT;
    return ev;
  }

  std::vector<pollfd> fds_;
  std::vector<int> slot_;  // fd -> index in fds_, -1 when absent
};

}  // namespace

std::unique_ptr<Backend> make_poll_backend() {
  return std::make_unique<PollBackend>();
}

}  // namespace asyncore
