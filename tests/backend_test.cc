// Backend-level tests: readiness, interest changes, timeouts, EINTR and the
// OS limits of each backend, with no dispatchers involved. Every
// parameterised case runs over every backend this OS offers; the kqueue
// change/merge logic and the Deadline arithmetic are tested directly.
#include "backends/backend.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "backends/internal/deadline.h"
#include "backends/internal/kqueue_logic.h"
#include "core/socket.h"
#include "tests/test_util.h"

// For EXPECT_EQ on event lists; found by ADL, so it lives with ReadyEvent.
namespace asyncore {
bool operator==(const ReadyEvent& a, const ReadyEvent& b) {
  return a.fd == b.fd && a.events == b.events;
}
std::ostream& operator<<(std::ostream& os, const ReadyEvent& e) {
  return os << "{fd " << e.fd << ", events 0x" << std::hex << e.events
            << std::dec << "}";
}
}  // namespace asyncore

namespace {

using asyncore::Backend;
using asyncore::ReadyEvent;
using asyncore::Socket;
using asyncore::Timeout;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using testing_util::reset_on_close;
using testing_util::tcp_pair;
using testing_util::write_all;
using Clock = std::chrono::steady_clock;

namespace ev = asyncore::events;

// The masks the loop computes for a readable-only / writable-only / both
// channel (asyncore's rule: either one also adds the exceptional set).
constexpr unsigned kRead = asyncore::interest_for(true, false, false);
constexpr unsigned kWrite = asyncore::interest_for(false, true, false);
constexpr unsigned kBoth = asyncore::interest_for(true, true, false);
constexpr unsigned kNone = asyncore::kInterestNone;

// Has no exceptional set of its own: PRI comes with the read interest.
bool poll_like(const Backend& b) {
  return !b.features().separate_except_interest;
}

std::string describe(unsigned e) {
  std::string out;
  auto bit = [&](unsigned b, const char* n) {
    if (e & b) out += out.empty() ? n : std::string("|") + n;
  };
  bit(ev::kIn, "IN");
  bit(ev::kPri, "PRI");
  bit(ev::kOut, "OUT");
  bit(ev::kErr, "ERR");
  bit(ev::kHup, "HUP");
  bit(ev::kNval, "NVAL");
  return out.empty() ? "none" : out;
}

// One wait, as fd -> events. A backend must report an fd at most once per
// wait (readwrite() is called once per reported fd).
std::map<int, unsigned> wait_map(Backend& b, Timeout t) {
  std::vector<ReadyEvent> ready;
  b.wait(t, &ready);
  std::map<int, unsigned> out;
  for (const ReadyEvent& r : ready) {
    EXPECT_EQ(out.count(r.fd), 0u) << "fd " << r.fd << " reported twice";
    out[r.fd] |= r.events;
  }
  return out;
}

unsigned events_of(const std::map<int, unsigned>& m, int fd) {
  auto it = m.find(fd);
  return it == m.end() ? 0u : it->second;
}

// Waits (bounded) until fd reports all of `bits`, then returns a fresh
// zero-timeout wait: level-triggered backends must report the settled state.
std::map<int, unsigned> settle(Backend& b, int fd, unsigned bits) {
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline) {
    auto m = wait_map(b, milliseconds(100));
    if ((events_of(m, fd) & bits) == bits) break;
  }
  return wait_map(b, nanoseconds(0));
}

// Backends alone, with no ChannelMap, so not testing_util::MapTest; the same
// LeakCheck makes sure no case leaves an fd open (or anything in
// socket_map()). The backend's own fd is released before the check.
class BackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    leaks_.start();
    backend_ = asyncore::make_backend(GetParam());
  }
  void TearDown() override {
    backend_.reset();
    leaks_.finish();
  }

  Backend& b() { return *backend_; }

  std::unique_ptr<Backend> backend_;
  testing_util::LeakCheck leaks_;
};

TEST_P(BackendTest, NameMatches) { EXPECT_EQ(b().name(), GetParam()); }

TEST_P(BackendTest, InOnlyAfterDataIsWritten) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kRead);
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), 0u);
  write_all(peer, "x");
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), ev::kIn);
  // Level-triggered: still reported until read.
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), ev::kIn);
  char c;
  ASSERT_EQ(::recv(a.fileno(), &c, 1, 0), 1);
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), 0u);
  b().update(a.fileno(), kRead, kNone);
}

TEST_P(BackendTest, OutWhenWritable) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kWrite);
  write_all(peer, "pending input must not show up as IN");
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), ev::kOut);
  b().update(a.fileno(), kWrite, kNone);
}

TEST_P(BackendTest, NotWritableWhileSendBufferFull) {
  auto [a, peer] = Socket::pair();
  std::string chunk(65536, 'f');
  // Bounded: a socketpair buffer is a few hundred KiB at most.
  for (int i = 0; i < 4096; ++i) {
    if (::send(a.fileno(), chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0) break;
  }
  ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);
  b().update(a.fileno(), kNone, kWrite);
  EXPECT_EQ(events_of(wait_map(b(), milliseconds(20)), a.fileno()), 0u);
  b().update(a.fileno(), kWrite, kNone);
}

TEST_P(BackendTest, BothInterestsReportBoth) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kBoth);
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), ev::kOut);
  write_all(peer, "x");
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()),
            ev::kIn | ev::kOut);
  b().update(a.fileno(), kBoth, kNone);
}

