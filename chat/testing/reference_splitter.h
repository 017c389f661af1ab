// The reference model of AsyncChat's input side, shared by the property test
// (chat/async_chat_test.cc) and the fuzzer (chat/fuzz/async_chat_fuzzer.cc):
// Python 3.11's async_chat.handle_read loop on one received chunk, with
// std::string copies everywhere (Python's own slicing) and brute-force
// searches, written independently of chat/async_chat.cc; only the
// Terminator type is shared with the library.
//
// Header-only: the fuzz scripts compile the fuzzer with clang, -I. from the
// repository root and a list of library sources only, so a .cc here would
// need a change to each of them.
#ifndef ASYNCOREPP_CHAT_TESTING_REFERENCE_SPLITTER_H_
#define ASYNCOREPP_CHAT_TESTING_REFERENCE_SPLITTER_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "chat/terminator.h"

namespace asynchat_testing {

// A terminator as the model keeps it: its own copy of the state of an
// asynchat::Terminator.
struct RefTerminator {
  using Kind = asynchat::Terminator::Kind;

  Kind kind = Kind::kUnset;
  uint64_t count = 0;  // kCount only
  std::string str;     // kString only

  RefTerminator() = default;
  explicit RefTerminator(const asynchat::Terminator& t)
      : kind(t.kind()), count(t.count()), str(t.string()) {}

  // Python's truthiness: a non-zero count or a non-empty string; anything
  // else (None, 0, "") collects everything.
  bool truthy() const {
    return (kind == Kind::kCount && count != 0) ||
           (kind == Kind::kString && !str.empty());
  }
  asynchat::Terminator to_terminator() const {
    switch (kind) {
      case Kind::kUnset:
        return asynchat::Terminator();
      case Kind::kNone:
        return asynchat::Terminator(nullptr);
      case Kind::kCount:
        return asynchat::Terminator(count);
      case Kind::kString:
        return asynchat::Terminator(str);
    }
    return asynchat::Terminator();
  }
  // The same terminator as `t` (comparing only what its kind uses).
  bool matches(const asynchat::Terminator& t) const {
    if (kind != t.kind()) return false;
    if (kind == Kind::kCount) return count == t.count();
    if (kind == Kind::kString) return str == t.string();
    return true;
  }
};

class ReferenceSplitter {
 public:
  using Kind = RefTerminator::Kind;
  // collect_incoming_data(data); data is never empty.
  using Collect = std::function<void(const std::string& data)>;
  // found_terminator(); record is everything collected since the last one.
  using Found = std::function<void(std::string record)>;

  RefTerminator term;    // set_terminator(); the callbacks may change it
  std::string buf;       // ac_in_buffer: received, not classified yet
  std::string incoming;  // collected since the last terminator (_get_data)
  // Since the last discard(), for the reconstruction invariant:
  std::string stream;         // every byte received
  std::string reconstructed;  // collected bytes and string terminators seen

  // Appends `chunk` to the buffer and splits it, as one handle_read() does:
  // collect(data) is called once `data` has been added to `incoming`,
  // found(record) with `incoming` taken. Both may change `term` or call
  // discard(); the split goes on with whatever is left. Returns false, with
  // the bytes kept in `buf`, when bytes arrive while the terminator is unset
  // (AsyncChat's error, spec D7; Python's AttributeError).
  bool process(std::string_view chunk, const Collect& on_collect = nullptr,
               const Found& on_found = nullptr) {
    buf.append(chunk);
    stream.append(chunk);
    // `data` has been accounted for in `reconstructed` by the caller, before
    // the callback may discard everything.
    auto collect = [&](std::string data) {
      incoming += data;
      if (on_collect) on_collect(data);
    };
    auto found = [&]() {
      std::string record = std::exchange(incoming, {});
      if (on_found) on_found(std::move(record));
    };
    while (!buf.empty()) {
      if (term.kind == Kind::kUnset) return false;
      if (!term.truthy()) {
        reconstructed += buf;
        collect(std::exchange(buf, {}));
      } else if (term.kind == Kind::kCount) {
        if (buf.size() < term.count) {
          // Python: self.terminator = self.terminator - lb, read after the
          // callback (which may have changed it). AsyncChat subtracts only
          // from a count, saturating at 0; Python would raise TypeError for
          // bytes/None and go negative for a smaller int.
          const size_t lb = buf.size();
          reconstructed += buf;
          collect(std::exchange(buf, {}));
          if (term.kind == Kind::kCount) {
            term.count -= std::min<uint64_t>(term.count, lb);
          }
        } else {
          std::string head = buf.substr(0, term.count);
          buf.erase(0, term.count);
          reconstructed += head;
          collect(std::move(head));
          term = RefTerminator{};  // Python: self.terminator = 0
          term.kind = Kind::kCount;
          found();
        }
      } else {
        const std::string t = term.str;
        size_t index = find(buf, t);
        if (index != std::string::npos) {
          std::string head = buf.substr(0, index);
          buf.erase(0, index + t.size());
          reconstructed += head;
          reconstructed += t;
          if (!head.empty()) collect(std::move(head));
          found();
        } else {
          size_t p = prefix_at_end(buf, t);
          if (p == 0) {
            reconstructed += buf;
            collect(std::exchange(buf, {}));
          } else if (p < buf.size()) {
            std::string head = buf.substr(0, buf.size() - p);
            buf.erase(0, buf.size() - p);
            reconstructed += head;
            collect(std::move(head));
            break;
          } else {
            break;
          }
        }
      }
    }
    return true;
  }

  // discard_buffers(): drops the buffered input and the collected data (and
  // starts the reconstruction record afresh).
  void discard() {
    buf.clear();
    incoming.clear();
    stream.clear();
    reconstructed.clear();
  }

  // The reconstruction invariant: the bytes collected, plus the string
  // terminators seen, plus the bytes held back, are the bytes received.
  bool reconstructs() const { return reconstructed + buf == stream; }

  // Longest proper prefix of `needle` (not empty) that ends `hay`, by brute
  // force.
  static size_t prefix_at_end(const std::string& hay,
                              const std::string& needle) {
    for (size_t l = needle.size() - 1; l >= 1; --l) {
      if (l <= hay.size() &&
          hay.compare(hay.size() - l, l, needle, 0, l) == 0) {
        return l;
      }
    }
    return 0;
  }

  // Leftmost occurrence by brute force (npos if none).
  static size_t find(const std::string& hay, const std::string& needle) {
    if (needle.size() > hay.size()) return std::string::npos;
    for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
      if (hay.compare(i, needle.size(), needle) == 0) return i;
    }
    return std::string::npos;
  }
};

}  // namespace asynchat_testing

#endif  // ASYNCOREPP_CHAT_TESTING_REFERENCE_SPLITTER_H_
