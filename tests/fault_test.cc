// Faults that one connection must not turn into a loss for the others or for
// itself, over every backend: an fd the backend cannot watch, a channel that
// wants to write but never can, a half-close with output still queued, and a
// peer that sends without reading. Each case fails when the library
// behaviour it names is removed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>

#include "chat/async_chat.h"
#include "core/asyncore.h"
#include "tests/test_util.h"

namespace {

using asyncore::make;
using asyncore::Socket;
using testing_util::CapturedLog;
using testing_util::FdLimitAtLeast;
using testing_util::loop_until;
using testing_util::read_available;
using testing_util::tcp_pair;
using testing_util::write_all;

constexpr size_t kReadSize = 8192;

// What a test channel saw.
struct Seen {
  int errors = 0;
  int closes = 0;
  bool eof = false;
  size_t pending_at_eof = 0;  // output still queued when the EOF came
  size_t max_pending = 0;     // the most output ever queued after a read
  bool closed = false;
};

// Python's documented echo handler, recording what happened to it.
class EchoWithSend : public asyncore::DispatcherWithSend {
 public:
  using DispatcherWithSend::DispatcherWithSend;
  std::shared_ptr<Seen> seen = std::make_shared<Seen>();
  bool close_on_error = true;

  void handle_read() override {
    std::string data = recv(kReadSize);
    if (!data.empty()) send(data);
    seen->max_pending = std::max(seen->max_pending, pending());
  }
  void handle_eof() override {
    seen->eof = true;
    seen->pending_at_eof = pending();
    DispatcherWithSend::handle_eof();
  }
  void handle_close() override {
    ++seen->closes;
    seen->closed = true;
    close();
  }
  void handle_error() override {
    ++seen->errors;
    if (close_on_error) DispatcherWithSend::handle_error();
  }
};

// The same echo on asynchat: everything collected is pushed back.
class EchoChat : public asynchat::AsyncChat {
 public:
  explicit EchoChat(Socket sock, asyncore::ChannelMap* map)
      : AsyncChat(std::move(sock), map) {
    set_terminator(nullptr);
    ac_in_buffer_size = kReadSize;
  }
  std::shared_ptr<Seen> seen = std::make_shared<Seen>();
  bool reading = true;  // false: readable() says no, like a drained channel

