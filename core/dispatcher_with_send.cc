#include "core/dispatcher_with_send.h"

#include <algorithm>

namespace asyncore {

void DispatcherWithSend::send(std::string_view data) {
  if (debug) log_info("sending " + std::string(data));
  out_.append(data);
  initiate_send();
}

void DispatcherWithSend::initiate_send() {
  size_t n = Dispatcher::send(
      std::string_view(out_).substr(sent_, std::min(kSendChunk, pending())));
  sent_ += n;
  if (sent_ == out_.size()) {
    out_.clear();
    sent_ = 0;
  } else if (sent_ >= kSendChunk && sent_ * 2 >= out_.size()) {
    // Compact once the sent prefix dominates: amortised O(1) per byte.
    out_.erase(0, sent_);
    sent_ = 0;
  }
  update_declared_writable();
}

void DispatcherWithSend::handle_write() { initiate_send(); }

bool DispatcherWithSend::writable() { return !connected() || pending() > 0; }

void DispatcherWithSend::update_declared_writable() {
  set_writable(!connected() || pending() > 0);
}

}  // namespace asyncore
