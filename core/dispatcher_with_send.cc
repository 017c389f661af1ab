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
    update_declared_writable();
    return;
  }
  out_.append(data);
  initiate_send();
}

void DispatcherWithSend::initiate_send() {
  out_.consume(Dispatcher::send(out_.view().substr(0, kSendChunk)));
  // A drained burst does not pin its peak buffer size for the channel's life.
  if (out_.empty() && out_.capacity() > kSendChunk) out_.shrink();
  update_declared_writable();
}

void DispatcherWithSend::handle_write() { initiate_send(); }

bool DispatcherWithSend::writable() { return wants_write(); }

void DispatcherWithSend::update_declared_writable() {
  set_writable(wants_write());
}

}  // namespace asyncore
