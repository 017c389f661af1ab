// asynchat::AsyncChat conformance: CPython's test_asynchat case by case
// (spec B.6 over every backend, B.7), the supplementary cases S17-S30 (B.8),
// the asynchat issue's extra cases (terminators split at every byte
// boundary, terminator switches, 10 MiB, producers, close_when_done with a
// slow reader, discard_buffers) and a property test that compares the
// records seen with a reference splitter over random streams and read sizes.
//
// Every channel lives in the test's own ChannelMap; sockets are socketpairs
// or loopback TCP on port 0; every loop is bounded in iterations and time.
#include "chat/async_chat.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "chat/producer.h"
#include "chat/terminator.h"
#include "chat/testing/reference_splitter.h"
#include "core/asyncore.h"
#include "tests/test_util.h"

namespace {

using asynchat::AsyncChat;
using asynchat::Producer;
using asynchat::SimpleProducer;
using asynchat::Terminator;
using asyncore::Address;
using asyncore::ChannelMap;
using asyncore::Dispatcher;
using asyncore::Socket;
using testing_util::iterate;
using testing_util::loop_until;
using testing_util::pending_input;
using testing_util::read_available;
using testing_util::read_exactly;
using testing_util::tcp_pair;
using testing_util::write_all;

constexpr std::string_view kServerQuit = "QUIT\n";  // CPython's SERVER_QUIT

// --- Small helpers -----------------------------------------------------------

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '\r':
        out += "\\r";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string describe(const Terminator& t) {
  switch (t.kind()) {
    case Terminator::Kind::kUnset:
      return "unset";
    case Terminator::Kind::kNone:
      return "None";
    case Terminator::Kind::kCount:
      return std::to_string(t.count());
    case Terminator::Kind::kString:
      return "\"" + escape(t.string()) + "\"";
  }
  return "?";
}

std::string describe(std::exception_ptr error) {
  if (!error) return "no exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "non-standard exception";
  }
}

// Deterministic pseudo-random bytes (all 256 values).
std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t j = 0; j < 8 && i + j < n; ++j) {
      out[i + j] = static_cast<char>((v >> (8 * j)) & 0xff);
    }
  }
  return out;
}

// --- The chat under test -----------------------------------------------------

// Records every callback: "c:<data>" per collect_incoming_data, "F" per
// found_terminator, plus the records (bytes collected between terminators).
class TestChat : public AsyncChat {
 public:
  explicit TestChat(ChannelMap* map) : AsyncChat(map) {}
  TestChat(Socket sock, ChannelMap* map) : AsyncChat(std::move(sock), map) {}

  void collect_incoming_data(std::string_view data) override {
    if (data.empty()) ++empty_collects;
    collected_bytes += data.size();
    if (keep_events) {
      events.push_back("c:" + std::string(data));
      append_incoming(data);
    }
    current.append(data);
    if (on_collect) on_collect(*this, data);
  }
  void found_terminator() override {
    if (keep_events) events.push_back("F");
    terminators_seen.push_back(get_terminator());
    records.push_back(std::exchange(current, {}));
    if (on_found) on_found(*this);
  }
  void handle_connect() override {
    ++connects;
    if (on_connect) on_connect(*this);
  }
  void handle_close() override {
    ++closes;
    collected_at_close = collected_bytes;
    AsyncChat::handle_close();
  }
  // Recorded instead of logged; the channel closes, as by default.
  void handle_error() override {
    errors.push_back(describe(std::current_exception()));
    close();
  }

  using AsyncChat::take_incoming;

  bool keep_events = true;
  std::vector<std::string> events;
  std::vector<std::string> records;
  std::vector<Terminator> terminators_seen;  // get_terminator() in the callback
  std::string current;                       // collected since the last record
  size_t collected_bytes = 0;
  size_t collected_at_close = 0;
  int empty_collects = 0;
  int connects = 0;
  int closes = 0;
  std::vector<std::string> errors;
  std::function<void(TestChat&, std::string_view)> on_collect;
  std::function<void(TestChat&)> on_found;
  std::function<void(TestChat&)> on_connect;
};

struct ChatAndPeer {
  std::shared_ptr<TestChat> chat;
  Socket peer;
};

// A chat over one end of a socketpair; the test holds the other end.
ChatAndPeer chat_pair(ChannelMap& map, std::optional<Terminator> terminator,
                      int type = SOCK_STREAM) {
  auto [mine, theirs] = Socket::pair(AF_UNIX, type);
  auto chat = asyncore::make<TestChat>(std::move(mine), &map);
  if (terminator) chat->set_terminator(std::move(*terminator));
  return {std::move(chat), std::move(theirs)};
}

// Writes bytes to the peer and calls handle_read() directly until the chat
// has read them all (one read per call, as one read event would).
void feed_direct(TestChat& chat, const Socket& peer, std::string_view bytes) {
  ASSERT_NO_THROW(write_all(peer, bytes));
  for (int i = 0;
       i < 100000 && chat.fileno() >= 0 && pending_input(chat.fileno()) > 0;
       ++i) {
    chat.handle_read();
  }
}

// Writes bytes to the peer and runs the loop until the chat has read them.
bool feed_via_loop(ChannelMap& map, TestChat& chat, const Socket& peer,
                   std::string_view bytes) {
  try {
    write_all(peer, bytes);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
    return false;
  }
  return loop_until(
      map,
      [&] { return chat.fileno() < 0 || pending_input(chat.fileno()) == 0; },
      100000);
}

using Events = std::vector<std::string>;
using Records = std::vector<std::string>;

// --- CPython's echo server, as channels in the test's map ------------------

class EchoServer;

// Reads byte by byte until QUIT\n, then (once resend is allowed) echoes
// everything before it, chunk_size bytes per write event, and closes.
class EchoHandler : public Dispatcher {
 public:
  EchoHandler(Socket sock, ChannelMap* map, EchoServer* server);

  bool readable() override { return !quit_seen; }
  bool writable() override;
  void handle_read() override;
  void handle_write() override;
  void handle_close() override {
    close();
    done = true;
  }
  void handle_error() override {
    error = describe(std::current_exception());
    handle_close();
  }

  bool quit_seen = false;
  bool done = false;
  std::string error;

 private:
  EchoServer* server_;
  std::string pending_;
};

class EchoServer : public Dispatcher {
 public:
  EchoServer(ChannelMap* map, size_t chunk_size)
      : Dispatcher(map), chunk_size(chunk_size) {
    create_socket(AF_INET);
    set_reuse_addr();
    bind(testing_util::any_loopback(AF_INET));
    listen(5);
    address = socket().getsockname();
  }

  // One connection, then the listener closes (as CPython's server).
  void handle_accepted(Socket sock, const Address&) override {
    handler = asyncore::make<EchoHandler>(std::move(sock), map(), this);
    close();
  }

  bool finished() const { return handler && handler->done; }

