// Automatic declared interest: which classes get it (decided at compile
// time in make<T>()), and that the library keeps it equal to what the
// predicates answer at every point a handler can observe, on every backend,
// through every state change of DispatcherWithSend and AsyncChat; and that
// a scenario's handler calls are the same with it on and forced off.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/async_chat.h"
#include "core/asyncore.h"
#include "tests/test_util.h"

namespace {

using asyncore::make;
using asyncore::Socket;
using testing_util::loop_until;
using testing_util::read_available;
using testing_util::tcp_pair;
using testing_util::write_all;

// --- Which classes
// ------------------------------------------------------------

class OnlyRead : public asyncore::DispatcherWithSend {
 public:
  using DispatcherWithSend::DispatcherWithSend;
  void handle_read() override {}
};
class OverridesReadable : public asyncore::DispatcherWithSend {
 public:
  using DispatcherWithSend::DispatcherWithSend;
  bool readable() override { return true; }
};
class OverridesWritable : public asyncore::Dispatcher {
 public:
  using Dispatcher::Dispatcher;
  bool writable() override { return false; }
};
class Chat : public asynchat::AsyncChat {
 public:
  using AsyncChat::AsyncChat;
  void collect_incoming_data(std::string_view) override {}
  void found_terminator() override {}
};
class ChatOverridingWritable : public Chat {
 public:
  using Chat::Chat;
  bool writable() override { return Chat::writable(); }
};
class DeeperPlain : public OnlyRead {
 public:
  using OnlyRead::OnlyRead;
};
class BelowAUsersOverride : public OverridesReadable {
 public:
  using OverridesReadable::OverridesReadable;
};

using asyncore::internal::has_library_predicates;
static_assert(has_library_predicates<asyncore::Dispatcher>());
static_assert(has_library_predicates<asyncore::DispatcherWithSend>());
static_assert(has_library_predicates<asyncore::FileDispatcher>());
static_assert(has_library_predicates<asyncore::SignalDispatcher>());
static_assert(has_library_predicates<OnlyRead>());
static_assert(has_library_predicates<DeeperPlain>());
static_assert(has_library_predicates<Chat>());
static_assert(!has_library_predicates<OverridesReadable>());
static_assert(!has_library_predicates<OverridesWritable>());
static_assert(!has_library_predicates<ChatOverridingWritable>());
static_assert(!has_library_predicates<BelowAUsersOverride>());

// On whatever the environment says (.ci/run also runs the suites with
// ASYNCOREPP_AUTO_DECLARED=0): these tests are about the automatic mode.
class AutomaticInterest : public testing_util::MapTest {
 protected:
  void SetUp() override {
    testing_util::MapTest::SetUp();
    saved_ = asyncore::automatic_declared_interest();
    asyncore::set_automatic_declared_interest(true);
  }
  void TearDown() override {
    asyncore::set_automatic_declared_interest(saved_);
    testing_util::MapTest::TearDown();
  }

 private:
  bool saved_ = true;
};

TEST_P(AutomaticInterest, OnlyTheLibrarysPredicatesAreDeclared) {
  auto [a, b] = Socket::pair();
  auto [c, d] = Socket::pair();
  auto [e, f] = Socket::pair();
  auto plain = make<OnlyRead>(std::move(a), &map());
  auto user = make<OverridesReadable>(std::move(c), &map());
  auto chat = make<Chat>(std::move(e), &map());
  EXPECT_TRUE(plain->automatic_interest());
  EXPECT_TRUE(plain->declared_interest());
  EXPECT_FALSE(user->automatic_interest());
  EXPECT_FALSE(user->declared_interest());  // asked, as in Python
  EXPECT_TRUE(chat->automatic_interest());
  // Not through make<T>(): the library cannot know, so it asks.
  OnlyRead on_stack(Socket(), &map());
  EXPECT_FALSE(on_stack.automatic_interest());
  // An explicit choice wins.
  plain->set_declared_interest(false);
  EXPECT_FALSE(plain->automatic_interest());
  EXPECT_FALSE(plain->declared_interest());
  // Forced off for the process (ASYNCOREPP_AUTO_DECLARED=0 does this).
  asyncore::set_automatic_declared_interest(false);
  auto [g, h] = Socket::pair();
  auto off = make<OnlyRead>(std::move(g), &map());
  asyncore::set_automatic_declared_interest(true);
  EXPECT_FALSE(off->declared_interest());
  for (auto* ch : std::vector<asyncore::Dispatcher*>{plain.get(), user.get(),
                                                     chat.get(), off.get()}) {
    ch->close();
  }
}

// --- Kept equal at every observable point
// ---------------------------------------

// Fails the test if a channel's automatic declared interest differs from
// what its predicates answer right now.
template <class C>
void expect_in_sync(C& ch, const char* where) {
  if (!ch.automatic_interest()) return;
  EXPECT_EQ(ch.declared_readable(), ch.readable()) << "readable at " << where;
  EXPECT_EQ(ch.declared_writable(), ch.writable()) << "writable at " << where;
}

// A library class that checks the invariant in every handler, before and
// after the library's own handling, and records the calls; overrides no
// predicate, so the library declares its interest.
template <class Base>
class Checked : public Base {
 public:
  using Base::Base;
  std::vector<std::string>* calls = nullptr;

