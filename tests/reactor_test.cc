// What asyncore never had, on every backend: timers (ordering, cancelling at
// any time, never early, sleeping until the nearest deadline), post() from
// other threads, signals on the loop's thread, idle timeouts and graceful
// drain; and TimerQueue on its own.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/asyncore.h"
#include "core/internal/signal_source.h"
#include "tests/test_util.h"

namespace {

using asyncore::Clock;
using asyncore::Duration;
using asyncore::make;
using asyncore::Socket;
using asyncore::TimePoint;
using asyncore::TimerHandle;
using asyncore::TimerQueue;
using std::chrono::milliseconds;
using testing_util::loop_until;
using testing_util::read_available;
using testing_util::tcp_pair;
using testing_util::write_all;

const TimePoint kEpoch{};  // TimerQueue tests use their own time line

TimePoint at(long ms) { return kEpoch + milliseconds(ms); }

// --- TimerQueue alone
// ----------------------------------------------------------

TEST(TimerQueueTest, DeadlineOrderThenSchedulingOrder) {
  TimerQueue q;
  std::mt19937 gen(7);
  std::vector<std::pair<long, int>> expected;  // (deadline, scheduling index)
  std::vector<int> fired;
  for (int i = 0; i < 5000; ++i) {
    const long deadline = static_cast<long>(gen() % 200);  // many ties
    expected.emplace_back(deadline, i);
    q.schedule(at(deadline), Duration::zero(),
               [&fired, i] { fired.push_back(i); });
  }
  std::stable_sort(
      expected.begin(), expected.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  EXPECT_EQ(q.next_deadline(), at(expected.front().first));
  EXPECT_EQ(q.run_due(at(1000)), 5000u);
  ASSERT_EQ(fired.size(), expected.size());
  for (size_t i = 0; i < fired.size(); ++i) {
    ASSERT_EQ(fired[i], expected[i].second) << "at position " << i;
  }
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.next_deadline().has_value());
}

TEST(TimerQueueTest, OnlyDueTimersRunAndNeverEarly) {
  TimerQueue q;
  std::vector<long> fired;
  for (long d : {30, 10, 20, 40}) {
    q.schedule(at(d), Duration::zero(), [&fired, d] { fired.push_back(d); });
  }
  EXPECT_EQ(q.run_due(at(9)), 0u);
  EXPECT_EQ(q.run_due(at(10)), 1u);  // due exactly at its deadline
  EXPECT_EQ(q.run_due(at(35)), 2u);
  EXPECT_EQ(fired, (std::vector<long>{10, 20, 30}));
  EXPECT_EQ(q.size(), 1u);
}

TEST(TimerQueueTest, CancelAnySubset) {
  TimerQueue q;
  std::mt19937 gen(11);
  std::vector<TimerHandle> handles;
  std::vector<int> fired;
  for (int i = 0; i < 20000; ++i) {
    handles.push_back(q.schedule(at(static_cast<long>(gen() % 1000)),
                                 Duration::zero(),
                                 [&fired, i] { fired.push_back(i); }));
  }
  std::vector<bool> cancelled(handles.size());
  for (size_t i = 0; i < handles.size(); ++i) {
    if (gen() % 2) {
      handles[i].cancel();
      handles[i].cancel();  // idempotent
      cancelled[i] = true;
      EXPECT_FALSE(handles[i].active());
    } else {
      EXPECT_TRUE(handles[i].active());
    }
  }
  const size_t left = static_cast<size_t>(
      std::count(cancelled.begin(), cancelled.end(), false));
  EXPECT_EQ(q.size(), left);
  q.run_due(at(1000));
  EXPECT_EQ(fired.size(), left);
  for (int i : fired) EXPECT_FALSE(cancelled[static_cast<size_t>(i)]);
  for (TimerHandle& h : handles) {
    EXPECT_FALSE(h.active());  // fired or cancelled
    h.cancel();                // after firing: a no-op
  }
}

TEST(TimerQueueTest, CancelFromCallbacksSelfAndOthers) {
  TimerQueue q;
  std::vector<std::string> fired;
  TimerHandle self, other, later;
  self = q.schedule(at(10), milliseconds(5), [&] {
    fired.push_back("self");
    self.cancel();  // a repeating timer stops itself
    other.cancel();
  });
  other =
      q.schedule(at(10), Duration::zero(), [&] { fired.push_back("other"); });
  later = q.schedule(at(20), Duration::zero(), [&] {
    fired.push_back("later");
    later.cancel();  // a one-shot timer cancelling itself while firing
  });
  q.run_due(at(100));
  EXPECT_EQ(fired, (std::vector<std::string>{"self", "later"}));
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.keep_alive_count(), 0u);
}

