// Timers: a 4-ary min-heap of deadlines over a pool of timer nodes (libev's
// layout: a 16-byte heap entry holds the deadline beside the node index, so
// a sift touches only heap memory and the 8-byte slot that records where each
// node sits). Scheduling and cancelling are O(log n); asking for the next
// deadline is O(1), so pending timers cost an iteration nothing beyond the
// ones that fire. //bench:timers measures it beside libev.
//
// A TimerQueue belongs to one ChannelMap and is used on its loop's thread
// only; TimerHandle is how users see one timer (core/channel_map.h).
#ifndef ASYNCOREPP_CORE_TIMER_QUEUE_H_
#define ASYNCOREPP_CORE_TIMER_QUEUE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace asyncore {

// The loop's clock: monotonic, never adjusted.
using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

// Seconds as a Duration: negative or NaN is 0, more than a century is a
// century (so that now() + it cannot overflow).
Duration from_seconds(double seconds);

class TimerQueue;

namespace internal {
// What a handle holds on to: outlives the queue while handles exist, so that
// cancel() after the map is gone is a safe no-op. Not thread-safe (nor are
// handles): the loop's thread only.
struct TimerAnchor {
  TimerQueue* queue;
  size_t refs;
};
}  // namespace internal

// One scheduled timer, as call_later()/call_at()/call_every() return it.
// Copies refer to the same timer. cancel() is safe at any time: before the
// timer fires, from inside its own callback or another timer's, after it
// fired, after its map was destroyed, and on a default-constructed handle.
// Dropping every handle does not cancel the timer.
class TimerHandle {
 public:
  TimerHandle() = default;
  TimerHandle(const TimerHandle& other);
  TimerHandle(TimerHandle&& other) noexcept;
  TimerHandle& operator=(TimerHandle other) noexcept;
  ~TimerHandle();

  // Stops the timer (a repeating one for good). Idempotent.
  void cancel();
  // Scheduled and not cancelled: a one-shot timer until it fires, a
  // repeating one until cancelled.
  bool active() const;

 private:
  friend class TimerQueue;
  TimerHandle(internal::TimerAnchor* anchor, uint32_t node, uint32_t gen);

  internal::TimerAnchor* anchor_ = nullptr;
  uint32_t node_ = 0;
  uint32_t gen_ = 0;
};

class TimerQueue {
 public:
  TimerQueue();
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Runs fn at `when` (and then every `interval`, when it is positive).
  // Timers with equal deadlines run in the order they were scheduled.
  // `keep_alive`: whether the timer keeps loop() running (the library's own
  // idle and drain timers do not).
  TimerHandle schedule(TimePoint when, Duration interval,
                       std::function<void()> fn, bool keep_alive = true);

  // The earliest deadline, if any timer is pending.
  std::optional<TimePoint> next_deadline() const {
    if (heap_.empty()) return std::nullopt;
    return TimePoint(Duration(heap_[0].when));
  }
  // Runs, in deadline order, the timers due at `now` that were scheduled
  // before this call (one scheduled by a callback, even for a time already
  // past, waits for the next call: a timer cannot starve the loop). A
  // repeating timer is rescheduled one interval after its deadline, or one
  // interval after `now` if it fell that far behind. Returns how many ran.
  size_t run_due(TimePoint now);

  // Timers scheduled and not yet fired or cancelled.
  size_t size() const { return heap_.size() + deferred_.size(); }
  bool empty() const { return size() == 0; }
  // Of those, the ones that keep loop() running.
  size_t keep_alive_count() const { return keep_alive_; }

 private:
  friend class TimerHandle;

  static constexpr uint32_t kFree = UINT32_MAX;  // heap_pos of a free node
  static constexpr uint32_t kFiring = UINT32_MAX - 1;  // callback running
  static constexpr uint32_t kFiringCancelled = UINT32_MAX - 2;  // and cancelled
  // Scheduled by a callback of run_due() for a time already due: waits in
  // deferred_ until run_due() returns.
  static constexpr uint32_t kDeferred = UINT32_MAX - 3;

  // What sifting and handles touch, apart from what only scheduling, firing
  // and freeing do (hot/cold split: 8 bytes a timer on the sift path).
  struct Slot {
    uint32_t heap_pos = kFree;
    uint32_t gen = 0;
  };
  struct Node {
    std::function<void()> fn;
    Duration interval{};
    bool keep_alive = true;
  };
  // The deadline beside the node, so that sifting reads the heap only.
  struct Entry {
    Duration::rep when;  // since the clock's epoch
    uint32_t seq;        // scheduling order, for equal deadlines
    uint32_t node;
  };

  static bool before(const Entry& a, const Entry& b) {
    return a.when < b.when || (a.when == b.when && a.seq < b.seq);
  }
  // The next scheduling number. 32 bits keep entries at 16 bytes: when they
  // run out, the pending entries (heap and deferred) are renumbered 0..n-1
  // in the same order, which leaves the heap valid: once per 2^32 schedules.
  uint32_t next_seq() {
    if (next_seq_ == UINT32_MAX) [[unlikely]]
      renumber();
    return next_seq_++;
  }
  void renumber();

 public:
  // Tests only: where the scheduling numbers start.
  void set_next_seq_for_testing(uint32_t seq) { next_seq_ = seq; }

 private:
  void push(Entry e);
  void remove_at(uint32_t pos);
  // Moves `e`, to be placed at `pos`, up to where it belongs.
  void sift_up(uint32_t pos, Entry e);
  void sift_down(uint32_t pos);
  void place(uint32_t pos, const Entry& e) {
    heap_[pos] = e;
    slots_[e.node].heap_pos = pos;
  }
  // Releases a node that is neither in the heap nor firing.
  void free_node(uint32_t node);
  void cancel(uint32_t node, uint32_t gen);
  bool active(uint32_t node, uint32_t gen) const;

  std::vector<Entry> heap_;
  std::vector<Slot> slots_;
  std::vector<Node> nodes_;  // callbacks are moved out before they run
  std::vector<uint32_t> free_;
  uint32_t next_seq_ = 0;
  // While run_due() runs: its `now`, and the due timers its callbacks
  // schedule, each with its slot's generation (a cancelled one is stale).
  bool running_ = false;
  Duration::rep run_now_ = 0;
  std::vector<std::pair<Entry, uint32_t>> deferred_;
  size_t keep_alive_ = 0;
  internal::TimerAnchor* anchor_;
};

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_TIMER_QUEUE_H_
