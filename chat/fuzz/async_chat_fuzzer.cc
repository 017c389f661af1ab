// Fuzz target for asynchat::AsyncChat: the terminator scanner (input side)
// and the producer FIFO (output side), driven through a real socketpair.
//
// The input is a little program: one opcode byte, then its operands (see
// Op below). Each run builds a fresh channel on one end of a socketpair and
// keeps the other end (the peer) in the harness, which
//   - feeds bytes into the peer and calls asyncore::read() on the channel
//     until the socket is empty, comparing every collect_incoming_data() /
//     found_terminator() call, read by read, with a reference model of
//     Python's async_chat.handle_read (a plain std::string re-implementation
//     in chat/testing/reference_splitter.h, written independently of
//     chat/async_chat.cc and shared with the property test); both callbacks
//     run scripted actions (change the terminator, discard_buffers(), push,
//     close_when_done, ...) the way protocol handlers do;
//   - checks that the bytes fed since the last discard_buffers() equal what
//     was collected, plus the string terminators seen, plus the held-back
//     prefix (the reconstruction invariant);
//   - queues output (push, push_with_producer, close_when_done, from the
//     program and from inside the callbacks) and checks that the bytes
//     read from the peer are the queued bytes in order, up to the first
//     close marker, that one send never exceeds ac_out_buffer_size, and that
//     the queue drains completely (or closes at the marker) at the end.
// Everything is bounded: at most kMaxInput program bytes are read, at most
// kMaxFed bytes are fed, and the peer is drained after every step so the
// socket buffers never fill up.
//
// Built two ways: by scripts/run_fuzzer.sh async_chat with clang
// -fsanitize=fuzzer, and by Bazel as //chat:async_chat_fuzz_replay
// (fuzz_replay_main.cc runs LLVMFuzzerTestOneInput over the seed corpus, under
// gcc and the sanitizer configs). Failures print a message and abort().
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/async_chat.h"
#include "chat/producer.h"
#include "chat/terminator.h"
#include "chat/testing/reference_splitter.h"
#include "core/channel_map.h"
#include "core/dispatcher.h"
#include "core/socket.h"