TEST(TimerQueueTest, RepeatingTimersSkipMissedTicks) {
  TimerQueue q;
  int ticks = 0;
  q.schedule(at(10), milliseconds(10), [&] { ++ticks; });
  q.run_due(at(10));
  q.run_due(at(20));
  EXPECT_EQ(ticks, 2);
  EXPECT_EQ(q.next_deadline(), at(30));
  q.run_due(at(95));  // fell behind: runs once, then one interval from now
  EXPECT_EQ(ticks, 3);
  EXPECT_EQ(q.next_deadline(), at(105));
}

// A timer scheduled by a callback for a time already past waits for the
// next run: a callback that re-arms at "now" cannot starve the loop.
TEST(TimerQueueTest, ScheduledInsideACallbackWaitsForTheNextRun) {
  TimerQueue q;
  int runs = 0;
  std::function<void()> again = [&] {
    ++runs;
    q.schedule(at(0), Duration::zero(), again);
  };
  q.schedule(at(0), Duration::zero(), again);
  EXPECT_EQ(q.run_due(at(5)), 1u);
  EXPECT_EQ(q.run_due(at(5)), 1u);
  EXPECT_EQ(runs, 2);
}

TEST(TimerQueueTest, ThrowingCallbackLeavesTheQueueWhole) {
  TimerQueue q;
  int after = 0;
  TimerHandle repeating =
      q.schedule(at(1), milliseconds(1), [] { throw asyncore::ExitNow(); });
  q.schedule(at(2), Duration::zero(), [&] { ++after; });
  EXPECT_THROW(q.run_due(at(1)), asyncore::ExitNow);
  EXPECT_TRUE(repeating.active());  // rescheduled despite the exception
  repeating.cancel();
  EXPECT_EQ(q.run_due(at(5)), 1u);
  EXPECT_EQ(after, 1);
  EXPECT_TRUE(q.empty());
}

// Scheduling numbers are 32 bits: running out renumbers the pending timers
// without changing their order, even in the middle of run_due().
TEST(TimerQueueTest, SchedulingNumbersWrapWithoutReordering) {
  TimerQueue q;
  q.set_next_seq_for_testing(UINT32_MAX - 50);
  std::vector<int> fired;
  for (int i = 0; i < 100; ++i) {  // crosses the wrap: ties keep their order
    q.schedule(at(10), Duration::zero(), [&fired, i] { fired.push_back(i); });
  }
  // A callback scheduling across the wrap during run_due still waits for
  // the next run.
  q.set_next_seq_for_testing(UINT32_MAX - 1);
  q.schedule(at(5), Duration::zero(), [&] {
    for (int i = 100; i < 103; ++i) {
      q.schedule(at(0), Duration::zero(), [&fired, i] { fired.push_back(i); });
    }
  });
  EXPECT_EQ(q.run_due(at(20)), 101u);
  ASSERT_EQ(fired.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(fired[static_cast<size_t>(i)], i);
  EXPECT_EQ(q.run_due(at(20)), 3u);
  EXPECT_EQ(fired.back(), 102);
}

TEST(TimerQueueTest, HandlesOutliveTheQueue) {
  TimerHandle handle, copy;
  {
    TimerQueue q;
    handle = q.schedule(at(1), Duration::zero(), [] {});
    copy = handle;
    EXPECT_TRUE(copy.active());
  }
  EXPECT_FALSE(handle.active());
  handle.cancel();  // safe: the queue is gone
  TimerHandle empty;
  empty.cancel();
  EXPECT_FALSE(empty.active());
}

TEST(TimerQueueTest, KeepAliveCountsOnlyTimersThatKeepTheLoop) {
  TimerQueue q;
  TimerHandle a = q.schedule(
      at(1), Duration::zero(), [] {}, true);
  TimerHandle b = q.schedule(
      at(1), Duration::zero(), [] {}, false);
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.keep_alive_count(), 1u);
  a.cancel();
  EXPECT_EQ(q.keep_alive_count(), 0u);
  b.cancel();
  EXPECT_TRUE(q.empty());
}

