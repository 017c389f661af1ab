// ChannelMap: Python's socket map (fd -> channel) plus the loop state that
// goes with it: the backend instance, the interest registered per fd, the
// channels closed during the current iteration (released after it), and
// what asyncore never had: timers, callbacks posted from other threads, and
// signals, all served by the same wait.
//
// One iteration (poll_once), in this order (libuv documents its phases the
// same way):
//  1. Interest: ask readable()/writable() of every channel that does not
//     declare its interest, add the declared channels that changed, and hand
//     only the differences to the backend.
//  2. Wait: the backend waits until an fd is ready, the loop's timeout, or
//     the nearest timer's deadline, whichever comes first; not at all while
//     posted callbacks wait.
//  3. Dispatch: readwrite() per ready fd, skipping fds whose channel was
//     closed, replaced or newly registered since the wait (spec D1/C5);
//     signal handlers (on_signal) run here too.
//  4. Posted: the callbacks post()ed before this phase began, in posting
//     order (the wait ended at once for them).
//  5. Timers: the timers due by now, in deadline order, equal deadlines in
//     scheduling order (a timer scheduled here waits for the next iteration).
//  6. Reap: drop the references to channels closed during the iteration.
// So an iteration that waited for a timer or a post also runs it.
//
// Threads: a map and its channels belong to the thread that runs its loop;
// only post() may be called from other threads (the map must outlive them).
#ifndef ASYNCOREPP_CORE_CHANNEL_MAP_H_
#define ASYNCOREPP_CORE_CHANNEL_MAP_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"
#include "core/timer_queue.h"

namespace asyncore {

class ChannelMap;
class Dispatcher;

namespace internal {
class PostQueue;
class SignalSource;
struct SignalWatch;
}  // namespace internal

// A watched signal, as on_signal() returns it. cancel() is safe at any time
// (inside the handler, twice, after the map is gone); dropping the handle
// does not cancel. The loop's thread only.
class SignalHandle {
 public:
  SignalHandle() = default;
  void cancel();
  bool active() const;

 private:
  friend class ChannelMap;
  explicit SignalHandle(std::weak_ptr<internal::SignalWatch> watch)
      : watch_(std::move(watch)) {}
  std::weak_ptr<internal::SignalWatch> watch_;
};

// asyncore's interest rule (spec A.6): a listener is never writable, and a
// channel that wants anything is also watched for exceptional conditions.
constexpr unsigned interest_for(bool readable, bool writable, bool accepting) {
  unsigned mask = kInterestNone;
  if (readable) mask |= kInterestRead;
  if (writable && !accepting) mask |= kInterestWrite;
  if (readable || writable) mask |= kInterestExcept;
  return mask;
}

class ChannelMap {
 public:
  // The default backend ("auto") is created when first needed (the first
  // iteration, say). Throws std::system_error if the post() wake-up
  // descriptor cannot be created.
  ChannelMap();
  // Creates the named backend at once (so an unknown name throws here).
  explicit ChannelMap(std::string_view backend_name);
  // Unregisters every channel (closing none) and releases the references.
  ~ChannelMap();
  ChannelMap(const ChannelMap&) = delete;
  ChannelMap& operator=(const ChannelMap&) = delete;

  size_t size() const { return size_; }
  // What the map holds per fd (tests/footprint_test.cc counts it).
  static constexpr size_t slot_size();
  bool empty() const { return size_ == 0; }
  bool contains(int fd) const { return get(fd) != nullptr; }
  // The channel registered under fd, or nullptr.
  Dispatcher* get(int fd) const;
  // A snapshot of the registered channels (order unspecified).
  std::vector<Dispatcher*> channels() const;

  // Selects the backend by name ("auto", "select", "poll", "epoll",
  // "kqueue"); registered channels move to the new one (nothing happens
  // when it is the backend in use already). Throws
  // std::invalid_argument for a name this OS does not offer.
  void set_backend(std::string_view name);
  // The backend in use; creates the default one if none was chosen yet.
  std::string_view backend_name();

  // One loop iteration (the phases above) with `timeout` (nullopt: wait
  // forever, or until the nearest timer). Returns at once when there is
  // nothing to wait for (!alive()). Exceptions from readable()/writable(),
  // from handle_error(), from timer, posted and signal callbacks, and ExitNow
  // propagate, as in Python. A backend that cannot watch a channel's fd is
  // that channel's error, not the loop's: its handle_error() runs, and it is
  // closed if that leaves it open.
  void poll_once(Timeout timeout);

  // What keeps loop() going: a channel, a timer (the library's own idle and
  // drain timers excepted), or a posted callback still to run. Watched
  // signals alone do not.
  bool alive() const;

  // Counters for tests and benchmarks.
  struct Stats {
    uint64_t waits;    // backend waits (one system call each)
    uint64_t wakeups;  // post() wake-ups written (one system call each)
  };
  Stats stats() const;

  // --- Timers (the loop's thread) -----------------------------------------
  // fn runs once, `delay` (or `seconds`) from now, never earlier: measured
  // on the monotonic Clock, and a wait that a backend rounds to whole
  // milliseconds is rounded up, not down, when a timer ends it.
  TimerHandle call_later(Duration delay, std::function<void()> fn);
  TimerHandle call_later(double seconds, std::function<void()> fn);
  TimerHandle call_at(TimePoint when, std::function<void()> fn);
  // fn runs every `interval`, the first time one interval from now, until
  // cancelled; ticks missed while the loop was busy are skipped, not caught
  // up.
  TimerHandle call_every(Duration interval, std::function<void()> fn);
  TimerHandle call_every(double seconds, std::function<void()> fn);
  // Timers scheduled and not yet fired or cancelled.
  size_t pending_timers() const { return timers_.size(); }
  // The loop's clock, read once per iteration (after the wait): what idle
  // timeouts measure against, at no system call per read.
  TimePoint now() const { return now_; }

