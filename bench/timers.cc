// Timer operation costs with N timers pending: asyncore's TimerQueue beside a
// std::priority_queue doing the same work and libev's ev_timer.
//
//   bazel run -c opt //bench:timers -- --benchmark_repetitions=3
//     --benchmark_enable_random_interleaving=true
//     --benchmark_report_aggregates_only=true      (one command line)
//
// Read the ns_op counter: nanoseconds per operation. Each benchmark
// iteration is one batch of B operations (B = 100 at N = 1 000, 1 000 from
// N = 100 000 on), timed with steady_clock around exactly those B operations
// and reported as manual time, so the Time column is ns per batch; CPU also
// counts the untimed work that restores the N pending and means nothing
// here. The iteration count is fixed (4 N or at least 2 M operations per
// run), so --benchmark_min_time has no effect.
//
// Set-up, the same for every implementation: N timers pending with
// pseudo-random deadlines uniform in [1000 s, 2000 s) from the start, taken
// from tables generated once per N (fixed seeds) and shared by all of them,
// in the same order; nothing pending ever becomes due during a run. Every
// callback is trivial and the same: it increments a counter through a
// pointer it captures (a lambda in a std::function for ours and the
// priority_queue, the watcher's data pointer for libev); the counts are
// checked, so nothing can be optimised away.
//
//   Schedule/IMPL/N  timed: schedule B more timers, deadlines from a table
//                    of 2^20 random ones in the same range (pending: N to
//                    N + B). Untimed: cancel those B.
//   Cancel/IMPL/N    timed: cancel B distinct pending timers chosen at
//                    random (consecutive slices of a random permutation of
//                    the N). Untimed: schedule B new ones into their places
//                    (pending: N to N - B).
//   Fire/IMPL/N      untimed: schedule B more timers with deadlines 1 to
//                    2 s in the past (random). Timed: one call that pops and
//                    runs exactly those B, each the earliest pending at its
//                    turn (pending: N + B to N).
//   FireEmpty/IMPL/N one loop iteration with nothing due (automatic timing,
//                    ns per call): the fixed cost that the looped Fire
//                    variants (libev, ours_poll_once) spread over their B.
//
// IMPL:
//   ours             asyncore::TimerQueue directly: schedule(when, 0, fn),
//                    TimerHandle::cancel(), run_due(now). Handles are kept in
//                    a vector (a schedule includes assigning the returned
//                    handle to its slot).
//   ours_call_at     asyncore::ChannelMap::call_at(when, fn) (Schedule only;
//   ours_call_later  ChannelMap::call_later(delay, fn), which reads
//                    Clock::now() each time. Cancel is TimerHandle::cancel()
//                    either way, as in "ours".)
//   ours_poll_once   Fire through ChannelMap::poll_once(0ns): the backend
//                    wait (epoll_wait with a zero timeout), a Clock::now()
//                    and run_due: the counterpart of libev's ev_run.
//   pq               std::priority_queue<Entry{when, seq, node, gen}> (a
//                    binary heap) over a std::vector node pool holding
//                    std::function callbacks, handles {node, gen}. Cancel is
//                    lazy deletion: the node is freed and its generation
//                    bumped, the stale heap entry is skipped when it surfaces;
//                    as asyncio does, the heap is rebuilt without the stale
//                    entries (erase + std::make_heap) when they exceed half of
//                    it and 100. That rebuild runs inside cancel(), so its
//                    amortised cost is part of Cancel/pq (counter
//                    "compactions" says how many happened in the timed part).
//                    Schedule/pq's untimed cancels leave stale entries too,
//                    so its timed schedules see a heap of N to 2 N entries.
//                    Fire checks the same "scheduled before this call" cutoff
//                    as ours.
//   libev            libev 4.33 (Debian's libev-dev, -lev) on one
//                    ev_loop_new(EVFLAG_AUTO) loop (epoll); watchers live in a
//                    std::vector, one per slot. Schedule: ev_timer_init (cb,
//                    after, 0) + data + ev_timer_start; cancel: ev_timer_stop.
//                    Fire: ev_run(loop, EVRUN_NOWAIT) with the B watchers
//                    due: libev's only public way to fire timers (its
//                    timers_reify is internal, ev_invoke_pending only runs
//                    events already queued, and its clock cannot be set), so
//                    the batch includes one epoll_wait(0) and one clock read:
//                    FireEmpty/libev measures that, about 1/B of it per op.
//                    libev deadlines are relative to the loop's cached now
//                    (ev_now), which ev_run alone advances; ours and pq use a
//                    fixed start time, so the offsets are the same numbers.
#include <benchmark/benchmark.h>
#include <ev.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/asyncore.h"

