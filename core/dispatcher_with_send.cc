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
  set_writable(wants_write());  // the close happens at a write event
}

void DispatcherWithSend::set_output_limit(size_t high, size_t low) {
  limit_.set(high, low);
  set_readable(!limit_.update(pending()));
}

void DispatcherWithSend::queue_changed() {
  set_readable(!limit_.update(pending()));
  set_writable(wants_write());
}

void DispatcherWithSend::handle_write() {
  initiate_send();
  if (close_when_done_ && out_.empty() && registered_map() != nullptr) {
    close_when_done_ = false;  // asked once, whatever handle_close() does
    queue_changed();
    handle_close();
  }
}

void DispatcherWithSend::handle_eof() {
  if (!drain_on_eof || out_.empty()) {
    handle_close();
    return;
  }
  stop_reading();
  close_when_done();
}

void DispatcherWithSend::handle_drain() {
  if (out_.empty()) {
    handle_close();
  } else {
    close_when_done();
  }
}

bool DispatcherWithSend::readable() { return !limit_.paused(); }

bool DispatcherWithSend::writable() { return wants_write(); }

}  // namespace asyncore
