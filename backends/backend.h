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
#include <vector>

namespace asyncore {

// What a channel wants to be told about; the core computes it from
// readable() and writable() (asyncore's rule, core/channel_map.h).
enum Interest : unsigned {
  kInterestNone = 0,
  kInterestRead = 1u << 0,  // poll-like backends watch POLLPRI with it
  kInterestWrite = 1u << 1,
  // select's third set; the poll-like backends have no separate one.
  kInterestExcept = 1u << 2,
};

// Readiness bits, in poll(2)'s vocabulary on every backend (so the core
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

// nullopt waits forever. A backend truncates a timeout to its
// Features::timeout_resolution, as Python's poll2() truncates to whole
// milliseconds (spec D5): on a poll-like backend 0.9 ms means "do not block".
using Timeout = std::optional<std::chrono::nanoseconds>;

// What a backend can do (libevent's event_method_feature): the core, the
// tests and the benchmarks ask this instead of comparing backend names.
struct Features {
  // A wait costs O(ready fds) in the kernel, not O(registered fds).
  bool o1_wait = false;
  // A hang-up is reported as kHup (select can only make the fd readable).
  bool reports_hup = true;
  // Urgent TCP data is reported as kPri (kqueue needs EV_OOBAND for it).
  bool oob_data = true;
  // The exceptional set is kept apart from the read set (select's third
  // fd_set): a channel that only wants to write still hears of urgent data,
  // and a read interest without kInterestExcept ignores it.
  bool separate_except_interest = false;
  // A registered fd closed without update() is reported as kNval. epoll and
  // kqueue cannot: the kernel forgets an fd when it is closed.
  bool reports_closed_fds = false;
  // fds at or above this cannot be watched at all (select's FD_SETSIZE);
  // 0 when the process's descriptor limit is the only limit.
  int fd_limit = 0;
  // The wait timeout is truncated to a multiple of this (spec D5): 1 ms for
  // the poll-like backends, 1 us for select (whose timeval Python fills).
  std::chrono::nanoseconds timeout_resolution = std::chrono::milliseconds(1);
};

class Backend {
 public:
  virtual ~Backend() = default;

  // "select", "poll", "epoll" or "kqueue".
  virtual std::string_view name() const = 0;
  virtual Features features() const = 0;

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
    defined(__NetBSD__) || defined(__DragonFly__) ||                      \
    defined(ASYNCOREPP_LIBKQUEUE)
// ASYNCOREPP_LIBKQUEUE: Linux with libkqueue, for the tests only.
#define ASYNCOREPP_HAVE_KQUEUE 1
std::unique_ptr<Backend> make_kqueue_backend();
#endif

}  // namespace asyncore

#endif  // ASYNCOREPP_BACKENDS_BACKEND_H_