namespace {

using asyncore::Clock;
using asyncore::Duration;
using asyncore::TimePoint;
using BenchClock = std::chrono::steady_clock;

constexpr int64_t kSecond = 1'000'000'000;
constexpr size_t kTableSize = size_t{1} << 20;  // fresh and due deadlines
constexpr size_t kTableMask = kTableSize - 1;

size_t batch_for(size_t n) { return n < 100'000 ? 100 : 1'000; }
size_t batches_for(size_t n) {
  return std::max<size_t>(4 * n, 2'000'000) / batch_for(n);
}

// Deadlines as offsets from the start, in ns (and in seconds for libev).
struct Offsets {
  std::vector<int64_t> ns;
  std::vector<double> s;
};

Offsets random_offsets(size_t count, int64_t lo, int64_t hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(lo, hi - 1);
  Offsets o;
  o.ns.resize(count);
  o.s.resize(count);
  for (size_t i = 0; i < count; ++i) {
    o.ns[i] = dist(rng);
    o.s[i] = static_cast<double>(o.ns[i]) / kSecond;
  }
  return o;
}

const Offsets& fresh_table() {  // pending range: [1000 s, 2000 s)
  static const Offsets t =
      random_offsets(kTableSize, 1000 * kSecond, 2000 * kSecond, 2);
  return t;
}

const Offsets& due_table() {  // already due: [-2 s, -1 s)
  static const Offsets t =
      random_offsets(kTableSize, -2 * kSecond, -kSecond, 3);
  return t;
}

struct Workload {
  Offsets base;                // the N pending at the start
  std::vector<uint32_t> perm;  // cancel victims, B at a time
};

const Workload& workload(size_t n) {
  static std::map<size_t, std::unique_ptr<Workload>> cache;
  auto& w = cache[n];
  if (!w) {
    w = std::make_unique<Workload>();
    w->base = random_offsets(n, 1000 * kSecond, 2000 * kSecond, 1000 + n);
    w->perm.resize(n);
    std::iota(w->perm.begin(), w->perm.end(), 0u);
    std::shuffle(w->perm.begin(), w->perm.end(), std::mt19937_64(7 + n));
  }
  return *w;
}

// --- The implementations, behind one slot-based interface ------------------

// asyncore::TimerQueue, as ChannelMap uses it.
class Ours {
 public:
  explicit Ours(size_t slots) : handles_(slots), start_(Clock::now()) {}
  void schedule(size_t slot, int64_t ns, double /*s*/) {
    handles_[slot] = queue_.schedule(start_ + Duration(ns), Duration::zero(),
                                     [c = &fired_] { ++*c; });
  }
  void cancel(size_t slot) { handles_[slot].cancel(); }
  void fire() { queue_.run_due(start_); }
  uint64_t fired() const { return fired_; }
  size_t pending() const { return queue_.size(); }
  size_t compactions() const { return 0; }

