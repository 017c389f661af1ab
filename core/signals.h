// SignalDispatcher: POSIX signals as loop events for asyncore-style code, a
// thin user of ChannelMap::on_signal(). It is a channel so that, as in the
// examples, "the loop runs until every channel is closed" includes it and
// close_all() stops it; it watches nothing itself (a placeholder descriptor
// that is never polled).
#ifndef ASYNCOREPP_CORE_SIGNALS_H_
#define ASYNCOREPP_CORE_SIGNALS_H_

#include <functional>
#include <vector>

#include "core/channel_map.h"
#include "core/dispatcher.h"

namespace asyncore {

class SignalDispatcher : public Dispatcher {
 public:
  // Watches `signals` in `map` (default socket_map()); each delivery calls
  // on_signal(signo) on the loop's thread. The default callback closes every
  // channel of the map, which ends loop(). Throws std::logic_error if
  // another map of the process watches one of them, std::system_error on
  // failure.
  SignalDispatcher(std::vector<int> signals,
                   std::function<void(int)> on_signal = nullptr,
                   ChannelMap* map = nullptr);
  // Stops watching (the previous dispositions come back).
  ~SignalDispatcher() override;

  bool readable() override { return false; }
  bool writable() override { return false; }
  void close() override;

 private:
  void stop_watching();

  std::function<void(int)> on_signal_;
  std::vector<SignalHandle> watches_;
};

template <>
struct internal::LibraryPredicates<SignalDispatcher> : std::true_type {};

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_SIGNALS_H_
