// libevent's test/bench.c method (the one behind the libev-vs-libevent
// charts), with our backends and the peers in one binary so that they are
// measured in the same process run, repetitions interleaved.
//
// N AF_UNIX socketpairs, a read watcher on one end of each. A round primes A
// pairs (spread evenly) with one byte; every read event reads one byte and,
// while the write budget W lasts, writes one byte to the next pair. The
// round ends when every byte written was read. Families:
//
//   Chain/<impl>/N:<n>/A:<a>   time per round, dispatch only: watchers stay
//                              registered (raw-epoll-rereg re-registers
//                              before each round, untimed, as bench.c does)
//   Rereg/<impl>/N:<n>         time to remove and re-add all N watchers and
//                              let the loop apply it (one non-blocking
//                              iteration with nothing ready)
//
// Implementations: ours per backend with declared interest (set by hand:
// the chain channel is a plain Dispatcher, whose writable() is always true)
// and asked (a class overriding readable()/writable(), asked every
// iteration); raw epoll keeping its registrations (the floor for a loop),
// raw epoll re-registering every round, raw poll; libev 4 (epoll, poll,
// select), libevent 2.1 (epoll, poll, select), libuv (uv_poll_t). Each
// callback does the same work: recv one byte, send one byte on.
//
// Ratios to the floor in the same repetition: bench/chain_report.py.
//
//   bazel run -c opt //bench:event_chain
//   bazel run -c opt //bench:event_chain -- --smoke    (seconds; CI)
//   ... -- --iterations=K    exactly K rounds per run (callgrind)
// (bench/run_all.sh adds --benchmark_repetitions=3 and interleaving.)
#include "bench/event_chain.h"

#include <benchmark/benchmark.h>
#include <ev.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/fd_limit.h"
#include "core/asyncore.h"

namespace {

using event_chain::Chain;
using event_chain::Impl;
constexpr int kWrites = event_chain::kWrites;

// --- ours -------------------------------------------------------------------

class ChainChannel : public asyncore::Dispatcher {
 public:
  ChainChannel(asyncore::Socket sock, asyncore::ChannelMap* map, Chain* chain,
               int index)
      : Dispatcher(std::move(sock), map), chain_(chain), index_(index) {}
  void handle_read() override {
    char byte;
    if (recv_into(&byte, 1) == 1) {
      ++chain_->count;
    } else {
      ++chain_->failures;
    }
    chain_->after_read(index_);
  }

 private:
  Chain* chain_;
  int index_;
};

// Asked every iteration, as any class that overrides a predicate.
class AskedChainChannel : public ChainChannel {
 public:
  using ChainChannel::ChainChannel;
  bool readable() override { return true; }
  bool writable() override { return false; }
};

class Ours : public Impl {
 public:
  Ours(Chain& chain, const std::string& backend, bool declared)
      : map_(backend) {
    const int limit = asyncore::make_backend(backend)->features().fd_limit;
    for (int i = 0; i < chain.size(); ++i) {
      if (limit > 0 && chain.read_ends[i] >= limit) {
        throw std::length_error(
            backend + ": fd " + std::to_string(chain.read_ends[i]) +
            " is above its fd limit " + std::to_string(limit));
      }
    }
    chain.read_ends_adopted = true;
    for (int i = 0; i < chain.size(); ++i) {
      asyncore::Socket sock(chain.read_ends[i]);
      std::shared_ptr<ChainChannel> ch;
      if (declared) {
        ch = asyncore::make<ChainChannel>(std::move(sock), &map_, &chain, i);
        ch->set_writable(false);
        ch->set_declared_interest(true);
      } else {
        ch = asyncore::make<AskedChainChannel>(std::move(sock), &map_, &chain,
                                               i);
      }
      channels_.push_back(std::move(ch));
    }
    run_nowait();
  }
  ~Ours() override { map_.close_all(true); }
  void run_nowait() override { map_.poll_once(std::chrono::nanoseconds(0)); }
  void reregister() override {
    // Python's way: del_channel(), then set_socket() with the same socket.
    for (auto& ch : channels_) {
      ch->del_channel();
      ch->set_socket(std::move(ch->socket()), &map_);
    }
  }

 private:
  asyncore::ChannelMap map_;
  std::vector<std::shared_ptr<ChainChannel>> channels_;
};

// --- raw loops (the floors)
// ---------------------------------------------------

class RawEpoll : public Impl {
 public:
  explicit RawEpoll(Chain& chain)
      : chain_(chain), epfd_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (epfd_ < 0) throw std::runtime_error("epoll_create1 failed");
    events_.resize(std::min(chain.size(), 1024));
    add_all();
  }
  ~RawEpoll() override { ::close(epfd_); }
  void run_nowait() override {
    const int n = ::epoll_wait(epfd_, events_.data(),
                               static_cast<int>(events_.size()), 0);
    for (int i = 0; i < n; ++i) {
      const int index = static_cast<int>(events_[i].data.u32);
      chain_.on_readable(chain_.read_ends[index], index);
    }
  }
  void reregister() override {
    for (int fd : chain_.read_ends)
      ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
    add_all();
  }

