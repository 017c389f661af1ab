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

namespace {

// While merging: which filters saw EV_EOF, and whether one carried a socket
// error (bits above every events:: bit, cleared before returning).
constexpr unsigned kReadEof = 1u << 29;
constexpr unsigned kWriteEof = 1u << 30;
constexpr unsigned kEofError = 1u << 31;
constexpr unsigned kMergeBits = kReadEof | kWriteEof | kEofError;

}  // namespace

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
      if (r.flags & kEof) ev |= kReadEof;
    } else if (r.filter == kFilterWrite) {
      ev = events::kOut;
      if (r.flags & kEof) ev |= kWriteEof;
    } else {
      continue;
    }
    if (!(r.flags & kError) && (r.flags & kEof) && r.fflags != 0) {
      ev |= events::kErr | kEofError;
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
  // poll(2)'s POLLHUP: the connection can neither receive nor send. That is
  // EOF carrying a socket error (a reset), or EOF on both filters (the
  // peer's FIN after our own shutdown). EOF on the read filter alone is a
  // half-close (POLLIN only), and on the write filter alone our own
  // shutdown(SHUT_WR) (FreeBSD sets EV_EOF there; poll reports POLLOUT).
  for (size_t i = first; i < ready->size(); ++i) {
    unsigned& ev = (*ready)[i].events;
    if ((ev & kEofError) || ((ev & kReadEof) && (ev & kWriteEof))) {
      ev |= events::kHup;
    }
    ev &= ~kMergeBits;
  }
}

}  // namespace asyncore::kq