  void note(const char* what) {
    if (calls) calls->push_back(what);
    // Declared by make<T>() unless switched off (else the check is void).
    EXPECT_EQ(this->automatic_interest(),
              asyncore::automatic_declared_interest())
        << what;
    expect_in_sync(*this, what);
  }
  void handle_connect() override { note("connect"); }
  void handle_write() override {
    note("write");
    Base::handle_write();
    expect_in_sync(*this, "after write");
  }
  void handle_eof() override {
    note("eof");
    Base::handle_eof();
  }
  void handle_error() override {
    note("error");
    this->close();
  }
};

class CheckedSend : public Checked<asyncore::DispatcherWithSend> {
 public:
  using Checked::Checked;
  std::string received;

  void handle_read() override {
    note("read");
    char buf[4096];
    try {
      received.append(buf, recv_into(buf, sizeof buf));
    } catch (const asyncore::WouldBlock&) {
    }
    expect_in_sync(*this, "after read");
  }
  void handle_close() override {
    note("close");
    close();
  }
};

class CheckedChat : public Checked<asynchat::AsyncChat> {
 public:
  using Checked::Checked;
  std::vector<std::string> lines;
  std::string line;

  void collect_incoming_data(std::string_view data) override {
    note("collect");
    line.append(data);
  }
  void found_terminator() override {
    note("found");
    lines.push_back(std::exchange(line, {}));
    if (lines.back() == "big") push(std::string(1 << 20, 'b'));
    if (lines.back() == "count") set_terminator(uint64_t{3});
    if (lines.back() == "abc") set_terminator("\n");
    if (lines.back() == "bye") close_when_done();
    if (lines.back() == "discard") discard_buffers();
    expect_in_sync(*this, "after found");
  }
  void handle_close() override {
    note("close");
    AsyncChat::handle_close();
  }
};

class Listener : public asyncore::Dispatcher {
 public:
  explicit Listener(asyncore::ChannelMap* map) : Dispatcher(map) {
    create_socket(AF_INET, SOCK_STREAM);
    set_reuse_addr();
    bind(asyncore::Address::ipv4("127.0.0.1", 0));
    listen(16);
  }
  void handle_accepted(Socket sock, const asyncore::Address&) override {
    accepted.push_back(std::move(sock));
  }
  std::vector<Socket> accepted;
};

// One DispatcherWithSend client through connect, a short write (output
// pending beyond the socket buffers), drain, back-pressure on and off,
// close_when_done, and the peer's EOF with output queued.
void send_scenario(asyncore::ChannelMap& map, std::vector<std::string>* calls) {
  auto listener = make<Listener>(&map);
  const asyncore::Address address = listener->socket().getsockname();
  auto client = make<CheckedSend>(&map);
  client->calls = calls;
  client->create_socket(AF_INET, SOCK_STREAM);
  expect_in_sync(*client, "create_socket");
  client->connect(address);
  expect_in_sync(*client, "connect()");
  ASSERT_TRUE(loop_until(
      map, [&] { return client->connected() && !listener->accepted.empty(); }));
  expect_in_sync(*client, "connected");
  Socket peer = std::move(listener->accepted[0]);
  peer.set_blocking(false);
  listener->close();
  client->set_output_limit(256 << 10, 64 << 10);
  expect_in_sync(*client, "set_output_limit");
  const std::string big(8 << 20, 'x');
  client->send(big);  // a short write: most of it stays queued
  expect_in_sync(*client, "short send");
  ASSERT_GT(client->pending(), 0u);
  EXPECT_FALSE(client->readable());  // back-pressure
  std::string got;
  ASSERT_TRUE(loop_until(
      map,
      [&] {
        got += read_available(peer);
        return client->pending() == 0;
      },
      100000, 0.0));
  expect_in_sync(*client, "drained");
  EXPECT_TRUE(client->readable());
  write_all(peer, "hello");
  ASSERT_TRUE(loop_until(map, [&] { return client->received == "hello"; }));
  client->set_output_limit(0, 0);
  expect_in_sync(*client, "limit off");
  client->send(big);
  client->close_when_done();
  expect_in_sync(*client, "close_when_done");
  ::shutdown(peer.fileno(), SHUT_WR);  // and the EOF arrives while queued
  bool eof = false;
  ASSERT_TRUE(loop_until(
      map,
      [&] {
        got += read_available(peer, &eof);
        return eof;
      },
      100000, 0.0));
  EXPECT_EQ(got.size(), 2 * big.size());
  EXPECT_EQ(client->registered_map(), nullptr);
}

// One AsyncChat server side through pushes, a producer, a terminator
// switch to a count and back, a 1 MiB answer (back-pressure), discard,
// close_when_done, and a client connecting with push() before the connect.
void chat_scenario(asyncore::ChannelMap& map, std::vector<std::string>* calls) {
  auto [peer, sock] = tcp_pair();
  auto chat = make<CheckedChat>(std::move(sock), &map);
  chat->calls = calls;
  chat->set_terminator("\n");
  expect_in_sync(*chat, "set_terminator");
  chat->push("hi\n");
  chat->push_with_producer(std::make_unique<asynchat::SimpleProducer>(
      std::string(100000, 'p'), 4096));
  expect_in_sync(*chat, "push");
  chat->ac_in_buffer_size = 7;
  chat->ac_out_buffer_size = 1000;
  chat->set_output_limit(64 << 10, 16 << 10);
  expect_in_sync(*chat, "sizes");
  write_all(peer, "count\nabcabc\nbig\ndiscard\n");
  std::string got;
  ASSERT_TRUE(loop_until(
      map,
      [&] {
        got += read_available(peer);
        return chat->lines.size() >= 5;
      },
      100000, 0.0));
  write_all(peer, "bye\n");
  bool eof = false;
  ASSERT_TRUE(loop_until(
      map,
      [&] {
        got += read_available(peer, &eof);
        return eof;
      },
      100000, 0.0));
  EXPECT_EQ(chat->registered_map(), nullptr);

  // A client: push before connecting, then connect.
  auto listener = make<Listener>(&map);
  auto client = make<CheckedChat>(&map);
  client->calls = calls;
  client->create_socket(AF_INET, SOCK_STREAM);
  client->set_terminator("\n");
  client->push("early\n");
  expect_in_sync(*client, "push before connect");
  client->connect(listener->socket().getsockname());
  expect_in_sync(*client, "connect()");
  ASSERT_TRUE(loop_until(
      map, [&] { return client->connected() && !listener->accepted.empty(); }));
  Socket server_end = std::move(listener->accepted[0]);
  listener->close();
  EXPECT_EQ(testing_util::read_exactly(server_end.fileno(), 6), "early\n");
  server_end.close();  // EOF for the client
  ASSERT_TRUE(
      loop_until(map, [&] { return client->registered_map() == nullptr; }));
}

TEST_P(AutomaticInterest, DispatcherWithSendStaysInSync) {
  send_scenario(map(), nullptr);
}

TEST_P(AutomaticInterest, AsyncChatStaysInSync) {
  chat_scenario(map(), nullptr);
}

// The same scenarios with automatic declared interest forced off call the
// same handlers in the same order (the predicates are then asked every
// iteration, Python's way). The reads of a big transfer depend on the
// kernel's segmentation, so runs of the same call count once.
std::vector<std::string> collapsed(const std::vector<std::string>& calls) {
  std::vector<std::string> out;
  for (const std::string& c : calls) {
    if (out.empty() || out.back() != c) out.push_back(c);
  }
  return out;
}

TEST_P(AutomaticInterest, SameHandlerCallsWithItForcedOff) {
  std::vector<std::string> automatic, asked;
  send_scenario(map(), &automatic);
  chat_scenario(map(), &automatic);
  asyncore::set_automatic_declared_interest(false);
  send_scenario(map(), &asked);
  chat_scenario(map(), &asked);
  asyncore::set_automatic_declared_interest(true);
  EXPECT_EQ(collapsed(automatic), collapsed(asked));
}

INSTANTIATE_TEST_SUITE_P(AllBackends, AutomaticInterest,
                         ::testing::ValuesIn(testing_util::all_backends()),
                         testing_util::backend_param_name);

}  // namespace
