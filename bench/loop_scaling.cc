// How the cost of one loop iteration grows with idle channels.
//
// One ping-pong pair exchanges a byte per round trip while N idle channels
// (socketpairs nobody writes to) sit in the same map. Reported: time per
// round trip, per backend, for asyncore's default "asked" interest (every
// channel's readable()/writable() every iteration) and for declared interest
// (set_declared_interest(true): work proportional to what changed).
//
//   bazel run -c opt //bench:loop_scaling
//   bazel run -c opt //bench:loop_scaling -- --benchmark_filter=epoll
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <memory>
#include <string>
#include <vector>

#include "core/asyncore.h"

namespace {

// Reads whatever arrives; never writable (an idle server-side connection).
class Idle : public asyncore::Dispatcher {
 public:
  Idle(asyncore::Socket sock, asyncore::ChannelMap* map, bool declared)
      : Dispatcher(std::move(sock), map) {
    set_writable(false);
    set_declared_interest(declared);
  }
  void handle_read() override { recv(64); }
  bool writable() override { return false; }
};

// Echoes one byte back and counts what it received.
class Pinger : public asyncore::Dispatcher {
 public:
  Pinger(asyncore::Socket sock, asyncore::ChannelMap* map, bool declared)
      : Dispatcher(std::move(sock), map) {
    set_writable(false);
    set_declared_interest(declared);
  }
  void handle_read() override {
    char buf[64];
    size_t n = recv_into(buf, sizeof buf);
    received += n;
    if (echo && n > 0) send(std::string_view(buf, n));
  }
  bool writable() override { return false; }

  bool echo = false;
  size_t received = 0;
};

void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

void BM_RoundTrip(benchmark::State& state, std::string backend, bool declared) {
  raise_fd_limit();
  const int idle_count = static_cast<int>(state.range(0));
  asyncore::ChannelMap map(backend);
  std::vector<asyncore::Socket> peers;  // the idle channels' other ends
  try {
    for (int i = 0; i < idle_count; ++i) {
      auto [a, b] = asyncore::Socket::pair();
      asyncore::make<Idle>(std::move(a), &map, declared);
      peers.push_back(std::move(b));
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  auto [a, b] = asyncore::Socket::pair();
  auto client = asyncore::make<Pinger>(std::move(a), &map, declared);
  auto server = asyncore::make<Pinger>(std::move(b), &map, declared);
  server->echo = true;
  try {
    for (auto _ : state) {
      const size_t before = client->received;
      client->send("x");
      while (client->received == before) map.poll_once(std::nullopt);
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["idle"] = idle_count;
  map.close_all(true);
}

void register_all() {
  for (const std::string& backend : asyncore::available_backends()) {
    for (bool declared : {false, true}) {
      std::string name =
          "RoundTrip/" + backend + (declared ? "/declared" : "/asked");
      auto* b = benchmark::RegisterBenchmark(
          name.c_str(), [backend, declared](benchmark::State& s) {
            BM_RoundTrip(s, backend, declared);
          });
      // Each idle channel holds two fds (a socketpair): a backend with an
      // fd limit (select: FD_SETSIZE) stops well below it.
      const bool limited =
          asyncore::make_backend(backend)->features().fd_limit > 0;
      for (int n : limited ? std::vector<int>{1, 100, 400}
                           : std::vector<int>{1, 100, 1000, 8000}) {
        b->Arg(n);
      }
      b->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