// --- Timers in the loop, every backend
// -------------------------------------------

class ReactorTest : public testing_util::MapTest {};

// A channel that is never ready, so that waits really block.
struct IdleChannel {
  class Silent : public asyncore::Dispatcher {
   public:
    using Dispatcher::Dispatcher;
    // Asked in the interest phase, just before the wait.
    bool readable() override {
      asked.store(true);
      return true;
    }
    bool writable() override { return false; }
    std::atomic<bool> asked{false};
  };
  explicit IdleChannel(asyncore::ChannelMap& map) {
    auto [a, b] = Socket::pair();
    peer = std::move(b);
    channel = make<Silent>(std::move(a), &map);
  }
  ~IdleChannel() { channel->close(); }
  std::shared_ptr<Silent> channel;
  Socket peer;
};

// Iterations that wait without a timeout of their own, until pred() or
// `max` iterations.
template <class Pred>
bool block_until(asyncore::ChannelMap& map, Pred pred, int max) {
  for (int i = 0; i < max && !pred(); ++i) map.poll_once(std::nullopt);
  return pred();
}

// A loop with timers and no channel runs until the timers are done.
TEST_P(ReactorTest, TimersAloneKeepTheLoopUntilDone) {
  std::vector<int> fired;
  const TimePoint start = Clock::now();
  map().call_later(milliseconds(30), [&] { fired.push_back(3); });
  map().call_later(milliseconds(10), [&] { fired.push_back(1); });
  map().call_later(0.02, [&] { fired.push_back(2); });
  EXPECT_TRUE(map().alive());
  asyncore::loop({.timeout = std::nullopt, .map = &map()});
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(Clock::now() - start, milliseconds(30));
  EXPECT_FALSE(map().alive());
  // count still ends it.
  map().call_later(milliseconds(50), [&] { fired.push_back(4); });
  asyncore::loop({.timeout = 0.0, .map = &map(), .count = 1});
  EXPECT_EQ(fired.size(), 3u);
  EXPECT_EQ(map().pending_timers(), 1u);
  asyncore::loop({.timeout = std::nullopt, .map = &map()});
  EXPECT_EQ(fired.size(), 4u);
}

// One iteration that waits for a timer also fires it (the timer phase comes
// after the wait).
TEST_P(ReactorTest, AnIterationFiresTheTimerItWaitedFor) {
  bool fired = false;
  map().call_later(milliseconds(5), [&] { fired = true; });
  asyncore::loop({.timeout = std::nullopt, .map = &map(), .count = 1});
  EXPECT_TRUE(fired);
}

TEST_P(ReactorTest, TimersNeverFireEarly) {
  IdleChannel idle(map());
  std::mt19937 gen(3);
  int fired = 0, early = 0;
  for (int i = 0; i < 60; ++i) {
    // Sub-millisecond and odd delays: what a millisecond backend rounds.
    const Duration delay = std::chrono::microseconds(gen() % 25000);
    const TimePoint due = Clock::now() + delay;
    map().call_later(delay, [&fired, &early, due] {
      ++fired;
      if (Clock::now() < due) ++early;
    });
  }
  ASSERT_TRUE(loop_until(
      map(), [&] { return fired == 60; }, 100000, 1.0));
  EXPECT_EQ(early, 0);
}

TEST_P(ReactorTest, EqualDeadlinesFireInSchedulingOrder) {
  const TimePoint when = Clock::now() + milliseconds(5);
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) {
    map().call_at(when, [&order, i] { order.push_back(i); });
  }
  asyncore::loop({.timeout = std::nullopt, .map = &map()});
  ASSERT_EQ(order.size(), 100u);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
}

