// Producers: sources of output that AsyncChat drains lazily, one chunk per
// write event (Python's asynchat producer protocol, spec A.5).
#ifndef ASYNCOREPP_CHAT_PRODUCER_H_
#define ASYNCOREPP_CHAT_PRODUCER_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace asynchat {

class Producer {
 public:
  virtual ~Producer() = default;
  // The next chunk; empty means exhausted (the producer is then dropped).
  virtual std::string more() = 0;
};

// Hands out `data` in chunks of `buffer_size` bytes (the last may be
// shorter), then empty.
class SimpleProducer : public Producer {
 public:
  static constexpr size_t kDefaultBufferSize = 512;

  explicit SimpleProducer(std::string data,
                          size_t buffer_size = kDefaultBufferSize)
      : data_(std::move(data)), buffer_size_(buffer_size ? buffer_size : 1) {}

  std::string more() override {
    std::string_view rest = std::string_view(data_).substr(offset_);
    std::string chunk(rest.substr(0, buffer_size_));
    offset_ += chunk.size();
    return chunk;
  }

 private:
  std::string data_;
  size_t buffer_size_;
  size_t offset_ = 0;
};

}  // namespace asynchat

#endif  // ASYNCOREPP_CHAT_PRODUCER_H_