  // --- post() (any thread) -------------------------------------------------
  // Runs fn on the loop's thread at its next iteration, waking a blocked
  // wait at once; callbacks run in the order they were posted. Never blocks
  // on the loop; costs no system call when the loop is awake.
  void post(std::function<void()> fn);

  // --- Signals (the loop's thread) -----------------------------------------
  // fn(signo) runs on the loop's thread, in the dispatch phase, after each
  // delivery of signo (deliveries that arrive together may merge, as the
  // kernel merges pending signals). Several handlers of one map may watch
  // the same signal; another map of the process may not (std::logic_error).
  // Linux: signalfd (the signal is blocked in this thread; block it before
  // starting other threads, which inherit the mask); elsewhere a self-pipe.
  SignalHandle on_signal(int signo, std::function<void(int)> fn);

  // --- Graceful shutdown ---------------------------------------------------
  // Asks every channel to finish (Dispatcher::handle_drain(): listeners
  // close at once, so new connections are refused; buffered channels close
  // once their queued output is sent; others close), and closes whatever is
  // still open `seconds` later. loop() returns as soon as the map is empty.
  void drain(double seconds);

  // Calls close() on every channel, then empties the map. An exception from
  // close() other than EBADF propagates (leaving the map as it is) unless
  // ignore_all; ExitNow always propagates.
  void close_all(bool ignore_all = false);

  // Unregisters everything without closing (Python's map.clear()).
  void clear();

 private:
  friend class Dispatcher;
  friend class SignalHandle;

  // What the map keeps per fd: the channel, with the map's reference to it
  // (for a channel not made by make<T>, a pointer that owns nothing: an
  // aliasing shared_ptr with no control block). What the loop needs per
  // channel (the interest registered, the position in asked_) lives in the
  // channel.
  struct Slot {
    std::shared_ptr<Dispatcher> ref;
    Dispatcher* channel() const { return ref.get(); }
    bool owned() const { return ref.use_count() > 0; }
  };

  // Called by Dispatcher.
  void add(int fd, Dispatcher* channel, std::shared_ptr<Dispatcher> owner);
  void remove(int fd, Dispatcher* channel);
  void adopt(int fd, Dispatcher* channel, std::shared_ptr<Dispatcher> owner);
  void set_declared(Dispatcher* ch, bool declared);
  void mark_dirty(Dispatcher* ch);

  // Timers of the library's own (idle timeouts, drain) keep_alive = false.
  TimerHandle schedule(TimePoint when, Duration interval,
                       std::function<void()> fn, bool keep_alive);

  Backend& backend();
  // Registers the map's own descriptors (post wake-up, signals) with a new
  // backend.
  void register_internal(Backend& b);
  Slot* slot(int fd);
  void link_asked(Dispatcher* ch);
  void unlink_asked(Dispatcher* ch);
  void release_closed();

  // The phases of poll_once.
  void update_interest();
  // The interest a channel's readable/writable answers (asked or declared)
  // come to with its accepting and reading-stopped state (interest_for),
  // looked up: this runs once per asked channel and pass.
  static std::array<uint8_t, 16> interest_table();
  unsigned interest_of(const Dispatcher& ch, bool readable,
                       bool writable) const;
  void apply_if_still_asked(Dispatcher* ch, bool readable, bool writable);
  void verify_automatic_interest();
  void refresh_interest(Dispatcher* ch, unsigned want);
  void wait(Timeout timeout, std::vector<ReadyEvent>* ready);
  void dispatch(const std::vector<ReadyEvent>& ready, uint64_t wait_serial,
                uint64_t wait_number);
  void run_timers();
  // A ready fd that is not a channel's: the post wake-up or the signals.
  void dispatch_internal(int fd);
  void deliver_signals();
  void cancel_signal(internal::SignalWatch* watch);

  std::unique_ptr<Backend> backend_;
  std::string backend_name_ = "auto";
  std::vector<Slot> slots_;  // indexed by fd
  // The channels whose predicates are asked every iteration, contiguous.
  std::vector<Dispatcher*> asked_;
  std::vector<std::pair<int, Dispatcher*>> asked_scratch_;  // a snapshot
  std::vector<int> dirty_;  // fds of declared channels to re-evaluate
  uint64_t mods_ = 0;       // changes of the channels or how they are asked
  uint32_t pass_ = 0;       // interest phases so far
  // A member, so the walk indexes it from `this` (one instruction).
  const std::array<uint8_t, 16> interest_table_ = interest_table();
  std::vector<ReadyEvent> ready_;
  std::vector<std::shared_ptr<Dispatcher>> closed_;  // released after dispatch
  size_t size_ = 0;
  uint64_t waits_ = 0;  // backend waits so far (detects nested loops)
  int depth_ = 0;       // nesting of poll_once (a handler may run a loop)

  TimerQueue timers_;
  TimePoint now_;
  std::unique_ptr<internal::PostQueue> posted_;
  std::unique_ptr<internal::SignalSource> signals_;  // from the first watch
  std::vector<std::shared_ptr<internal::SignalWatch>> watches_;
};

constexpr size_t ChannelMap::slot_size() { return sizeof(Slot); }

// Python's socket_map: the map used wherever none is given. One per thread,
// so that one loop per thread (a multi-core server) needs no explicit maps;
// a single-threaded program sees exactly Python's one map.
ChannelMap& socket_map();

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_CHANNEL_MAP_H_