 private:
  void add_all() {
    for (int i = 0; i < chain_.size(); ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<uint32_t>(i);
      if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, chain_.read_ends[i], &ev) < 0) {
        throw std::runtime_error("epoll_ctl failed");
      }
    }
  }
  Chain& chain_;
  int epfd_;
  std::vector<epoll_event> events_;
};

class RawPoll : public Impl {
 public:
  explicit RawPoll(Chain& chain) : chain_(chain) { reregister(); }
  void run_nowait() override {
    const int n = ::poll(fds_.data(), fds_.size(), 0);
    for (size_t i = 0, seen = 0; i < fds_.size() && seen < size_t(n); ++i) {
      if (fds_[i].revents == 0) continue;
      ++seen;
      chain_.on_readable(fds_[i].fd, static_cast<int>(i));
    }
  }
  void reregister() override {
    fds_.clear();
    for (int fd : chain_.read_ends) fds_.push_back(pollfd{fd, POLLIN, 0});
  }

 private:
  Chain& chain_;
  std::vector<pollfd> fds_;
};

// --- libev
// ----------------------------------------------------------------------

class Libev : public Impl {
 public:
  Libev(Chain& chain, unsigned backend) : chain_(chain) {
    loop_ = ev_loop_new(backend | EVFLAG_NOENV);
    if (loop_ == nullptr || ev_backend(loop_) != backend) {
      if (loop_ != nullptr) ev_loop_destroy(loop_);
      throw std::runtime_error("libev: backend not available");
    }
    ev_set_userdata(loop_, &chain);
    watchers_.reset(new ev_io[chain.size()]);
    for (int i = 0; i < chain.size(); ++i) {
      ev_io_init(&watchers_[i], on_read, chain.read_ends[i], EV_READ);
      watchers_[i].data = reinterpret_cast<void*>(static_cast<intptr_t>(i));
      ev_io_start(loop_, &watchers_[i]);
    }
    run_nowait();
  }
  ~Libev() override {
    for (int i = 0; i < chain_.size(); ++i) ev_io_stop(loop_, &watchers_[i]);
    ev_loop_destroy(loop_);
  }
  void run_nowait() override { ev_run(loop_, EVRUN_NOWAIT); }
  void reregister() override {
    for (int i = 0; i < chain_.size(); ++i) {
      ev_io_stop(loop_, &watchers_[i]);
      ev_io_set(&watchers_[i], chain_.read_ends[i], EV_READ);
      ev_io_start(loop_, &watchers_[i]);
    }
  }

 private:
  static void on_read(struct ev_loop* loop, ev_io* w, int) {
    auto* chain = static_cast<Chain*>(ev_userdata(loop));
    chain->on_readable(w->fd,
                       static_cast<int>(reinterpret_cast<intptr_t>(w->data)));
  }
  Chain& chain_;
  struct ev_loop* loop_;
  std::unique_ptr<ev_io[]> watchers_;
};

// --- libuv
// ----------------------------------------------------------------------

class Libuv : public Impl {
 public:
  explicit Libuv(Chain& chain) : chain_(chain) {
    if (uv_loop_init(&loop_) != 0) throw std::runtime_error("uv_loop_init");
    loop_.data = &chain;
    polls_.reset(new uv_poll_t[chain.size()]);
    for (int i = 0; i < chain.size(); ++i) {
      uv_poll_init(&loop_, &polls_[i], chain.read_ends[i]);
      polls_[i].data = reinterpret_cast<void*>(static_cast<intptr_t>(i));
      uv_poll_start(&polls_[i], UV_READABLE, on_read);
    }
    run_nowait();
  }
  ~Libuv() override {
    for (int i = 0; i < chain_.size(); ++i) {
      uv_close(reinterpret_cast<uv_handle_t*>(&polls_[i]), nullptr);
    }
    uv_run(&loop_, UV_RUN_DEFAULT);  // runs the closes
    uv_loop_close(&loop_);
  }
  void run_nowait() override { uv_run(&loop_, UV_RUN_NOWAIT); }
  void reregister() override {
    for (int i = 0; i < chain_.size(); ++i) {
      uv_poll_stop(&polls_[i]);
      uv_poll_start(&polls_[i], UV_READABLE, on_read);
    }
  }