  const size_t chunk_size;
  Address address;
  bool resend_allowed = true;  // CPython's start_resend_event
  std::string received;        // everything before QUIT\n
  std::shared_ptr<EchoHandler> handler;
};

EchoHandler::EchoHandler(Socket sock, ChannelMap* map, EchoServer* server)
    : Dispatcher(std::move(sock), map), server_(server) {}

bool EchoHandler::writable() { return quit_seen && server_->resend_allowed; }

void EchoHandler::handle_read() {
  std::string byte;
  try {
    byte = recv(1);
  } catch (const asyncore::WouldBlock&) {
    return;
  }
  if (byte.empty()) return;  // EOF: handle_close() has run
  server_->received += byte;
  std::string& r = server_->received;
  if (r.size() >= kServerQuit.size() &&
      std::string_view(r).substr(r.size() - kServerQuit.size()) ==
          kServerQuit) {
    r.resize(r.size() - kServerQuit.size());
    pending_ = r;
    quit_seen = true;
  }
}

void EchoHandler::handle_write() {
  if (!pending_.empty()) {
    size_t n = send(std::string_view(pending_).substr(0, server_->chunk_size));
    pending_.erase(0, n);
  }
  if (pending_.empty()) handle_close();
}

struct Echo {
  std::shared_ptr<EchoServer> server;
  std::shared_ptr<TestChat> client;
};

// CPython's start_echo_server() + echo_client(terminator, port).
Echo start_echo(ChannelMap& map, Terminator terminator, size_t chunk = 1) {
  auto server = asyncore::make<EchoServer>(&map, chunk);
  auto client = asyncore::make<TestChat>(&map);
  client->create_socket(AF_INET);
  client->connect(server->address);
  client->set_terminator(std::move(terminator));
  return {std::move(server), std::move(client)};
}

// Runs until the server has echoed and closed and the client has seen EOF.
bool run_echo(ChannelMap& map, const Echo& e) {
  return loop_until(
      map, [&] { return e.server->finished() && e.client->fileno() < 0; },
      20000, 0.01, std::chrono::seconds(30));
}

void expect_clean(const Echo& e) {
  EXPECT_EQ(e.client->errors, std::vector<std::string>{});
  ASSERT_TRUE(e.server->handler);
  EXPECT_EQ(e.server->handler->error, "");
  EXPECT_EQ(e.client->empty_collects, 0);
}

// ============================================================================
// B.6: CPython's TestAsynchat, over every backend.
// ============================================================================

// map() is on the parameter's backend; TearDown checks that it and
// socket_map() are empty and that no fd leaked. line_terminator_check makes
// a fresh map per server chunk size.
class TestAsynchat : public testing_util::MapTest {
 protected:
  void line_terminator_check(const std::string& term, size_t chunk) {
    SCOPED_TRACE("terminator \"" + escape(term) + "\", server chunk " +
                 std::to_string(chunk));
    ChannelMap map(backend());
    Echo e = start_echo(map, term, chunk);
    e.client->push("hello ");
    e.client->push("world" + term);
    e.client->push("I'm not dead yet!" + term);
    e.client->push(kServerQuit);
    ASSERT_TRUE(run_echo(map, e));
    expect_clean(e);
    EXPECT_EQ(e.client->records, (Records{"hello world", "I'm not dead yet!"}));
  }

  void numeric_terminator_check(size_t termlen) {
    Echo e = start_echo(map(), termlen);
    const std::string data = "hello world, I'm not dead yet!\n";
    e.client->push(data);
    e.client->push(kServerQuit);
    ASSERT_TRUE(run_echo(map(), e));
    expect_clean(e);
    EXPECT_EQ(e.client->records, Records{data.substr(0, termlen)});
  }
};

// 32
TEST_P(TestAsynchat, B32_LineTerminator1) {
  for (size_t chunk : {1, 2, 3}) line_terminator_check("\n", chunk);
}

// 33
TEST_P(TestAsynchat, B33_LineTerminator2) {
  for (size_t chunk : {1, 2, 3}) line_terminator_check("\r\n", chunk);
}

// 34
TEST_P(TestAsynchat, B34_LineTerminator3) {
  for (size_t chunk : {1, 2, 3}) line_terminator_check("qqq", chunk);
}

// 35: fires once; the terminator then stays 0 and the rest is only collected.
TEST_P(TestAsynchat, B35_NumericTerminator1) { numeric_terminator_check(1); }

// 36
TEST_P(TestAsynchat, B36_NumericTerminator2) { numeric_terminator_check(6); }

// 37
TEST_P(TestAsynchat, B37_NoneTerminator) {
  Echo e = start_echo(map(), nullptr);
  const std::string data = "hello world, I'm not dead yet!\n";
  e.client->push(data);
  e.client->push(kServerQuit);
  ASSERT_TRUE(run_echo(map(), e));
  expect_clean(e);
  EXPECT_EQ(e.client->records, Records{});
  EXPECT_EQ(e.client->current, data);
}

// 38
TEST_P(TestAsynchat, B38_SimpleProducer) {
  Echo e = start_echo(map(), "\n");
  const std::string data = "hello world\nI'm not dead yet!\n";
  e.client->push_with_producer(
      std::make_unique<SimpleProducer>(data + std::string(kServerQuit), 8));
  ASSERT_TRUE(run_echo(map(), e));
  expect_clean(e);
  EXPECT_EQ(e.client->records, (Records{"hello world", "I'm not dead yet!"}));
}

// 39: a byte string as a degenerate producer behaves like push().
TEST_P(TestAsynchat, B39_StringProducer) {
  Echo e = start_echo(map(), "\n");
  const std::string data = "hello world\nI'm not dead yet!\n";
  e.client->push_with_producer(data + std::string(kServerQuit));
  ASSERT_TRUE(run_echo(map(), e));
  expect_clean(e);
  EXPECT_EQ(e.client->records, (Records{"hello world", "I'm not dead yet!"}));
}

// 40
TEST_P(TestAsynchat, B40_EmptyLine) {
  Echo e = start_echo(map(), "\n");
  e.client->push("hello world\n\nI'm not dead yet!\n");
  e.client->push(kServerQuit);
  ASSERT_TRUE(run_echo(map(), e));
  expect_clean(e);
  EXPECT_EQ(e.client->records,
            (Records{"hello world", "", "I'm not dead yet!"}));
}

// 41: everything queued is sent; the client closes before any echo is read.
TEST_P(TestAsynchat, B41_CloseWhenDone) {
  Echo e = start_echo(map(), "\n");
  e.server->resend_allowed = false;
  const std::string data = "hello world\nI'm not dead yet!\n";
  e.client->push(data);
  e.client->push(kServerQuit);
  e.client->close_when_done();
  ASSERT_TRUE(loop_until(map(), [&] {
    return e.client->fileno() < 0 && e.server->handler &&
           (e.server->handler->quit_seen || e.server->handler->done);
  }));
  EXPECT_EQ(e.client->closes, 1);  // the marker, not an EOF
  // Only now may the server echo (to a closed peer).
  e.server->resend_allowed = true;
  ASSERT_TRUE(loop_until(map(), [&] { return e.server->finished(); }));
  EXPECT_EQ(e.client->records, Records{});
  EXPECT_EQ(e.client->collected_bytes, 0u);
  EXPECT_GT(e.server->received.size(), 0u);
  EXPECT_EQ(e.server->received, data);  // stronger: all of it arrived
  EXPECT_EQ(e.client->errors, std::vector<std::string>{});
}

