// kqueue(2) backend (BSD, macOS). Interest changes are queued and handed to
// the same kevent() call that waits (libevent's kq_dispatch), so a change
// costs no extra syscall. The translation in both directions lives in
// kqueue_logic.cc, which is unit-tested on every OS; only the syscalls are
// here.
//
// Written against the FreeBSD and macOS man pages. Everything below the
// include is compiled only where ASYNCOREPP_HAVE_KQUEUE is defined
// (backend.h: macOS and the BSDs); elsewhere this file is empty.
#include "backends/backend.h"

#ifdef ASYNCOREPP_HAVE_KQUEUE

#include <sys/event.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "backends/internal/always_ready_files.h"
#include "backends/internal/deadline.h"
#include "backends/internal/kqueue_logic.h"
#include "backends/internal/throw_errno.h"

namespace asyncore {
namespace {

static_assert(kq::kFilterRead == EVFILT_READ);
static_assert(kq::kFilterWrite == EVFILT_WRITE);
static_assert(kq::kAdd == EV_ADD);
static_assert(kq::kDelete == EV_DELETE);
static_assert(kq::kError == EV_ERROR);
static_assert(kq::kEof == EV_EOF);
#ifdef EV_OOBAND
static_assert(kq::kOobData == EV_OOBAND);
constexpr bool kHaveOob = true;
#else
constexpr bool kHaveOob = false;  // OpenBSD, NetBSD: no urgent-data flag
#endif

class KqueueBackend final : public Backend {
 public:
  KqueueBackend() : kq_(::kqueue()) {
    if (kq_ < 0) internal::throw_errno(errno, "kqueue backend: kqueue()");
  }
  ~KqueueBackend() override { ::close(kq_); }
  KqueueBackend(const KqueueBackend&) = delete;
  KqueueBackend& operator=(const KqueueBackend&) = delete;

  std::string_view name() const override { return "kqueue"; }
  Features features() const override {
    return {.o1_wait = true, .oob_data = kHaveOob};
  }

  void update(int fd, unsigned old_mask, unsigned new_mask) override {
    // Regular files stay out of the kernel, whose EVFILT_READ fires only
    // before EOF: always ready, as poll(2) has them.
    if (files_.update(fd, new_mask)) return;
    if (old_mask == kInterestNone && new_mask != kInterestNone &&
        internal::AlwaysReadyFiles::is_regular_file(fd)) {
      files_.add(fd, new_mask);
      return;
    }
    size_t before = pending_.size();
    kq::append_changes(fd, old_mask, new_mask, &pending_);
    if (new_mask == kInterestNone && pending_.size() > before) {
      // Removal must reach the kernel while the fd is still open (spec A.8.3);
      // the caller closes it right after this returns.
      flush();
    }
    registered_ += (old_mask == kInterestNone) - (new_mask == kInterestNone);
  }

  void wait(Timeout timeout, std::vector<ReadyEvent>* ready) override {
    if (!files_.empty()) timeout = std::chrono::nanoseconds(0);
    changes_.clear();
    for (const kq::Change& c : pending_) changes_.push_back(to_kevent(c));
    pending_.clear();
    size_t want = std::max<size_t>(
        64, 2 * static_cast<size_t>(registered_) + changes_.size());
    if (out_.size() < want) out_.resize(want);
    internal::Deadline deadline(timeout, features().timeout_resolution);
    int n;
    for (;;) {
      Timeout left = deadline.next();
      timespec ts{};
      if (left) ts = internal::Deadline::to_timespec(*left);
      n = ::kevent(kq_, changes_.data(), static_cast<int>(changes_.size()),
                   out_.data(), static_cast<int>(out_.size()),
                   left ? &ts : nullptr);
      if (n >= 0) break;
      if (errno != EINTR)
        internal::throw_errno(errno, "kqueue backend: kevent()");
      changes_.clear();  // applied before the interruption
    }
    results_.clear();
    for (int i = 0; i < n; ++i) {
      const struct kevent& k = out_[static_cast<size_t>(i)];
      results_.push_back(
          {static_cast<int>(k.ident), k.filter, static_cast<uint16_t>(k.flags),
           static_cast<uint32_t>(k.fflags), static_cast<intptr_t>(k.data)});
    }
    kq::merge_results(results_.data(), n, ready, &index_);
    files_.report(ready);
  }

 private:
  static struct kevent to_kevent(const kq::Change& c) {
    struct kevent k;
    EV_SET(&k, static_cast<uintptr_t>(c.fd), c.filter, c.flags, 0, 0, nullptr);
    return k;
  }

  void flush() {
    changes_.clear();
    for (const kq::Change& c : pending_) {
      // EV_RECEIPT: report each change's status instead of pending events.
      struct kevent k = to_kevent(c);
      k.flags |= EV_RECEIPT;
      changes_.push_back(k);
    }
    pending_.clear();
    out_.resize(std::max(out_.size(), changes_.size()));
    // Per-change errors (ENOENT, EBADF for an fd already closed) are benign.
    ::kevent(kq_, changes_.data(), static_cast<int>(changes_.size()),
             out_.data(), static_cast<int>(changes_.size()), nullptr);
  }

  int kq_;
  int registered_ = 0;
  std::vector<kq::Change> pending_;
  std::vector<struct kevent> changes_, out_;
  std::vector<kq::Result> results_;
  std::vector<int> index_;
  internal::AlwaysReadyFiles files_;
};

}  // namespace

std::unique_ptr<Backend> make_kqueue_backend() {
  return std::make_unique<KqueueBackend>();
}

}  // namespace asyncore

#endif  // ASYNCOREPP_HAVE_KQUEUE
