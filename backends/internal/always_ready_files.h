// Regular files in a backend whose kernel does not poll them as poll(2)
// does (always ready for whatever is asked): epoll refuses them (EPERM),
// kqueue's EVFILT_READ fires only before EOF. They are kept here instead
// and every wait reports them ready, so every backend gives the same answer.
#ifndef ASYNCOREPP_BACKENDS_INTERNAL_ALWAYS_READY_FILES_H_
#define ASYNCOREPP_BACKENDS_INTERNAL_ALWAYS_READY_FILES_H_

#include <sys/stat.h>

#include <algorithm>
#include <vector>

#include "backends/backend.h"

namespace asyncore::internal {

class AlwaysReadyFiles {
 public:
  static bool is_regular_file(int fd) {
    struct stat st;
    return ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  }

  bool empty() const { return files_.empty(); }

  // Starts keeping fd with this interest.
  void add(int fd, unsigned mask) { files_.push_back({fd, events_for(mask)}); }

  // If fd is kept here: applies the new interest (none: forgets it) and
  // returns true.
  bool update(int fd, unsigned new_mask) {
    auto file = std::find_if(files_.begin(), files_.end(),
                             [fd](const ReadyEvent& e) { return e.fd == fd; });
    if (file == files_.end()) return false;
    if (new_mask == kInterestNone) {
      *file = files_.back();
      files_.pop_back();
    } else {
      file->events = events_for(new_mask);
    }
    return true;
  }

  void report(std::vector<ReadyEvent>* ready) const {
    ready->insert(ready->end(), files_.begin(), files_.end());
  }

 private:
  static unsigned events_for(unsigned mask) {
    return (mask & kInterestRead ? events::kIn : 0u) |
           (mask & kInterestWrite ? events::kOut : 0u);
  }

  std::vector<ReadyEvent> files_;
};

}  // namespace asyncore::internal

#endif  // ASYNCOREPP_BACKENDS_INTERNAL_ALWAYS_READY_FILES_H_
