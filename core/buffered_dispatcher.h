// BufferedDispatcher: what DispatcherWithSend and AsyncChat share, so that
// one connection can neither lose its output nor grow without bound (both
// switchable, both beyond Python):
//  - Graceful close: at the peer's EOF with output still queued, reading
//    stops, the queue is sent, and only then does handle_close() run
//    (drain_on_eof; false is Python's immediate close). ChannelMap::drain()
//    ends a channel the same way.
//  - Back-pressure: above a high-water mark of queued output readable() is
//    false until the queue drains below the low-water mark (see
//    core/output_limit.h). A subclass that overrides readable() keeps it by
//    and-ing the base class's answer in.
// The subclass owns the queue: it says how much it holds and whether it
// wants to write, and calls queue_changed() after every change.
#ifndef ASYNCOREPP_CORE_BUFFERED_DISPATCHER_H_
#define ASYNCOREPP_CORE_BUFFERED_DISPATCHER_H_

#include <cstddef>

#include "core/dispatcher.h"
#include "core/output_limit.h"

namespace asyncore {

class BufferedDispatcher : public Dispatcher {
 public:
  using Dispatcher::Dispatcher;

  // At the peer's EOF with output queued: true sends it before closing,
  // false closes at once, dropping it (Python).
  bool drain_on_eof = true;

  // Calls handle_close() once everything queued before this call is sent.
  virtual void close_when_done() = 0;

  // Reading pauses at `high` bytes of queued output and resumes at `low`
  // (defaults 1 MiB and 256 KiB; high == 0: no limit).
  void set_output_limit(size_t high, size_t low);
  const OutputLimit& output_limit() const { return limit_; }

  void handle_eof() override;
  // Sends what is queued, then handle_close().
  void handle_drain() override;
  // False while reading is paused by back-pressure.
  bool readable() override;

 protected:
  void predicates_changed() override { queue_changed(); }
  // What the limit measures, whether anything is queued, and what
  // writable() answers (the declared interest follows it).
  virtual size_t queued_size() const = 0;
  virtual bool output_queued() const = 0;
  virtual bool wants_write() const = 0;
  // After every change of the queue or of what wants_write() reads: the
  // back-pressure state and the declared interest, kept equal to what the
  // predicates answer.
  void queue_changed();

 private:
  OutputLimit limit_;
};

template <>
struct internal::LibraryPredicates<BufferedDispatcher> : std::true_type {};

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_BUFFERED_DISPATCHER_H_
