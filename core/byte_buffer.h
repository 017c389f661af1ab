// ByteBuffer: contiguous bytes with O(1) consumption from the front and
// direct writes into the tail (recv straight into the buffer, no temporary).
// Consumed space is reclaimed by one memmove when the buffer needs room and
// the consumed prefix is at least as large as the live bytes, so every byte
// is moved at most a constant number of times: linear in the bytes passed.
// 24 bytes (every buffered channel holds one): offsets are 32-bit, so one
// buffer holds less than 4 GiB (more throws std::length_error).
#ifndef ASYNCOREPP_CORE_BYTE_BUFFER_H_
#define ASYNCOREPP_CORE_BYTE_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace asyncore {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& other) noexcept { *this = std::move(other); }
  ByteBuffer& operator=(ByteBuffer&& other) noexcept {
    data_ = std::move(other.data_);
    capacity_ = std::exchange(other.capacity_, 0);
    begin_ = std::exchange(other.begin_, 0);
    end_ = std::exchange(other.end_, 0);
    return *this;
  }

  size_t size() const { return end_ - begin_; }
  size_t capacity() const { return capacity_; }
  bool empty() const { return begin_ == end_; }
  std::string_view view() const { return {data_.get() + begin_, size()}; }

  void append(std::string_view bytes) {
    if (bytes.empty()) return;
    std::memcpy(prepare(bytes.size()), bytes.data(), bytes.size());
    commit(bytes.size());
  }

  // Room for at least n more bytes at the tail; write there, then commit().
  char* prepare(size_t n) {
    if (capacity_ - end_ < n) make_room(n);
    return data_.get() + end_;
  }
  void commit(size_t n) { end_ += static_cast<uint32_t>(n); }

  // Drops up to n bytes from the front.
  void consume(size_t n) {
    begin_ += static_cast<uint32_t>(n < size() ? n : size());
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() { begin_ = end_ = 0; }
  // Frees the memory too (after a burst, to bound idle memory).
  void shrink() {
    if (empty()) {
      data_.reset();
      capacity_ = begin_ = end_ = 0;
    }
  }

 private:
  void make_room(size_t n) {
    const size_t live = size();
    if (begin_ >= live && capacity_ - live >= n) {
      std::memmove(data_.get(), data_.get() + begin_, live);  // slide down
    } else {
      if (n > max_size() - live)
        throw std::length_error("ByteBuffer too large");
      size_t cap = capacity_ ? capacity_ : 256;
      while (cap - live < n) cap = cap > max_size() / 2 ? max_size() : cap * 2;
      std::unique_ptr<char[]> bigger(new char[cap]);
      if (live) std::memcpy(bigger.get(), data_.get() + begin_, live);
      data_ = std::move(bigger);
      capacity_ = static_cast<uint32_t>(cap);
    }
    begin_ = 0;
    end_ = static_cast<uint32_t>(live);
  }

  static constexpr size_t max_size() { return UINT32_MAX; }

  std::unique_ptr<char[]> data_;
  uint32_t capacity_ = 0;
  uint32_t begin_ = 0;
  uint32_t end_ = 0;
};

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_BYTE_BUFFER_H_
