// OutputQueue: AsyncChat's FIFO of output entries, a ring that doubles when
// full. 16 bytes in the channel (std::deque's are 80): the capacity, a power
// of two, sits in the allocation just before the items. O(1) push at either
// end and pop at the front; a queue that drains gives back a large block.
#ifndef ASYNCOREPP_CHAT_OUTPUT_QUEUE_H_
#define ASYNCOREPP_CHAT_OUTPUT_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <utility>

namespace asynchat {

template <class T>
class OutputQueue {
 public:
  OutputQueue() = default;
  ~OutputQueue() { release(); }
  OutputQueue(const OutputQueue&) = delete;
  OutputQueue& operator=(const OutputQueue&) = delete;

  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  // The i-th entry from the front.
  T& operator[](size_t i) { return items_[(head_ + i) & (capacity() - 1)]; }
  const T& operator[](size_t i) const {
    return items_[(head_ + i) & (capacity() - 1)];
  }
  T& front() { return (*this)[0]; }

  void push_back(T&& item) {
    if (size_ == capacity()) grow();
    new (&(*this)[size_]) T(std::move(item));
    ++size_;
  }
  void push_front(T&& item) {
    if (size_ == capacity()) grow();
    head_ = (head_ + static_cast<uint32_t>(capacity()) - 1) &
            static_cast<uint32_t>(capacity() - 1);
    new (&items_[head_]) T(std::move(item));
    ++size_;
  }
  void pop_front() {
    front().~T();
    head_ = (head_ + 1) & static_cast<uint32_t>(capacity() - 1);
    if (--size_ == 0) drained();
  }
  void clear() {
    clear_items();
    drained();
  }

 private:
  static constexpr size_t kHeader = alignof(T) > sizeof(size_t)
                                        ? alignof(T)
                                        : sizeof(size_t);
  static constexpr size_t kFirst = 4;  // entries of the first block
  // A drained queue keeps its block only if it is the first, small one: an
  // idle channel does not pin a burst's peak.
  static constexpr size_t kKept = kFirst;

  size_t capacity() const {
    return items_ ? reinterpret_cast<const size_t*>(items_)[-1] : 0;
  }

  void grow() {
    const size_t old_capacity = capacity();
    const size_t capacity = old_capacity ? 2 * old_capacity : kFirst;
    if (capacity > UINT32_MAX) throw std::length_error("OutputQueue too long");
    char* block = static_cast<char*>(::operator new(
        kHeader + capacity * sizeof(T), std::align_val_t(alignof(T))));
    T* items = reinterpret_cast<T*>(block + kHeader);
    reinterpret_cast<size_t*>(items)[-1] = capacity;
    for (uint32_t i = 0; i < size_; ++i) {
      T& from = (*this)[i];
      new (&items[i]) T(std::move(from));
      from.~T();
    }
    free_block();
    items_ = items;
    head_ = 0;
  }

  void drained() {
    head_ = 0;
    if (capacity() > kKept) release();
  }

  void release() {
    clear_items();
    free_block();
    items_ = nullptr;
    head_ = size_ = 0;
  }

  void clear_items() {
    while (size_ > 0) {
      front().~T();
      head_ = (head_ + 1) & static_cast<uint32_t>(capacity() - 1);
      --size_;
    }
  }

  void free_block() {
    if (items_ == nullptr) return;
    ::operator delete(reinterpret_cast<char*>(items_) - kHeader,
                      std::align_val_t(alignof(T)));
  }

  T* items_ = nullptr;
  uint32_t head_ = 0;
  uint32_t size_ = 0;
};

}  // namespace asynchat

#endif  // ASYNCOREPP_CHAT_OUTPUT_QUEUE_H_
