// select(2) backend: Python's poll(). Three persistent fd_sets plus a dense
// list of registered fds, so a wait costs O(registered), not O(max fd).
//
// select(2) cannot describe fds >= FD_SETSIZE (glibc's FD_SET past it writes
// out of bounds), so such fds are refused with an error naming the backends
// that can (spec D2). A closed fd still registered makes select(2) fail with
// EBADF; instead of killing the loop (Python) it is reported as POLLNVAL to
// that fd alone, as poll(2) would (spec D3), and the other fds are still
// served in the same wait.
#include <fcntl.h>
#include <sys/select.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "backends/backend.h"
#include "backends/internal/deadline.h"
#include "backends/internal/throw_errno.h"

namespace asyncore {
namespace {

class SelectBackend final : public Backend {
 public:
  SelectBackend() {
    FD_ZERO(&read_set_);
    FD_ZERO(&write_set_);
    FD_ZERO(&except_set_);
  }

  std::string_view name() const override { return "select"; }
  Features features() const override {
    return {.reports_hup = false,
            .separate_except_interest = true,
            .reports_closed_fds = true,
            .fd_limit = FD_SETSIZE,
            .timeout_resolution = std::chrono::microseconds(1)};
  }

  void update(int fd, unsigned old_mask, unsigned new_mask) override {
    if (fd < 0 || fd >= FD_SETSIZE) {
      if (new_mask == kInterestNone) return;  // never registered
      throw std::system_error(
          EINVAL, std::generic_category(),
          "select backend cannot watch fd " + std::to_string(fd) +
              ": select(2) only handles fds below FD_SETSIZE (" +
              std::to_string(FD_SETSIZE) +
              "); use the poll or epoll backend (--backend poll|epoll)");
    }
    set_bit(&read_set_, fd, new_mask & kInterestRead);
    set_bit(&write_set_, fd, new_mask & kInterestWrite);
    set_bit(&except_set_, fd, new_mask & kInterestExcept);
    if (old_mask == kInterestNone && new_mask != kInterestNone) {
      if (static_cast<size_t>(fd) >= slot_.size()) {
        slot_.resize(static_cast<size_t>(fd) + 1, -1);
      }
      slot_[static_cast<size_t>(fd)] = static_cast<int>(fds_.size());
      fds_.push_back(fd);
      max_fd_ = std::max(max_fd_, fd);
    } else if (old_mask != kInterestNone && new_mask == kInterestNone) {
      int index = slot_[static_cast<size_t>(fd)];
      int last = fds_.back();
      fds_[static_cast<size_t>(index)] = last;
      slot_[static_cast<size_t>(last)] = index;
      fds_.pop_back();
      slot_[static_cast<size_t>(fd)] = -1;
      if (fd == max_fd_) {
        max_fd_ =
            fds_.empty() ? -1 : *std::max_element(fds_.begin(), fds_.end());
      }
    }
  }

  void wait(Timeout timeout, std::vector<ReadyEvent>* ready) override {
    internal::Deadline deadline(timeout, features().timeout_resolution);
    std::vector<int> closed;  // registered fds found closed (EBADF)
    for (;;) {
      fd_set r = read_set_, w = write_set_, e = except_set_;
      for (int fd : closed) {
        FD_CLR(fd, &r);
        FD_CLR(fd, &w);
        FD_CLR(fd, &e);
      }
      // After reporting closed fds, only look at the others, without blocking.
      Timeout left = closed.empty() ? deadline.next()
                                    : Timeout(std::chrono::nanoseconds(0));
      timeval tv{};
      if (left) tv = internal::Deadline::to_timeval(*left);
      int n = ::select(max_fd_ + 1, &r, &w, &e, left ? &tv : nullptr);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EBADF && closed.empty() && find_closed_fds(&closed)) {
          for (int fd : closed) ready->push_back({fd, events::kNval});
          continue;
        }
        internal::throw_errno(errno, "select backend: select()");
      }
      if (n == 0) return;
      for (int fd : fds_) {
        unsigned ev = 0;
        if (FD_ISSET(fd, &r)) ev |= events::kIn;
        if (FD_ISSET(fd, &w)) ev |= events::kOut;
        if (FD_ISSET(fd, &e)) ev |= events::kPri;
        if (ev) ready->push_back({fd, ev});
      }
      return;
    }
  }

 private:
  static void set_bit(fd_set* set, int fd, bool on) {
    if (on) {
      FD_SET(fd, set);
    } else {
      FD_CLR(fd, set);
    }
  }

  // Appends the registered fds that are no longer open; false if none is.
  bool find_closed_fds(std::vector<int>* closed) const {
    for (int fd : fds_) {
      if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF) closed->push_back(fd);
    }
    return !closed->empty();
  }

  fd_set read_set_, write_set_, except_set_;
  std::vector<int> fds_;   // registered fds, unordered
  std::vector<int> slot_;  // fd -> index in fds_, -1 when absent
  int max_fd_ = -1;
};

}  // namespace

std::unique_ptr<Backend> make_select_backend() {
  return std::make_unique<SelectBackend>();
}

}  // namespace asyncore
