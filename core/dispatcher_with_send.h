// DispatcherWithSend: a Dispatcher with an output buffer (spec A.3). send()
// queues and tries to write at once; handle_write() writes the rest as the
// socket drains. Consumption from the front is an offset, not a copy.
// Graceful close and back-pressure: see core/buffered_dispatcher.h.
#ifndef ASYNCOREPP_CORE_DISPATCHER_WITH_SEND_H_
#define ASYNCOREPP_CORE_DISPATCHER_WITH_SEND_H_

#include <string>
#include <string_view>

#include "core/buffered_dispatcher.h"
#include "core/byte_buffer.h"

namespace asyncore {

class DispatcherWithSend : public BufferedDispatcher {
 public:
  // Python writes at most this much per send() call.
  static constexpr size_t kSendChunk = 65536;

  using BufferedDispatcher::BufferedDispatcher;

  // Queues `data` and tries to send it now (Python's send() returns None).
  void send(std::string_view data);
  // One send() of up to kSendChunk queued bytes.
  void initiate_send();
  // Bytes still queued.
  size_t pending() const { return out_.size(); }
  // Calls handle_close() once everything queued has been sent.
  void close_when_done() override;

  void handle_write() override;
  // Not connected yet (to see the connect complete), output pending, or a
  // close waiting for the output to drain.
  bool writable() override;

 protected:
  size_t queued_size() const final { return out_.size(); }
  bool output_queued() const final { return !out_.empty(); }
  bool wants_write() const final {
    return !connected() || pending() > 0 || close_when_done_;
  }

 private:
  ByteBuffer out_;
  bool close_when_done_ = false;
};

template <>
struct internal::LibraryPredicates<DispatcherWithSend> : std::true_type {};

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_DISPATCHER_WITH_SEND_H_