 private:
  static void on_read(uv_poll_t* handle, int, int) {
    auto* chain = static_cast<Chain*>(handle->loop->data);
    const int index =
        static_cast<int>(reinterpret_cast<intptr_t>(handle->data));
    chain->on_readable(chain->read_ends[index], index);
  }
  Chain& chain_;
  uv_loop_t loop_;
  std::unique_ptr<uv_poll_t[]> polls_;
};

// --- the benchmarks
// ---------------------------------------------------------------

using Factory = std::function<std::unique_ptr<Impl>(Chain&)>;

struct Implementation {
  std::string name;
  Factory make;
  bool rereg_each_round = false;  // Chain family: bench.c's re-adds
  bool select_based = false;      // stops at FD_SETSIZE (fd_set bit masks)
  bool is_floor = false;          // raw epoll keeping its registrations
};

std::vector<Implementation> implementations() {
  std::vector<Implementation> all;
  for (const std::string& backend : asyncore::available_backends()) {
    for (bool declared : {true, false}) {
      all.push_back({"ours-" + backend + (declared ? "-declared" : "-asked"),
                     [backend, declared](Chain& c) {
                       return std::make_unique<Ours>(c, backend, declared);
                     }});
    }
  }
  all.push_back({"raw-epoll",
                 [](Chain& c) { return std::make_unique<RawEpoll>(c); }, false,
                 false, true});
  all.push_back({"raw-epoll-rereg",
                 [](Chain& c) { return std::make_unique<RawEpoll>(c); }, true});
  all.push_back(
      {"raw-poll", [](Chain& c) { return std::make_unique<RawPoll>(c); }});
  const std::pair<const char*, unsigned> libev_backends[] = {
      {"epoll", EVBACKEND_EPOLL},
      {"poll", EVBACKEND_POLL},
      {"select", EVBACKEND_SELECT}};
  for (const auto& [name, flag] : libev_backends) {
    const unsigned backend = flag;
    all.push_back(
        {std::string("libev-") + name,
         [backend](Chain& c) { return std::make_unique<Libev>(c, backend); },
         false, backend == EVBACKEND_SELECT});
  }
  for (const char* method : {"epoll", "poll", "select"}) {
    const std::string m = method;
    all.push_back({"libevent-" + m,
                   [m](Chain& c) { return event_chain::make_libevent(c, m); },
                   false, m == "select"});
  }
  all.push_back({"libuv", [](Chain& c) { return std::make_unique<Libuv>(c); }});
  return all;
}

// The pairs and the implementation, or the benchmark skipped with the reason.
bool set_up(benchmark::State& state, const Implementation& impl, int n,
            std::unique_ptr<Chain>& chain, std::unique_ptr<Impl>& loop) {
  try {
    chain = std::make_unique<Chain>(n);
    // The peers' select backends abort (glibc's fd_set check) where ours
    // refuses with an error: skipped here with the same reason.
    const int highest =
        std::max(chain->read_ends.back(), chain->write_ends.back());
    if (impl.select_based && highest >= FD_SETSIZE) {
      throw std::length_error("select: fd " + std::to_string(highest) +
                              " is above FD_SETSIZE " +
                              std::to_string(FD_SETSIZE));
    }
    loop = impl.make(*chain);
    return true;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return false;
  }
}

// One round: prime A pairs, then iterate until every byte written was read.
[[gnu::always_inline]] inline bool run_round(Chain& chain, Impl& loop,
                                             int active) {
  const int space = chain.size() / active;
  chain.fired = 0;
  for (int i = 0; i < active; ++i, ++chain.fired) {
    (void)::send(chain.write_ends[i * space], "e", 1, MSG_NOSIGNAL);
  }
  chain.count = 0;
  chain.writes = kWrites;
  // Bounded: a round needs about (A + W) / A iterations.
  for (long iterations = 0; chain.count != chain.fired; ++iterations) {
    if (iterations > 1000000 || chain.failures > 0) return false;
    loop.run_nowait();
  }
  return true;
}

// The implementation's rounds and the floor's, apart and named, so that
// bench/chain_instructions.py counts the implementation's alone (callgrind
// --toggle-collect=*timed_round*).
[[gnu::noinline]] bool timed_round(Chain& chain, Impl& loop, int active) {
  return run_round(chain, loop, active);
}
[[gnu::noinline]] bool floor_round(Chain& chain, Impl& loop, int active) {
  return run_round(chain, loop, active);
}

// Removes and re-adds every watcher and lets the loop apply it.
[[gnu::noinline]] void timed_rereg(Impl& loop) {
  loop.reregister();
  loop.run_nowait();
}

