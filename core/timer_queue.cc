#include "core/timer_queue.h"

#include <utility>

namespace asyncore {

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
  } else {
    id = free_.back();
    free_.pop_back();
  }
  Node& n = nodes_[id];
  n.fn = std::move(fn);
  n.interval = interval.count() > 0 ? interval : Duration::zero();
  n.keep_alive = keep_alive;
  n.cancelled = false;
  if (keep_alive) ++keep_alive_;
  push(Entry{when.time_since_epoch().count(), next_seq_++, id});
  return TimerHandle(anchor_, id, n.gen);
}

void TimerQueue::push(Entry e) {
  heap_.push_back(e);
  const auto pos = static_cast<uint32_t>(heap_.size() - 1);
  nodes_[e.node].heap_pos = pos;
  sift_up(pos);
}

void TimerQueue::sift_up(uint32_t pos) {
  const Entry e = heap_[pos];
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
    const uint32_t last = first + 4 < size ? first + 4 : size;
    for (uint32_t c = first + 1; c < last; ++c) {
      if (before(heap_[c], heap_[best])) best = c;
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
    sift_up(pos);
  } else {
    sift_down(pos);
  }
}

void TimerQueue::free_node(uint32_t id) {
  Node& n = nodes_[id];
  if (n.keep_alive && !n.cancelled) --keep_alive_;
  n.heap_pos = kFree;
  ++n.gen;  // handles to it go stale
  free_.push_back(id);
  // Last: the callback's captures may run user code that schedules or
  // cancels timers, and the queue is consistent again by now.
  std::function<void()> doomed = std::move(n.fn);
  n.fn = nullptr;
}

bool TimerQueue::active(uint32_t id, uint32_t gen) const {
  if (id >= nodes_.size()) return false;
  const Node& n = nodes_[id];
  return n.gen == gen && n.heap_pos != kFree && !n.cancelled;
}

void TimerQueue::cancel(uint32_t id, uint32_t gen) {
  if (!active(id, gen)) return;
  Node& n = nodes_[id];
  if (n.heap_pos == kFiring) {
    // Inside its own callback (or one it called): run_due frees it after.
    n.cancelled = true;
    if (n.keep_alive) --keep_alive_;
    return;
  }
  remove_at(n.heap_pos);
  free_node(id);
}

size_t TimerQueue::run_due(TimePoint now) {
  const Duration::rep now_rep = now.time_since_epoch().count();
  const uint64_t cutoff = next_seq_;
  size_t ran = 0;
  while (!heap_.empty() && heap_[0].when <= now_rep && heap_[0].seq < cutoff) {
    const Entry due = heap_[0];
    remove_at(0);
    nodes_[due.node].heap_pos = kFiring;
    ++ran;
    // Rescheduled or freed even when the callback throws (ExitNow out of
    // loop(), say): the exception goes on, the queue stays whole.
    struct Finish {
      TimerQueue* q;
      const Entry& due;
      Duration::rep now_rep;
      ~Finish() {
        Node& n = q->nodes_[due.node];  // stable: nodes_ is a deque
        if (n.interval.count() > 0 && !n.cancelled) {
          Duration::rep next = due.when + n.interval.count();
          if (next <= now_rep) next = now_rep + n.interval.count();
          q->push(Entry{next, q->next_seq_++, due.node});
        } else {
          q->free_node(due.node);
        }
      }
    } finish{this, due, now_rep};
    nodes_[due.node].fn();
  }
  return ran;
}

}  // namespace asyncore
