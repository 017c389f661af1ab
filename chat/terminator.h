// Terminator: what ends a message for AsyncChat. Python accepts bytes, an
// integer count or None; here each is a constructor, and "unset" (no
// set_terminator() call yet) is a state of its own (spec D7).
#ifndef ASYNCOREPP_CHAT_TERMINATOR_H_
#define ASYNCOREPP_CHAT_TERMINATOR_H_

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace asynchat {

class Terminator {
 public:
  enum class Kind {
    kUnset,   // set_terminator() never called: reading is an error
    kNone,    // None: collect everything, never fire
    kCount,   // fire after count() more bytes (0: like None)
    kString,  // fire at each occurrence of string() ("": like None)
  };

  // Unset.
  Terminator() = default;
  // None.
  Terminator(std::nullptr_t)
      : kind_(Kind::kNone) {}  // NOLINT: implicit, as Python
  // A byte string; "" collects everything, like None.
  Terminator(std::string_view s)  // NOLINT
      : kind_(Kind::kString), string_(s) {}
  Terminator(const char* s) : Terminator(std::string_view(s)) {}  // NOLINT
  Terminator(const std::string& s)
      : Terminator(std::string_view(s)) {}  // NOLINT
  // A byte count; 0 collects everything, like None; negative throws
  // std::invalid_argument (the message is Python's, bpo-11259).
  template <std::integral N>
  requires(!std::same_as<N, bool> && !std::same_as<N, char>) Terminator(N n)
      : kind_(Kind::kCount) {  // NOLINT
    if constexpr (std::is_signed_v<N>) {
      if (n < 0) {
        throw std::invalid_argument(
            "the number of received bytes must be positive");
      }
    }
    count_ = static_cast<uint64_t>(n);
  }

  static Terminator none() { return Terminator(nullptr); }

  Kind kind() const { return kind_; }
  bool is_set() const { return kind_ != Kind::kUnset; }
  // Python's truthiness: false for unset, None, 0 and "".
  explicit operator bool() const {
    return (kind_ == Kind::kCount && count_ != 0) ||
           (kind_ == Kind::kString && !string_.empty());
  }
  uint64_t count() const { return count_; }
  const std::string& string() const { return string_; }

  friend bool operator==(const Terminator& a, const Terminator& b) {
    return a.kind_ == b.kind_ && a.count_ == b.count_ && a.string_ == b.string_;
  }

 private:
  friend class AsyncChat;

  Kind kind_ = Kind::kUnset;
  uint64_t count_ = 0;
  std::string string_;
};

// Length of the longest proper prefix of `needle` that ends `haystack`
// (Python's find_prefix_at_end); 0 when none, always 0 for a 1-byte needle.
size_t find_prefix_at_end(std::string_view haystack, std::string_view needle);

}  // namespace asynchat

#endif  // ASYNCOREPP_CHAT_TERMINATOR_H_