// The wait ends at the nearest deadline: a one-second timer costs a
// handful of waits, not a busy loop, whatever the backend's resolution.
TEST_P(ReactorTest, SleepsUntilTheNearestTimer) {
  IdleChannel idle(map());
  bool fired = false;
  const uint64_t waits_before = map().stats().waits;
  const TimePoint start = Clock::now();
  map().call_later(1.0, [&] { fired = true; });
  ASSERT_TRUE(block_until(
      map(), [&] { return fired; }, 1000));
  EXPECT_GE(Clock::now() - start, std::chrono::seconds(1));
  EXPECT_LE(map().stats().waits - waits_before, 5u);
  // A 1.5 ms period on a millisecond backend: no spinning between ticks.
  int ticks = 0;
  TimerHandle every =
      map().call_every(std::chrono::microseconds(1500), [&] { ++ticks; });
  const uint64_t before = map().stats().waits;
  ASSERT_TRUE(block_until(
      map(), [&] { return ticks == 100; }, 100000));
  every.cancel();
  EXPECT_LE(map().stats().waits - before, 300u);
}

TEST_P(ReactorTest, CancelBeforeWhileAndAfterFiring) {
  std::vector<std::string> fired;
  TimerHandle before =
      map().call_later(milliseconds(5), [&] { fired.push_back("before"); });
  TimerHandle self, other, after;
  other = map().call_later(milliseconds(20), [&] { fired.push_back("other"); });
  self = map().call_every(milliseconds(10), [&] {
    fired.push_back("self");
    self.cancel();
    other.cancel();
  });
  after = map().call_later(milliseconds(1), [&] { fired.push_back("after"); });
  before.cancel();
  asyncore::loop({.timeout = std::nullopt, .map = &map()});
  EXPECT_EQ(fired, (std::vector<std::string>{"after", "self"}));
  after.cancel();  // after firing: a no-op
  EXPECT_EQ(map().pending_timers(), 0u);
}

// 100 000 pending timers: none fires before its time, I/O goes on, and
// cancelling them all leaves nothing behind.
TEST_P(ReactorTest, HundredThousandTimersWithIo) {
  std::vector<TimerHandle> far;
  far.reserve(100000);
  int fired = 0;
  for (int i = 0; i < 100000; ++i) {
    far.push_back(map().call_later(std::chrono::hours(1) + milliseconds(i),
                                   [&fired] { ++fired; }));
  }
  auto [peer, sock] = tcp_pair();
  class Echo : public asyncore::DispatcherWithSend {
   public:
    using DispatcherWithSend::DispatcherWithSend;
    void handle_read() override {
      std::string d = recv(4096);
      if (!d.empty()) send(d);
    }
  };
  auto echo = make<Echo>(std::move(sock), &map());
  int near = 0;
  TimerHandle tick = map().call_every(milliseconds(1), [&] { ++near; });
  std::string got;
  for (int round = 0; round < 50; ++round) {
    write_all(peer, "ping");
    ASSERT_TRUE(loop_until(map(), [&] {
      got += read_available(peer);
      return got.size() == 4u * static_cast<size_t>(round + 1);
    }));
  }
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(map().pending_timers(), 100001u);
  tick.cancel();
  for (TimerHandle& h : far) h.cancel();
  EXPECT_EQ(map().pending_timers(), 0u);
  echo->close();
}

// A callback throwing ExitNow leaves loop(), and the loop can go on.
TEST_P(ReactorTest, ExitNowFromATimer) {
  int later = 0;
  map().call_later(milliseconds(1), [] { throw asyncore::ExitNow(); });
  map().call_later(milliseconds(2), [&] { ++later; });
  EXPECT_THROW(asyncore::loop({.timeout = std::nullopt, .map = &map()}),
               asyncore::ExitNow);
  asyncore::loop({.timeout = std::nullopt, .map = &map()});
  EXPECT_EQ(later, 1);
}

// --- post()
// ---------------------------------------------------------------------