  bool readable() override { return reading && AsyncChat::readable(); }
  void collect_incoming_data(std::string_view data) override {
    push(data);
    seen->max_pending = std::max(seen->max_pending, queued_memory());
  }
  void found_terminator() override {}
  void handle_eof() override {
    seen->eof = true;
    seen->pending_at_eof = queued_bytes();
    AsyncChat::handle_eof();
  }
  void handle_close() override {
    ++seen->closes;
    seen->closed = true;
    AsyncChat::handle_close();
  }
  void handle_error() override {
    ++seen->errors;
    AsyncChat::handle_error();
  }
};

std::string payload(size_t size) {
  std::mt19937 gen(42);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(gen());
  return out;
}

class FaultTest : public testing_util::MapTest {};

// --- 1. An fd the backend cannot watch ------------------------------------

// select cannot watch an fd >= FD_SETSIZE: that channel gets handle_error()
// (one log line, then closed), and the loop keeps serving the others instead
// of throwing out of loop() (which stopped every select server at about
// 1 020 connections). Backends without such a limit serve it.
TEST_P(FaultTest, UnwatchableFdCostsOnlyItsChannel) {
  constexpr int kHighFd = 1100;
  FdLimitAtLeast limit(kHighFd + 64);
  if (!limit.ok()) GTEST_SKIP() << "RLIMIT_NOFILE cannot reach " << kHighFd;
  auto [low_peer, low_sock] = tcp_pair();
  auto [high_peer, high_sock] = tcp_pair();
  Socket high(::fcntl(high_sock.fileno(), F_DUPFD_CLOEXEC, kHighFd));
  ASSERT_GE(high.fileno(), kHighFd) << std::strerror(errno);
  high_sock.close();
  auto low = make<EchoWithSend>(std::move(low_sock), &map());
  auto high_channel = make<EchoWithSend>(std::move(high), &map());
  const int high_fd = high_channel->fileno();
  CapturedLog log;
  write_all(low_peer, "low");
  write_all(high_peer, "high");
  const int fd_limit = features().fd_limit;
  const bool refused = fd_limit > 0 && high_fd >= fd_limit;
  std::string low_echo, high_echo;
  ASSERT_NO_THROW(ASSERT_TRUE(loop_until(map(), [&] {
    low_echo += read_available(low_peer);
    high_echo += read_available(high_peer);
    return low_echo == "low" &&
           (refused ? high_channel->seen->closed : high_echo == "high");
  })));
  if (refused) {
    EXPECT_EQ(high_channel->seen->errors, 1);
    EXPECT_FALSE(map().contains(high_fd));
    ASSERT_EQ(log.out().size(), 1u);
    EXPECT_NE(log.out()[0].find("cannot watch fd " + std::to_string(high_fd)),
              std::string::npos)
        << log.out()[0];
  } else {
    EXPECT_EQ(high_channel->seen->errors, 0);
  }
  // Still serving.
  write_all(low_peer, "again");
  ASSERT_TRUE(loop_until(map(), [&] {
    low_echo += read_available(low_peer);
    return low_echo == "lowagain";
  }));
  low->close();
  high_channel->close();
}

// A handle_error() that leaves the channel open does not make the loop retry
// for ever: the channel is closed, since it can never be watched.
TEST_P(FaultTest, UnwatchableFdIsClosedEvenIfHandleErrorKeepsIt) {
  const int fd_limit = features().fd_limit;
  if (fd_limit == 0) GTEST_SKIP() << backend() << " has no fd limit";
  FdLimitAtLeast limit(static_cast<rlim_t>(fd_limit) + 64);
  if (!limit.ok()) GTEST_SKIP() << "RLIMIT_NOFILE cannot reach " << fd_limit;
  auto [peer, sock] = tcp_pair();
  Socket high(::fcntl(sock.fileno(), F_DUPFD_CLOEXEC, fd_limit));
  ASSERT_GE(high.fileno(), fd_limit);
  sock.close();
  auto channel = make<EchoWithSend>(std::move(high), &map());
  channel->close_on_error = false;
  ASSERT_NO_THROW(testing_util::iterate(map(), 0));
  EXPECT_EQ(channel->seen->errors, 1);
  EXPECT_EQ(channel->registered_map(), nullptr);
  EXPECT_FALSE(channel->socket().is_open());
}

// --- 2. Wanting to write without being able to -----------------------------

// The client sent a request and reset before the server accepted: the
// accepted socket has no peer (getpeername: ENOTCONN), so connected() is
// false. The request is read and answered; the answer can never be sent. The
// channel must close, not stay writable for ever (select reported it
// writable at every iteration: 100 % CPU and a leaked fd).
template <class Channel>
void reset_before_accept_closes(asyncore::ChannelMap& map) {
  asyncore::Address address;
  Socket listener = testing_util::listening_socket(&address);
  Socket client = testing_util::start_connect(address);
  ASSERT_TRUE(testing_util::wait_fd(client.fileno(), POLLOUT));
  write_all(client, "GET / HTTP/1.0\r\n\r\n");
  testing_util::reset_on_close(client.fileno());
  client.close();
  Socket accepted = testing_util::accept_within(listener);
  ASSERT_TRUE(accepted.is_open());
  // With the reset's error already taken (SO_ERROR is read once), recv()
  // reports the request and then a plain EOF, so the channel drains
  // (reading stops) and only its writes are left to watch.
  EXPECT_EQ(accepted.pending_error(), ECONNRESET);
  auto channel = make<Channel>(std::move(accepted), &map);
  EXPECT_FALSE(channel->connected());
  EXPECT_TRUE(loop_until(
      map, [&] { return channel->seen->closed; }, 50))
      << "still open after 50 iterations";
  EXPECT_EQ(channel->seen->errors, 0);
  channel->close();
}

TEST_P(FaultTest, ResetBeforeAcceptClosesDispatcherWithSend) {
  reset_before_accept_closes<EchoWithSend>(map());
}

TEST_P(FaultTest, ResetBeforeAcceptClosesAsyncChat) {
  reset_before_accept_closes<EchoChat>(map());
}

// The rule itself: output queued on a stream socket that is not connected
// and not connecting. The write event tries the send, whose error closes the
// channel, on every backend (poll-like ones also report HUP; select only
// "writable").
TEST_P(FaultTest, QueuedOutputOnAnUnconnectedSocketCloses) {
  auto channel = make<EchoChat>(Socket(), &map());
  channel->create_socket(AF_INET, SOCK_STREAM);
  channel->reading = false;  // select then reports it writable only
  channel->push("never sent");
  EXPECT_TRUE(loop_until(
      map(), [&] { return channel->seen->closed; }, 20));
  EXPECT_EQ(channel->seen->errors, 0);
  channel->close();
}

// --- 3. Half-close with output queued --------------------------------------

// The client sends 16 MiB, shuts down its sending side, and only then reads.
// The server (without a queue limit here, so that it reads on to the EOF)
// sees the EOF with most of the echo still queued: it must stop reading,
// send it all, and only then close. With drain_on_eof = false (Python's
// behaviour) exactly the queued bytes are lost.
template <class Channel>
void half_close(asyncore::ChannelMap& map, bool drain) {
  constexpr size_t kSize = 16 << 20;  // more than loopback buffers hold
  const std::string data = payload(kSize);
  auto [peer, sock] = tcp_pair();
  auto channel = make<Channel>(std::move(sock), &map);
  channel->drain_on_eof = drain;
  channel->set_output_limit(0, 0);
  size_t written = 0;
  ASSERT_TRUE(loop_until(
      map,
      [&] {
        if (written < kSize) {
          const ssize_t n = ::send(peer.fileno(), data.data() + written,
                                   std::min<size_t>(kSize - written, 65536),
                                   MSG_DONTWAIT | MSG_NOSIGNAL);
          if (n > 0) written += static_cast<size_t>(n);
          if (written == kSize) ::shutdown(peer.fileno(), SHUT_WR);
        }
        return channel->seen->eof;
      },
      1000000, 0.0, std::chrono::seconds(60)));
  ASSERT_GT(channel->seen->pending_at_eof, 0u);
  bool eof = false;
  std::string got;
  ASSERT_TRUE(loop_until(
      map,
      [&] {
        got += read_available(peer, &eof);
        return eof;
      },
      1000000, 0.0, std::chrono::seconds(60)));
  ASSERT_TRUE(channel->seen->closed);
  if (drain) {
    EXPECT_EQ(got.size(), kSize);
    EXPECT_TRUE(got == data) << "the echo differs from what was sent";
  } else {
    EXPECT_EQ(got.size(), kSize - channel->seen->pending_at_eof);
  }
  EXPECT_EQ(channel->seen->closes, 1);
}

TEST_P(FaultTest, HalfCloseSendsQueuedOutputDispatcherWithSend) {
  half_close<EchoWithSend>(map(), true);
}

TEST_P(FaultTest, HalfCloseSendsQueuedOutputAsyncChat) {
  half_close<EchoChat>(map(), true);
}

TEST_P(FaultTest, HalfCloseWithPythonsCloseDropsQueuedOutput) {
  half_close<EchoWithSend>(map(), false);
  half_close<EchoChat>(map(), false);
}

// The echo_server case, with the default limits: the client sends 8 MiB,
// reading as it goes, then shuts down its sending side and reads the rest.
// Every byte comes back (2-2.5 MiB were lost before graceful close).
TEST_P(FaultTest, HalfCloseWhileReadingLosesNothing) {
  constexpr size_t kSize = 8 << 20;
  const std::string data = payload(kSize);
  auto [peer, sock] = tcp_pair();
  auto channel = make<EchoWithSend>(std::move(sock), &map());
  size_t written = 0;
  bool eof = false;
  std::string got;
  ASSERT_TRUE(loop_until(
      map(),
      [&] {
        if (written < kSize) {
          const ssize_t n = ::send(peer.fileno(), data.data() + written,
                                   std::min<size_t>(kSize - written, 65536),
                                   MSG_DONTWAIT | MSG_NOSIGNAL);
          if (n > 0) written += static_cast<size_t>(n);
          if (written == kSize) ::shutdown(peer.fileno(), SHUT_WR);
        }
        got += read_available(peer, &eof);
        return eof;
      },
      1000000, 0.0, std::chrono::seconds(60)));
  EXPECT_EQ(got.size(), kSize);
  EXPECT_TRUE(got == data);
  EXPECT_TRUE(channel->seen->closed);
}

// --- 4. A peer that sends without reading ----------------------------------

// Without back-pressure the echo queue grows with everything the peer sends
// (259 MiB in 1.3 s for echo_server). With it, reading stops at the high
// mark: the queue stays below it plus one read, and what the peer cannot
// send waits in its own socket. Once the peer reads, everything arrives.
template <class Channel>
void back_pressure(asyncore::ChannelMap& map, size_t high, size_t low) {
  constexpr size_t kSize = 32 << 20;  // more than loopback buffers hold
  const std::string data = payload(kSize);
  auto [peer, sock] = tcp_pair();
  auto channel = make<Channel>(std::move(sock), &map);
  channel->set_output_limit(high, low);
  // Phase 1: the peer only sends, until the server stops reading.
  size_t written = 0;
  const bool paused = loop_until(
      map,
      [&] {
        const ssize_t n = ::send(peer.fileno(), data.data() + written,
                                 std::min<size_t>(kSize - written, 65536),
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) written += static_cast<size_t>(n);
        return written == kSize || !channel->readable();
      },
      100000, 0.001);
  const size_t bound = high + 2 * kReadSize;
  EXPECT_TRUE(paused && written < kSize) << "the server never stopped reading";
  EXPECT_LE(channel->seen->max_pending, bound);
  // The peer is held back: what it can still send fits in socket buffers.
  for (int i = 0; i < 200; ++i) {
    const ssize_t n = ::send(peer.fileno(), data.data() + written,
                             std::min<size_t>(kSize - written, 65536),
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) written += static_cast<size_t>(n);
    testing_util::iterate(map, 0);
  }
  EXPECT_LT(written, kSize) << "the peer was never held back";
  EXPECT_LE(channel->seen->max_pending, bound);
  // Phase 2: the peer reads; everything it sent comes back.
  std::string got;
  bool shut = false;
  ASSERT_TRUE(loop_until(
      map,
      [&] {
        while (written < kSize) {
          const ssize_t n = ::send(peer.fileno(), data.data() + written,
                                   std::min<size_t>(kSize - written, 65536),
                                   MSG_DONTWAIT | MSG_NOSIGNAL);
          if (n <= 0) break;
          written += static_cast<size_t>(n);
        }
        if (written == kSize && !shut) {
          ::shutdown(peer.fileno(), SHUT_WR);
          shut = true;
        }
        got += read_available(peer);
        return got.size() == kSize;
      },
      10000000, 0.0, std::chrono::seconds(60)));
  EXPECT_TRUE(got == data);
  EXPECT_LE(channel->seen->max_pending, bound);
  channel->close();
}

TEST_P(FaultTest, BackPressureBoundsDispatcherWithSend) {
  back_pressure<EchoWithSend>(map(), 64 << 10, 16 << 10);
}

TEST_P(FaultTest, BackPressureBoundsAsyncChat) {
  back_pressure<EchoChat>(map(), 64 << 10, 16 << 10);
}

TEST_P(FaultTest, BackPressureDefaultIsOneMebibyte) {
  EchoWithSend with_send{Socket()};
  EXPECT_EQ(with_send.output_limit().high(), 1u << 20);
  back_pressure<EchoWithSend>(map(), asyncore::OutputLimit::kDefaultHigh,
                              asyncore::OutputLimit::kDefaultLow);
}

// Proof that the scenario presses: with the limit off, the queue grows far
// past where the limit would have held it.
TEST_P(FaultTest, WithoutALimitTheQueueGrows) {
  auto [peer, sock] = tcp_pair();
  auto channel = make<EchoWithSend>(std::move(sock), &map());
  channel->set_output_limit(0, 0);
  const std::string chunk(65536, 'x');
  loop_until(
      map(),
      [&] {
        ::send(peer.fileno(), chunk.data(), chunk.size(),
               MSG_DONTWAIT | MSG_NOSIGNAL);
        return channel->seen->max_pending > (4u << 20);
      },
      5000, 0.001);
  EXPECT_GT(channel->seen->max_pending, 4u << 20);
  channel->close();
}

INSTANTIATE_TEST_SUITE_P(AllBackends, FaultTest,
                         ::testing::ValuesIn(testing_util::all_backends()),
                         testing_util::backend_param_name);

}  // namespace
