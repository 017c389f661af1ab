// The readiness-backend interface: the only part of asyncore++ that talks to
// select(2), poll(2), epoll(7) or kqueue(2).
//
// A backend knows file descriptors and event masks, nothing about channels.
// The loop tells it "fd F now wants {read, write, except}" (passing the mask it
// registered last time, so each backend can pick the cheapest kernel call) and
// asks it to wait; the backend answers with (fd, events) pairs in poll(2)'s
// vocabulary. Backends keep persistent state; a kernel failure the loop cannot
// recover from is thrown as std::system_error with a message naming the
// backend and the fd, and leaves the backend's state unchanged.
//
// Not thread-safe: a backend belongs to one ChannelMap, used by one thread.
#ifndef ASYNCOREPP_BACKENDS_BACKEND_H_
#define ASYNCOREPP_BACKENDS_BACKEND_H_

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace asyncore {

// What a channel wants to be told about. Computed by the loop from readable()
// and writable() exactly as asyncore does (see interest_for()).
enum Interest : unsigned {
  kInterestNone = 0,
  kInterestRead = 1u << 0,    // readable(): poll-like backends add POLLPRI too
  kInterestWrite = 1u << 1,   // writable() and not accepting
  kInterestExcept = 1u << 2,  // readable() or writable(): select's third set
};

// Readiness bits, in poll(2)'s vocabulary on every backend (so readwrite()
// reads the same whichever backend produced them).
namespace events {
inline constexpr unsigned kIn = POLLIN;
inline constexpr unsigned kPri = POLLPRI;
inline constexpr unsigned kOut = POLLOUT;
inline constexpr unsigned kErr = POLLERR;
inline constexpr unsigned kHup = POLLHUP;
inline constexpr unsigned kNval = POLLNVAL;
}  // namespace events

struct ReadyEvent {
  int fd;
  unsigned events;  // events::k* bits
};

// nullopt waits forever. Poll-like backends truncate to milliseconds, as
// Python's poll2() does (spec D5): 0.9 ms means "do not block".
using Timeout = std::optional<std::chrono::nanoseconds>;

// asyncore's interest rule (spec A.6): a listener is never writable, and a
// channel that wants anything is also watched for exceptional conditions.
constexpr unsigned interest_for(bool readable, bool writable, bool accepting) {
  unsigned mask = kInterestNone;
  if (readable) mask |= kInterestRead;
  if (writable && !accepting) mask |= kInterestWrite;
  if (readable || writable) mask |= kInterestExcept;
  return mask;
}

class Backend {
 public:
  virtual ~Backend() = default;

  // "select", "poll", "epoll" or "kqueue".
  virtual std::string_view name() const = 0;

  // Changes fd's registration from old_mask to new_mask (kInterestNone on
  // either side means not registered). Called only when the two differ, and
  // with new_mask == kInterestNone before the fd is closed.
  virtual void update(int fd, unsigned old_mask, unsigned new_mask) = 0;

  // Waits up to timeout and appends the ready fds to *ready (which the caller
  // clears). EINTR is retried with the remaining time, never reported.
  virtual void wait(Timeout timeout, std::vector<ReadyEvent>* ready) = 0;
};

// Backend names this OS offers, best first (the order `auto` tries them).
const std::vector<std::string>& available_backends();

// Creates the backend called `name` ("auto" = the first available one that
// initialises). Throws std::invalid_argument naming the available backends
// for an unknown or unavailable name, std::system_error if it fails to start.
std::unique_ptr<Backend> make_backend(std::string_view name);

// Factories for each backend, for tests and for make_backend(). Each throws
// std::system_error when its kernel object cannot be created.
std::unique_ptr<Backend> make_select_backend();
std::unique_ptr<Backend> make_poll_backend();
#if defined(__linux__)
std::unique_ptr<Backend> make_epoll_backend();
#endif
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
#define ASYNCOREPP_HAVE_KQUEUE 1
std::unique_ptr<Backend> make_kqueue_backend();
#endif

namespace internal {
// Throws errno value `err` as a std::system_error whose text says what failed
// (shared by the backends and the core).
[[noreturn]] void throw_errno(int err, const std::string& what);
}  // namespace internal

}  // namespace asyncore

#endif  // ASYNCOREPP_BACKENDS_BACKEND_H_