// 42: the accepted byte types are the C++ overloads; anything else is a
// compile-time error (Python's TypeError).
template <class T>
concept Pushable = requires(AsyncChat& chat, T value) {
  chat.push(value);
};
static_assert(Pushable<std::string>);
static_assert(Pushable<std::string_view>);
static_assert(Pushable<const char*>);
static_assert(!Pushable<int>);
static_assert(!Pushable<double>);
static_assert(!Pushable<std::wstring>);

TEST_P(TestAsynchat, B42_Push) {
  Echo e = start_echo(map(), "\n");
  const std::string data = "bytes\n";
  e.client->push(std::string_view(data));  // bytes
  e.client->push(std::string(data));       // an owned buffer, moved in
  e.client->push(data.c_str());            // a C string
  e.client->push(kServerQuit);
  ASSERT_TRUE(run_echo(map(), e));
  expect_clean(e);
  EXPECT_EQ(e.client->records, (Records{"bytes", "bytes", "bytes"}));
}

// ============================================================================
// B.7: the rest of test_asynchat.
// ============================================================================

// 43: a read event with no data (EAGAIN) is not an error (bpo-16133).
TEST(TestAsynchatMocked, B43_BlockingIoError) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\n");
  ASSERT_EQ(pending_input(p.chat->fileno()), 0);
  p.chat->handle_read();
  EXPECT_EQ(p.chat->errors, std::vector<std::string>{});
  EXPECT_EQ(p.chat->events, Events{});
  EXPECT_EQ(p.chat->closes, 0);
  EXPECT_GE(p.chat->fileno(), 0);
  EXPECT_EQ(map.size(), 1u);
}

// 44
TEST(TestHelperFunctions, B44_FindPrefixAtEnd) {
  EXPECT_EQ(asynchat::find_prefix_at_end("qwerty\r", "\r\n"), 1u);
  EXPECT_EQ(asynchat::find_prefix_at_end("qwertydkjf", "\r\n"), 0u);
}

// 45 (bpo-11259): std::invalid_argument for ValueError, on a channel with no
// socket.
TEST(TestNotConnected, B45_DisallowNegativeTerminator) {
  ChannelMap map;
  auto chat = asyncore::make<TestChat>(&map);
  EXPECT_THROW(chat->set_terminator(-1), std::invalid_argument);
}

// ============================================================================
// B.8: supplementary cases S17-S30.
// ============================================================================

// S17
TEST(AsynchatSupplementary, S17_CrLfSplitAcrossReads) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\r\n");
  feed_direct(*p.chat, p.peer, "abc\r");
  EXPECT_EQ(p.chat->events, Events{"c:abc"});  // "\r" held back
  feed_direct(*p.chat, p.peer, "\ndef\r\n");
  EXPECT_EQ(p.chat->events, (Events{"c:abc", "F", "c:def", "F"}));
  EXPECT_EQ(p.chat->records, (Records{"abc", "def"}));
}

// S18
TEST(AsynchatSupplementary, S18_TripleQOneByteAtATime) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "qqq");
  for (char c : std::string("xqqyqqqz")) {
    feed_direct(*p.chat, p.peer, std::string(1, c));
  }
  EXPECT_EQ(p.chat->events, (Events{"c:x", "c:qqy", "F", "c:z"}));
  EXPECT_EQ(p.chat->records, (Records{"xqqy"}));
}

// S19
TEST(AsynchatSupplementary, S19_OnlyATerminatorPrefix) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\r\n");
  feed_direct(*p.chat, p.peer, "\r");
  EXPECT_EQ(p.chat->events, Events{});
  // The held prefix is still there: completing it fires with no data.
  feed_direct(*p.chat, p.peer, "\n");
  EXPECT_EQ(p.chat->events, Events{"F"});
}

// S20
TEST(AsynchatSupplementary, S20_NoneZeroAndEmptyCollectEverything) {
  for (const Terminator& t :
       {Terminator(nullptr), Terminator(0), Terminator("")}) {
    SCOPED_TRACE(describe(t));
    ChannelMap map;
    ChatAndPeer p = chat_pair(map, t);
    feed_direct(*p.chat, p.peer, "ab\r\ncd");
    feed_direct(*p.chat, p.peer, "\n");
    EXPECT_EQ(p.chat->events, (Events{"c:ab\r\ncd", "c:\n"}));
    EXPECT_EQ(p.chat->records, Records{});
  }
}

// S21
TEST(AsynchatSupplementary, S21_IntegerCountdown) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, 3);
  feed_direct(*p.chat, p.peer, "ab");
  EXPECT_EQ(p.chat->events, Events{"c:ab"});
  EXPECT_EQ(p.chat->get_terminator(), Terminator(1));  // 3 - 2 still to come
  feed_direct(*p.chat, p.peer, "cdef");
  feed_direct(*p.chat, p.peer, "gh");
  EXPECT_EQ(p.chat->events, (Events{"c:ab", "c:c", "F", "c:def", "c:gh"}));
  ASSERT_EQ(p.chat->terminators_seen.size(), 1u);
  EXPECT_EQ(p.chat->terminators_seen[0],
            Terminator(0));  // reset before the call
  EXPECT_EQ(p.chat->get_terminator(), Terminator(0));
}

// S22
TEST(AsynchatSupplementary, S22_SwitchInsideFoundTerminator) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\n");
  p.chat->on_found = [](TestChat& c) {
    if (c.records.back() == "LEN") {
      c.set_terminator(4);
    } else {
      c.set_terminator("\n");
    }
  };
  feed_direct(*p.chat, p.peer, "LEN\nabcdLEN\nwxyz");  // one read
  EXPECT_EQ(p.chat->records, (Records{"LEN", "abcd", "LEN", "wxyz"}));
  EXPECT_EQ(p.chat->events,
            (Events{"c:LEN", "F", "c:abcd", "F", "c:LEN", "F", "c:wxyz", "F"}));
}

// S23
TEST(AsynchatSupplementary, S23_CloseInsideFoundTerminator) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\n");
  p.chat->on_found = [](TestChat& c) { c.close(); };
  ASSERT_NO_THROW(write_all(p.peer, "a\nb\nc\n"));
  p.chat->handle_read();  // one read holding three records
  EXPECT_EQ(p.chat->records, (Records{"a", "b", "c"}));
  EXPECT_LT(p.chat->fileno(), 0);
  EXPECT_TRUE(map.empty());
}

