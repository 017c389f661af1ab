#include "core/loop.h"

#include <chrono>

namespace asyncore {

Timeout to_timeout(std::optional<double> seconds) {
  // Beyond a year is "forever" for a wait (spec: huge timeouts block).
  if (!seconds || *seconds > 365.0 * 24 * 3600) return std::nullopt;
  return from_seconds(*seconds);
}

void loop(const LoopOptions& options) {
  ChannelMap& map = options.map ? *options.map : socket_map();
  if (!options.backend.empty()) map.set_backend(options.backend);
  const Timeout timeout = to_timeout(options.timeout);
  if (!options.count) {
    while (map.alive()) map.poll_once(timeout);
    return;
  }
  for (long left = *options.count; left > 0 && map.alive(); --left) {
    map.poll_once(timeout);
  }
}

void loop(std::optional<double> timeout, bool use_poll, ChannelMap* map,
          std::optional<long> count) {
  loop(LoopOptions{.timeout = timeout,
                   .backend = use_poll ? "poll" : "select",
                   .map = map,
                   .count = count});
}

namespace {

void poll_with(std::string_view backend, std::optional<double> timeout,
               ChannelMap* map) {
  ChannelMap& m = map ? *map : socket_map();
  m.set_backend(backend);
  m.poll_once(to_timeout(timeout));
}

}  // namespace

void poll(std::optional<double> timeout, ChannelMap* map) {
  poll_with("select", timeout, map);
}

void poll2(std::optional<double> timeout, ChannelMap* map) {
  poll_with("poll", timeout, map);
}

void close_all(ChannelMap* map, bool ignore_all) {
  (map ? *map : socket_map()).close_all(ignore_all);
}

}  // namespace asyncore