// Urgent data: poll-like backends register IN|PRI for a readable channel;
// select sees it through the exceptional set (reported as kPri).
TEST_P(BackendTest, UrgentDataReportsPri) {
  auto [peer, a] = tcp_pair();
  b().update(a.fileno(), kNone, kRead);
  ASSERT_EQ(::send(peer.fileno(), "!", 1, MSG_OOB | MSG_NOSIGNAL), 1);
  auto m = settle(b(), a.fileno(), ev::kPri);
  EXPECT_TRUE(events_of(m, a.fileno()) & ev::kPri)
      << describe(events_of(m, a.fileno()));
  EXPECT_FALSE(events_of(m, a.fileno()) & ev::kOut);

  // A writable-only channel: poll-like backends register just OUT (PRI
  // comes with readable()), while select keeps it in the exceptional set
  // ("r or w", spec A.6), so it still sees the urgent data.
  b().update(a.fileno(), kRead, kWrite);
  m = wait_map(b(), nanoseconds(0));
  EXPECT_EQ(events_of(m, a.fileno()),
            poll_like(b()) ? ev::kOut : ev::kOut | ev::kPri)
      << describe(events_of(m, a.fileno()));

  if (b().features().separate_except_interest) {
    // Read set without the exceptional set: only select can express it.
    b().update(a.fileno(), kWrite, asyncore::kInterestRead);
    m = wait_map(b(), nanoseconds(0));
    EXPECT_FALSE(events_of(m, a.fileno()) & ev::kPri);
    b().update(a.fileno(), asyncore::kInterestRead, kNone);
  } else {
    b().update(a.fileno(), kWrite, kNone);
  }
}

TEST_P(BackendTest, InterestNoneStopsReports) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kBoth);
  write_all(peer, "x");
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()),
            ev::kIn | ev::kOut);
  b().update(a.fileno(), kBoth, kNone);
  EXPECT_TRUE(wait_map(b(), nanoseconds(0)).empty());
}

TEST_P(BackendTest, InterestChangesReadWriteNoneRead) {
  auto [a, peer] = Socket::pair();
  write_all(peer, "x");  // readable and writable throughout
  b().update(a.fileno(), kNone, kRead);
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), ev::kIn);
  b().update(a.fileno(), kRead, kWrite);
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), ev::kOut);
  b().update(a.fileno(), kWrite, kNone);
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), 0u);
  b().update(a.fileno(), kNone, kRead);
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), ev::kIn);
  b().update(a.fileno(), kRead, kBoth);
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()),
            ev::kIn | ev::kOut);
  b().update(a.fileno(), kBoth, kRead);
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), a.fileno()), ev::kIn);
  b().update(a.fileno(), kRead, kNone);
}

// Several fds, removed in an order that exercises the swap-with-last
// removal of the poll and select backends' dense arrays.
TEST_P(BackendTest, RemovalKeepsOtherRegistrations) {
  std::vector<std::pair<Socket, Socket>> pairs;
  for (int i = 0; i < 6; ++i) pairs.push_back(Socket::pair());
  for (auto& p : pairs) {
    b().update(p.first.fileno(), kNone, kRead);
    write_all(p.second, "x");
  }
  std::vector<bool> live(pairs.size(), true);
  for (size_t victim : {size_t{0}, size_t{5}, size_t{2}}) {
    b().update(pairs[victim].first.fileno(), kRead, kNone);
    live[victim] = false;
    auto m = wait_map(b(), nanoseconds(0));
    for (size_t i = 0; i < pairs.size(); ++i) {
      EXPECT_EQ(events_of(m, pairs[i].first.fileno()), live[i] ? ev::kIn : 0u)
          << "pair " << i << " after removing " << victim;
    }
    EXPECT_EQ(m.size(),
              static_cast<size_t>(std::count(live.begin(), live.end(), true)));
  }
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (live[i]) b().update(pairs[i].first.fileno(), kRead, kNone);
  }
}

// Python's poll2() does not register a channel that wants nothing, so it
// gets no HUP/ERR either; select has nothing to report for it.
TEST_P(BackendTest, FdWantingNothingNotReportedEvenOnHangup) {
  auto [peer, a] = tcp_pair();
  auto [u, upeer] = Socket::pair();
  b().update(a.fileno(), kNone, kBoth);
  b().update(a.fileno(), kBoth, kNone);
  b().update(u.fileno(), kNone, kRead);
  b().update(u.fileno(), kRead, kNone);
  reset_on_close(peer.fileno());
  peer.close();  // RST
  upeer.close();
  // A registered witness proves the wait ran and saw the hangups.
  auto [w, wpeer] = Socket::pair();
  b().update(w.fileno(), kNone, kRead);
  wpeer.close();
  auto m = settle(b(), w.fileno(), ev::kIn);
  EXPECT_EQ(events_of(m, a.fileno()), 0u) << describe(events_of(m, a.fileno()));
  EXPECT_EQ(events_of(m, u.fileno()), 0u) << describe(events_of(m, u.fileno()));
  EXPECT_TRUE(events_of(m, w.fileno()) & ev::kIn);
  b().update(w.fileno(), kRead, kNone);
}

TEST_P(BackendTest, UnixPeerCloseGivesIn) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kRead);
  peer.close();
  unsigned e = events_of(wait_map(b(), nanoseconds(0)), a.fileno());
  EXPECT_TRUE(e & ev::kIn) << describe(e);
  EXPECT_FALSE(e & (ev::kNval | ev::kOut)) << describe(e);
  b().update(a.fileno(), kRead, kNone);
}

// The observed Linux flag sets of spec A.6 (poll-like backends), and
// readable+writable for select.
TEST_P(BackendTest, TcpPeerFinGivesInOut) {
  auto [peer, a] = tcp_pair();
  b().update(a.fileno(), kNone, kBoth);
  peer.close();
  auto m = settle(b(), a.fileno(), ev::kIn);
  EXPECT_EQ(events_of(m, a.fileno()), ev::kIn | ev::kOut)
      << describe(events_of(m, a.fileno()));
  b().update(a.fileno(), kBoth, kNone);
}