// S24
TEST(AsynchatSupplementary, S24_TerminatorAtStart) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\n");
  feed_direct(*p.chat, p.peer, "\nabc\n");
  EXPECT_EQ(p.chat->events, (Events{"F", "c:abc", "F"}));
  EXPECT_EQ(p.chat->empty_collects, 0);
}

// S25: one send of at most ac_out_buffer_size per initiate_send(). The port
// gathers consecutive buffers into one sendmsg (Python sends one queued
// buffer per call), still bounded by ac_out_buffer_size.
TEST(AsynchatSupplementary, S25_OutBufferSizeChunks) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\n");
  p.chat->ac_out_buffer_size = 4;
  p.chat->push("0123456789");  // push() itself makes the first send
  EXPECT_EQ(read_available(p.peer), "0123");
  EXPECT_EQ(p.chat->queued_bytes(), 6u);
  p.chat->initiate_send();
  EXPECT_EQ(read_available(p.peer), "4567");
  p.chat->initiate_send();
  EXPECT_EQ(read_available(p.peer), "89");
  EXPECT_EQ(p.chat->queued_bytes(), 0u);
  EXPECT_EQ(p.chat->queued_entries(), 0u);
  EXPECT_FALSE(p.chat->writable());
  p.chat->initiate_send();
  EXPECT_EQ(read_available(p.peer), "");

  // Gathering: three queued buffers, still 4 bytes per send.
  p.chat->set_connected(false);  // queue without sending
  p.chat->push("ab");
  p.chat->push("cd");
  p.chat->push("ef");
  EXPECT_EQ(read_available(p.peer), "");
  p.chat->set_connected(true);
  p.chat->initiate_send();
  EXPECT_EQ(read_available(p.peer), "abcd");
  EXPECT_EQ(p.chat->queued_entries(), 1u);
  p.chat->initiate_send();
  EXPECT_EQ(read_available(p.peer), "ef");
  EXPECT_EQ(p.chat->queued_entries(), 0u);
}

// S26
TEST(AsynchatSupplementary, S26_EmptyPushAndCloseWhenDone) {
  {
    // A datagram pair makes the zero-length send visible: the peer receives
    // one empty datagram.
    ChannelMap map;
    ChatAndPeer p = chat_pair(map, "\n", SOCK_DGRAM);
    p.chat->push("");
    EXPECT_EQ(p.chat->queued_entries(), 0u);
    char buf[16];
    EXPECT_EQ(::recv(p.peer.fileno(), buf, sizeof buf, MSG_DONTWAIT), 0);
    errno = 0;
    EXPECT_EQ(::recv(p.peer.fileno(), buf, sizeof buf, MSG_DONTWAIT), -1);
    EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << errno;
    EXPECT_EQ(p.chat->errors, std::vector<std::string>{});
  }
  {
    ChannelMap map;
    ChatAndPeer p = chat_pair(map, "\n");
    p.chat->push("before");
    p.chat->close_when_done();
    EXPECT_TRUE(p.chat->writable());  // the marker is queued output
    EXPECT_EQ(p.chat->closes, 0);     // close_when_done() does not send
    p.chat->push("after");            // reaches the marker first
    EXPECT_EQ(p.chat->closes, 1);
    EXPECT_LT(p.chat->fileno(), 0);
    bool eof = false;
    EXPECT_EQ(read_available(p.peer, &eof), "before");
    EXPECT_TRUE(eof);
  }
}

// A producer that empties the queue from inside more() (found by the fuzzer:
// initiate_send() used to pop from the then-empty queue).
TEST(AsynchatSupplementary, ProducerDiscardingTheQueueInsideMore) {
  class Discarding : public Producer {
   public:
    explicit Discarding(AsyncChat* chat) : chat_(chat) {}
    std::string more() override {
      chat_->discard_buffers();
      return "";
    }

   private:
    AsyncChat* chat_;
  };
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\n");
  p.chat->push_with_producer(std::make_unique<Discarding>(p.chat.get()));
  EXPECT_EQ(p.chat->queued_entries(), 0u);
  p.chat->push("still works\n");
  EXPECT_EQ(read_available(p.peer), "still works\n");
  EXPECT_EQ(p.chat->errors, std::vector<std::string>{});
}

// An idle channel does not keep a read buffer of ac_in_buffer_size bytes:
// the large buffer is lent per read and given back.
TEST(AsynchatSupplementary, IdleChannelsKeepNoLargeInputBuffer) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\n");
  feed_direct(*p.chat, p.peer, "one line\nand a partial\r");
  EXPECT_EQ(p.chat->records, Records{"one line"});
  EXPECT_LE(p.chat->input_capacity(), 4096u);
  feed_direct(*p.chat, p.peer, "line\n");
  EXPECT_EQ(p.chat->records, (Records{"one line", "and a partial\rline"}));
  EXPECT_LE(p.chat->input_capacity(), 4096u);
}

// feed() splits exactly as reads do, whatever the chunking, and keeps only
// the unclassified tail (the caller's bytes are scanned in place).
TEST(AsynchatSupplementary, FeedSplitsLikeReads) {
  const std::string stream = "GET / x\r\n\r\n12345partial\r\nline\r\n\r";
  auto make_chat = [](ChannelMap& map) {
    auto chat = asyncore::make<TestChat>(&map);
    chat->set_terminator("\r\n");
    chat->on_found = [](TestChat& c) {
      // After an empty line, read a 5-byte body, then lines again.
      if (c.records.back().empty()) {
        c.set_terminator(5);
      } else if (c.get_terminator().kind() == Terminator::Kind::kCount) {
        c.set_terminator("\r\n");
      }
    };
    return chat;
  };
  ChannelMap reference_map;
  auto reference = make_chat(reference_map);
  reference->feed(stream);
  EXPECT_EQ(reference->records,
            (Records{"GET / x", "", "12345", "partial", "line"}));  // "\r" held
  for (size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    ChannelMap map;
    auto chat = make_chat(map);
    for (size_t at = 0; at < stream.size(); at += chunk) {
      std::string piece = stream.substr(at, chunk);
      chat->feed(piece);
      piece.assign(piece.size(), '#');  // the chat must not keep a view
    }
    EXPECT_EQ(chat->records, reference->records);
    EXPECT_EQ(chat->empty_collects, 0);
  }
}

// An absurd read size is an error, not an endless loop (found by the fuzzer:
// ByteBuffer's capacity doubling overflowed to 0).
TEST(AsynchatSupplementary, HugeInBufferSizeFailsCleanly) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\n");
  p.chat->ac_in_buffer_size = SIZE_MAX;
  ASSERT_NO_THROW(write_all(p.peer, "x\n"));
  // Thrown from the handler, so the loop would route it to handle_error().
  EXPECT_THROW(p.chat->handle_read(), std::length_error);
  EXPECT_THROW(asyncore::ByteBuffer().prepare(SIZE_MAX), std::length_error);
}

// The same fixture (map() on the parameter's backend, leak checks).
class AsynchatLoop : public testing_util::MapTest {};

