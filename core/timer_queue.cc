#include "core/timer_queue.h"

#include <algorithm>
#include <utility>

namespace asyncore {

Duration from_seconds(double seconds) {
  if (!(seconds > 0)) return Duration::zero();  // also NaN
  constexpr double kCentury = 100.0 * 365 * 24 * 3600;
  return std::chrono::duration_cast<Duration>(
      std::chrono::duration<double>(seconds < kCentury ? seconds : kCentury));
}

// --- TimerHandle -------------------------------------------------------------

TimerHandle::TimerHandle(internal::TimerAnchor* anchor, uint32_t node,
                         uint32_t gen)
    : anchor_(anchor), node_(node), gen_(gen) {
  ++anchor_->refs;
}

TimerHandle::TimerHandle(const TimerHandle& other)
    : anchor_(other.anchor_), node_(other.node_), gen_(other.gen_) {
  if (anchor_ != nullptr) ++anchor_->refs;
}

TimerHandle::TimerHandle(TimerHandle&& other) noexcept
    : anchor_(std::exchange(other.anchor_, nullptr)),
      node_(other.node_),
      gen_(other.gen_) {}

TimerHandle& TimerHandle::operator=(TimerHandle other) noexcept {
  std::swap(anchor_, other.anchor_);
  std::swap(node_, other.node_);
  std::swap(gen_, other.gen_);
  return *this;
}

TimerHandle::~TimerHandle() {
  if (anchor_ != nullptr && --anchor_->refs == 0) delete anchor_;
}

void TimerHandle::cancel() {
  if (anchor_ != nullptr && anchor_->queue != nullptr) {
    anchor_->queue->cancel(node_, gen_);
  }
}

bool TimerHandle::active() const {
  return anchor_ != nullptr && anchor_->queue != nullptr &&
         anchor_->queue->active(node_, gen_);
}

// --- TimerQueue --------------------------------------------------------------

TimerQueue::TimerQueue() : anchor_(new internal::TimerAnchor{this, 1}) {}

TimerQueue::~TimerQueue() {
  anchor_->queue = nullptr;  // handles that outlive the queue do nothing
  if (--anchor_->refs == 0) delete anchor_;
  // Callbacks (and what they captured) are destroyed with nodes_, after
  // the queue stopped answering: their destructors may cancel timers.
  heap_.clear();
}

TimerHandle TimerQueue::schedule(TimePoint when, Duration interval,
                                 std::function<void()> fn, bool keep_alive) {
  uint32_t id;
  if (free_.empty()) {
    id = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
    slots_.emplace_back();
  } else {
    id = free_.back();
    free_.pop_back();
  }
  Node& n = nodes_[id];
  n.fn = std::move(fn);
  n.interval = interval.count() > 0 ? interval : Duration::zero();
  n.keep_alive = keep_alive;
  if (keep_alive) ++keep_alive_;
  const Entry e{when.time_since_epoch().count(), next_seq(), id};
  const uint32_t gen = slots_[id].gen;
  if (running_ && e.when <= run_now_) [[unlikely]] {
    // Due already, but scheduled by a callback: waits for the next run, so
    // that a timer re-arming itself at "now" cannot starve the loop.
    slots_[id].heap_pos = kDeferred;
    deferred_.emplace_back(e, gen);
  } else {
    push(e);
  }
  return TimerHandle(anchor_, id, gen);
}

__attribute__((always_inline)) inline void TimerQueue::push(Entry e) {
  heap_.emplace_back();  // its place, filled by sift_up
  sift_up(static_cast<uint32_t>(heap_.size() - 1), e);
}

__attribute__((always_inline)) inline void TimerQueue::sift_up(uint32_t pos,
                                                               Entry e) {
  while (pos > 0) {
    const uint32_t parent = (pos - 1) / 4;
    if (!before(e, heap_[parent])) break;
    place(pos, heap_[parent]);
    pos = parent;
  }
  place(pos, e);
}

void TimerQueue::sift_down(uint32_t pos) {
  const Entry e = heap_[pos];
  const auto size = static_cast<uint32_t>(heap_.size());
  for (;;) {
    const uint32_t first = 4 * pos + 1;
    if (first >= size) break;
    uint32_t best = first;
    if (first + 3 < size) {  // all four children: libev's fast path
      const Entry* h = heap_.data();
      if (before(h[first + 1], h[best])) best = first + 1;
      if (before(h[first + 2], h[best])) best = first + 2;
      if (before(h[first + 3], h[best])) best = first + 3;
    } else {
      for (uint32_t c = first + 1; c < size; ++c) {
        if (before(heap_[c], heap_[best])) best = c;
      }
    }
    if (!before(heap_[best], e)) break;
    place(pos, heap_[best]);
    pos = best;
  }
  place(pos, e);
}

void TimerQueue::remove_at(uint32_t pos) {
  const Entry last = heap_.back();
  heap_.pop_back();
  if (pos == heap_.size()) return;
  place(pos, last);
  if (pos > 0 && before(last, heap_[(pos - 1) / 4])) {
    sift_up(pos, last);
  } else {
    sift_down(pos);
  }
}

void TimerQueue::free_node(uint32_t id) {
  Node& n = nodes_[id];
  Slot& s = slots_[id];
  if (n.keep_alive && s.heap_pos != kFiringCancelled) --keep_alive_;
  s.heap_pos = kFree;
  ++s.gen;  // handles to it go stale
  free_.push_back(id);
  // Last: the callback's captures may run user code that schedules or
  // cancels timers, and the queue is consistent again by now.
  std::function<void()> doomed = std::move(n.fn);
  n.fn = nullptr;
}

bool TimerQueue::active(uint32_t id, uint32_t gen) const {
  if (id >= slots_.size()) return false;
  const Slot& s = slots_[id];
  return s.gen == gen && s.heap_pos != kFree && s.heap_pos != kFiringCancelled;
}

void TimerQueue::cancel(uint32_t id, uint32_t gen) {
  if (!active(id, gen)) return;
  // free_node() reads it: start that miss now, beside the heap's.
  __builtin_prefetch(&nodes_[id], 1);
  Slot& s = slots_[id];
  if (s.heap_pos == kFiring) {
    // Inside its own callback (or one it called): run_due frees it after.
    s.heap_pos = kFiringCancelled;
    if (nodes_[id].keep_alive) --keep_alive_;
    return;
  }
  if (s.heap_pos != kDeferred) remove_at(s.heap_pos);
  free_node(id);  // a deferred entry goes stale with the generation
}

void TimerQueue::renumber() {
  // (seq, where): where < heap size is a heap position, else deferred_.
  std::vector<std::pair<uint32_t, size_t>> order;
  order.reserve(heap_.size() + deferred_.size());
  for (size_t i = 0; i < heap_.size(); ++i) order.emplace_back(heap_[i].seq, i);
  for (size_t i = 0; i < deferred_.size(); ++i) {
    order.emplace_back(deferred_[i].first.seq, heap_.size() + i);
  }
  std::sort(order.begin(), order.end());
  for (size_t rank = 0; rank < order.size(); ++rank) {
    const size_t where = order[rank].second;
    Entry& e = where < heap_.size() ? heap_[where]
                                    : deferred_[where - heap_.size()].first;
    e.seq = static_cast<uint32_t>(rank);
  }
  next_seq_ = static_cast<uint32_t>(order.size());
}

size_t TimerQueue::run_due(TimePoint now) {
  const Duration::rep now_rep = now.time_since_epoch().count();
  running_ = true;
  run_now_ = now_rep;
  // Ends the run even when a callback throws: the deferred timers join the
  // heap.
  struct EndRun {
    TimerQueue* q;
    ~EndRun() {
      q->running_ = false;
      for (const auto& [e, gen] : q->deferred_) {
        const Slot& s = q->slots_[e.node];
        if (s.gen == gen && s.heap_pos == kDeferred) q->push(e);
      }
      q->deferred_.clear();
    }
  } end_run{this};
  size_t ran = 0;
  while (!heap_.empty() && heap_[0].when <= now_rep) {
    const Entry due = heap_[0];
    remove_at(0);
    slots_[due.node].heap_pos = kFiring;
    ++ran;
    // Rescheduled or freed even when the callback throws (ExitNow out of
    // loop(), say): the exception goes on, the queue stays whole.
    struct Finish {
      TimerQueue* q;
      const Entry& due;
      Duration::rep now_rep;
      std::function<void()>& fn;
      ~Finish() {
        Node& n = q->nodes_[due.node];  // re-indexed: may have moved
        if (n.interval.count() > 0 &&
            q->slots_[due.node].heap_pos != kFiringCancelled) {
          n.fn = std::move(fn);
          Duration::rep next = due.when + n.interval.count();
          if (next <= now_rep) next = now_rep + n.interval.count();
          q->push(Entry{next, q->next_seq(), due.node});
        } else {
          q->free_node(due.node);
        }
      }
    };
    // Moved out: a callback that schedules may reallocate nodes_. Declared
    // before `finish`, so destroyed after free_node, as before.
    std::function<void()> fn = std::move(nodes_[due.node].fn);
    Finish finish{this, due, now_rep, fn};
    fn();
  }
  return ran;
}

}  // namespace asyncore