TEST_P(BackendTest, TcpPeerRstGivesInOutErrHup) {
  auto [peer, a] = tcp_pair();
  b().update(a.fileno(), kNone, kBoth);
  reset_on_close(peer.fileno());
  peer.close();
  auto m = settle(b(), a.fileno(), ev::kIn);
  unsigned want = ev::kIn | ev::kOut;
  if (b().features().reports_hup) want |= ev::kErr | ev::kHup;
  EXPECT_EQ(events_of(m, a.fileno()), want)
      << describe(events_of(m, a.fileno()));
  b().update(a.fileno(), kBoth, kNone);
}

TEST_P(BackendTest, TcpFinAfterOwnShutdownGivesHup) {
  auto [peer, a] = tcp_pair();
  b().update(a.fileno(), kNone, kBoth);
  ASSERT_EQ(::shutdown(a.fileno(), SHUT_WR), 0);
  ASSERT_EQ(::shutdown(peer.fileno(), SHUT_WR), 0);
  auto m = settle(b(), a.fileno(), ev::kIn);
  unsigned want = ev::kIn | ev::kOut;
  if (b().features().reports_hup) want |= ev::kHup;
  EXPECT_EQ(events_of(m, a.fileno()), want)
      << describe(events_of(m, a.fileno()));
  b().update(a.fileno(), kBoth, kNone);
}

// Hangup/error bits are reported even to a read-only registration
// (poll(2) always returns them), never to an unregistered fd (above).
TEST_P(BackendTest, HupReportedToReadOnlyInterest) {
  if (!b().features().reports_hup) GTEST_SKIP() << b().name() << " has no HUP";
  auto [peer, a] = tcp_pair();
  b().update(a.fileno(), kNone, kRead);
  reset_on_close(peer.fileno());
  peer.close();
  auto m = settle(b(), a.fileno(), ev::kIn);
  EXPECT_EQ(events_of(m, a.fileno()), ev::kIn | ev::kErr | ev::kHup)
      << describe(events_of(m, a.fileno()));
  b().update(a.fileno(), kRead, kNone);
}

// --- timeouts -------------------------------------------------------------

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

TEST_P(BackendTest, ZeroTimeoutReturnsAtOnce) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kRead);
  auto start = Clock::now();
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(wait_map(b(), nanoseconds(0)).empty());
  }
  EXPECT_LT(ms_since(start), 500.0);
  b().update(a.fileno(), kRead, kNone);
}

TEST_P(BackendTest, TimeoutWaitsAboutThatLong) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kRead);
  auto start = Clock::now();
  EXPECT_TRUE(wait_map(b(), milliseconds(50)).empty());
  double took = ms_since(start);
  EXPECT_GE(took, 49.0);
  EXPECT_LT(took, 2000.0);
  b().update(a.fileno(), kRead, kNone);
}

TEST_P(BackendTest, TimeoutWithNothingRegistered) {
  auto start = Clock::now();
  EXPECT_TRUE(wait_map(b(), milliseconds(30)).empty());
  double took = ms_since(start);
  EXPECT_GE(took, 29.0);
  EXPECT_LT(took, 2000.0);
}

TEST_P(BackendTest, ForeverReturnsWhenAnFdIsReady) {
  auto [a, peer] = Socket::pair();
  write_all(peer, "x");
  b().update(a.fileno(), kNone, kRead);
  auto start = Clock::now();
  EXPECT_EQ(events_of(wait_map(b(), std::nullopt), a.fileno()), ev::kIn);
  EXPECT_LT(ms_since(start), 2000.0);
  b().update(a.fileno(), kRead, kNone);
}

// Waits until thread `tid` sleeps inside a system call (for the callers: the
// backend's wait), as /proc shows it: a writer that must not send before
// the wait has started waits on this instead of sleeping for a while.
bool blocked_in_syscall(pid_t tid) {
  const std::string task = "/proc/self/task/" + std::to_string(tid);
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline) {
    std::ifstream syscall(task + "/syscall"), stat(task + "/stat");
    std::string number, stat_line;
    syscall >> number;
    std::getline(stat, stat_line);
    // stat: "tid (name) S ..."; the state follows the last ')'.
    const size_t paren = stat_line.rfind(')');
    const char state =
        paren != std::string::npos && paren + 2 < stat_line.size()
            ? stat_line[paren + 2]
            : '?';
    if (!number.empty() && number != "running" && state == 'S') return true;
    std::this_thread::yield();
  }
  return false;
}

TEST_P(BackendTest, ForeverWakesWhenDataArrives) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kRead);
  std::atomic<bool> blocked{false};
  std::thread writer([fd = peer.fileno(), waiter = ::gettid(), &blocked] {
    blocked = blocked_in_syscall(waiter);
    (void)!::send(fd, "x", 1, MSG_NOSIGNAL);
  });
  auto m = wait_map(b(), std::nullopt);
  writer.join();
  EXPECT_TRUE(blocked) << "the wait never blocked";
  EXPECT_EQ(events_of(m, a.fileno()), ev::kIn);
  b().update(a.fileno(), kRead, kNone);
}

