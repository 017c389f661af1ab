// Terminator: what ends a message for AsyncChat. Python accepts bytes, an
// integer count or None; here each is a constructor, and "unset" (no
// set_terminator() call yet) is a state of its own (spec D7).
#ifndef ASYNCOREPP_CHAT_TERMINATOR_H_
#define ASYNCOREPP_CHAT_TERMINATOR_H_

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>

namespace asynchat {

// GCC 12 at -O1 (the sanitizer builds) reports the union's string as
// "maybe uninitialized" where Terminators are copied (GCC bug 105562); the
// constructors initialise exactly the member `kind_` names.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
class Terminator {
 public:
  enum class Kind : uint8_t {
    kUnset,   // set_terminator() never called: reading is an error
    kNone,    // None: collect everything, never fire
    kCount,   // fire after count() more bytes (0: like None)
    kString,  // fire at each occurrence of string() ("": like None)
  };

  // Unset.
  Terminator() noexcept : count_(0) {}
  // None.
  Terminator(std::nullptr_t) noexcept  // NOLINT: implicit, as Python
      : kind_(Kind::kNone), count_(0) {}
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
      : kind_(Kind::kCount), count_(checked_count(n)) {}  // NOLINT

  Terminator(const Terminator& other) : kind_(other.kind_), count_(0) {
    if (kind_ == Kind::kString) {
      new (&string_) std::string(other.string_);
    } else {
      count_ = other.count_;
    }
  }
  Terminator(Terminator&& other) noexcept : kind_(other.kind_), count_(0) {
    if (kind_ == Kind::kString) {
      new (&string_) std::string(std::move(other.string_));
    } else {
      count_ = other.count_;
    }
  }
  Terminator& operator=(Terminator other) noexcept {
    this->~Terminator();
    new (this) Terminator(std::move(other));
    return *this;
  }
  ~Terminator() {
    if (kind_ == Kind::kString) string_.~basic_string();
  }

  static Terminator none() { return Terminator(nullptr); }

  Kind kind() const { return kind_; }
  bool is_set() const { return kind_ != Kind::kUnset; }
  // Python's truthiness: false for unset, None, 0 and "".
  explicit operator bool() const {
    return (kind_ == Kind::kCount && count_ != 0) ||
           (kind_ == Kind::kString && !string_.empty());
  }
  // The count of a kCount terminator, else 0.
  uint64_t count() const { return kind_ == Kind::kCount ? count_ : 0; }
  // The bytes of a kString terminator, else "".
  const std::string& string() const {
    static const std::string kEmpty;
    return kind_ == Kind::kString ? string_ : kEmpty;
  }

  friend bool operator==(const Terminator& a, const Terminator& b) {
    return a.kind_ == b.kind_ && a.count() == b.count() &&
           a.string() == b.string();
  }

 private:
  friend class AsyncChat;
  template <class N>
  static uint64_t checked_count(N n) {
    if constexpr (std::is_signed_v<N>) {
      if (n < 0) {
        throw std::invalid_argument(
            "the number of received bytes must be positive");
      }
    }
    return static_cast<uint64_t>(n);
  }

  // 40 bytes, one per channel: a count and a string never coexist.
  Kind kind_ = Kind::kUnset;
  union {
    uint64_t count_;      // kUnset, kNone (0) and kCount
    std::string string_;  // kString
  };
};
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// Length of the longest proper prefix of `needle` that ends `haystack`
// (Python's find_prefix_at_end); 0 when none, always 0 for a 1-byte needle.
size_t find_prefix_at_end(std::string_view haystack, std::string_view needle);

}  // namespace asynchat

#endif  // ASYNCOREPP_CHAT_TERMINATOR_H_