// 8 threads x 10 000 callbacks: each runs exactly once, on the loop's
// thread, in the order its thread posted them. (Run under --config=tsan.)
TEST_P(ReactorTest, PostFromEightThreads) {
  constexpr int kThreads = 8;
  constexpr int kEach = 10000;
  std::vector<std::vector<int>> seen(kThreads);
  int total = 0;
  const std::thread::id loop_thread = std::this_thread::get_id();
  bool wrong_thread = false;
  TimerHandle keep = map().call_later(std::chrono::seconds(60), [] {
    ADD_FAILURE() << "the posts did not arrive within 60 s";
  });
  asyncore::ChannelMap* m = &map();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        m->post([&, t, i] {
          wrong_thread |= std::this_thread::get_id() != loop_thread;
          seen[static_cast<size_t>(t)].push_back(i);
          if (++total == kThreads * kEach) keep.cancel();
        });
      }
    });
  }
  asyncore::loop({.timeout = std::nullopt, .map = &map()});
  for (std::thread& t : threads) t.join();
  EXPECT_FALSE(wrong_thread);
  ASSERT_EQ(total, kThreads * kEach);
  for (const auto& s : seen) {
    ASSERT_EQ(s.size(), static_cast<size_t>(kEach));
    for (int i = 0; i < kEach; ++i) ASSERT_EQ(s[static_cast<size_t>(i)], i);
  }
}

// A loop blocked for ever (one idle channel, no timeout) is woken by a
// post from another thread.
TEST_P(ReactorTest, PostWakesABlockedLoop) {
  IdleChannel idle(map());
  asyncore::ChannelMap* m = &map();
  std::atomic<bool> ran{false};
  auto* silent = idle.channel.get();
  std::thread poster([m, &ran, silent] {
    // Post once the loop is (all but) in its wait, to wake it there.
    for (int i = 0; i < 1000000 && !silent->asked.load(); ++i) {
      std::this_thread::yield();
    }
    m->post([&ran] { ran = true; });
  });
  TimerHandle failsafe = map().call_later(std::chrono::seconds(10), [] {});
  ASSERT_TRUE(block_until(
      map(), [&] { return ran.load(); }, 10));
  poster.join();
  failsafe.cancel();
  EXPECT_LE(map().stats().wakeups, 1u);
}

// Posting from the loop's own thread (it is awake) costs no wake-up.
TEST_P(ReactorTest, NoWakeupWhileTheLoopIsAwake) {
  int ran = 0;
  map().post([&] {
    for (int i = 0; i < 1000; ++i) map().post([&] { ++ran; });
  });
  asyncore::loop({.timeout = std::nullopt, .map = &map()});
  EXPECT_EQ(ran, 1000);
  EXPECT_EQ(map().stats().wakeups, 0u);
}

// --- Signals
// ------------------------------------------------------------------

class SignalTest
    : public testing_util::MapTestWithParam<
          std::tuple<std::string, asyncore::internal::SignalSource::Kind>> {
 protected:
  void SetUp() override {
    MapTestWithParam::SetUp();
    asyncore::internal::set_default_signal_source(std::get<1>(GetParam()));
  }
  void TearDown() override {
    asyncore::internal::set_default_signal_source(
        asyncore::internal::SignalSource::Kind::kBest);
    MapTestWithParam::TearDown();
  }
};

TEST_P(SignalTest, DeliveredOnTheLoopThread) {
  std::vector<int> got;
  std::thread::id ran_on;
  asyncore::SignalHandle usr1 = map().on_signal(SIGUSR1, [&](int signo) {
    got.push_back(signo);
    ran_on = std::this_thread::get_id();
  });
  IdleChannel idle(map());
  ASSERT_EQ(::raise(SIGUSR1), 0);
  ASSERT_TRUE(loop_until(
      map(), [&] { return !got.empty(); }, 100, 1.0));
  EXPECT_EQ(got, std::vector<int>{SIGUSR1});
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  // Another delivery, another call.
  ASSERT_EQ(::raise(SIGUSR1), 0);
  ASSERT_TRUE(loop_until(
      map(), [&] { return got.size() == 2; }, 100, 1.0));
  usr1.cancel();
  EXPECT_FALSE(usr1.active());
}

// Cancelling gives the signal back: its previous disposition and mask.
TEST_P(SignalTest, CancelRestoresThePreviousDisposition) {
  struct sigaction before {};
  ::sigaction(SIGUSR2, nullptr, &before);
  sigset_t mask_before;
  ::pthread_sigmask(SIG_SETMASK, nullptr, &mask_before);
  asyncore::SignalHandle h = map().on_signal(SIGUSR2, [](int) {});
  asyncore::SignalHandle second = map().on_signal(SIGUSR2, [](int) {});
  h.cancel();
  second.cancel();
  second.cancel();  // idempotent
  struct sigaction after {};
  ::sigaction(SIGUSR2, nullptr, &after);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
  sigset_t mask_after;
  ::pthread_sigmask(SIG_SETMASK, nullptr, &mask_after);
  EXPECT_EQ(sigismember(&mask_after, SIGUSR2),
            sigismember(&mask_before, SIGUSR2));
}

