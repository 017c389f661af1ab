// loop(): run iterations of a ChannelMap until nothing keeps it alive (no
// channel, no timer, no posted callback: ChannelMap::alive()), a count runs
// out, or a handler throws ExitNow (spec A.1), plus Python's poll()/poll2()
// and close_all(). Without timers or posts that is Python's "until the map
// is empty".
#ifndef ASYNCOREPP_CORE_LOOP_H_
#define ASYNCOREPP_CORE_LOOP_H_

#include <optional>
#include <string_view>

#include "core/channel_map.h"

namespace asyncore {

struct LoopOptions {
  // Seconds each iteration may wait; nullopt waits until something is ready.
  // Poll-like backends truncate to whole milliseconds (as Python's poll2).
  std::optional<double> timeout = 30.0;
  // "auto", "select", "poll", "epoll", "kqueue"; empty keeps the map's
  // current backend (auto for a map that never ran).
  std::string_view backend = {};
  // nullptr: socket_map().
  ChannelMap* map = nullptr;
  // Iterations to run; nullopt runs until the map is empty.
  std::optional<long> count = std::nullopt;
};

void loop(const LoopOptions& options = {});

// Python's signature, with its meaning: use_poll false = select, true = poll.
void loop(std::optional<double> timeout, bool use_poll = false,
          ChannelMap* map = nullptr, std::optional<long> count = std::nullopt);

// One select-based iteration (Python's poll) and one poll-based (poll2).
void poll(std::optional<double> timeout = 0.0, ChannelMap* map = nullptr);
void poll2(std::optional<double> timeout = 0.0, ChannelMap* map = nullptr);

// Python's close_all(map, ignore_all).
void close_all(ChannelMap* map = nullptr, bool ignore_all = false);

// Seconds (nullopt = forever) to a backend timeout; negative means 0.
Timeout to_timeout(std::optional<double> seconds);

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_LOOP_H_
