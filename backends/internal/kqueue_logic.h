// The kqueue backend's logic, as plain functions that compile and are tested
// on every OS (the syscalls themselves exist only on BSD and macOS). Not a
// public header: only the backend and its tests include it.
//
// Interest changes become a kevent change list; kevent results, one per
// (fd, filter), are merged into one poll(2)-style ReadyEvent per fd so that
// readwrite() sees the same flags as with poll or epoll (spec A.8.4).
#ifndef ASYNCOREPP_BACKENDS_INTERNAL_KQUEUE_LOGIC_H_
#define ASYNCOREPP_BACKENDS_INTERNAL_KQUEUE_LOGIC_H_

#include <cstdint>
#include <vector>

#include "backends/backend.h"

namespace asyncore::kq {

// The BSD constants (same values on FreeBSD, NetBSD, OpenBSD and macOS); the
// real backend static_asserts they match <sys/event.h>.
inline constexpr int16_t kFilterRead = -1;
inline constexpr int16_t kFilterWrite = -2;
inline constexpr uint16_t kAdd = 0x0001;
inline constexpr uint16_t kDelete = 0x0002;
inline constexpr uint16_t kOobData = 0x2000;  // EV_OOBAND (EV_FLAG1)
inline constexpr uint16_t kError = 0x4000;    // EV_ERROR
inline constexpr uint16_t kEof = 0x8000;      // EV_EOF

// The fields of struct kevent this logic reads or writes.
struct Change {
  int fd;
  int16_t filter;
  uint16_t flags;
  bool operator==(const Change&) const = default;
};

struct Result {
  int fd;
  int16_t filter;
  uint16_t flags;
  uint32_t fflags;  // with kEof: the socket error, 0 for a clean EOF
  intptr_t data;    // with kError: the errno of a failed change
};

// Appends the changes that move fd from old_mask to new_mask: EVFILT_READ
// follows kInterestRead, EVFILT_WRITE follows kInterestWrite; a filter whose
// state did not change produces nothing.
void append_changes(int fd, unsigned old_mask, unsigned new_mask,
                    std::vector<Change>* out);

// Merges results into one event per fd, in first-seen order:
// READ -> kIn (+kPri with EV_OOBAND), WRITE -> kOut, EV_EOF with an error ->
// +kErr, EV_ERROR: EBADF -> kNval, ENOENT (deleting what is gone) ignored,
// other errnos -> kErr. `index` is scratch space (fd -> position) reused
// across calls so that merging allocates nothing in steady state.
void merge_results(const Result* results, int count,
                   std::vector<ReadyEvent>* ready, std::vector<int>* index);

}  // namespace asyncore::kq

#endif  // ASYNCOREPP_BACKENDS_INTERNAL_KQUEUE_LOGIC_H_
