#include "core/signals.h"

#include <fcntl.h>

#include <cerrno>

#include "backends/internal/throw_errno.h"

namespace asyncore {

SignalDispatcher::SignalDispatcher(std::vector<int> signals,
                                   std::function<void(int)> on_signal,
                                   ChannelMap* map)
    : Dispatcher(map), on_signal_(std::move(on_signal)) {
  // A descriptor to be a channel under; readable()/writable() are false, so
  // it is never handed to the backend.
  Socket placeholder(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!placeholder) internal::throw_errno(errno, "SignalDispatcher: open");
  set_connected(true);
  set_socket(std::move(placeholder));
  ChannelMap* target = this->map();
  try {
    for (int signo : signals) {
      watches_.push_back(target->on_signal(signo, [this, target](int s) {
        if (on_signal_) {
          on_signal_(s);
        } else {
          target->close_all(/*ignore_all=*/true);
        }
      }));
    }
  } catch (...) {
    stop_watching();
    del_channel();
    throw;
  }
}

SignalDispatcher::~SignalDispatcher() { stop_watching(); }

void SignalDispatcher::stop_watching() {
  for (SignalHandle& watch : watches_) watch.cancel();
  watches_.clear();
}

void SignalDispatcher::close() {
  stop_watching();
  Dispatcher::close();
}

}  // namespace asyncore