// Spec D5: poll-like backends truncate to whole milliseconds, as poll2()
// does, so 0.9 ms means "do not block"; select keeps microseconds.
TEST_P(BackendTest, SubMillisecondTimeout) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kRead);
  constexpr int kRounds = 100;
  auto start = Clock::now();
  for (int i = 0; i < kRounds; ++i)
    wait_map(b(), std::chrono::microseconds(900));
  double took = ms_since(start);
  if (b().features().timeout_resolution >= milliseconds(1)) {
    EXPECT_LT(took, kRounds * 0.9 / 2) << "sub-ms timeout was not truncated";
  } else {
    EXPECT_GE(took, kRounds * 0.9 * 0.95);
  }
  b().update(a.fileno(), kRead, kNone);
}

// --- EINTR (spec C17) ------------------------------------------------------

std::atomic<int> g_alarms{0};
extern "C" void count_alarm(int) { g_alarms.fetch_add(1); }

// Installs a no-op SIGALRM handler without SA_RESTART (so the wait syscall
// fails with EINTR) and pelts `target` with SIGALRM every few ms.
class AlarmStorm {
 public:
  explicit AlarmStorm(pthread_t target) {
    struct sigaction sa {};
    sa.sa_handler = count_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART
    ::sigaction(SIGALRM, &sa, &previous_);
    g_alarms = 0;
    thread_ = std::thread([this, target] {
      // Bounded: at most 2 s of signals even if stop() never came.
      for (int i = 0; i < 400 && !stop_; ++i) {
        ::pthread_kill(target, SIGALRM);
        std::this_thread::sleep_for(milliseconds(5));
      }
    });
  }
  ~AlarmStorm() {
    stop();
    ::sigaction(SIGALRM, &previous_, nullptr);
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
  struct sigaction previous_ {};
};

TEST_P(BackendTest, EintrIsRetriedWithTheRemainingTimeout) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kRead);
  std::map<int, unsigned> m;
  double took;
  {
    AlarmStorm storm(::pthread_self());
    auto start = Clock::now();
    EXPECT_NO_THROW(m = wait_map(b(), milliseconds(200)));
    took = ms_since(start);
    storm.stop();
  }
  EXPECT_TRUE(m.empty());
  EXPECT_GE(g_alarms.load(), 5) << "the wait was hardly interrupted";
  // poll-like backends may end up to 1 ms early (truncation of the rest).
  EXPECT_GE(took, 195.0);
  EXPECT_LT(took, 2000.0) << "EINTR restarted the full timeout each time?";
  b().update(a.fileno(), kRead, kNone);
}

TEST_P(BackendTest, EintrDuringForeverWaitIsNotAnEvent) {
  auto [a, peer] = Socket::pair();
  b().update(a.fileno(), kNone, kRead);
  std::map<int, unsigned> m;
  {
    AlarmStorm storm(::pthread_self());
    // The data ends the wait once the wait has been interrupted twice; an
    // early return would come with no events.
    std::thread writer([fd = peer.fileno(), waiter = ::gettid()] {
      blocked_in_syscall(waiter);
      const int seen = g_alarms.load();
      for (int i = 0; i < 2000 && g_alarms.load() < seen + 2; ++i) {
        std::this_thread::sleep_for(milliseconds(1));  // bounded: 2 s
      }
      (void)!::send(fd, "x", 1, MSG_NOSIGNAL);
    });
    EXPECT_NO_THROW(m = wait_map(b(), std::nullopt));
    writer.join();
  }
  EXPECT_GE(g_alarms.load(), 2);
  EXPECT_EQ(events_of(m, a.fileno()), ev::kIn);
  b().update(a.fileno(), kRead, kNone);
}

// --- many fds and OS limits -------------------------------------------------

TEST_P(BackendTest, ManyFdsAllReportedInOneWait) {
  constexpr int kPairs = 500;
  testing_util::FdLimitAtLeast nofile(2 * kPairs + 64);
  ASSERT_TRUE(nofile.ok()) << "RLIMIT_NOFILE too low";
  std::vector<std::pair<Socket, Socket>> pairs;
  pairs.reserve(kPairs);
  for (int i = 0; i < kPairs; ++i) pairs.push_back(Socket::pair());
  int max_fd = 0;
  for (auto& p : pairs)
    max_fd = std::max({max_fd, p.first.fileno(), p.second.fileno()});
  const int limit = b().features().fd_limit;
  if (limit > 0 && max_fd >= limit) {
    GTEST_SKIP() << "fds reach " << max_fd << ", beyond select's FD_SETSIZE";
  }
  for (auto& p : pairs) {
    b().update(p.first.fileno(), kNone, kRead);
    write_all(p.second, "x");
  }
  auto m = wait_map(b(), milliseconds(100));
  EXPECT_EQ(m.size(), static_cast<size_t>(kPairs));
  for (auto& p : pairs) {
    EXPECT_EQ(events_of(m, p.first.fileno()), ev::kIn)
        << "fd " << p.first.fileno();
  }
  for (auto& p : pairs) b().update(p.first.fileno(), kRead, kNone);
  EXPECT_TRUE(wait_map(b(), nanoseconds(0)).empty());
}

