// DispatcherWithSend: a Dispatcher with an output buffer (spec A.3). send()
// queues and tries to write at once; handle_write() writes the rest as the
// socket drains. Consumption from the front is an offset, not a copy.
#ifndef ASYNCOREPP_CORE_DISPATCHER_WITH_SEND_H_
#define ASYNCOREPP_CORE_DISPATCHER_WITH_SEND_H_

#include <string>
#include <string_view>

#include "core/byte_buffer.h"
#include "core/dispatcher.h"

namespace asyncore {

class DispatcherWithSend : public Dispatcher {
 public:
  // Python writes at most this much per send() call.
  static constexpr size_t kSendChunk = 65536;

  using Dispatcher::Dispatcher;

  // Queues `data` and tries to send it now (Python's send() returns None).
  void send(std::string_view data);
  // One send() of up to kSendChunk queued bytes.
  void initiate_send();
  // Bytes still queued.
  size_t pending() const { return out_.size(); }

  void handle_write() override;
  // Not connected yet (to see the connect complete), or output pending.
  bool writable() override;

 private:
  // Not connected yet, or output pending: writable() and the declared value.
  bool wants_write() const { return !connected() || pending() > 0; }
  // Keeps the declared interest equal to writable() (see Dispatcher).
  void update_declared_writable();

  ByteBuffer out_;
};

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_DISPATCHER_WITH_SEND_H_
