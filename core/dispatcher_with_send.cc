#include "core/dispatcher_with_send.h"

namespace asyncore {

void DispatcherWithSend::send(std::string_view data) {
  if (debug) log_info("sending " + std::string(data));
  if (out_.empty()) {
    // Nothing queued: send straight from the caller's bytes and buffer only
    // what the socket did not take (the same bytes go out as with Python's
    // append-then-initiate_send, without the copy).
    data.remove_prefix(Dispatcher::send(data.substr(0, kSendChunk)));
    out_.append(data);
    queue_changed();
    return;
  }
  out_.append(data);
  initiate_send();
}

void DispatcherWithSend::initiate_send() {
  out_.consume(Dispatcher::send(out_.view().substr(0, kSendChunk)));
  // A drained burst does not pin its peak buffer size for the channel's life.
  if (out_.empty() && out_.capacity() > kSendChunk) out_.shrink();
  queue_changed();
}

void DispatcherWithSend::close_when_done() {
  close_when_done_ = true;
  queue_changed();  // the close happens at a write event
}

void DispatcherWithSend::handle_write() {
  initiate_send();
  if (close_when_done_ && out_.empty() && registered_map() != nullptr) {
    close_when_done_ = false;  // asked once, whatever handle_close() does
    queue_changed();
    handle_close();
  }
}

bool DispatcherWithSend::writable() { return wants_write(); }

}  // namespace asyncore