TEST_P(SignalTest, OneMapPerSignal) {
  asyncore::ChannelMap other(std::get<0>(GetParam()));
  asyncore::SignalHandle mine = map().on_signal(SIGUSR1, [](int) {});
  EXPECT_THROW(other.on_signal(SIGUSR1, [](int) {}), std::logic_error);
  mine.cancel();
  asyncore::SignalHandle theirs = other.on_signal(SIGUSR1, [](int) {});
  theirs.cancel();
}

TEST_P(SignalTest, HandlerCancellingItselfAndOthers) {
  int a = 0, b = 0;
  asyncore::SignalHandle ha, hb;
  ha = map().on_signal(SIGUSR1, [&](int) {
    ++a;
    ha.cancel();
    hb.cancel();
  });
  hb = map().on_signal(SIGUSR1, [&](int) { ++b; });
  IdleChannel idle(map());
  ASSERT_EQ(::raise(SIGUSR1), 0);
  ASSERT_TRUE(loop_until(
      map(), [&] { return a == 1; }, 100, 1.0));
  EXPECT_EQ(b, 0);
}

// --- Idle timeouts
// --------------------------------------------------------------

class Quiet : public asyncore::Dispatcher {
 public:
  using Dispatcher::Dispatcher;
  void handle_read() override {
    char buf[256];
    try {
      recv_into(buf, sizeof buf);
    } catch (const asyncore::WouldBlock&) {
    }
  }
  bool writable() override { return false; }
  void handle_idle_timeout() override {
    ++timeouts;
    fired_at = Clock::now();
    close();
  }
  int timeouts = 0;
  TimePoint fired_at;
};

TEST_P(ReactorTest, IdleTimeoutClosesAQuietChannel) {
  auto [peer, sock] = tcp_pair();
  auto ch = make<Quiet>(std::move(sock), &map());
  const TimePoint start = Clock::now();
  ch->set_idle_timeout(0.2);
  ASSERT_TRUE(loop_until(
      map(), [&] { return ch->timeouts == 1; }, 1000, 1.0));
  EXPECT_GE(ch->fired_at - start, milliseconds(200));
  EXPECT_EQ(map().pending_timers(), 0u);
}

// Bytes keep it open: a channel that receives something every 50 ms
// outlives a 250 ms timeout, then closes once quiet for that long.
TEST_P(ReactorTest, IdleTimeoutCountsActivity) {
  auto [peer, sock] = tcp_pair();
  auto ch = make<Quiet>(std::move(sock), &map());
  ch->set_idle_timeout(0.25);
  const TimePoint start = Clock::now();
  TimePoint last_send = start;
  TimerHandle sender = map().call_every(milliseconds(50), [&] {
    write_all(peer, "x");
    last_send = Clock::now();
  });
  ASSERT_FALSE(loop_until(
      map(), [&] { return ch->timeouts > 0; }, 100000, 1.0, milliseconds(700)));
  sender.cancel();
  ASSERT_TRUE(loop_until(
      map(), [&] { return ch->timeouts == 1; }, 1000, 1.0));
  EXPECT_GE(ch->fired_at - last_send, milliseconds(250));
  // The timer is not rescheduled per read: one pending timer throughout.
}

// Bytes sent count only when asked to: a channel that only talks is idle
// for kInput (a chat member who never writes), busy for kTraffic (a
// download in progress).
TEST_P(ReactorTest, IdleTimeoutMeasuresInputOrTraffic) {
  for (auto measure : {asyncore::Dispatcher::IdleMeasure::kInput,
                       asyncore::Dispatcher::IdleMeasure::kTraffic}) {
    auto [peer, sock] = tcp_pair();
    auto ch = make<Quiet>(std::move(sock), &map());
    ch->set_idle_timeout(0.2, measure);
    TimerHandle talker = map().call_every(milliseconds(20), [&] {
      ch->send("y");
      read_available(peer);
    });
    loop_until(
        map(), [&] { return ch->timeouts > 0; }, 100000, 1.0,
        milliseconds(500));
    talker.cancel();
    if (measure == asyncore::Dispatcher::IdleMeasure::kInput) {
      EXPECT_EQ(ch->timeouts, 1) << "sending kept a kInput channel alive";
    } else {
      EXPECT_EQ(ch->timeouts, 0) << "sending did not count for kTraffic";
      ch->close();
    }
  }
}

