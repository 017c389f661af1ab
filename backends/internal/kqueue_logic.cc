#include "backends/internal/kqueue_logic.h"

#include <cerrno>

namespace asyncore::kq {

void append_changes(int fd, unsigned old_mask, unsigned new_mask,
                    std::vector<Change>* out) {
  auto filter = [&](unsigned bit, int16_t which) {
    bool was = old_mask & bit, want = new_mask & bit;
    if (was != want) out->push_back({fd, which, want ? kAdd : kDelete});
  };
  filter(kInterestRead, kFilterRead);
  filter(kInterestWrite, kFilterWrite);
}

void merge_results(const Result* results, int count,
                   std::vector<ReadyEvent>* ready, std::vector<int>* index) {
  const size_t first = ready->size();
  for (int i = 0; i < count; ++i) {
    const Result& r = results[i];
    unsigned ev = 0;
    if (r.flags & kError) {
      if (r.data == ENOENT) continue;  // a delete of a filter already gone
      ev = r.data == EBADF ? events::kNval : events::kErr;
    } else if (r.filter == kFilterRead) {
      ev = events::kIn;
      if (r.flags & kOobData) ev |= events::kPri;
    } else if (r.filter == kFilterWrite) {
      ev = events::kOut;
    } else {
      continue;
    }
    if (!(r.flags & kError) && (r.flags & kEof) && r.fflags != 0) {
      ev |= events::kErr;
    }
    if (r.fd < 0) continue;
    size_t slot = static_cast<size_t>(r.fd);
    if (slot >= index->size()) index->resize(slot + 1, -1);
    int& at = (*index)[slot];
    if (at >= 0 && static_cast<size_t>(at) >= first &&
        static_cast<size_t>(at) < ready->size() &&
        (*ready)[static_cast<size_t>(at)].fd == r.fd) {
      (*ready)[static_cast<size_t>(at)].events |= ev;
    } else {
      at = static_cast<int>(ready->size());
      ready->push_back({r.fd, ev});
    }
  }
}

}  // namespace asyncore::kq