// Spec D2: select refuses fds it cannot describe, with a message pointing
// at the backends that can; the others handle them.
TEST_P(BackendTest, FdAboveFdSetsize) {
  testing_util::FdLimitAtLeast nofile(1200);
  if (!nofile.ok()) GTEST_SKIP() << "cannot raise RLIMIT_NOFILE to 1200";
  auto [a, peer] = Socket::pair();
  Socket high(::fcntl(a.fileno(), F_DUPFD_CLOEXEC, 1100));
  ASSERT_TRUE(high.is_open()) << std::strerror(errno);
  ASSERT_GE(high.fileno(), FD_SETSIZE);
  const int limit = b().features().fd_limit;
  if (limit > 0 && high.fileno() >= limit) {
    try {
      b().update(high.fileno(), kNone, kRead);
      FAIL() << "select accepted fd " << high.fileno();
    } catch (const std::system_error& e) {
      std::string what = e.what();
      EXPECT_NE(what.find("poll"), std::string::npos) << what;
      EXPECT_NE(what.find("epoll"), std::string::npos) << what;
      EXPECT_NE(what.find(std::to_string(high.fileno())), std::string::npos)
          << what;
    }
    // Unregistering what was never registered is harmless.
    EXPECT_NO_THROW(b().update(high.fileno(), kRead, kNone));
    // The refusal left the backend usable.
    b().update(a.fileno(), kNone, kRead);
    write_all(peer, "x");
    auto m = wait_map(b(), nanoseconds(0));
    EXPECT_EQ(m.size(), 1u);
    EXPECT_EQ(events_of(m, a.fileno()), ev::kIn);
    b().update(a.fileno(), kRead, kNone);
  } else {
    b().update(high.fileno(), kNone, kRead);
    write_all(peer, "x");
    EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), high.fileno()), ev::kIn);
    b().update(high.fileno(), kRead, kNone);
  }
}

// An fd closed without update() first (a caller bug, or Python code closing
// the socket directly). poll: NVAL; select: NVAL too (spec D3, where Python
// dies with EBADF); epoll: the kernel dropped the registration with the fd.
// In every case the other fds keep working once the stale one is removed.
TEST_P(BackendTest, FdClosedBehindItsBack) {
  auto [gone, gone_peer] = Socket::pair();
  auto [a, peer] = Socket::pair();
  b().update(gone.fileno(), kNone, kRead);
  b().update(a.fileno(), kNone, kRead);
  write_all(peer, "x");
  const int stale = gone.fileno();
  gone.close();
  std::map<int, unsigned> m;
  ASSERT_NO_THROW(m = wait_map(b(), nanoseconds(0)));
  if (b().features().reports_closed_fds) {
    EXPECT_EQ(events_of(m, stale), ev::kNval) << describe(events_of(m, stale));
  } else {
    EXPECT_EQ(events_of(m, stale), 0u) << describe(events_of(m, stale));
  }
  // The others are still served in the same wait.
  EXPECT_EQ(events_of(m, a.fileno()), ev::kIn);
  // What the loop does on NVAL: handle_close() -> update(fd, mask, none).
  ASSERT_NO_THROW(b().update(stale, kRead, kNone));
  m = wait_map(b(), nanoseconds(0));
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(events_of(m, a.fileno()), ev::kIn);
  b().update(a.fileno(), kRead, kNone);
}

// An fd number closed and reused without update() (the kernel forgot the
// old registration; our table did not): changing the interest of the new
// socket must still work (epoll: MOD -> ENOENT -> ADD, as libevent does).
TEST_P(BackendTest, FdNumberReusedWithoutUpdate) {
  auto [old_end, old_peer] = Socket::pair();
  const int fd = old_end.fileno();
  b().update(fd, kNone, kRead);
  old_end.close();
  old_peer.close();
  auto [x, y] = Socket::pair();  // the lowest free numbers: fd is reused
  Socket* reused = x.fileno() == fd ? &x : (y.fileno() == fd ? &y : nullptr);
  if (reused == nullptr) GTEST_SKIP() << "fd " << fd << " was not reused";
  Socket& other = reused == &x ? y : x;
  ASSERT_NO_THROW(b().update(fd, kRead, kBoth));
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), fd), ev::kOut);
  write_all(other, "x");
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), fd), ev::kIn | ev::kOut);
  b().update(fd, kBoth, kNone);
  EXPECT_TRUE(wait_map(b(), nanoseconds(0)).empty());
}

// Regular files: select and poll report them always ready; epoll_ctl
// refuses them (EPERM), so the epoll backend reports them ready for their
// interest on every wait without blocking (spec A.8.5).
TEST_P(BackendTest, RegularFileAlwaysReadyForItsInterest) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir ? dir : "/tmp") + "/backend_test_XXXXXX";
  int raw = ::mkstemp(path.data());
  ASSERT_GE(raw, 0) << std::strerror(errno);
  ::unlink(path.c_str());
  Socket file(raw);
  ASSERT_EQ(::write(raw, "data", 4), 4);

  ASSERT_NO_THROW(b().update(raw, kNone, kRead));
  for (int i = 0; i < 3; ++i) {
    auto start = Clock::now();
    std::map<int, unsigned> m;
    ASSERT_NO_THROW(m = wait_map(b(), i == 0 ? Timeout(std::nullopt)
                                             : Timeout(milliseconds(500))));
    EXPECT_LT(ms_since(start), 400.0) << "a ready file must not block";
    EXPECT_EQ(events_of(m, raw), ev::kIn) << describe(events_of(m, raw));
  }
  ASSERT_NO_THROW(b().update(raw, kRead, kWrite));
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), raw), ev::kOut);
  ASSERT_NO_THROW(b().update(raw, kWrite, kBoth));
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), raw), ev::kIn | ev::kOut);
  ASSERT_NO_THROW(b().update(raw, kBoth, kNone));
  EXPECT_TRUE(wait_map(b(), nanoseconds(0)).empty());

  // Timeouts are honoured again once the file is gone.
  auto start = Clock::now();
  EXPECT_TRUE(wait_map(b(), milliseconds(30)).empty());
  EXPECT_GE(ms_since(start), 29.0);

  // Re-registering after removal works (epoll: EPERM again, set aside again).
  ASSERT_NO_THROW(b().update(raw, kNone, kRead));
  EXPECT_EQ(events_of(wait_map(b(), nanoseconds(0)), raw), ev::kIn);
  b().update(raw, kRead, kNone);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, BackendTest,
                         ::testing::ValuesIn(testing_util::all_backends()),
                         testing_util::backend_param_name);

