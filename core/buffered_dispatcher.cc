#include "core/buffered_dispatcher.h"

namespace asyncore {

void BufferedDispatcher::set_output_limit(size_t high, size_t low) {
  limit_.set(high, low);
  queue_changed();
}

void BufferedDispatcher::queue_changed() {
  set_readable(!limit_.update(queued_size()));
  set_writable(wants_write());
}

void BufferedDispatcher::handle_eof() {
  if (!drain_on_eof || !output_queued()) {
    handle_close();
    return;
  }
  stop_reading();
  close_when_done();
}

void BufferedDispatcher::handle_drain() {
  if (output_queued()) {
    close_when_done();
  } else {
    handle_close();
  }
}

bool BufferedDispatcher::readable() { return !limit_.paused(); }

}  // namespace asyncore