namespace {

constexpr size_t kMaxInput = 8192;     // program bytes looked at
constexpr size_t kMaxFed = 16 * 1024;  // bytes fed into the channel per run

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "async_chat_fuzzer: invariant violated: %s\n",
               what.c_str());
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_CHECK(cond, msg)                                          \
  do {                                                                 \
    if (!(cond)) fail(std::string(#cond) + " -- " + std::string(msg)); \
  } while (0)

std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

// ASYNC_CHAT_FUZZ_TRACE=1 prints every read and output check (debugging).
bool trace() {
  static const bool on = std::getenv("ASYNC_CHAT_FUZZ_TRACE") != nullptr;
  return on;
}

// --- Reading the program ----------------------------------------------------

class Program {
 public:
  Program(const uint8_t* data, size_t size)
      : p_(data), n_(size < kMaxInput ? size : kMaxInput) {}
  bool done() const { return i_ >= n_; }
  uint8_t byte() { return i_ < n_ ? p_[i_++] : 0; }
  uint16_t u16() { return static_cast<uint16_t>(byte() | (byte() << 8)); }
  uint64_t u64() {
    uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v |= static_cast<uint64_t>(byte()) << (8 * k);
    return v;
  }
  // n bytes; in "alphabet" mode each is one of a, b, \r, \n, so terminators
  // made the same way occur often.
  std::string bytes(size_t n, bool alphabet) {
    std::string s;
    for (size_t k = 0; k < n && !done(); ++k) {
      uint8_t b = byte();
      s += alphabet ? "ab\r\n"[b & 3] : static_cast<char>(b);
    }
    return s;
  }
  // A terminator string: one length/mode byte, then 1..4 bytes.
  std::string term_string() {
    uint8_t m = byte();
    return bytes(1 + (m & 3), (m & 4) == 0);
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t i_ = 0;
};

// --- The reference model of the input side -----------------------------------

// The model: Python's async_chat.handle_read (chat/testing/
// reference_splitter.h, shared with the property test).
using asynchat_testing::RefTerminator;

std::string describe(const RefTerminator& t) {
  switch (t.kind) {
    case asynchat::Terminator::Kind::kUnset:
      return "unset";
    case asynchat::Terminator::Kind::kNone:
      return "None";
    case asynchat::Terminator::Kind::kCount:
      return "int " + std::to_string(t.count);
    case asynchat::Terminator::Kind::kString:
      return "'" + printable(t.str) + "'";
  }
  return "?";
}

std::string describe(const asynchat::Terminator& t) {
  return describe(RefTerminator(t));
}

// What found_terminator() does (taken from the program, in order).
struct Action {
  enum Kind {
    kNothing,
    kSetTerm,   // term
    kDiscard,   // discard_buffers()
    kPush,      // push(data)
    kProducer,  // push_with_producer(SimpleProducer(data, chunk))
    kCloseWhenDone,
    kInitiateSend,
  } kind = kNothing;
  RefTerminator term;
  std::string data;
  size_t chunk = 0;
};

// One callback as observed (or predicted).
struct Event {
  enum Kind { kCollect, kTerminator, kError } kind;
  std::string data;  // collect: the bytes; terminator: take_incoming()
  bool operator==(const Event& o) const {
    return kind == o.kind && data == o.data;
  }
};

std::string describe(const std::vector<Event>& events) {
  std::string s;
  for (const Event& e : events) {
    switch (e.kind) {
      case Event::kCollect:
        s += " collect('" + printable(e.data) + "')";
        break;
      case Event::kTerminator:
        s += " found('" + printable(e.data) + "')";
        break;
      case Event::kError:
        s += " error(" + e.data + ")";
        break;
    }
  }
  return s.empty() ? " (none)" : s;
}

// --- The harness -------------------------------------------------------------

class Harness;

class FuzzChat : public asynchat::AsyncChat {
 public:
  FuzzChat(asyncore::Socket sock, asyncore::ChannelMap* map, Harness* h)
      : AsyncChat(std::move(sock), map), h_(h) {}

  void collect_incoming_data(std::string_view data) override;
  void found_terminator() override;
  void handle_error() override;
  void handle_close() override {
    ++close_calls;
    AsyncChat::handle_close();
  }

  using AsyncChat::append_incoming;
  using AsyncChat::take_incoming;

  int close_calls = 0;

 private:
  Harness* h_;
};

class Harness {
 public:
  Harness() {
    auto [a, b] = asyncore::Socket::pair();
    peer_ = std::move(b);
    chat_ = std::make_unique<FuzzChat>(std::move(a), &map_, this);
  }

  void run(Program& prog);

  // Called by FuzzChat.
  void on_collect(std::string_view data) {
    FUZZ_CHECK(!data.empty(), "collect_incoming_data() with no bytes");
    events_.push_back({Event::kCollect, std::string(data)});
    chat_->append_incoming(data);
    act(collect_script_);
  }
  void on_found_terminator() {
    events_.push_back({Event::kTerminator, chat_->take_incoming()});
    act(script_);
  }
  void act(std::deque<Action>& script) {
    if (script.empty()) return;
    Action a = std::move(script.front());
    script.pop_front();
    apply(a);
  }
  void on_error() {
    std::string what = "unknown exception";
    try {
      throw;
    } catch (const std::logic_error& e) {
      what = e.what();
      if (what.find("before set_terminator") != std::string::npos) {
        events_.push_back({Event::kError, "unset"});
        error_closed_ = true;
        chat_->close();  // what the default handle_error() does
        return;
      }
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    fail("unexpected handle_error(): " + what);
  }

 private:
  // Reads everything the channel has sent so far.
  void drain_peer() {
    char buf[65536];
    for (;;) {
      ssize_t n = peer_.recv_some(buf, sizeof buf);
      if (n > 0) {
        received_.append(buf, static_cast<size_t>(n));
        continue;
      }
      // A channel that closes with input still unread makes AF_UNIX report
      // ECONNRESET once, after the queued bytes: an EOF for this purpose.
      if (n == 0 || errno == ECONNRESET) {
        peer_eof_ = true;
        return;
      }
      FUZZ_CHECK(errno == EAGAIN || errno == EWOULDBLOCK,
                 "peer recv failed: errno " + std::to_string(errno));
      return;
    }
  }

  // What the peer must have seen: everything queued, up to the first
  // close marker.
  std::string_view due() const {
    std::string_view e = expected_;
    return marker_ ? e.substr(0, *marker_) : e;
  }

  void check_output_prefix() {
    drain_peer();
    if (trace()) {
      std::fprintf(stderr, "output: received '%s', due '%s'%s\n",
                   printable(received_).c_str(), printable(due()).c_str(),
                   chat_->connected() ? "" : " (closed)");
    }
    FUZZ_CHECK(received_.size() <= due().size() &&
                   due().substr(0, received_.size()) == received_,
               "peer received '" + printable(received_) +
                   "', not a prefix of the queued '" + printable(due()) + "'");
  }

  size_t out_limit() const {
    return chat_->ac_out_buffer_size ? chat_->ac_out_buffer_size : 1;
  }

  // Runs one output operation that makes at most one send, and checks the
  // size of that send.
  template <class F>
  void one_send(F&& f) {
    drain_peer();
    const size_t before = received_.size();
    const size_t limit = out_limit();
    f();
    drain_peer();
    FUZZ_CHECK(received_.size() - before <= limit,
               "one send of " + std::to_string(received_.size() - before) +
                   " bytes exceeds ac_out_buffer_size " +
                   std::to_string(limit));
    check_output_prefix();
  }

  void do_push(std::string data, bool as_view) {
    expected_ += data;
    if (as_view) {
      one_send([&] { chat_->push(std::string_view(data)); });
    } else {
      one_send([&] { chat_->push(std::move(data)); });
    }
  }
  void do_producer(std::string data, size_t chunk) {
    expected_ += data;
    one_send([&] {
      chat_->push_with_producer(
          std::make_unique<asynchat::SimpleProducer>(std::move(data), chunk));
    });
  }
  void do_close_when_done() {
    if (!marker_) marker_ = expected_.size();
    chat_->close_when_done();
  }
  void do_discard() {
    // Whatever was sent is in the peer's queue (AF_UNIX is synchronous); the
    // rest of the queue, close markers included, is dropped.
    check_output_prefix();
    if (chat_->connected()) {  // once closed, what was sent stays the record
      expected_ = received_;
      marker_.reset();
    }
    chat_->discard_buffers();
    FUZZ_CHECK(chat_->queued_entries() == 0 && chat_->queued_bytes() == 0,
               "discard_buffers() left output queued");
  }
  void do_set_terminator(const RefTerminator& t) {
    chat_->set_terminator(t.to_terminator());
    FUZZ_CHECK(t.matches(chat_->get_terminator()),
               "set_terminator() not stored");
  }

  void apply(const Action& a) {
    switch (a.kind) {
      case Action::kNothing:
        break;
      case Action::kSetTerm:
        do_set_terminator(a.term);
        break;
      case Action::kDiscard:
        do_discard();
        break;
      case Action::kPush:
        do_push(a.data, false);
        break;
      case Action::kProducer:
        do_producer(a.data, a.chunk);
        break;
      case Action::kCloseWhenDone:
        do_close_when_done();
        break;
      case Action::kInitiateSend:
        one_send([&] { chat_->initiate_send(); });
        break;
    }
  }

  RefTerminator read_term(Program& prog) {
    RefTerminator t;
    switch (prog.byte() % 6) {
      case 0:
      case 1:
        t.kind = asynchat::Terminator::Kind::kString;
        t.str = prog.term_string();
        break;
      case 2:
        t.kind = asynchat::Terminator::Kind::kCount;
        t.count = prog.byte();
        break;
      case 3:
        t.kind = asynchat::Terminator::Kind::kNone;
        break;
      case 4:
        t.kind = asynchat::Terminator::Kind::kString;  // "": like None
        break;
      case 5:
        t.kind = asynchat::Terminator::Kind::kUnset;  // reading is an error
        break;
    }
    return t;
  }

  Action read_action(Program& prog) {
    Action a;
    switch (prog.byte() % 8) {
      case 0:
        a.kind = Action::kNothing;
        break;
      case 1:
      case 2:
        a.kind = Action::kSetTerm;
        a.term = read_term(prog);
        break;
      case 3:
        a.kind = Action::kDiscard;
        break;
      case 4:
        a.kind = Action::kPush;
        a.data = prog.bytes(prog.byte() % 16, true);
        break;
      case 5:
        a.kind = Action::kProducer;
        a.chunk = prog.byte() % 5;
        a.data = prog.bytes(prog.byte() % 32, true);
        break;
      case 6:
        a.kind = Action::kCloseWhenDone;
        break;
      case 7:
        a.kind = Action::kInitiateSend;
        break;
    }
    return a;
  }

  // Bytes the channel has not read yet.
  size_t pending_in() const {
    int avail = 0;
    FUZZ_CHECK(::ioctl(chat_->fileno(), FIONREAD, &avail) == 0,
               "FIONREAD failed");
    return static_cast<size_t>(avail);
  }

  // One asyncore::read() event. An AF_UNIX stream recv(2) takes everything
  // queued up to the size asked for; that is checked whenever the channel
  // is still open afterwards (a callback may close it, and then its socket
  // is gone), and the model processes the same chunk.
  void read_once() {
    const size_t before = pending_in();
    const size_t got = std::min(before, in_limit());
    std::deque<Action> model_script = script_;
    std::deque<Action> model_collect_script = collect_script_;
    events_.clear();
    asyncore::read(*chat_);
    if (chat_->connected()) {
      FUZZ_CHECK(pending_in() == before - got,
                 "recv took " + std::to_string(before - pending_in()) +
                     " bytes, expected " + std::to_string(got));
    }
    FUZZ_CHECK(got <= unread_.size(), "more read than fed");
    std::string chunk = unread_.substr(0, got);
    unread_.erase(0, got);
    check_processed("read", chunk, model_script, model_collect_script);
  }

  // AsyncChat::feed(): the same splitting as a read, with no socket.
  void feed_in_place(std::string data) {
    if (!chat_->connected() || eof_) return;
    if (fed_ + data.size() > kMaxFed) data.resize(kMaxFed - fed_);
    if (data.empty()) return;
    fed_ += data.size();
    std::deque<Action> model_script = script_;
    std::deque<Action> model_collect_script = collect_script_;
    events_.clear();
    try {
      chat_->feed(data);
    } catch (const asyncore::ExitNow&) {
      throw;
    } catch (...) {
      chat_->handle_error();  // as the loop's read() would
    }
    check_processed("feed", data, model_script, model_collect_script);
    check_output_prefix();
  }

  // Checks the callbacks one read (or feed) of `chunk` made against the model.
  void check_processed(const char* how, const std::string& chunk,
                       std::deque<Action>& model_script,
                       std::deque<Action>& model_collect_script) {
    std::vector<Event> want =
        predict(chunk, model_script, model_collect_script);
    if (trace()) {
      std::fprintf(stderr, "%s '%s' ->%s\n", how, printable(chunk).c_str(),
                   describe(events_).c_str());
    }
    FUZZ_CHECK(events_ == want, std::string(how) + " of '" + printable(chunk) +
                                    "' (terminator " + describe(model_.term) +
                                    " after):\n  got: " + describe(events_) +
                                    "\n  want:" + describe(want));
    FUZZ_CHECK(script_.size() == model_script.size() &&
                   collect_script_.size() == model_collect_script.size(),
               "callback count differs from the model");
    if (!events_.empty() && events_.back().kind == Event::kError) {
      FUZZ_CHECK(!chat_->connected(), "still connected after the error");
      return;
    }
    FUZZ_CHECK(model_.term.matches(chat_->get_terminator()),
               "terminator after the read is " +
                   describe(chat_->get_terminator()) + ", the model says " +
                   describe(model_.term));
    FUZZ_CHECK(model_.reconstructs(),
               "collected + terminators + held back != bytes received: '" +
                   printable(model_.reconstructed) + "' + '" +
                   printable(model_.buf) + "' vs '" + printable(model_.stream) +
                   "'");
  }

  // The model's callbacks for one read (or feed) of `chunk`; they take
  // actions from the front of `on_found` and `on_collect` (the model's own
  // copies of the scripts).
  std::vector<Event> predict(std::string_view chunk,
                             std::deque<Action>& on_found,
                             std::deque<Action>& on_collect) {
    std::vector<Event> out;
    auto act = [&](std::deque<Action>& script) {
      if (script.empty()) return;
      Action a = std::move(script.front());
      script.pop_front();
      if (a.kind == Action::kSetTerm) model_.term = a.term;
      if (a.kind == Action::kDiscard) model_.discard();
    };
    const bool ok = model_.process(
        chunk,
        [&](const std::string& data) {
          out.push_back({Event::kCollect, data});
          act(on_collect);
        },
        [&](std::string record) {
          out.push_back({Event::kTerminator, std::move(record)});
          act(on_found);
        });
    if (!ok) out.push_back({Event::kError, "unset"});
    return out;
  }

  size_t in_limit() const {
    return chat_->ac_in_buffer_size ? chat_->ac_in_buffer_size : 1;
  }

  void feed(std::string data) {
    if (!chat_->connected() || eof_) return;
    if (fed_ + data.size() > kMaxFed) data.resize(kMaxFed - fed_);
    if (data.empty()) return;
    fed_ += data.size();
    ssize_t n = peer_.send_some(data.data(), data.size());
    FUZZ_CHECK(n == static_cast<ssize_t>(data.size()),
               "peer send of " + std::to_string(data.size()) + " bytes failed");
    unread_ += data;
    while (chat_->connected() && pending_in() > 0) {
      const size_t before = unread_.size();
      read_once();
      FUZZ_CHECK(unread_.size() < before || !chat_->connected(),
                 "a read made no progress");
    }
    check_output_prefix();
  }

  void check_writable_state() {
    if (!chat_->connected()) return;
    FUZZ_CHECK(chat_->writable() == (chat_->queued_entries() > 0),
               "writable() disagrees with the queue");
    // With declared interest on, a queue that is not empty must be declared
    // writable, or the loop would never send it. (The other direction is
    // only a spurious write event: a fresh channel starts declared writable.)
    FUZZ_CHECK(!chat_->writable() || chat_->declared_writable(),
               "output queued but not declared writable");
  }

  void finish() {
    check_output_prefix();
    if (chat_->connected()) {
      // Drain the queue: every call sends at least one byte, pops an empty
      // entry or an exhausted producer, or closes at the marker.
      size_t bound = 2 * (expected_.size() + chat_->queued_entries()) + 16;
      while (chat_->connected() && chat_->queued_entries() > 0 && bound-- > 0) {
        one_send([&] { chat_->initiate_send(); });
      }
      FUZZ_CHECK(!chat_->connected() || chat_->queued_entries() == 0,
                 "the output queue does not drain");
      drain_peer();
      if (chat_->connected()) {
        FUZZ_CHECK(!marker_, "a close marker was queued but not reached");
        FUZZ_CHECK(received_ == expected_,
                   "peer received '" + printable(received_) + "', queued '" +
                       printable(expected_) + "'");
        FUZZ_CHECK(chat_->queued_bytes() == 0,
                   "queued_bytes() not 0 when empty");
      }
    }
    check_closed_state();
  }

  // After the channel closed: by the marker (all due bytes arrived, the peer
  // sees EOF), or by EOF/error (a prefix arrived).
  void check_closed_state() {
    if (chat_->connected()) return;
    drain_peer();
    FUZZ_CHECK(peer_eof_, "channel closed but the peer sees no EOF");
    if (!eof_ && !error_closed_) {
      FUZZ_CHECK(marker_.has_value(), "closed without a close marker");
      FUZZ_CHECK(received_ == due(),
                 "closed at the marker, but the peer got '" +
                     printable(received_) + "', not '" + printable(due()) +
                     "'");
    }
  }

  asyncore::ChannelMap map_;
  asyncore::Socket peer_;
  std::unique_ptr<FuzzChat> chat_;

  asynchat_testing::ReferenceSplitter model_;
  std::deque<Action> script_;          // found_terminator()'s actions
  std::deque<Action> collect_script_;  // collect_incoming_data()'s actions
  std::vector<Event> events_;          // callbacks seen during one read
  std::string unread_;                 // fed, not read by the channel yet
  size_t fed_ = 0;
  bool eof_ = false;           // the peer shut down its write side
  bool error_closed_ = false;  // handle_error() closed the channel

  std::string expected_;          // every byte queued for output, in order
  std::optional<size_t> marker_;  // where the first close marker sits
  std::string received_;          // what the peer read
  bool peer_eof_ = false;
};

void FuzzChat::collect_incoming_data(std::string_view data) {
  h_->on_collect(data);
}
void FuzzChat::found_terminator() { h_->on_found_terminator(); }
void FuzzChat::handle_error() { h_->on_error(); }

// Opcodes (the byte modulo the count).
enum Op : uint8_t {
  kOpSetTerm,       // a terminator (see read_term)
  kOpSetNegative,   // set_terminator(negative) must throw, change nothing
  kOpSetBigCount,   // a 64-bit count
  kOpFeed,          // len byte, mode byte, bytes
  kOpFeedRepeat,    // pattern len, pattern, repeat count (u16 % 2048)
  kOpSpuriousRead,  // a read event with nothing to read
  kOpPush,          // len byte, bytes
  kOpPushView,      // the same through push(string_view)
  kOpProducer,      // chunk byte, len byte, bytes
  kOpCloseWhenDone,
  kOpDiscard,
  kOpInitiateSend,
  kOpHandleWrite,    // asyncore::write(): a write event
  kOpInSize,         // ac_in_buffer_size
  kOpOutSize,        // ac_out_buffer_size
  kOpScript,         // appends one action for found_terminator()
  kOpPeerEof,        // the peer shuts down writing: the next read sees EOF
  kOpCollectScript,  // appends one action for collect_incoming_data()
  kOpFeedInPlace,    // len byte, mode byte, bytes: AsyncChat::feed()
  kOpCount
};

size_t buffer_size(uint8_t b) {
  static constexpr size_t kSizes[] = {0, 1,  2,  3,  4,   5,    7,
                                      8, 13, 16, 64, 100, 4096, 65536};
  return kSizes[b % (sizeof kSizes / sizeof kSizes[0])];
}

void Harness::run(Program& prog) {
  while (!prog.done() && chat_->connected()) {
    const uint8_t op = prog.byte() % kOpCount;
    switch (op) {
      case kOpSetTerm: {
        RefTerminator t = read_term(prog);
        model_.term = t;
        do_set_terminator(t);
        break;
      }
      case kOpSetNegative: {
        const int64_t n = -1 - static_cast<int64_t>(prog.byte());
        const asynchat::Terminator before = chat_->get_terminator();
        bool threw = false;
        try {
          chat_->set_terminator(n);
        } catch (const std::invalid_argument&) {
          threw = true;
        }
        FUZZ_CHECK(threw, "a negative terminator was accepted");
        FUZZ_CHECK(chat_->get_terminator() == before,
                   "a failed set changed it");
        break;
      }
      case kOpSetBigCount: {
        RefTerminator t;
        t.kind = asynchat::Terminator::Kind::kCount;
        t.count = prog.u64();
        model_.term = t;
        do_set_terminator(t);
        break;
      }
      case kOpFeed: {
        size_t n = 1 + prog.byte();
        bool alphabet = (prog.byte() & 1) == 0;
        feed(prog.bytes(n, alphabet));
        break;
      }
      case kOpFeedInPlace: {
        size_t n = 1 + prog.byte();
        bool alphabet = (prog.byte() & 1) == 0;
        feed_in_place(prog.bytes(n, alphabet));
        break;
      }
      case kOpFeedRepeat: {
        std::string pattern = prog.bytes(1 + prog.byte() % 8, true);
        size_t times = prog.u16() % 2048;
        std::string data;
        for (size_t k = 0; k < times && data.size() < kMaxFed; ++k)
          data += pattern;
        feed(std::move(data));
        break;
      }
      case kOpSpuriousRead: {
        if (eof_ || pending_in() != 0) break;
        events_.clear();
        asyncore::read(*chat_);
        FUZZ_CHECK(events_.empty() && chat_->connected(),
                   "a read with nothing to read did something");
        break;
      }
      case kOpPush:
      case kOpPushView: {
        std::string data = prog.bytes(prog.byte() % 64, true);
        do_push(std::move(data), op == kOpPushView);
        break;
      }
      case kOpProducer: {
        size_t chunk = prog.byte() % 9;
        std::string data = prog.bytes(prog.byte() % 96, true);
        do_producer(std::move(data), chunk);
        break;
      }
      case kOpCloseWhenDone:
        do_close_when_done();
        break;
      case kOpDiscard: {
        do_discard();
        model_.discard();
        break;
      }
      case kOpInitiateSend:
        one_send([&] { chat_->initiate_send(); });
        break;
      case kOpHandleWrite:
        one_send([&] { asyncore::write(*chat_); });
        break;
      case kOpInSize:
        chat_->ac_in_buffer_size = buffer_size(prog.byte());
        break;
      case kOpOutSize:
        chat_->ac_out_buffer_size = buffer_size(prog.byte());
        break;
      case kOpScript:
        script_.push_back(read_action(prog));
        break;
      case kOpCollectScript:
        collect_script_.push_back(read_action(prog));
        break;
      case kOpPeerEof: {
        if (eof_) break;
        FUZZ_CHECK(::shutdown(peer_.fileno(), SHUT_WR) == 0, "shutdown failed");
        eof_ = true;
        // Whatever is still unread arrives first, then the EOF.
        while (chat_->connected() && !chat_->reading_stopped()) {
          const bool last = pending_in() == 0;
          read_once();
          if (last) break;
        }
        // Graceful close (drain_on_eof): output queued at the EOF is sent,
        // one write event at a time, before the channel closes; nothing
        // queued before a close marker may be lost.
        if (chat_->connected()) {
          FUZZ_CHECK(chat_->reading_stopped(),
                     "EOF left the channel open without draining it");
          for (int i = 0; i < 1000000 && chat_->connected(); ++i) {
            one_send([&] { asyncore::write(*chat_); });
          }
          if (!error_closed_) {
            drain_peer();
            FUZZ_CHECK(received_ == due(), "the drain after EOF delivered '" +
                                               printable(received_) +
                                               "', not '" + printable(due()) +
                                               "'");
          }
        }
        FUZZ_CHECK(!chat_->connected(), "EOF did not close the channel");
        FUZZ_CHECK(chat_->close_calls >= 1 || error_closed_,
                   "EOF closed without handle_close()");
        break;
      }
    }
    check_writable_state();
    check_closed_state();
  }
  finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Program prog(data, size);
  Harness h;
  h.run(prog);
  return 0;
}