// --- the registry -----------------------------------------------------------

TEST(BackendRegistryTest, UnknownNameListsTheAvailableOnes) {
  try {
    asyncore::make_backend("nope");
    FAIL() << "make_backend(\"nope\") did not throw";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("nope"), std::string::npos) << what;
    for (const std::string& name : asyncore::available_backends()) {
      EXPECT_NE(what.find(name), std::string::npos) << what;
    }
  }
}

TEST(BackendRegistryTest, AutoIsTheFirstAvailable) {
  ASSERT_FALSE(asyncore::available_backends().empty());
  auto b = asyncore::make_backend("auto");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->name(), asyncore::available_backends().front());
}

TEST(BackendRegistryTest, AvailableBackendsOnThisOs) {
  const auto& names = asyncore::available_backends();
  EXPECT_NE(std::find(names.begin(), names.end(), "select"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "poll"), names.end());
#if defined(__linux__)
  EXPECT_EQ(names.front(), "epoll");
#endif
#ifdef ASYNCOREPP_HAVE_KQUEUE
  EXPECT_EQ(names.front(), "kqueue");
#endif
  EXPECT_EQ(names.back(), "select");
}

TEST(BackendRegistryTest, InterestRule) {
  using asyncore::interest_for;
  EXPECT_EQ(interest_for(false, false, false), kNone);
  EXPECT_EQ(interest_for(true, false, false),
            asyncore::kInterestRead | asyncore::kInterestExcept);
  EXPECT_EQ(interest_for(false, true, false),
            asyncore::kInterestWrite | asyncore::kInterestExcept);
  // A listener is never write-watched, but raw writable() still adds the
  // exceptional set (Python's poll()).
  EXPECT_EQ(interest_for(false, true, true), asyncore::kInterestExcept);
  EXPECT_EQ(interest_for(true, true, true),
            asyncore::kInterestRead | asyncore::kInterestExcept);
}

// --- kqueue logic -----------------------------------------------------------

namespace kq = asyncore::kq;

TEST(KqueueLogicTest, AppendChangesForEveryTransition) {
  const unsigned masks[] = {
      kNone,
      asyncore::kInterestRead,
      asyncore::kInterestWrite,
      asyncore::kInterestRead | asyncore::kInterestWrite,
      asyncore::kInterestExcept,
      kRead,
      kWrite,
      kBoth,
  };
  for (unsigned from : masks) {
    for (unsigned to : masks) {
      std::vector<kq::Change> out = {{99, kq::kFilterRead, kq::kAdd}};
      kq::append_changes(7, from, to, &out);
      std::vector<kq::Change> want = {{99, kq::kFilterRead, kq::kAdd}};
      bool r0 = from & asyncore::kInterestRead,
           r1 = to & asyncore::kInterestRead;
      bool w0 = from & asyncore::kInterestWrite,
           w1 = to & asyncore::kInterestWrite;
      if (!r0 && r1) want.push_back({7, kq::kFilterRead, kq::kAdd});
      if (r0 && !r1) want.push_back({7, kq::kFilterRead, kq::kDelete});
      if (!w0 && w1) want.push_back({7, kq::kFilterWrite, kq::kAdd});
      if (w0 && !w1) want.push_back({7, kq::kFilterWrite, kq::kDelete});
      EXPECT_EQ(out, want) << "from " << from << " to " << to;
    }
  }
}

TEST(KqueueLogicTest, AppendChangesSpelledOut) {
  std::vector<kq::Change> out;
  kq::append_changes(3, kNone, kBoth, &out);
  EXPECT_EQ(out, (std::vector<kq::Change>{{3, kq::kFilterRead, kq::kAdd},
                                          {3, kq::kFilterWrite, kq::kAdd}}));
  out.clear();
  kq::append_changes(3, kRead, kWrite, &out);
  EXPECT_EQ(out, (std::vector<kq::Change>{{3, kq::kFilterRead, kq::kDelete},
                                          {3, kq::kFilterWrite, kq::kAdd}}));
  out.clear();
  kq::append_changes(3, kBoth, kNone, &out);
  EXPECT_EQ(out, (std::vector<kq::Change>{{3, kq::kFilterRead, kq::kDelete},
                                          {3, kq::kFilterWrite, kq::kDelete}}));
  out.clear();
  kq::append_changes(3, kRead, asyncore::kInterestRead, &out);  // except only
  EXPECT_TRUE(out.empty());
}

std::vector<ReadyEvent> merge(const std::vector<kq::Result>& results,
                              std::vector<int>* index) {
  std::vector<ReadyEvent> ready;
  kq::merge_results(results.data(), static_cast<int>(results.size()), &ready,
                    index);
  return ready;
}

TEST(KqueueLogicTest, ReadAndWriteForOneFdMerge) {
  std::vector<int> index;
  auto ready =
      merge({{5, kq::kFilterRead, 0, 0, 10}, {5, kq::kFilterWrite, 0, 0, 100}},
            &index);
  EXPECT_EQ(ready, (std::vector<ReadyEvent>{{5, ev::kIn | ev::kOut}}));
}

TEST(KqueueLogicTest, FirstSeenOrderKept) {
  std::vector<int> index;
  auto ready = merge({{9, kq::kFilterWrite, 0, 0, 0},
                      {4, kq::kFilterRead, 0, 0, 0},
                      {9, kq::kFilterRead, 0, 0, 0},
                      {2, kq::kFilterWrite, 0, 0, 0},
                      {4, kq::kFilterWrite, 0, 0, 0}},
                     &index);
  EXPECT_EQ(ready, (std::vector<ReadyEvent>{{9, ev::kIn | ev::kOut},
                                            {4, ev::kIn | ev::kOut},
                                            {2, ev::kOut}}));
}