// Seconds one round takes, or a negative number if it lost a byte.
double time_round(Chain& chain, Impl& loop, int active, bool floor) {
  const auto start = std::chrono::steady_clock::now();
  if (!(floor ? floor_round : timed_round)(chain, loop, active)) return -1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

void BM_Chain(benchmark::State& state, const Implementation& impl) {
  raise_fd_limit();
  const int n = static_cast<int>(state.range(0));
  const int active = static_cast<int>(state.range(1));
  std::unique_ptr<Chain> chain;
  std::unique_ptr<Impl> loop;
  if (!set_up(state, impl, n, chain, loop)) return;
  // The floor, raw epoll keeping its registrations, watches the same pairs
  // and runs a round after each of this implementation's (outside the
  // benchmark's time): vs_floor compares the two at the same moments, out of
  // reach of the drift between benchmark runs. Only one of the two loops
  // runs at a time, so neither takes the other's events.
  std::unique_ptr<Impl> floor;
  if (!impl.is_floor) floor = std::make_unique<RawEpoll>(*chain);
  double own = 0, floor_total = 0;
  for (auto _ : state) {
    if (impl.rereg_each_round) {
      loop->reregister();
      loop->run_nowait();
    }
    const double seconds = time_round(*chain, *loop, active, false);
    const double floor_seconds =
        floor ? time_round(*chain, *floor, active, true) : seconds;
    if (seconds < 0 || floor_seconds < 0) {
      state.SkipWithError("a round did not complete (a byte was lost)");
      break;
    }
    state.SetIterationTime(seconds);
    own += seconds;
    floor_total += floor_seconds;
  }
  state.counters["events"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * (active + kWrites),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  if (floor_total > 0) state.counters["vs_floor"] = own / floor_total;
  floor.reset();
  loop.reset();
}

void BM_Rereg(benchmark::State& state, const Implementation& impl) {
  raise_fd_limit();
  const int n = static_cast<int>(state.range(0));
  std::unique_ptr<Chain> chain;
  std::unique_ptr<Impl> loop;
  if (!set_up(state, impl, n, chain, loop)) return;
  for (auto _ : state) timed_rereg(*loop);
  state.counters["channels"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * n,
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  // Still watching every pair: one round completes.
  if (!timed_round(*chain, *loop, std::min(n, 100))) {
    state.SkipWithError("lost a watcher when re-registering");
  }
}

// smoke: the smallest sizes; iterations > 0: that many rounds per run.
void register_all(bool smoke, int iterations) {
  static const std::vector<Implementation> all = implementations();
  // N up to what the fd limit allows: 9 900 pairs with both ends in this
  // process (20 000 open files here), 19 900 with the far ends in the
  // reflector; A = 100 and N / 10.
  const std::vector<std::pair<int, int>> chain_args =
      smoke ? std::vector<std::pair<int, int>>{{40, 10}, {100, 10}}
            : std::vector<std::pair<int, int>>{
                  {100, 10},   {100, 100},   {1000, 100},
                  {5000, 100}, {5000, 500},  {9900, 100},
                  {9900, 990}, {19900, 100}, {19900, 1990}};
  const std::vector<int> rereg_args =
      smoke ? std::vector<int>{100} : std::vector<int>{100, 1000, 5000, 9900};
  for (const Implementation& impl : all) {
    auto* chain = benchmark::RegisterBenchmark(
        ("Chain/" + impl.name).c_str(),
        [&impl](benchmark::State& s) { BM_Chain(s, impl); });
    chain->ArgNames({"N", "A"})->UseManualTime()->Unit(benchmark::kMicrosecond);
    for (const auto& [n, a] : chain_args) chain->Args({n, a});
    if (iterations > 0) chain->Iterations(iterations);
    if (impl.rereg_each_round) continue;  // the same as raw-epoll's Rereg
    auto* rereg = benchmark::RegisterBenchmark(
        ("Rereg/" + impl.name).c_str(),
        [&impl](benchmark::State& s) { BM_Rereg(s, impl); });
    rereg->ArgNames({"N"})->Unit(benchmark::kMicrosecond);
    for (int n : rereg_args) rereg->Arg(n);
    if (iterations > 0) rereg->Iterations(iterations);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  int iterations = 0;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--smoke") == 0) {
      smoke = true;
      iterations = 20;
      event_chain::g_largest_in_process = 50;  // N 100 goes through it
    } else if (std::strncmp(argv[i], "--iterations=", 13) == 0) {
      iterations = std::atoi(argv[i] + 13);
      if (iterations <= 0) {
        std::fprintf(stderr, "event_chain: --iterations wants a count > 0\n");
        return 2;
      }
    } else {
      args.push_back(argv[i]);
    }
  }
  int count = static_cast<int>(args.size());
  register_all(smoke, iterations);
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
