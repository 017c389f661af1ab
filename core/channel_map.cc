#include "core/channel_map.h"

#include <atomic>
#include <cerrno>
#include <system_error>
#include <utility>

#include "core/dispatcher.h"

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

}  // namespace

ChannelMap::ChannelMap(std::string_view backend_name)
    : backend_name_(backend_name) {
  backend();  // an unknown name fails here, not at the first iteration
}

ChannelMap::~ChannelMap() { clear(); }

ChannelMap::Slot* ChannelMap::slot(int fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
  return &slots_[static_cast<size_t>(fd)];
}

Dispatcher* ChannelMap::get(int fd) const {
  if (fd < 0 || static_cast<size_t>(fd) >= slots_.size()) return nullptr;
  return slots_[static_cast<size_t>(fd)].channel;
}

std::vector<Dispatcher*> ChannelMap::channels() const {
  std::vector<Dispatcher*> out;
  out.reserve(size_);
  for (const Slot& s : slots_) {
    if (s.channel != nullptr) out.push_back(s.channel);
  }
  return out;
}

Backend& ChannelMap::backend() {
  if (!backend_) backend_ = make_backend(backend_name_);
  return *backend_;
}

std::string_view ChannelMap::backend_name() { return backend().name(); }

void ChannelMap::set_backend(std::string_view name) {
  if (backend_ && (name == backend_->name() ||
                   (name == "auto" && backend_name_ == "auto"))) {
    return;  // already there: keep the registrations
  }
  std::unique_ptr<Backend> next = make_backend(name);
  for (size_t fd = 0; fd < slots_.size(); ++fd) {
    Slot& s = slots_[fd];
    if (s.channel == nullptr || s.registered == kInterestNone) continue;
    try {
      next->update(static_cast<int>(fd), kInterestNone, s.registered);
    } catch (const std::system_error&) {
      // e.g. select and fd >= FD_SETSIZE: re-register at the next iteration,
      // which delivers the error to that channel.
      s.registered = kInterestNone;
      if (s.asked_index < 0) mark_dirty(static_cast<int>(fd));
    }
  }
  backend_ = std::move(next);
  backend_name_ = name;
}

void ChannelMap::add(int fd, Dispatcher* channel,
                     std::shared_ptr<Dispatcher> owner) {
  if (static_cast<size_t>(fd) >= slots_.size()) {
    slots_.resize(static_cast<size_t>(fd) + 1);
  }
  if (Dispatcher* previous = slots_[static_cast<size_t>(fd)].channel) {
    // Python silently replaces the entry; the replaced channel must then not
    // believe it is still registered (it keeps its fd, as in Python).
    remove(fd, previous);
  }
  Slot& s = slots_[static_cast<size_t>(fd)];
  s.channel = channel;
  s.owner = std::move(owner);
  s.registered = kInterestNone;
  s.dirty = false;
  s.asked_index = -1;
  ++size_;
  channel->registered(this, next_registration());
  if (channel->declared_interest()) {
    mark_dirty(fd);
  } else {
    s.asked_index = static_cast<int>(asked_.size());
    asked_.push_back(fd);
  }
}

void ChannelMap::unlink_asked(Slot& s) {
  if (s.asked_index < 0) return;
  int last = asked_.back();
  asked_[static_cast<size_t>(s.asked_index)] = last;
  slots_[static_cast<size_t>(last)].asked_index = s.asked_index;
  asked_.pop_back();
  s.asked_index = -1;
}

void ChannelMap::remove(int fd, Dispatcher* channel) {
  Slot* s = slot(fd);
  if (s == nullptr || s->channel != channel) return;
  if (s->registered != kInterestNone && backend_) {
    // Must reach the kernel before the caller closes the fd (spec A.8.3).
    // The fd may already be closed behind our back: nothing left to undo.
    try {
      backend_->update(fd, s->registered, kInterestNone);
    } catch (const std::system_error&) {
    }
  }
  unlink_asked(*s);
  if (s->owner) closed_.push_back(std::move(s->owner));
  *s = Slot{};
  --size_;
  channel->unregistered(next_registration());
  // The reference is released after the iteration (or at the next one), not
  // here: the caller may be a member function of the channel it refers to.
}

void ChannelMap::adopt(int fd, Dispatcher* channel,
                       std::shared_ptr<Dispatcher> owner) {
  Slot* s = slot(fd);
  if (s != nullptr && s->channel == channel && !s->owner) {
    s->owner = std::move(owner);
  }
}

