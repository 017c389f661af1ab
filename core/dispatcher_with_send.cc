#include "core/dispatcher_with_send.h"

namespace asyncore {

void DispatcherWithSend::send(std::string_view data) {
  if (debug) log_info("sending " + std::string(data));
  out_.append(data);
  initiate_send();
}

void DispatcherWithSend::initiate_send() {
  out_.consume(Dispatcher::send(out_.view().substr(0, kSendChunk)));
  update_declared_writable();
}

void DispatcherWithSend::handle_write() { initiate_send(); }

bool DispatcherWithSend::writable() { return !connected() || pending() > 0; }

void DispatcherWithSend::update_declared_writable() {
  set_writable(!connected() || pending() > 0);
}

}  // namespace asyncore