// S27: over loopback TCP, where the connect completes asynchronously.
TEST_P(AsynchatLoop, S27_PushBeforeConnectAndInHandleConnect) {
  Address address;
  Socket listener = testing_util::listening_socket(&address);

  auto chat = asyncore::make<TestChat>(&map());
  chat->set_terminator("\n");
  size_t queued_in_connect = 0;
  bool connected_in_connect = true;
  chat->on_connect = [&](TestChat& c) {
    connected_in_connect = c.connected();
    c.push("-late");
    queued_in_connect = c.queued_bytes();
  };
  chat->create_socket(AF_INET);
  chat->connect(address);
  if (chat->connected()) {
    chat->close();
    GTEST_SKIP() << "connect completed synchronously";
  }
  chat->push("early");
  EXPECT_EQ(chat->queued_bytes(), 5u);  // nothing sent before the connect
  EXPECT_TRUE(chat->writable());

  loop_until(map(), [&] { return chat->connects != 0; });
  ASSERT_EQ(chat->connects, 1);
  EXPECT_FALSE(connected_in_connect);
  EXPECT_EQ(queued_in_connect, 10u);  // both still queued inside handle_connect
  // ...and both left in the same iteration, through handle_write.
  EXPECT_EQ(chat->queued_bytes(), 0u);
  EXPECT_TRUE(chat->connected());

  Socket server = testing_util::accept_within(listener);
  ASSERT_TRUE(server) << "no connection to accept";
  EXPECT_EQ(read_exactly(server.fileno(), 10), "early-late");
  EXPECT_EQ(chat->errors, std::vector<std::string>{});
  chat->close();
}

// A SimpleProducer that counts more() calls.
class CountingProducer : public Producer {
 public:
  CountingProducer(std::string data, size_t size, int* calls)
      : inner_(std::move(data), size), calls_(calls) {}
  std::string more() override {
    ++*calls_;
    return inner_.more();
  }

 private:
  SimpleProducer inner_;
  int* calls_;
};

// S28: one producer chunk per write event, then the producer is dropped.
TEST_P(AsynchatLoop, S28_SimpleProducerChunkPerWriteEvent) {
  ChatAndPeer p = chat_pair(map(), "\n");
  int calls = 0;
  p.chat->push_with_producer(
      std::make_unique<CountingProducer>("abcdefghij", 3, &calls));
  // push_with_producer() sends at once.
  EXPECT_EQ(read_available(p.peer), "abc");
  for (const char* expected : {"def", "ghi", "j"}) {
    EXPECT_TRUE(p.chat->writable());
    iterate(map(), 1.0);
    EXPECT_EQ(read_available(p.peer), expected);
  }
  EXPECT_EQ(calls, 4);
  // The exhausted producer is still queued until a write event asks it.
  EXPECT_EQ(p.chat->queued_entries(), 1u);
  iterate(map(), 1.0);
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(p.chat->queued_entries(), 0u);
  EXPECT_FALSE(p.chat->writable());
  EXPECT_EQ(read_available(p.peer), "");
  p.chat->close();
}

// S29
TEST(AsynchatSupplementary, S29_ReadableAndWritable) {
  ChannelMap map;
  auto unconnected = asyncore::make<TestChat>(&map);
  unconnected->create_socket(AF_INET);
  EXPECT_TRUE(unconnected->writable());  // to see the connect complete
  EXPECT_TRUE(unconnected->readable());

  ChatAndPeer p = chat_pair(map, "\n");
  EXPECT_FALSE(p.chat->writable());  // idle and connected
  EXPECT_TRUE(p.chat->readable());
  p.chat->close_when_done();
  EXPECT_TRUE(p.chat->writable());
  EXPECT_TRUE(p.chat->readable());
}

// S30
TEST(AsynchatSupplementary, S30_NegativeTerminatorAndFindPrefixTable) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, "\n");
  try {
    p.chat->set_terminator(-1);
    ADD_FAILURE() << "set_terminator(-1) did not throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "the number of received bytes must be positive");
  }
  EXPECT_THROW(p.chat->set_terminator(-5L), std::invalid_argument);
  EXPECT_EQ(p.chat->get_terminator(), Terminator("\n"));  // unchanged

  EXPECT_EQ(asynchat::find_prefix_at_end("qwerty\r", "\r\n"), 1u);
  EXPECT_EQ(asynchat::find_prefix_at_end("qwertydkjf", "\r\n"), 0u);
  EXPECT_EQ(asynchat::find_prefix_at_end("aa", "aab"), 2u);
  EXPECT_EQ(asynchat::find_prefix_at_end("xaab", "aabc"), 3u);
  EXPECT_EQ(asynchat::find_prefix_at_end("\r\n\r", "\r\n\r\n"), 3u);
  EXPECT_EQ(asynchat::find_prefix_at_end("xyz\n", "\n"), 0u);  // 1-byte needle
  EXPECT_EQ(asynchat::find_prefix_at_end("", "\r\n"), 0u);
}

// Decision D7 (A.5): data before any set_terminator() is an error routed to
// handle_error() (Python: AttributeError), never a silent None.
TEST(AsynchatSupplementary, D7_DataBeforeSetTerminatorIsAnError) {
  ChannelMap map;
  ChatAndPeer p = chat_pair(map, std::nullopt);
  EXPECT_FALSE(p.chat->get_terminator().is_set());
  ASSERT_NO_THROW(write_all(p.peer, "x\n"));
  asyncore::read(*p.chat);  // a read event, exceptions routed as the loop does
  ASSERT_EQ(p.chat->errors.size(), 1u);
  EXPECT_NE(p.chat->errors[0].find("set_terminator"), std::string::npos)
      << p.chat->errors[0];
  EXPECT_EQ(p.chat->events, Events{});
  EXPECT_LT(p.chat->fileno(), 0);
}

// ============================================================================
// The asynchat issue's cases, over every backend.
// ============================================================================

// Each terminator, in a message with a near miss, an empty record and a tail,
// cut at every position and at every pair of positions.
TEST_P(AsynchatLoop, TerminatorSplitAtEveryByteBoundary) {
  for (const std::string term : {"\r\n", "qqq", "abcab"}) {
    const std::string near_miss = term.substr(0, term.size() - 1);
    const std::string message =
        "one" + term + near_miss + "two" + term + term + "three";
    const Records expected{"one", near_miss + "two", ""};
    auto check = [&](std::vector<size_t> cuts) {
      ChatAndPeer p = chat_pair(map(), term);
      size_t from = 0;
      cuts.push_back(message.size());
      for (size_t cut : cuts) {
        ASSERT_TRUE(
            feed_via_loop(map(), *p.chat, p.peer,
                          std::string_view(message).substr(from, cut - from)));
        from = cut;
      }
      std::string where;
      for (size_t c : cuts) where += std::to_string(c) + " ";
      EXPECT_EQ(p.chat->records, expected)
          << "term " << escape(term) << " cuts " << where;
      EXPECT_EQ(p.chat->current, "three") << "cuts " << where;
      EXPECT_EQ(p.chat->empty_collects, 0);
      EXPECT_EQ(p.chat->errors, std::vector<std::string>{});
      p.chat->close();
    };
    for (size_t i = 1; i < message.size(); ++i) {
      check({i});
      for (size_t j = i + 1; j < message.size(); ++j) check({i, j});
      if (HasFailure()) return;
    }
  }
}

