#include "core/channel_map.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "core/dispatcher.h"
#include "core/internal/post_queue.h"
#include "core/internal/readwrite.h"
#include "core/internal/signal_source.h"

namespace asyncore {
namespace {

// Registration numbers (Dispatcher::registration()), from one process-wide
// counter so that they also order registrations: a channel whose number is
// above the one read at a wait was registered after that wait.
std::atomic<uint64_t> g_registrations{0};

uint64_t next_registration() {
  return g_registrations.fetch_add(1, std::memory_order_relaxed) + 1;
}

uint64_t last_registration() {
  return g_registrations.load(std::memory_order_relaxed);
}

// ASYNCOREPP_CHECK_DECLARED=1: every interest phase compares the automatic
// declared interest of every channel with what its predicates answer, and
// throws std::logic_error on a difference (the test suites run with it).
bool check_declared() {
  static const bool on = [] {
    const char* env = std::getenv("ASYNCOREPP_CHECK_DECLARED");
    return env != nullptr && std::string_view(env) == "1";
  }();
  return on;
}

// ASYNCOREPP_EVENT_TRACE=path: every event the loop dispatches to a channel
// is appended to that file as "wait fd registration events", one line each,
// so that a test can compare the events of two runs (tests/dual_mode_test.py:
// automatic declared interest on, then forced off). -1 when off. Only the
// process that opened it writes (a forked child's events would interleave).
// Opened at start-up, before a test counts its open fds.
const pid_t g_trace_owner = ::getpid();
const int g_trace_fd = [] {
  const char* path = std::getenv("ASYNCOREPP_EVENT_TRACE");
  if (path == nullptr || *path == '\0') return -1;
  return ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}();

int event_trace_fd() {
  return g_trace_fd >= 0 && ::getpid() == g_trace_owner ? g_trace_fd : -1;
}

void trace_event(int trace, uint64_t wait, int fd, uint64_t registration,
                 unsigned events) {
  char line[96];
  const int n =
      std::snprintf(line, sizeof line, "%llu %d %llu %u\n",
                    static_cast<unsigned long long>(wait), fd,
                    static_cast<unsigned long long>(registration), events);
  if (n > 0 && ::write(trace, line, static_cast<size_t>(n)) < 0) {
    // A lost trace line shows up as a difference between the runs.
  }
}

// `d` rounded up to a multiple of `unit`: a wait that ends a timer's delay
// must not end before it.
Duration round_up(Duration d, std::chrono::nanoseconds unit) {
  if (unit.count() <= 1) return d;
  const auto rest = d % unit;
  return rest.count() == 0 ? d : d - rest + unit;
}

}  // namespace

namespace internal {
// One on_signal() registration.
struct SignalWatch {
  ChannelMap* map;  // nullptr once cancelled or the map is gone
  int signo;
  std::function<void(int)> fn;
};
}  // namespace internal

void SignalHandle::cancel() {
  if (auto watch = watch_.lock(); watch && watch->map != nullptr) {
    watch->map->cancel_signal(watch.get());
  }
}

bool SignalHandle::active() const {
  auto watch = watch_.lock();
  return watch && watch->map != nullptr;
}

ChannelMap::ChannelMap()
    : now_(Clock::now()), posted_(std::make_unique<internal::PostQueue>()) {}

ChannelMap::ChannelMap(std::string_view backend_name) : ChannelMap() {
  backend_name_ = backend_name;
  backend();  // an unknown name fails here, not at the first iteration
}

ChannelMap::~ChannelMap() {
  clear();
  for (auto& watch : watches_) watch->map = nullptr;
}

ChannelMap::Slot* ChannelMap::slot(int fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
  return &slots_[static_cast<size_t>(fd)];
}

Dispatcher* ChannelMap::get(int fd) const {
  if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
  return slots_[static_cast<size_t>(fd)].channel();
}

std::vector<Dispatcher*> ChannelMap::channels() const {
  std::vector<Dispatcher*> out;
  out.reserve(size_);
  for (const Slot& s : slots_) {
    if (s.channel() != nullptr) out.push_back(s.channel());
  }
  return out;
}

Backend& ChannelMap::backend() {
  if (!backend_) {
    std::unique_ptr<Backend> fresh = make_backend(backend_name_);
    register_internal(*fresh);
    backend_ = std::move(fresh);
  }
  return *backend_;
}

void ChannelMap::register_internal(Backend& b) {
  b.update(posted_->fd(), kInterestNone, kInterestRead);
  if (signals_) b.update(signals_->fd(), kInterestNone, kInterestRead);
}

std::string_view ChannelMap::backend_name() { return backend().name(); }

void ChannelMap::set_backend(std::string_view name) {
  if (backend_ && (name == backend_->name() ||
                   (name == "auto" && backend_name_ == "auto"))) {
    return;  // already there: keep the registrations
  }
  std::unique_ptr<Backend> next = make_backend(name);
  register_internal(*next);
  for (size_t fd = 0; fd < slots_.size(); ++fd) {
    Dispatcher* ch = slots_[fd].channel();
    if (ch == nullptr || ch->interest_ == kInterestNone) continue;
    try {
      next->update(static_cast<int>(fd), kInterestNone, ch->interest_);
    } catch (const std::system_error&) {
      // e.g. select and fd >= FD_SETSIZE: re-register at the next iteration,
      // which delivers the error to that channel.
      ch->interest_ = kInterestNone;
      if (ch->asked_index_ < 0) mark_dirty(ch);
    }
  }
  backend_ = std::move(next);
  backend_name_ = name;
  ++mods_;
}

void ChannelMap::add(int fd, Dispatcher* channel,
                     std::shared_ptr<Dispatcher> owner) {
  if (static_cast<size_t>(fd) >= slots_.size()) {
    slots_.resize(static_cast<size_t>(fd) + 1);
  }
  if (Dispatcher* previous = slots_[static_cast<size_t>(fd)].channel()) {
    // Python silently replaces the entry; the replaced channel must then not
    // believe it is still registered (it keeps its fd, as in Python).
    remove(fd, previous);
  }
  Slot& s = slots_[static_cast<size_t>(fd)];
  s.ref = owner ? std::move(owner)
                : std::shared_ptr<Dispatcher>(std::shared_ptr<Dispatcher>(),
                                              channel);
  channel->interest_ = kInterestNone;
  channel->dirty_ = false;
  ++size_;
  ++mods_;
  channel->registered(this, next_registration());
  if (channel->declared_interest()) {
    mark_dirty(channel);
  } else {
    link_asked(channel);
  }
}

void ChannelMap::link_asked(Dispatcher* ch) {
  ch->asked_index_ = static_cast<int>(asked_.size());
  asked_.push_back(ch);
}

void ChannelMap::unlink_asked(Dispatcher* ch) {
  if (ch->asked_index_ < 0) return;
  Dispatcher* last = asked_.back();
  asked_[static_cast<size_t>(ch->asked_index_)] = last;
  last->asked_index_ = ch->asked_index_;
  asked_.pop_back();
  ch->asked_index_ = -1;
}

void ChannelMap::remove(int fd, Dispatcher* channel) {
  Slot* s = slot(fd);
  if (s == nullptr || s->channel() != channel) return;
  if (channel->interest_ != kInterestNone && backend_) {
    // Must reach the kernel before the caller closes the fd (spec A.8.3).
    // The fd may already be closed behind our back: nothing left to undo.
    try {
      backend_->update(fd, channel->interest_, kInterestNone);
    } catch (const std::system_error&) {
    }
  }
  channel->interest_ = kInterestNone;
  unlink_asked(channel);
  if (s->owned()) closed_.push_back(std::move(s->ref));
  *s = Slot{};
  --size_;
  ++mods_;
  channel->unregistered(next_registration());
  // The reference is released after the iteration (or at the next one), not
  // here: the caller may be a member function of the channel it refers to.
}

void ChannelMap::adopt(int fd, Dispatcher* channel,
                       std::shared_ptr<Dispatcher> owner) {
  Slot* s = slot(fd);
  if (s != nullptr && s->channel() == channel && !s->owned()) {
    s->ref = std::move(owner);
  }
}

void ChannelMap::set_declared(Dispatcher* ch, bool declared) {
  ++mods_;
  if (declared) {
    unlink_asked(ch);
    mark_dirty(ch);
  } else if (ch->asked_index_ < 0) {
    link_asked(ch);
  }
}

void ChannelMap::mark_dirty(Dispatcher* ch) {
  if (ch->dirty_) return;
  ch->dirty_ = true;
  dirty_.push_back(ch->fileno());
}

void ChannelMap::refresh_interest(Dispatcher* ch, unsigned want) {
  const int fd = ch->fileno();
  try {
    backend().update(fd, ch->interest_, want);
    ch->interest_ = want;
  } catch (const std::system_error&) {
    // An fd the backend cannot watch (select and fd >= FD_SETSIZE, epoll out
    // of watches...) costs its channel alone, never the loop: the channel's
    // handle_error() gets the error (it runs inside this catch, so
    // current_exception() is the error), and a channel still open after that
    // is closed, since it could never be served.
    const std::shared_ptr<Dispatcher> pin = slot(fd)->ref;
    const uint64_t registration = ch->registration();
    ++mods_;  // what follows is user code
    ch->handle_error();
    if (ch->registration() == registration) ch->close();
  }
}

std::array<uint8_t, 16> ChannelMap::interest_table() {
  std::array<uint8_t, 16> table{};
  for (unsigned i = 0; i < table.size(); ++i) {
    const bool r = i & 1, w = i & 2, accepting = i & Dispatcher::kAcceptingBit,
               reading_stopped = i & Dispatcher::kReadingStoppedBit;
    table[i] =
        static_cast<uint8_t>(interest_for(r && !reading_stopped, w, accepting));
  }
  return table;
}

inline unsigned ChannelMap::interest_of(const Dispatcher& ch, bool readable,
                                        bool writable) const {
  return interest_table_[unsigned{readable} | unsigned{writable} << 1 |
                         ch.interest_state_];
}

// Predicates' answers that come after they changed the map: they count if
// the channel is still here and still asked.
void ChannelMap::apply_if_still_asked(Dispatcher* ch, bool readable,
                                      bool writable) {
  if (ch->registered_map() != this || ch->asked_index_ < 0) return;
  const unsigned want = interest_of(*ch, readable, writable);
  if (want != ch->interest_) refresh_interest(ch, want);
}

void ChannelMap::update_interest() {
  // The asked channels, walked in place (a predicate is asked once per
  // channel and pass, as in Python's poll()) while the map stays as it was;
  // then the rest from a snapshot, checked channel by channel: predicates
  // and error handlers are user code and may close, add or declare channels
  // (which reorders asked_). The walk keeps the list in locals, so per
  // channel it costs little beyond the two predicate calls.
  if (++pass_ == 0) pass_ = 1;  // 0 is a new channel's: never asked
  const uint32_t pass = pass_;
  const uint64_t mods = mods_;
  const uint64_t start = last_registration();
  Dispatcher* const* next = asked_.data();
  Dispatcher* const* const end = next + asked_.size();
  for (; next != end; ++next) {
    Dispatcher* const ch = *next;
    // Channels live apart on the heap; at thousands of asked channels the
    // walk waits on memory, so the channel a few steps ahead is fetched now.
    if (end - next > 8) {
      __builtin_prefetch(next[8]);
      __builtin_prefetch(reinterpret_cast<const char*>(next[8]) + 64);
    }
    ch->asked_pass_ = pass;
    const bool r = ch->readable();
    const bool w = ch->writable();
    if (mods_ == mods) [[likely]] {
      const unsigned want = interest_of(*ch, r, w);
      if (want == ch->interest_) [[likely]] {
        continue;
      }
      refresh_interest(ch, want);
      if (mods_ == mods) continue;
    } else {
      apply_if_still_asked(ch, r, w);
    }
    break;
  }
  if (next != end) {
    std::vector<std::pair<int, Dispatcher*>> rest;
    rest.swap(asked_scratch_);
    rest.clear();
    for (Dispatcher* ch : asked_) rest.emplace_back(ch->fileno(), ch);
    for (const auto& [fd, ch] : rest) {
      // Still this channel (the pointer is only read once the slot says
      // so), still asked, not asked yet, not new in this pass.
      Slot* s = slot(fd);
      if (s == nullptr || s->channel() != ch || ch->asked_index_ < 0 ||
          ch->asked_pass_ == pass || ch->registration() > start) {
        continue;
      }
      ch->asked_pass_ = pass;
      const bool r = ch->readable();
      const bool w = ch->writable();
      apply_if_still_asked(ch, r, w);
    }
    rest.swap(asked_scratch_);
  }
  size_t kept = 0;
  for (size_t d = 0; d < dirty_.size(); ++d) {
    const int fd = dirty_[d];
    Slot* s = slot(fd);
    Dispatcher* ch = s == nullptr ? nullptr : s->channel();
    if (ch == nullptr || !ch->dirty_) continue;
    // Registered during this phase (by a predicate or an error handler):
    // watched from the next phase on, as an asked channel is (and as in
    // Python, whose poll() walks a copy of the map).
    if (ch->registration() > start) {
      dirty_[kept++] = fd;
      continue;
    }
    ch->dirty_ = false;
    if (!ch->declared_interest()) continue;
    const unsigned want =
        interest_of(*ch, ch->declared_readable(), ch->declared_writable());
    if (want != ch->interest_) refresh_interest(ch, want);
  }
  dirty_.resize(kept);
  if (check_declared()) verify_automatic_interest();
}

void ChannelMap::verify_automatic_interest() {
  for (const Dispatcher* c : channels()) {
    auto* ch = const_cast<Dispatcher*>(c);
    if (!ch->automatic_interest()) continue;
    const bool r = ch->readable(), w = ch->writable();
    if (r != ch->declared_readable() || w != ch->declared_writable()) {
      throw std::logic_error(
          "automatic declared interest out of date for " + ch->repr() +
          ": readable()/writable() answer " + (r ? "true" : "false") + "/" +
          (w ? "true" : "false") + ", declared " +
          (ch->declared_readable() ? "true" : "false") + "/" +
          (ch->declared_writable() ? "true" : "false"));
    }
  }
}

void ChannelMap::release_closed() {
  // Destructors may close or create channels: release from a local list.
  while (!closed_.empty()) {
    std::vector<std::shared_ptr<Dispatcher>> doomed;
    doomed.swap(closed_);
  }
}

ChannelMap::Stats ChannelMap::stats() const {
  return Stats{waits_, posted_->wakeups_written()};
}

bool ChannelMap::alive() const {
  return size_ > 0 || timers_.keep_alive_count() > 0 || posted_->has_work();
}

void ChannelMap::poll_once(Timeout timeout) {
  if (depth_ == 0) release_closed();
  if (!alive()) return;
  struct Depth {
    explicit Depth(ChannelMap* m) : map(m) { ++map->depth_; }
    ~Depth() {
      if (--map->depth_ == 0) map->release_closed();  // 6. Reap
    }
    ChannelMap* map;
  } depth(this);

  // 1. Interest.
  update_interest();

  // 2. Wait. The ready list is swapped out so a nested loop in a handler
  // gets its own.
  std::vector<ReadyEvent> ready;
  ready.swap(ready_);
  ready.clear();
  const uint64_t wait_serial = last_registration();
  wait(timeout, &ready);
  const uint64_t wait_number = ++waits_;

  // 3. Dispatch.
  dispatch(ready, wait_serial, wait_number);
  ready.swap(ready_);

  // 4. Posted.
  if (posted_->has_work()) posted_->run();

  // 5. Timers.
  if (!timers_.empty()) run_timers();
}

void ChannelMap::wait(Timeout timeout, std::vector<ReadyEvent>* ready) {
  // Fetched here: a predicate may have switched the map's backend.
  Backend& b = backend();
  if (const auto deadline = timers_.next_deadline()) {
    const Duration left = *deadline - Clock::now();
    const Duration until =
        left.count() <= 0 ? Duration::zero()
                          : round_up(left, b.features().timeout_resolution);
    if (!timeout || until < *timeout) timeout = until;
  }
  if (posted_->about_to_wait()) timeout = std::chrono::nanoseconds(0);
  b.wait(timeout, ready);
  posted_->awake();
  now_ = Clock::now();
}

void ChannelMap::dispatch(const std::vector<ReadyEvent>& ready,
                          uint64_t wait_serial, uint64_t wait_number) {
  // A channel registered after the wait (perhaps on a reused fd number)
  // never sees events meant for its predecessor.
  const int trace = event_trace_fd();
  for (const ReadyEvent& ev : ready) {
    Slot* s = slot(ev.fd);
    Dispatcher* ch = s == nullptr ? nullptr : s->channel();
    if (ch == nullptr) {
      dispatch_internal(ev.fd);
      continue;
    }
    if (ch->registration() > wait_serial) continue;
    if (trace >= 0) [[unlikely]] {
      trace_event(trace, wait_number, ev.fd, ch->registration(), ev.events);
    }
    internal::readwrite_inline(*ch, ev.events);
    // A handler ran a nested loop on this map: the rest of this list may be
    // stale (drained sockets). Readiness is level-triggered, so whatever is
    // still ready is reported again by the next wait.
    if (waits_ != wait_number) break;
  }
}

void ChannelMap::dispatch_internal(int fd) {
  if (fd == posted_->fd()) {
    posted_->drain_wakeup();
  } else if (signals_ && fd == signals_->fd()) {
    deliver_signals();
  }
}

void ChannelMap::run_timers() {
  now_ = Clock::now();
  timers_.run_due(now_);
}

TimerHandle ChannelMap::schedule(TimePoint when, Duration interval,
                                 std::function<void()> fn, bool keep_alive) {
  return timers_.schedule(when, interval, std::move(fn), keep_alive);
}

TimerHandle ChannelMap::call_later(Duration delay, std::function<void()> fn) {
  return call_at(Clock::now() + delay, std::move(fn));
}

TimerHandle ChannelMap::call_later(double seconds, std::function<void()> fn) {
  return call_later(from_seconds(seconds), std::move(fn));
}

TimerHandle ChannelMap::call_at(TimePoint when, std::function<void()> fn) {
  return schedule(when, Duration::zero(), std::move(fn), true);
}

TimerHandle ChannelMap::call_every(Duration interval,
                                   std::function<void()> fn) {
  if (interval.count() <= 0) interval = Duration(1);
  return schedule(Clock::now() + interval, interval, std::move(fn), true);
}

TimerHandle ChannelMap::call_every(double seconds, std::function<void()> fn) {
  return call_every(from_seconds(seconds), std::move(fn));
}

void ChannelMap::post(std::function<void()> fn) {
  posted_->post(std::move(fn));
}

SignalHandle ChannelMap::on_signal(int signo, std::function<void(int)> fn) {
  if (!signals_) {
    auto source = internal::SignalSource::create();
    if (backend_) backend_->update(source->fd(), kInterestNone, kInterestRead);
    signals_ = std::move(source);
  }
  signals_->add(signo);  // throws if another map of the process watches it
  auto watch = std::make_shared<internal::SignalWatch>(
      internal::SignalWatch{this, signo, std::move(fn)});
  watches_.push_back(watch);
  return SignalHandle(watch);
}

void ChannelMap::cancel_signal(internal::SignalWatch* watch) {
  watch->map = nullptr;
  bool still_watched = false;
  for (size_t i = 0; i < watches_.size();) {
    if (watches_[i].get() == watch) {
      watches_.erase(watches_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    still_watched |= watches_[i]->signo == watch->signo;
    ++i;
  }
  if (!still_watched) signals_->remove(watch->signo);
}

void ChannelMap::deliver_signals() {
  std::vector<int> delivered;
  signals_->drain(&delivered);
  for (int signo : delivered) {
    // Handlers may cancel themselves or others: call from a copy, and only
    // those still watching.
    std::vector<std::shared_ptr<internal::SignalWatch>> now_watching;
    for (const auto& watch : watches_) {
      if (watch->signo == signo) now_watching.push_back(watch);
    }
    for (const auto& watch : now_watching) {
      if (watch->map == this) watch->fn(signo);
    }
  }
}

void ChannelMap::drain(double seconds) {
  for (Dispatcher* ch : channels()) {
    // Closed by an earlier channel's handle_drain(): its memory lives until
    // the iteration ends, so asking is safe.
    if (ch->registered_map() != this) continue;
    try {
      ch->handle_drain();
    } catch (const ExitNow&) {
      throw;
    } catch (...) {
      ch->handle_error();
    }
  }
  schedule(
      Clock::now() + from_seconds(seconds), Duration::zero(),
      [this] { close_all(/*ignore_all=*/true); }, /*keep_alive=*/false);
}

void ChannelMap::close_all(bool ignore_all) {
  // Channels closed by another's close() stay alive in closed_ until the
  // end, and closing twice is harmless.
  for (Dispatcher* ch : channels()) {
    try {
      ch->close();
    } catch (const ExitNow&) {
      throw;
    } catch (const std::system_error& e) {
      if (e.code().value() == EBADF) continue;
      if (!ignore_all) throw;
    } catch (...) {
      if (!ignore_all) throw;
    }
  }
  clear();  // also releases the closed channels outside an iteration
}

void ChannelMap::clear() {
  for (size_t fd = 0; fd < slots_.size(); ++fd) {
    if (Dispatcher* ch = slots_[fd].channel()) ch->del_channel(this);
  }
  if (depth_ == 0) release_closed();
}

ChannelMap& socket_map() {
  thread_local ChannelMap map;
  return map;
}

}  // namespace asyncore