// The idle timer does not keep loop() running: the channel does.
TEST_P(ReactorTest, IdleTimerDoesNotKeepTheLoopAlive) {
  auto [peer, sock] = tcp_pair();
  auto ch = make<Quiet>(std::move(sock), &map());
  ch->set_idle_timeout(3600);
  ch->close();
  EXPECT_FALSE(map().alive());
  EXPECT_EQ(map().pending_timers(), 0u);  // closing cancelled it
}

// --- Graceful drain
// -------------------------------------------------------------

class Sender : public asyncore::DispatcherWithSend {
 public:
  using DispatcherWithSend::DispatcherWithSend;
  void handle_read() override {
    char buf[4096];
    try {
      recv_into(buf, sizeof buf);
    } catch (const asyncore::WouldBlock&) {
    }
  }
  void handle_close() override {
    closed = true;
    close();
  }
  bool closed = false;
};

class Listener : public asyncore::Dispatcher {
 public:
  explicit Listener(asyncore::ChannelMap* map) : Dispatcher(map) {
    create_socket(AF_INET, SOCK_STREAM);
    bind(asyncore::Address::ipv4("127.0.0.1", 0));
    listen(16);
  }
  void handle_accepted(Socket, const asyncore::Address&) override {}
};

// drain(): the listener closes at once (new connections are refused), a
// channel with output queued sends it all before it closes, and loop()
// returns as soon as the map is empty, long before the deadline.
TEST_P(ReactorTest, DrainFlushesThenCloses) {
  auto listener = make<Listener>(&map());
  const asyncore::Address address = listener->socket().getsockname();
  auto [peer, sock] = tcp_pair();
  auto sender = make<Sender>(std::move(sock), &map());
  const std::string data(4 << 20, 'd');  // more than the socket buffers
  sender->send(data);
  ASSERT_GT(sender->pending(), 0u);
  const TimePoint start = Clock::now();
  map().drain(30);
  EXPECT_EQ(listener->registered_map(), nullptr);
  Socket refused = Socket::create(AF_INET, SOCK_STREAM);
  refused.set_blocking(true);
  EXPECT_NE(::connect(refused.fileno(), address.data(), address.size()), 0);
  std::string got;
  bool eof = false;
  ASSERT_TRUE(loop_until(
      map(),
      [&] {
        got += read_available(peer, &eof);
        return eof;
      },
      1000000, 0.0));
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(sender->closed);
  EXPECT_FALSE(map().alive());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
}

// A peer that never reads cannot hold a drain past its deadline.
TEST_P(ReactorTest, DrainDeadlineClosesWhatIsLeft) {
  auto [peer, sock] = tcp_pair();
  auto sender = make<Sender>(std::move(sock), &map());
  sender->send(std::string(8 << 20, 'd'));
  const TimePoint start = Clock::now();
  map().drain(0.2);
  asyncore::loop({.timeout = std::nullopt, .map = &map()});
  EXPECT_GE(Clock::now() - start, milliseconds(200));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(sender->registered_map(), nullptr);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, ReactorTest,
                         ::testing::ValuesIn(testing_util::all_backends()),
                         testing_util::backend_param_name);

std::vector<std::tuple<std::string, asyncore::internal::SignalSource::Kind>>
signal_params() {
  std::vector<std::tuple<std::string, asyncore::internal::SignalSource::Kind>>
      out;
  for (const std::string& b : testing_util::all_backends()) {
    out.emplace_back(b, asyncore::internal::SignalSource::Kind::kBest);
    out.emplace_back(b, asyncore::internal::SignalSource::Kind::kSelfPipe);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    AllBackends, SignalTest, ::testing::ValuesIn(signal_params()),
    [](const auto& info) {
      return std::get<0>(info.param) +
             (std::get<1>(info.param) ==
                      asyncore::internal::SignalSource::Kind::kBest
                  ? "_best"
                  : "_selfpipe");
    });

}  // namespace
