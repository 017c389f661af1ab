// ChannelMap: Python's socket map (fd -> channel) plus the loop state that
// goes with it: the backend instance, the interest registered per fd, and the
// channels closed during the current iteration (released after it).
//
// One iteration (poll_once):
//  1. Interest: ask readable()/writable() of every channel that does not
//     declare its interest, add the declared channels that changed, and hand
//     only the differences to the backend.
//  2. Wait: the backend fills a reusable ready list.
//  3. Dispatch: readwrite() per ready fd, skipping fds whose channel was
//     closed, replaced or newly registered since the wait (spec D1/C5).
//  4. Reap: drop the references to channels closed during the iteration.
//
// Not thread-safe: one map, one thread.
#ifndef ASYNCOREPP_CORE_CHANNEL_MAP_H_
#define ASYNCOREPP_CORE_CHANNEL_MAP_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.h"

namespace asyncore {

class Dispatcher;

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
  // The default backend ("auto") is created when first needed: at the first
  // iteration or registration.
  ChannelMap() = default;
  // Creates the named backend at once (so an unknown name throws here).
  explicit ChannelMap(std::string_view backend_name);
  // Unregisters every channel (closing none) and releases the references.
  ~ChannelMap();
  ChannelMap(const ChannelMap&) = delete;
  ChannelMap& operator=(const ChannelMap&) = delete;

  size_t size() const { return size_; }
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

  // One loop iteration with `timeout` (nullopt: wait forever). Returns at
  // once when the map is empty. Exceptions from readable()/writable(), from
  // handle_error() and ExitNow propagate, as in Python. A backend that
  // cannot watch a channel's fd is that channel's error, not the loop's: its
  // handle_error() runs, and it is closed if that leaves it open.
  void poll_once(Timeout timeout);

  // Calls close() on every channel, then empties the map. An exception from
  // close() other than EBADF propagates (leaving the map as it is) unless
  // ignore_all; ExitNow always propagates.
  void close_all(bool ignore_all = false);

  // Unregisters everything without closing (Python's map.clear()).
  void clear();

 private:
  friend class Dispatcher;

  struct Slot {
    Dispatcher* channel = nullptr;
    std::shared_ptr<Dispatcher> owner;  // null for channels not made by make<T>
    unsigned registered = kInterestNone;
    int asked_index = -1;  // position in asked_, -1 when interest is declared
    bool dirty = false;    // declared interest changed since the last wait
  };

  // Called by Dispatcher.
  void add(int fd, Dispatcher* channel, std::shared_ptr<Dispatcher> owner);
  void remove(int fd, Dispatcher* channel);
  void adopt(int fd, Dispatcher* channel, std::shared_ptr<Dispatcher> owner);
  void set_declared(int fd, bool declared);
  void mark_dirty(int fd);

  Backend& backend();
  Slot* slot(int fd);
  void unlink_asked(Slot& s);
  void update_interest();
  void refresh_interest(int fd, Dispatcher* ch, unsigned want);
  void release_closed();

  std::unique_ptr<Backend> backend_;
  std::string backend_name_ = "auto";
  std::vector<Slot> slots_;  // indexed by fd
  std::vector<int> asked_;   // fds whose predicates are asked every iteration
  std::vector<int> asked_scratch_;  // the copy of asked_ an iteration walks
  std::vector<int> dirty_;  // declared channels to re-evaluate before a wait
  std::vector<ReadyEvent> ready_;
  std::vector<std::shared_ptr<Dispatcher>> closed_;  // released after dispatch
  size_t size_ = 0;
  uint64_t waits_ = 0;  // backend waits so far (detects nested loops)
  int depth_ = 0;       // nesting of poll_once (a handler may run a loop)
};

// Python's socket_map: the map used wherever none is given.
ChannelMap& socket_map();

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_CHANNEL_MAP_H_