 private:
  asyncore::TimerQueue queue_;
  std::vector<asyncore::TimerHandle> handles_;
  uint64_t fired_ = 0;
  TimePoint start_;
};

// The public API: ChannelMap::call_at / call_later, poll_once.
enum class MapSchedule { kCallAt, kCallLater };

template <MapSchedule kHow>
class OursMap {
 public:
  explicit OursMap(size_t slots) : handles_(slots), start_(Clock::now()) {}
  void schedule(size_t slot, int64_t ns, double /*s*/) {
    if constexpr (kHow == MapSchedule::kCallAt) {
      handles_[slot] =
          map_.call_at(start_ + Duration(ns), [c = &fired_] { ++*c; });
    } else {
      handles_[slot] = map_.call_later(Duration(ns), [c = &fired_] { ++*c; });
    }
  }
  void cancel(size_t slot) { handles_[slot].cancel(); }
  void fire() { map_.poll_once(std::chrono::nanoseconds(0)); }
  uint64_t fired() const { return fired_; }
  size_t pending() const { return map_.pending_timers(); }
  size_t compactions() const { return 0; }

 private:
  asyncore::ChannelMap map_;
  std::vector<asyncore::TimerHandle> handles_;
  uint64_t fired_ = 0;
  TimePoint start_;
};

// std::priority_queue with lazy deletion (see the top of the file).
class PqTimers {
 public:
  struct Handle {
    uint32_t node = 0;
    uint32_t gen = 0;
  };

  Handle schedule(int64_t when, std::function<void()> fn) {
    uint32_t id;
    if (free_.empty()) {
      id = static_cast<uint32_t>(nodes_.size());
      nodes_.emplace_back();
    } else {
      id = free_.back();
      free_.pop_back();
    }
    Node& n = nodes_[id];
    n.fn = std::move(fn);
    n.pending = true;
    heap_.push(Entry{when, next_seq_++, id, n.gen});
    return Handle{id, n.gen};
  }

  void cancel(Handle h) {
    if (h.node >= nodes_.size()) return;
    Node& n = nodes_[h.node];
    if (n.gen != h.gen || !n.pending) return;
    release(h.node);
    ++stale_;
    if (stale_ > 100 && 2 * stale_ > heap_.size()) compact();
  }

  size_t run_due(int64_t now) {
    const uint64_t cutoff = next_seq_;
    size_t ran = 0;
    while (!heap_.empty() && heap_.top().when <= now &&
           heap_.top().seq < cutoff) {
      const Entry e = heap_.top();
      heap_.pop();
      Node& n = nodes_[e.node];
      if (n.gen != e.gen) {  // cancelled
        --stale_;
        continue;
      }
      std::function<void()> fn = std::move(n.fn);
      release(e.node);
      fn();
      ++ran;
    }
    return ran;
  }

  size_t size() const { return heap_.size() - stale_; }
  size_t compactions() const { return compactions_; }

 private:
  struct Entry {
    int64_t when;
    uint64_t seq;
    uint32_t node;
    uint32_t gen;
  };
  struct Later {  // priority_queue keeps the greatest on top: the earliest
    bool operator()(const Entry& a, const Entry& b) const {
      return a.when > b.when || (a.when == b.when && a.seq > b.seq);
    }
  };
  // priority_queue with its (protected) container reachable, for compact().
  struct Heap : std::priority_queue<Entry, std::vector<Entry>, Later> {
    std::vector<Entry>& container() { return c; }
    const Later& compare() const { return comp; }
  };
  struct Node {
    std::function<void()> fn;
    uint32_t gen = 0;
    bool pending = false;
  };

  void release(uint32_t id) {
    Node& n = nodes_[id];
    n.pending = false;
    ++n.gen;
    n.fn = nullptr;
    free_.push_back(id);
  }

  void compact() {
    std::vector<Entry>& c = heap_.container();
    std::erase_if(
        c, [this](const Entry& e) { return nodes_[e.node].gen != e.gen; });
    std::make_heap(c.begin(), c.end(), heap_.compare());
    stale_ = 0;
    ++compactions_;
  }