// An HTTP-like protocol: headers end at \r\n\r\n, then a Content-Length body
// (which itself contains \r\n\r\n), then the next request.
class HttpChat : public AsyncChat {
 public:
  HttpChat(Socket sock, ChannelMap* map) : AsyncChat(std::move(sock), map) {
    set_terminator("\r\n\r\n");
  }
  void collect_incoming_data(std::string_view data) override {
    append_incoming(data);
  }
  void found_terminator() override {
    if (in_body_) {
      terminators_in_body.push_back(get_terminator());
      requests.back().second = take_incoming();
      in_body_ = false;
      set_terminator("\r\n\r\n");
      return;
    }
    std::string headers = take_incoming();
    requests.push_back({headers.substr(0, headers.find("\r\n")), ""});
    size_t at = headers.find("Content-Length: ");
    size_t length =
        at == std::string::npos ? 0 : std::stoul(headers.substr(at + 16));
    if (length > 0) {
      in_body_ = true;
      set_terminator(length);
    }
  }
  void handle_error() override {
    errors.push_back(describe(std::current_exception()));
    close();
  }

  std::vector<std::pair<std::string, std::string>> requests;
  std::vector<Terminator> terminators_in_body;
  std::vector<std::string> errors;

 private:
  bool in_body_ = false;
};

TEST_P(AsynchatLoop, TerminatorSwitchStringIntegerString) {
  const std::string stream =
      "POST /a HTTP/1.0\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nxy"
      "GET /b HTTP/1.0\r\n\r\n"
      "POST /c HTTP/1.0\r\nContent-Length: 5\r\n\r\nabcde";
  const std::vector<std::pair<std::string, std::string>> expected{
      {"POST /a HTTP/1.0", "hello\r\n\r\nxy"},
      {"GET /b HTTP/1.0", ""},
      {"POST /c HTTP/1.0", "abcde"}};
  auto run = [&](const std::vector<size_t>& sizes, const std::string& what) {
    auto [mine, peer] = Socket::pair();
    auto chat = asyncore::make<HttpChat>(std::move(mine), &map());
    size_t from = 0;
    for (size_t i = 0; from < stream.size(); ++i) {
      size_t n = std::min(sizes[i % sizes.size()], stream.size() - from);
      ASSERT_NO_THROW(
          write_all(peer, std::string_view(stream).substr(from, n)));
      from += n;
      ASSERT_TRUE(loop_until(
          map(), [&] { return pending_input(chat->fileno()) == 0; }));
    }
    EXPECT_EQ(chat->requests, expected) << what;
    EXPECT_EQ(chat->terminators_in_body,
              (std::vector<Terminator>{Terminator(0), Terminator(0)}))
        << what;
    EXPECT_EQ(chat->get_terminator(), Terminator("\r\n\r\n")) << what;
    EXPECT_EQ(chat->errors, std::vector<std::string>{}) << what;
    chat->close();
  };
  run({stream.size()}, "one read");  // switches apply to buffered bytes
  run({1}, "one byte per read");
  run({2, 3, 5, 7}, "mixed reads");
  for (size_t cut = 1; cut < stream.size() && !HasFailure(); ++cut) {
    run({cut, stream.size()}, "cut at " + std::to_string(cut));
  }
}

TEST_P(AsynchatLoop, IntegerZeroTerminator) {
  {
    // 0 set explicitly: collect everything, never fire.
    ChatAndPeer p = chat_pair(map(), 0);
    ASSERT_TRUE(feed_via_loop(map(), *p.chat, p.peer, "abc\n"));
    ASSERT_TRUE(feed_via_loop(map(), *p.chat, p.peer, "\r\ndef"));
    EXPECT_EQ(p.chat->records, Records{});
    EXPECT_EQ(p.chat->current, "abc\n\r\ndef");
    EXPECT_EQ(p.chat->get_terminator(), Terminator(0));
    p.chat->close();
  }
  {
    // A count that ran out and is not reset stays 0.
    ChatAndPeer p = chat_pair(map(), 2);
    ASSERT_TRUE(feed_via_loop(map(), *p.chat, p.peer, "abcdef"));
    ASSERT_TRUE(feed_via_loop(map(), *p.chat, p.peer, "gh"));
    EXPECT_EQ(p.chat->records, Records{"ab"});
    EXPECT_EQ(p.chat->current, "cdefgh");
    EXPECT_EQ(p.chat->get_terminator(), Terminator(0));
    p.chat->close();
  }
  {
    // Set to 0 inside found_terminator: the rest of the same read is collected.
    ChatAndPeer p = chat_pair(map(), "\n");
    p.chat->on_found = [](TestChat& c) { c.set_terminator(0); };
    ASSERT_TRUE(feed_via_loop(map(), *p.chat, p.peer, "x\ny\nz"));
    EXPECT_EQ(p.chat->records, Records{"x"});
    EXPECT_EQ(p.chat->current, "y\nz");
    p.chat->close();
  }
}

// 10 MiB pushed through one AsyncChat and read back intact by another, over
// loopback TCP (see tcp_pair()).
TEST_P(AsynchatLoop, TenMebibytesIntact) {
  constexpr size_t kSize = 10 * 1024 * 1024;
  const std::string data = random_bytes(kSize, 12345);
  auto [a, b] = tcp_pair();
  auto sender = asyncore::make<TestChat>(std::move(a), &map());
  auto receiver = asyncore::make<TestChat>(std::move(b), &map());
  sender->set_terminator(nullptr);
  receiver->set_terminator(kSize);
  receiver->keep_events = false;
  receiver->current.reserve(kSize);
  sender->push(data);
  sender->close_when_done();
  ASSERT_TRUE(loop_until(
      map(), [&] { return sender->fileno() < 0 && receiver->fileno() < 0; },
      1000000, 1.0, std::chrono::seconds(120)));
  ASSERT_EQ(receiver->records.size(), 1u);
  EXPECT_TRUE(receiver->records[0] == data) << "payload differs";
  EXPECT_EQ(receiver->records[0].size(), kSize);
  EXPECT_EQ(receiver->collected_at_close, kSize);
  EXPECT_EQ(sender->errors, std::vector<std::string>{});
  EXPECT_EQ(receiver->errors, std::vector<std::string>{});
}

