// DispatcherWithSend: a Dispatcher with an output buffer (spec A.3). send()
// queues and tries to write at once; handle_write() writes the rest as the
// socket drains. Consumption from the front is an offset, not a copy.
//
// Beyond Python, so that one connection can neither lose output nor grow
// without bound (both switchable):
//  - Graceful close: at the peer's EOF with output still queued, the channel
//    stops reading, sends what is queued, and only then calls handle_close()
//    (drain_on_eof; false is Python's immediate close).
//  - Back-pressure: above a high-water mark of queued output readable() is
//    false until the queue drains below the low-water mark
//    (set_output_limit; see core/output_limit.h). A subclass that overrides
//    readable() keeps it by and-ing DispatcherWithSend::readable() in.
#ifndef ASYNCOREPP_CORE_DISPATCHER_WITH_SEND_H_
#define ASYNCOREPP_CORE_DISPATCHER_WITH_SEND_H_

#include <string>
#include <string_view>

#include "core/byte_buffer.h"
#include "core/dispatcher.h"
#include "core/output_limit.h"

namespace asyncore {

class DispatcherWithSend : public Dispatcher {
 public:
  // Python writes at most this much per send() call.
  static constexpr size_t kSendChunk = 65536;

  using Dispatcher::Dispatcher;

  // At the peer's EOF with output queued: true sends it before closing,
  // false closes at once, dropping it (Python).
  bool drain_on_eof = true;

  // Queues `data` and tries to send it now (Python's send() returns None).
  void send(std::string_view data);
  // One send() of up to kSendChunk queued bytes.
  void initiate_send();
  // Bytes still queued.
  size_t pending() const { return out_.size(); }
  // Calls handle_close() once everything queued has been sent.
  void close_when_done();

  // Reading pauses at `high` queued bytes and resumes at `low` (defaults
  // 1 MiB and 256 KiB; high == 0: no limit).
  void set_output_limit(size_t high, size_t low);
  const OutputLimit& output_limit() const { return limit_; }

  void handle_write() override;
  void handle_eof() override;
  // Sends what is queued, then handle_close().
  void handle_drain() override;
  // False while reading is paused by back-pressure.
  bool readable() override;
  // Not connected yet (to see the connect complete), output pending, or a
  // close waiting for the output to drain.
  bool writable() override;

 private:
  bool wants_write() const {
    return !connected() || pending() > 0 || close_when_done_;
  }
  // After every change of the queue: back-pressure, the declared interest
  // (kept equal to the predicates), and a close waiting for the drain.
  void queue_changed();

  ByteBuffer out_;
  OutputLimit limit_;
  bool close_when_done_ = false;
};

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_DISPATCHER_WITH_SEND_H_