  Heap heap_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> free_;
  uint64_t next_seq_ = 0;
  size_t stale_ = 0;
  size_t compactions_ = 0;
};

class Pq {
 public:
  explicit Pq(size_t slots) : handles_(slots) {}
  void schedule(size_t slot, int64_t ns, double /*s*/) {
    handles_[slot] = timers_.schedule(ns, [c = &fired_] { ++*c; });
  }
  void cancel(size_t slot) { timers_.cancel(handles_[slot]); }
  void fire() { timers_.run_due(0); }
  uint64_t fired() const { return fired_; }
  size_t pending() const { return timers_.size(); }
  size_t compactions() const { return timers_.compactions(); }

 private:
  PqTimers timers_;
  std::vector<PqTimers::Handle> handles_;
  uint64_t fired_ = 0;
};

// libev 4.33.
class Libev {
 public:
  explicit Libev(size_t slots)
      : loop_(ev_loop_new(EVFLAG_AUTO)), watchers_(slots) {
    if (loop_ == nullptr) throw std::runtime_error("ev_loop_new failed");
  }
  ~Libev() { ev_loop_destroy(loop_); }
  Libev(const Libev&) = delete;
  Libev& operator=(const Libev&) = delete;

  void schedule(size_t slot, int64_t /*ns*/, double s) {
    ev_timer* w = &watchers_[slot];
    ev_timer_init(w, &Libev::on_timer, s, 0.);
    w->data = &fired_;
    ev_timer_start(loop_, w);
  }
  void cancel(size_t slot) { ev_timer_stop(loop_, &watchers_[slot]); }
  void fire() { ev_run(loop_, EVRUN_NOWAIT); }
  uint64_t fired() const { return fired_; }
  size_t pending() const {
    size_t active = 0;
    for (const ev_timer& w : watchers_) active += ev_is_active(&w) ? 1 : 0;
    return active;
  }
  size_t compactions() const { return 0; }

 private:
  static void on_timer(struct ev_loop* /*loop*/, ev_timer* w, int /*revents*/) {
    ++*static_cast<uint64_t*>(w->data);
  }