// Buffers, producers and byte-string producers leave in the order queued.
TEST_P(AsynchatLoop, ProducersInterleavedWithPushes) {
  auto [a, b] = Socket::pair();
  auto sender = asyncore::make<TestChat>(std::move(a), &map());
  auto receiver = asyncore::make<TestChat>(std::move(b), &map());
  sender->set_terminator(nullptr);
  receiver->set_terminator(nullptr);
  sender->ac_out_buffer_size = 5;
  std::string expected;
  for (int i = 0; i < 60; ++i) {
    std::string tag = "<" + std::to_string(i) + ">";
    switch (i % 4) {
      case 0:
        sender->push(tag);
        break;
      case 1:
        sender->push_with_producer(std::make_unique<SimpleProducer>(
            tag + std::string(static_cast<size_t>(i), 'p'), 1 + i % 7));
        tag += std::string(static_cast<size_t>(i), 'p');
        break;
      case 2:
        sender->push_with_producer(tag + "s");
        tag += "s";
        break;
      case 3:  // an empty producer and an empty push in between
        sender->push_with_producer(std::make_unique<SimpleProducer>(""));
        sender->push("");
        sender->push(tag);
        break;
    }
    expected += tag;
  }
  sender->close_when_done();
  ASSERT_TRUE(loop_until(
      map(), [&] { return sender->fileno() < 0 && receiver->fileno() < 0; },
      100000));
  EXPECT_EQ(receiver->current, expected);
  EXPECT_EQ(sender->errors, std::vector<std::string>{});
  EXPECT_EQ(receiver->errors, std::vector<std::string>{});
}

// The reader takes 1 KiB per read event; the sender's queue backs up, and
// everything still arrives before the EOF that close_when_done() causes.
// Loopback TCP: over an AF_UNIX pair, poll-like backends report HUP once the
// sender has closed, and asyncore's readwrite() then calls handle_close()
// after a single read, dropping the unread rest (Python does the same; spec
// A.6/C12), so "everything before EOF" holds only where EOF is not a HUP.
TEST_P(AsynchatLoop, CloseWhenDoneSlowReader) {
  constexpr size_t kSize = 1024 * 1024;
  const std::string data = random_bytes(kSize, 777);
  auto [a, b] = tcp_pair();
  auto sender = asyncore::make<TestChat>(std::move(a), &map());
  auto reader = asyncore::make<TestChat>(std::move(b), &map());
  sender->set_terminator(nullptr);
  reader->set_terminator(nullptr);
  reader->keep_events = false;
  reader->ac_in_buffer_size = 1024;
  const size_t third = kSize / 3;
  sender->push(std::string_view(data).substr(0, third));
  sender->push_with_producer(
      std::make_unique<SimpleProducer>(data.substr(third, third), 4096));
  sender->push(std::string_view(data).substr(2 * third));
  sender->close_when_done();
  size_t max_queued = 0;
  ASSERT_TRUE(loop_until(
      map(),
      [&] {
        max_queued = std::max(max_queued, sender->queued_bytes());
        return reader->fileno() < 0;
      },
      100000, 1.0, std::chrono::seconds(60)));
  EXPECT_GT(max_queued, 0u);
  EXPECT_LT(sender->fileno(), 0);
  EXPECT_EQ(sender->closes, 1);
  EXPECT_EQ(reader->collected_at_close, kSize);  // all of it before EOF
  EXPECT_TRUE(reader->current == data) << "payload differs";
  EXPECT_EQ(reader->errors, std::vector<std::string>{});
}

// Queued output is dropped mid-transfer; the channel keeps working.
TEST_P(AsynchatLoop, DiscardBuffersMidTransfer) {
  constexpr size_t kSize = 4 * 1024 * 1024;
  const std::string data = random_bytes(kSize, 4242);
  ChatAndPeer p = chat_pair(map(), "\n");
  p.chat->push(data);
  std::string got = read_available(p.peer);
  for (int i = 0; i < 5; ++i) {
    iterate(map(), 1.0);
    got += read_available(p.peer);
  }
  ASSERT_GT(p.chat->queued_bytes(), 0u);
  p.chat->discard_buffers();
  EXPECT_EQ(p.chat->queued_bytes(), 0u);
  EXPECT_EQ(p.chat->queued_entries(), 0u);
  EXPECT_FALSE(p.chat->writable());
  got += read_available(p.peer);  // what the kernel already had
  ASSERT_LT(got.size(), data.size());
  EXPECT_TRUE(std::string_view(data).substr(0, got.size()) == got);
  for (int i = 0; i < 3; ++i) iterate(map(), 0.0);
  EXPECT_EQ(read_available(p.peer), "");  // nothing more of the old data

  p.chat->push("after\n");
  EXPECT_EQ(read_available(p.peer), "after\n");
  ASSERT_TRUE(feed_via_loop(map(), *p.chat, p.peer, "ping\n"));
  EXPECT_EQ(p.chat->records, Records{"ping"});
  EXPECT_GE(p.chat->fileno(), 0);
  EXPECT_EQ(p.chat->errors, std::vector<std::string>{});
  p.chat->close();
}

// Output gathering (docs/deviations.md): pushes queued before the channel
// can send go out in one send on a stream, and one per datagram, in order,
// an empty push an empty datagram, where each send is a message (Python's
// behaviour there, which it has everywhere).
class CountingChat : public TestChat {
 public:
  using TestChat::TestChat;
  void handle_write() override {
    ++write_events;
    TestChat::handle_write();
  }
  int write_events = 0;
};

std::vector<std::string> gathered_sends(ChannelMap& map, int type,
                                        int* write_events) {
  auto [mine, peer] = Socket::pair(AF_UNIX, type);
  auto chat = asyncore::make<CountingChat>(&map);  // no socket: pushes queue
  for (const char* s : {"ab", "cd", "", "ef"}) chat->push(s);
  chat->ac_out_buffer_size = 3;  // "abc", "def" on a stream
  chat->set_socket(std::move(mine));
  std::vector<std::string> messages;
  for (int i = 0; i < 20 && chat->queued_entries() > 0; ++i) {
    iterate(map, 1.0);
  }
  char buf[64];
  for (ssize_t n;
       (n = ::recv(peer.fileno(), buf, sizeof buf, MSG_DONTWAIT)) >= 0;) {
    messages.emplace_back(buf, static_cast<size_t>(n));
    if (type == SOCK_STREAM && n == 0) break;
  }
  *write_events = chat->write_events;
  chat->close();
  return messages;
}

TEST_P(AsynchatLoop, StreamGathersQueuedPushes) {
  int writes = 0;
  const auto got = gathered_sends(map(), SOCK_STREAM, &writes);
  std::string bytes;
  for (const std::string& s : got) bytes += s;
  EXPECT_EQ(bytes, "abcdef");
  EXPECT_EQ(writes, 2);  // ac_out_buffer_size 3: two sends, not four
}

TEST_P(AsynchatLoop, DatagramSendsOnePushPerMessage) {
  int writes = 0;
  const auto got = gathered_sends(map(), SOCK_DGRAM, &writes);
  EXPECT_EQ(got, (std::vector<std::string>{"ab", "cd", "", "ef"}));
  EXPECT_EQ(writes, 4);
}