TEST(KqueueLogicTest, FlagMapping) {
  std::vector<int> index;
  EXPECT_EQ(merge({{3, kq::kFilterRead, kq::kOobData, 0, 1}}, &index),
            (std::vector<ReadyEvent>{{3, ev::kIn | ev::kPri}}));
  // Clean EOF: just readable (recv() then sees the 0).
  EXPECT_EQ(merge({{3, kq::kFilterRead, kq::kEof, 0, 0}}, &index),
            (std::vector<ReadyEvent>{{3, ev::kIn}}));
  // EOF carrying a socket error (a reset) is ERR and HUP, on either filter.
  EXPECT_EQ(merge({{3, kq::kFilterRead, kq::kEof, ECONNRESET, 0}}, &index),
            (std::vector<ReadyEvent>{{3, ev::kIn | ev::kErr | ev::kHup}}));
  EXPECT_EQ(merge({{3, kq::kFilterWrite, kq::kEof, EPIPE, 0}}, &index),
            (std::vector<ReadyEvent>{{3, ev::kOut | ev::kErr | ev::kHup}}));
  // A clean EOF on both filters (the peer's FIN after our own shutdown) is
  // HUP; on the write filter alone (our own shutdown) it is not.
  EXPECT_EQ(merge({{3, kq::kFilterRead, kq::kEof, 0, 0},
                   {3, kq::kFilterWrite, kq::kEof, 0, 0}},
                  &index),
            (std::vector<ReadyEvent>{{3, ev::kIn | ev::kOut | ev::kHup}}));
  EXPECT_EQ(merge({{3, kq::kFilterWrite, kq::kEof, 0, 0}}, &index),
            (std::vector<ReadyEvent>{{3, ev::kOut}}));
  // Failed changes.
  EXPECT_EQ(merge({{3, kq::kFilterRead, kq::kError, 0, EBADF}}, &index),
            (std::vector<ReadyEvent>{{3, ev::kNval}}));
  EXPECT_TRUE(
      merge({{3, kq::kFilterWrite, kq::kError, 0, ENOENT}}, &index).empty());
  EXPECT_EQ(merge({{3, kq::kFilterWrite, kq::kError, 0, EINVAL}}, &index),
            (std::vector<ReadyEvent>{{3, ev::kErr}}));
  // EV_ERROR's EOF-looking bits are not a socket error.
  EXPECT_EQ(
      merge({{3, kq::kFilterRead, kq::kError | kq::kEof, 5, EBADF}}, &index),
      (std::vector<ReadyEvent>{{3, ev::kNval}}));
}

TEST(KqueueLogicTest, EnoentIgnoredButOthersOfTheFdKept) {
  std::vector<int> index;
  auto ready = merge({{6, kq::kFilterWrite, kq::kError, 0, ENOENT},
                      {6, kq::kFilterRead, 0, 0, 1},
                      {8, kq::kFilterRead, kq::kError, 0, ENOENT}},
                     &index);
  EXPECT_EQ(ready, (std::vector<ReadyEvent>{{6, ev::kIn}}));
}

TEST(KqueueLogicTest, ErrorMergesWithReadiness) {
  std::vector<int> index;
  auto ready = merge({{6, kq::kFilterRead, 0, 0, 1},
                      {6, kq::kFilterWrite, kq::kError, 0, EBADF}},
                     &index);
  EXPECT_EQ(ready, (std::vector<ReadyEvent>{{6, ev::kIn | ev::kNval}}));
}

TEST(KqueueLogicTest, UnknownFilterAndNegativeFdSkipped) {
  std::vector<int> index;
  auto ready = merge({{6, -4 /* EVFILT_VNODE */, 0, 0, 0},
                      {-1, kq::kFilterRead, 0, 0, 0},
                      {6, kq::kFilterRead, 0, 0, 0}},
                     &index);
  EXPECT_EQ(ready, (std::vector<ReadyEvent>{{6, ev::kIn}}));
}

TEST(KqueueLogicTest, ScratchIndexReusedAcrossCalls) {
  std::vector<int> index;
  auto first = merge(
      {{40, kq::kFilterRead, 0, 0, 0}, {7, kq::kFilterWrite, 0, 0, 0}}, &index);
  EXPECT_EQ(first, (std::vector<ReadyEvent>{{40, ev::kIn}, {7, ev::kOut}}));
  ASSERT_GE(index.size(), 41u);
  const size_t capacity = index.size();
  const int* storage = index.data();

  // Stale slots from the previous call must not merge into the wrong entry:
  // fd 7 was at position 1 last time; now position 1 is fd 40.
  auto second = merge({{3, kq::kFilterRead, 0, 0, 0},
                       {40, kq::kFilterWrite, 0, 0, 0},
                       {7, kq::kFilterRead, 0, 0, 0},
                       {40, kq::kFilterRead, 0, 0, 0}},
                      &index);
  EXPECT_EQ(second, (std::vector<ReadyEvent>{
                        {3, ev::kIn}, {40, ev::kIn | ev::kOut}, {7, ev::kIn}}));
  EXPECT_EQ(index.size(), capacity) << "index grew for fds it already covers";
  EXPECT_EQ(index.data(), storage) << "index reallocated";
}