  struct ev_loop* loop_;
  std::vector<ev_timer> watchers_;  // never reallocated: libev points in
  uint64_t fired_ = 0;
};

// --- The benchmarks ---------------------------------------------------------

enum class Op { kSchedule, kCancel, kFire };

template <class Impl, Op kOp>
void BM_Op(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  const size_t b = batch_for(n);
  const Workload& w = workload(n);
  const Offsets& fresh = fresh_table();
  const Offsets& due = due_table();

  // Pending slots are [0, n); slots [n, n + b) take Schedule's and Fire's
  // extra timers.
  auto impl = std::make_unique<Impl>(n + b);
  for (size_t i = 0; i < n; ++i) impl->schedule(i, w.base.ns[i], w.base.s[i]);

  size_t fresh_at = 0;
  size_t due_at = 0;
  size_t perm_at = 0;  // n is a multiple of b
  double timed_ns = 0;
  const size_t compactions_before = impl->compactions();
  size_t untimed_compactions = 0;

  for (auto _ : state) {
    BenchClock::time_point t0;
    BenchClock::time_point t1;
    if constexpr (kOp == Op::kSchedule) {
      t0 = BenchClock::now();
      for (size_t k = 0; k < b; ++k, ++fresh_at) {
        const size_t f = fresh_at & kTableMask;
        impl->schedule(n + k, fresh.ns[f], fresh.s[f]);
      }
      t1 = BenchClock::now();
      const size_t c = impl->compactions();
      for (size_t k = 0; k < b; ++k) impl->cancel(n + k);
      untimed_compactions += impl->compactions() - c;
    } else if constexpr (kOp == Op::kCancel) {
      const uint32_t* victims = &w.perm[perm_at];
      t0 = BenchClock::now();
      for (size_t k = 0; k < b; ++k) impl->cancel(victims[k]);
      t1 = BenchClock::now();
      for (size_t k = 0; k < b; ++k, ++fresh_at) {
        const size_t f = fresh_at & kTableMask;
        impl->schedule(victims[k], fresh.ns[f], fresh.s[f]);
      }
      perm_at = (perm_at + b) % n;
    } else {
      for (size_t k = 0; k < b; ++k, ++due_at) {
        const size_t d = due_at & kTableMask;
        impl->schedule(n + k, due.ns[d], due.s[d]);
      }
      const uint64_t before = impl->fired();
      t0 = BenchClock::now();
      impl->fire();
      t1 = BenchClock::now();
      if (impl->fired() - before != b) {
        state.SkipWithError("a batch did not fire exactly its B timers");
        break;
      }
    }
    const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
    timed_ns += ns;
    state.SetIterationTime(ns * 1e-9);
  }

  if (impl->pending() != n) {
    state.SkipWithError("pending count drifted from N");
  }
  benchmark::DoNotOptimize(impl->fired());
  state.counters["ns_op"] = benchmark::Counter(
      timed_ns / static_cast<double>(b), benchmark::Counter::kAvgIterations);
  state.counters["B"] = static_cast<double>(b);
  if (impl->compactions() != compactions_before) {
    state.counters["compactions"] = static_cast<double>(
        impl->compactions() - compactions_before - untimed_compactions);
  }
  // Tear-down (freeing up to a million timers) is not timed either.
}

// One loop iteration with N pending and nothing due.
void BM_FireEmptyOurs(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  const Workload& w = workload(n);
  auto impl = std::make_unique<OursMap<MapSchedule::kCallAt>>(n);
  for (size_t i = 0; i < n; ++i) impl->schedule(i, w.base.ns[i], w.base.s[i]);
  for (auto _ : state) impl->fire();
  if (impl->fired() != 0) state.SkipWithError("something fired");
}

void BM_FireEmptyLibev(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  const Workload& w = workload(n);
  auto impl = std::make_unique<Libev>(n);
  for (size_t i = 0; i < n; ++i) impl->schedule(i, w.base.ns[i], w.base.s[i]);
  for (auto _ : state) impl->fire();
  if (impl->fired() != 0) state.SkipWithError("something fired");
}

constexpr int64_t kSizes[] = {1'000, 100'000, 1'000'000};

template <class Impl, Op kOp>
void add(const std::string& name) {
  for (int64_t n : kSizes) {
    benchmark::RegisterBenchmark(name.c_str(), &BM_Op<Impl, kOp>)
        ->Arg(n)
        ->Iterations(static_cast<benchmark::IterationCount>(
            batches_for(static_cast<size_t>(n))))
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

void register_all() {
  using CallAt = OursMap<MapSchedule::kCallAt>;
  using CallLater = OursMap<MapSchedule::kCallLater>;
  add<Ours, Op::kSchedule>("Schedule/ours");
  add<Pq, Op::kSchedule>("Schedule/pq");
  add<Libev, Op::kSchedule>("Schedule/libev");
  add<CallAt, Op::kSchedule>("Schedule/ours_call_at");
  add<CallLater, Op::kSchedule>("Schedule/ours_call_later");
  add<Ours, Op::kCancel>("Cancel/ours");
  add<Pq, Op::kCancel>("Cancel/pq");
  add<Libev, Op::kCancel>("Cancel/libev");
  add<Ours, Op::kFire>("Fire/ours");
  add<Pq, Op::kFire>("Fire/pq");
  add<Libev, Op::kFire>("Fire/libev");
  add<CallAt, Op::kFire>("Fire/ours_poll_once");
  for (int64_t n : kSizes) {
    benchmark::RegisterBenchmark("FireEmpty/ours_poll_once", &BM_FireEmptyOurs)
        ->Arg(n);
    benchmark::RegisterBenchmark("FireEmpty/libev", &BM_FireEmptyLibev)->Arg(n);
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
