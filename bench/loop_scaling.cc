// How the cost of one loop iteration grows with idle channels.
//
// One ping-pong pair exchanges a byte per round trip while N idle channels
// (socketpairs nobody writes to) sit in the same map. Reported: time per
// round trip, per backend and per way the channels are asked:
//
//   RoundTrip/<backend>/asked      channels whose class overrides readable()
//                                  and writable(): asked every iteration,
//                                  as in Python (the worst case)
//   RoundTrip/<backend>/declared   the same class with
//                                  set_declared_interest(true) by hand
//   PythonEcho/<backend>/automatic Python's echo handler as written in the
//                                  README (a DispatcherWithSend overriding
//                                  only handle_read): declared by make<T>()
//   PythonEcho/<backend>/declared  the same with set_declared_interest(true)
//   PythonEcho/<backend>/asked     the same with automatic declared
//                                  interest switched off (Python's cost)
//
//   bazel run -c opt //bench:loop_scaling
//   bazel run -c opt //bench:loop_scaling -- --benchmark_filter=epoll
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "bench/fd_limit.h"
#include "core/asyncore.h"

namespace {

enum class Mode { kAsked, kDeclared, kAutomatic };

// Reads whatever arrives; never writable (an idle server-side connection).
// Overriding the predicates keeps it asked unless declared by hand.
class Idle : public asyncore::Dispatcher {
 public:
  Idle(asyncore::Socket sock, asyncore::ChannelMap* map, bool declared)
      : Dispatcher(std::move(sock), map) {
    set_writable(false);
    set_declared_interest(declared);
  }
  void handle_read() override { recv(64); }
  bool readable() override { return true; }
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
  bool readable() override { return true; }
  bool writable() override { return false; }

  bool echo = false;
  size_t received = 0;
};

// Python's echo handler, line for line (README's quick start).
class EchoHandler : public asyncore::DispatcherWithSend {
 public:
  using DispatcherWithSend::DispatcherWithSend;
  void handle_read() override {
    std::string data = recv(8192);
    if (!data.empty()) send(data);
  }
};

// The other end of the active pair: counts the echoed bytes.
class EchoClient : public asyncore::DispatcherWithSend {
 public:
  using DispatcherWithSend::DispatcherWithSend;
  void handle_read() override { received += recv(8192).size(); }
  size_t received = 0;
};

// Idle channels of class C (their other ends kept in peers); false (and
// the benchmark skipped) when the fd limit is reached first.
template <class C, class... Args>
bool add_idle(benchmark::State& state, asyncore::ChannelMap& map, int count,
              std::vector<asyncore::Socket>& peers, Mode mode, Args... args) {
  try {
    for (int i = 0; i < count; ++i) {
      auto [a, b] = asyncore::Socket::pair();
      auto ch = asyncore::make<C>(std::move(a), &map, args...);
      if (mode == Mode::kDeclared) ch->set_declared_interest(true);
      peers.push_back(std::move(b));
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return false;
  }
  return true;
}

// One byte there and back per benchmark iteration.
template <class Client>
void round_trips(benchmark::State& state, asyncore::ChannelMap& map,
                 Client& client) {
  try {
    for (auto _ : state) {
      const size_t before = client.received;
      client.send("x");
      while (client.received == before) map.poll_once(std::nullopt);
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["idle"] = static_cast<double>(state.range(0));
  map.close_all(true);
}

void BM_RoundTrip(benchmark::State& state, std::string backend, Mode mode) {
  raise_fd_limit();
  asyncore::ChannelMap map(backend);
  std::vector<asyncore::Socket> peers;  // the idle channels' other ends
  const bool declared = mode == Mode::kDeclared;
  if (!add_idle<Idle>(state, map, static_cast<int>(state.range(0)), peers,
                      Mode::kAsked, declared)) {
    return;
  }
  auto [a, b] = asyncore::Socket::pair();
  auto client = asyncore::make<Pinger>(std::move(a), &map, declared);
  auto server = asyncore::make<Pinger>(std::move(b), &map, declared);
  server->echo = true;
  round_trips(state, map, *client);
}

void BM_PythonEcho(benchmark::State& state, std::string backend, Mode mode) {
  raise_fd_limit();
  // kAsked: what the same code costs when every channel is asked (Python).
  const bool automatic = asyncore::automatic_declared_interest();
  asyncore::set_automatic_declared_interest(mode != Mode::kAsked);
  {
    asyncore::ChannelMap map(backend);
    std::vector<asyncore::Socket> peers;
    if (add_idle<EchoHandler>(state, map, static_cast<int>(state.range(0)),
                              peers, mode)) {
      auto [a, b] = asyncore::Socket::pair();
      auto client = asyncore::make<EchoClient>(std::move(a), &map);
      auto server = asyncore::make<EchoHandler>(std::move(b), &map);
      if (mode == Mode::kDeclared) {
        client->set_declared_interest(true);
        server->set_declared_interest(true);
      }
      round_trips(state, map, *client);
    }
  }
  asyncore::set_automatic_declared_interest(automatic);
}

void register_all() {
  using Bench = void (*)(benchmark::State&, std::string, Mode);
  struct Row {
    const char* family;
    Mode mode;
    const char* name;
    Bench run;
  };
  const Row rows[] = {
      {"RoundTrip", Mode::kAsked, "asked", BM_RoundTrip},
      {"RoundTrip", Mode::kDeclared, "declared", BM_RoundTrip},
      {"PythonEcho", Mode::kAutomatic, "automatic", BM_PythonEcho},
      {"PythonEcho", Mode::kDeclared, "declared", BM_PythonEcho},
      {"PythonEcho", Mode::kAsked, "asked", BM_PythonEcho},
  };
  for (const std::string& backend : asyncore::available_backends()) {
    for (const Row& row : rows) {
      const std::string name =
          std::string(row.family) + "/" + backend + "/" + row.name;
      auto* b = benchmark::RegisterBenchmark(
          name.c_str(), [backend, row](benchmark::State& s) {
            row.run(s, backend, row.mode);
          });
      // Each idle channel holds two fds (a socketpair): a backend with an
      // fd limit (select: FD_SETSIZE) stops well below it; 9 900 idle
      // channels fit the machines' 20 000 open files.
      const bool limited =
          asyncore::make_backend(backend)->features().fd_limit > 0;
      for (int n : limited ? std::vector<int>{1, 100, 400}
                           : std::vector<int>{1, 100, 1000, 9900}) {
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