// The input side: a held terminator prefix and the incoming helper buffer go.
TEST(AsynchatIssue, DiscardBuffersDropsBufferedInput) {
  ChannelMap map;
  {
    ChatAndPeer p = chat_pair(map, "\r\n");
    feed_direct(*p.chat, p.peer, "abc\r");  // "\r" held back
    p.chat->discard_buffers();
    EXPECT_EQ(p.chat->take_incoming(), "");
    feed_direct(*p.chat, p.peer, "\nxyz\r\n");
    // Without the discard this would be "F" first (the held "\r" + "\n").
    EXPECT_EQ(p.chat->events, (Events{"c:abc", "c:\nxyz", "F"}));
  }
  {
    // discard_buffers() from inside collect_incoming_data drops the rest of
    // the read, but the terminator already found still fires (Python slices
    // the emptied buffer).
    ChatAndPeer p = chat_pair(map, "\n");
    p.chat->on_collect = [](TestChat& c, std::string_view data) {
      if (data.find("STOP") != std::string_view::npos) c.discard_buffers();
    };
    feed_direct(*p.chat, p.peer, "aSTOPb\nc\n");
    EXPECT_EQ(p.chat->events, (Events{"c:aSTOPb", "F"}));
    feed_direct(*p.chat, p.peer, "d\n");
    EXPECT_EQ(p.chat->records, (Records{"aSTOPb", "d"}));
  }
}

// ============================================================================
// Property: random streams, terminators and read sizes against a reference.
// ============================================================================

// A schedule of terminators: [0] is set first; after the k-th record,
// schedule[min(k, size - 1)] is set unless it is nullopt (then the
// terminator stays as the scan left it: the same string, or 0 after a count).
using Schedule = std::vector<std::optional<Terminator>>;

struct Split {
  Records records;
  std::string current;  // collected after the last record (held bytes excluded)
};

// The whole stream at once, through the reference model of Python's
// handle_read (chat/testing/reference_splitter.h, written independently of
// AsyncChat and shared with the fuzzer), with the schedule applied in
// found_terminator as the chat under test does.
Split reference_split(std::string_view stream, const Schedule& schedule) {
  asynchat_testing::ReferenceSplitter ref;
  ref.term = asynchat_testing::RefTerminator(*schedule[0]);
  Split out;
  ref.process(stream, nullptr, [&](std::string record) {
    out.records.push_back(std::move(record));
    const auto& next =
        schedule[std::min(out.records.size(), schedule.size() - 1)];
    if (next) ref.term = asynchat_testing::RefTerminator(*next);
  });
  out.current = ref.incoming;
  return out;
}

TEST(AsynchatProperty, ReferenceSplitterSanity) {
  EXPECT_EQ(reference_split("LEN\nabcdLEN\nwxyz",
                            Schedule{Terminator("\n"), Terminator(4),
                                     Terminator("\n"), Terminator(4)})
                .records,
            (Records{"LEN", "abcd", "LEN", "wxyz"}));
  Split s = reference_split("abc\r", Schedule{Terminator("\r\n")});
  EXPECT_EQ(s.records, Records{});
  EXPECT_EQ(s.current, "abc");
  s = reference_split("abcdefgh", Schedule{Terminator(3), std::nullopt});
  EXPECT_EQ(s.records, Records{"abc"});
  EXPECT_EQ(s.current, "defgh");
}

TEST_P(AsynchatLoop, PropertyRandomStreamsMatchReferenceSplitter) {
  constexpr std::string_view kAlphabet = "abq\r\n";
  constexpr size_t kInBufferSizes[] = {1, 2, 3, 5, 16, 4096, 65536};
  for (uint32_t seed = 1; seed <= 400; ++seed) {
    std::mt19937 rng(seed);
    auto pick = [&](int lo, int hi) {
      return std::uniform_int_distribution<int>(lo, hi)(rng);
    };
    auto random_string = [&](int length) {
      std::string s;
      for (int i = 0; i < length; ++i)
        s += kAlphabet[pick(0, kAlphabet.size() - 1)];
      return s;
    };
    auto random_terminator = [&]() -> Terminator {
      int r = pick(0, 99);
      if (r < 3) return Terminator(nullptr);
      if (r < 6) return Terminator(0);
      if (r < 8) return Terminator("");
      if (r < 60) return Terminator(random_string(pick(1, 4)));
      return Terminator(pick(1, 12));
    };
    Schedule schedule;
    const int entries = pick(1, 5);
    for (int i = 0; i < entries; ++i) {
      if (i > 0 && pick(0, 99) < 15) {
        schedule.push_back(std::nullopt);
      } else {
        schedule.push_back(random_terminator());
      }
    }
    // Bytes from the alphabet with the schedule's strings mixed in often.
    std::string stream;
    const int length = pick(0, 300);
    while (static_cast<int>(stream.size()) < length) {
      const auto& t = schedule[pick(0, entries - 1)];
      if (t && t->kind() == Terminator::Kind::kString && pick(0, 3) == 0) {
        stream += t->string();
      } else {
        stream += random_string(pick(1, 6));
      }
    }
    const size_t in_size =
        kInBufferSizes[pick(0, std::size(kInBufferSizes) - 1)];

    std::ostringstream what;
    what << "seed " << seed << ", ac_in_buffer_size " << in_size
         << ", schedule";
    for (const auto& t : schedule) what << " " << (t ? describe(*t) : "keep");
    what << ", stream \"" << escape(stream) << "\", reads";

    ChatAndPeer p = chat_pair(map(), *schedule[0]);
    p.chat->ac_in_buffer_size = in_size;
    p.chat->keep_events = false;
    p.chat->on_found = [&schedule](TestChat& c) {
      const auto& next =
          schedule[std::min(c.records.size(), schedule.size() - 1)];
      if (next) c.set_terminator(*next);
    };
    for (size_t from = 0; from < stream.size();) {
      size_t n = std::min<size_t>(pick(1, 40), stream.size() - from);
      what << " " << n;
      ASSERT_TRUE(feed_via_loop(map(), *p.chat, p.peer,
                                std::string_view(stream).substr(from, n)))
          << what.str();
      from += n;
    }
    const Split expected = reference_split(stream, schedule);
    ASSERT_EQ(p.chat->records, expected.records) << what.str();
    ASSERT_EQ(p.chat->current, expected.current) << what.str();
    ASSERT_EQ(p.chat->empty_collects, 0) << what.str();
    ASSERT_EQ(p.chat->errors, std::vector<std::string>{}) << what.str();
    p.chat->close();
  }
}

// --- Instantiation
// -------------------------------------------------------------

INSTANTIATE_TEST_SUITE_P(AllBackends, TestAsynchat,
                         ::testing::ValuesIn(testing_util::all_backends()),
                         testing_util::backend_param_name);
INSTANTIATE_TEST_SUITE_P(AllBackends, AsynchatLoop,
                         ::testing::ValuesIn(testing_util::all_backends()),
                         testing_util::backend_param_name);

}  // namespace