TEST(KqueueLogicTest, AppendsAfterExistingEventsWithoutMergingIntoThem) {
  std::vector<int> index;
  std::vector<ReadyEvent> ready = {{5, ev::kNval}};
  std::vector<kq::Result> results = {{5, kq::kFilterRead, 0, 0, 0},
                                     {5, kq::kFilterWrite, 0, 0, 0}};
  // Stale index pointing at the pre-existing entry.
  index.assign(6, -1);
  index[5] = 0;
  kq::merge_results(results.data(), 2, &ready, &index);
  EXPECT_EQ(ready,
            (std::vector<ReadyEvent>{{5, ev::kNval}, {5, ev::kIn | ev::kOut}}));
}

// --- Deadline ---------------------------------------------------------------

using asyncore::internal::Deadline;
constexpr nanoseconds kMs = milliseconds(1);

// The first wait gets the truncated timeout itself, later ones (after
// EINTR) what is left of it.
TEST(DeadlineTest, FirstWaitIsTheWholeTruncatedTimeout) {
  Deadline d(std::chrono::microseconds(5900), kMs);
  EXPECT_EQ(d.next(), Timeout(milliseconds(5)));
  const Timeout again = d.next();
  ASSERT_TRUE(again.has_value());
  EXPECT_LE(*again, milliseconds(5));
  Deadline forever(std::nullopt, kMs);
  EXPECT_FALSE(forever.next().has_value());
}

// Spec D5, for every backend in one place: the timeout is truncated to the
// backend's resolution before the wait starts.
TEST(DeadlineTest, TruncatesToTheResolution) {
  EXPECT_EQ(*Deadline(std::chrono::microseconds(900), kMs).remaining(),
            nanoseconds(0));
  const Timeout left =
      Deadline(std::chrono::microseconds(1900), kMs).remaining();
  EXPECT_LE(*left, milliseconds(1));
  EXPECT_GT(*left, std::chrono::microseconds(500));
  EXPECT_GT(
      *Deadline(std::chrono::microseconds(900), std::chrono::microseconds(1))
           .remaining(),
      std::chrono::microseconds(400));
}

TEST(DeadlineTest, ToMillisTruncates) {
  EXPECT_EQ(Deadline::to_millis(std::nullopt), -1);
  EXPECT_EQ(Deadline::to_millis(nanoseconds(0)), 0);
  EXPECT_EQ(Deadline::to_millis(std::chrono::microseconds(1)), 0);
  EXPECT_EQ(Deadline::to_millis(std::chrono::microseconds(900)), 0);
  EXPECT_EQ(Deadline::to_millis(nanoseconds(999'999)), 0);
  EXPECT_EQ(Deadline::to_millis(milliseconds(1)), 1);
  EXPECT_EQ(Deadline::to_millis(std::chrono::microseconds(1999)), 1);
  EXPECT_EQ(Deadline::to_millis(milliseconds(50)), 50);
  EXPECT_EQ(Deadline::to_millis(std::chrono::seconds(3)), 3000);
  EXPECT_EQ(Deadline::to_millis(milliseconds(-5)), 0);
  EXPECT_EQ(Deadline::to_millis(std::chrono::hours(24 * 365 * 100)), INT_MAX);
  EXPECT_EQ(Deadline::to_millis(nanoseconds::max()), INT_MAX);
}

TEST(DeadlineTest, ToTimevalAndTimespec) {
  timeval tv = Deadline::to_timeval(milliseconds(1500));
  EXPECT_EQ(tv.tv_sec, 1);
  EXPECT_EQ(tv.tv_usec, 500000);
  tv = Deadline::to_timeval(std::chrono::microseconds(900));
  EXPECT_EQ(tv.tv_sec, 0);
  EXPECT_EQ(tv.tv_usec, 900);
  tv = Deadline::to_timeval(milliseconds(-1));
  EXPECT_EQ(tv.tv_sec, 0);
  EXPECT_EQ(tv.tv_usec, 0);
  timespec ts = Deadline::to_timespec(nanoseconds(2'000'000'123));
  EXPECT_EQ(ts.tv_sec, 2);
  EXPECT_EQ(ts.tv_nsec, 123);
  ts = Deadline::to_timespec(nanoseconds(-7));
  EXPECT_EQ(ts.tv_sec, 0);
  EXPECT_EQ(ts.tv_nsec, 0);
}

TEST(DeadlineTest, ForeverHasNoRemaining) {
  Deadline d(std::nullopt, kMs);
  EXPECT_FALSE(d.remaining().has_value());
  EXPECT_EQ(Deadline::to_millis(d.remaining()), -1);
}

TEST(DeadlineTest, RemainingCountsDownAndNeverGoesNegative) {
  Deadline zero(nanoseconds(0), kMs);
  ASSERT_TRUE(zero.remaining().has_value());
  EXPECT_EQ(*zero.remaining(), nanoseconds(0));

  Deadline d(milliseconds(200), kMs);
  ASSERT_TRUE(d.remaining().has_value());
  EXPECT_LE(*d.remaining(), milliseconds(200));
  EXPECT_GT(*d.remaining(), milliseconds(100));

  Deadline past(milliseconds(1), kMs);
  std::this_thread::sleep_for(milliseconds(5));
  EXPECT_EQ(*past.remaining(), nanoseconds(0));
}

TEST(DeadlineTest, Clamps) {
  Deadline negative(milliseconds(-100), kMs);
  EXPECT_EQ(*negative.remaining(), nanoseconds(0));
  // Huge timeouts are clamped to a year instead of overflowing now() + t.
  Deadline huge(nanoseconds::max(), kMs);
  ASSERT_TRUE(huge.remaining().has_value());
  EXPECT_LE(*huge.remaining(), std::chrono::hours(24 * 365));
  EXPECT_GT(*huge.remaining(), std::chrono::hours(24 * 364));
  EXPECT_GT(Deadline::to_millis(huge.remaining()), 0);
}

}  // namespace
