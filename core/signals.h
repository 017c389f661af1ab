// SignalDispatcher: delivers POSIX signals to the loop as ordinary events
// (the self-pipe trick), so a server can stop cleanly on SIGINT/SIGTERM
// without doing anything unsafe inside a signal handler.
#ifndef ASYNCOREPP_CORE_SIGNALS_H_
#define ASYNCOREPP_CORE_SIGNALS_H_

#include <signal.h>

#include <functional>
#include <memory>
#include <vector>

#include "core/dispatcher.h"

namespace asyncore {

class SignalDispatcher : public Dispatcher {
 public:
  // Installs handlers for `signals`; each delivery calls on_signal(signo)
  // from the loop. The default callback closes every channel of the map,
  // which ends loop(). Only one SignalDispatcher may exist at a time.
  // Throws std::logic_error if another exists, std::system_error on failure.
  SignalDispatcher(std::vector<int> signals,
                   std::function<void(int)> on_signal = nullptr,
                   ChannelMap* map = nullptr);
  // Restores the previous dispositions.
  ~SignalDispatcher() override;

  void handle_read() override;
  bool writable() override { return false; }
  void close() override;

 private:
  void restore();

  std::vector<int> signals_;
  std::function<void(int)> on_signal_;
  std::vector<std::pair<int, struct sigaction>> previous_;
};

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_SIGNALS_H_