void ChannelMap::set_declared(int fd, bool declared) {
  Slot* s = slot(fd);
  if (s == nullptr || s->channel == nullptr) return;
  if (declared) {
    unlink_asked(*s);
    mark_dirty(fd);
  } else if (s->asked_index < 0) {
    s->asked_index = static_cast<int>(asked_.size());
    asked_.push_back(fd);
  }
}

void ChannelMap::mark_dirty(int fd) {
  Slot* s = slot(fd);
  if (s == nullptr || s->dirty) return;
  s->dirty = true;
  dirty_.push_back(fd);
}

void ChannelMap::refresh_interest(int fd, Dispatcher* ch, unsigned want) {
  Slot* s = slot(fd);
  if (want == s->registered) return;
  try {
    backend().update(fd, s->registered, want);
    s->registered = want;
  } catch (const std::system_error&) {
    // An fd the backend cannot watch (select and fd >= FD_SETSIZE, epoll out
    // of watches...) costs its channel alone, never the loop: the channel's
    // handle_error() gets the error (it runs inside this catch, so
    // current_exception() is the error), and a channel still open after that
    // is closed, since it could never be served.
    const std::shared_ptr<Dispatcher> pin = s->owner;  // s may not survive
    const uint64_t registration = ch->registration();
    ch->handle_error();
    if (ch->registration() == registration) ch->close();
  }
}

void ChannelMap::update_interest() {
  // Predicates and error handlers are user code: they may close or add
  // channels (which reorders asked_ and may grow slots_), so walk a copy and
  // look each slot up again after every call out.
  std::vector<int> asked;
  asked.swap(asked_scratch_);
  asked.assign(asked_.begin(), asked_.end());
  for (const int fd : asked) {
    Slot* before = slot(fd);
    if (before == nullptr || before->channel == nullptr ||
        before->asked_index < 0) {
      continue;
    }
    Dispatcher* ch = before->channel;
    const bool r = ch->readable() && !ch->reading_stopped();
    const bool w = ch->writable();
    Slot* s = slot(fd);
    if (s == nullptr || s->channel != ch) continue;
    refresh_interest(fd, ch, interest_for(r, w, ch->accepting()));
  }
  asked.swap(asked_scratch_);
  for (size_t i = 0; i < dirty_.size(); ++i) {
    const int fd = dirty_[i];
    Slot* s = slot(fd);
    if (s == nullptr || s->channel == nullptr || !s->dirty) continue;
    s->dirty = false;
    Dispatcher* ch = s->channel;
    if (ch->declared_interest()) {
      refresh_interest(
          fd, ch,
          interest_for(ch->declared_readable() && !ch->reading_stopped(),
                       ch->declared_writable(), ch->accepting()));
    }
  }
  dirty_.clear();
}

void ChannelMap::release_closed() {
  // Destructors may close or create channels: release from a local list.
  while (!closed_.empty()) {
    std::vector<std::shared_ptr<Dispatcher>> doomed;
    doomed.swap(closed_);
  }
}

void ChannelMap::poll_once(Timeout timeout) {
  if (depth_ == 0) release_closed();
  if (empty()) return;
  struct Depth {
    explicit Depth(ChannelMap* m) : map(m) { ++map->depth_; }
    ~Depth() {
      if (--map->depth_ == 0) map->release_closed();
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
  // Fetched here: a predicate may have switched the map's backend.
  backend().wait(timeout, &ready);
  const uint64_t wait_number = ++waits_;

  // 3. Dispatch. A channel registered after the wait (perhaps on a reused
  // fd number) never sees events meant for its predecessor.
  for (const ReadyEvent& ev : ready) {
    Slot* s = slot(ev.fd);
    if (s == nullptr || s->channel == nullptr ||
        s->channel->registration() > wait_serial) {
      continue;
    }
    readwrite(*s->channel, ev.events);
    // A handler ran a nested loop on this map: the rest of this list may be
    // stale (drained sockets). Readiness is level-triggered, so whatever is
    // still ready is reported again by the next wait.
    if (waits_ != wait_number) break;
  }
  ready.swap(ready_);
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
    if (Dispatcher* ch = slots_[fd].channel) ch->del_channel(this);
  }
  if (depth_ == 0) release_closed();
}

ChannelMap& socket_map() {
  static ChannelMap map;
  return map;
}

}  // namespace asyncore
