#include "tests/test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace testing_util {
namespace {

using asyncore::Address;
using asyncore::Socket;
using Clock = std::chrono::steady_clock;

// Where AF_UNIX socket paths go: TEST_TMPDIR if its paths fit in sun_path
// (108 bytes on Linux, 104 on BSD). Bazel's sandboxed TEST_TMPDIR usually
// does not, so then a fresh mkdtemp() directory under /tmp: unique even
// across concurrent test processes, which may all see the same pid in their
// PID namespaces. Removed, with whatever is left in it, at exit.
class SocketDir {
 public:
  SocketDir() {
    const char* dir = std::getenv("TEST_TMPDIR");
    if (dir != nullptr && std::strlen(dir) < 64) {
      path_ = dir;
      return;
    }
    char tmpl[] = "/tmp/asyncore.XXXXXX";
    owned_ = ::mkdtemp(tmpl) != nullptr;
    path_ = owned_ ? tmpl : "/tmp";
  }
  ~SocketDir() {
    if (!owned_) return;
    if (DIR* d = ::opendir(path_.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") ::unlink((path_ + "/" + name).c_str());
      }
      ::closedir(d);
    }
    ::rmdir(path_.c_str());
  }
  SocketDir(const SocketDir&) = delete;
  SocketDir& operator=(const SocketDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool owned_ = false;
};

const std::string& socket_dir() {
  static SocketDir dir;
  return dir.path();
}

// The numeric entries of an fd directory, without the directory's own fd;
// nullopt when it cannot be listed.
std::optional<std::vector<int>> list_fd_dir(const char* path) {
  DIR* dir = ::opendir(path);
  if (dir == nullptr) return std::nullopt;
  const int own = ::dirfd(dir);
  std::vector<int> fds;
  while (const dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == own) continue;
    fds.push_back(static_cast<int>(fd));
  }
  ::closedir(dir);
  std::sort(fds.begin(), fds.end());
  return fds;
}

// What fd is, for messages: its /proc link ("socket:[123]") where there is
// one.
std::string describe_fd(int fd) {
  std::string text = "fd " + std::to_string(fd);
  char target[256];
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (n > 0) text += " (" + std::string(target, static_cast<size_t>(n)) + ")";
  return text;
}

// "fd 7 (socket:[123]), fd 9 (pipe:[456])"; just the numbers for fds that
// are closed (and so have no link).
std::string describe_fds(const std::vector<int>& fds, bool open) {
  std::string out;
  for (int fd : fds) {
    out += out.empty() ? "" : ", ";
    out += open ? describe_fd(fd) : "fd " + std::to_string(fd);
  }
  return out;
}

}  // namespace

// --- Addresses and sockets ---------------------------------------------------

Address any_loopback(int family) {
  switch (family) {
    case AF_INET6:
      return Address::ipv6("::1", 0);
    case AF_UNIX: {
      static std::atomic<int> counter{0};
      std::string path = socket_dir() + "/s" + std::to_string(::getpid()) +
                         "_" + std::to_string(counter++);
      ::unlink(path.c_str());
      return Address::unix_path(path);
    }
    default:
      return Address::ipv4("127.0.0.1", 0);
  }
}

bool ipv6_available() {
  try {
    Socket s = Socket::create(AF_INET6, SOCK_STREAM);
    Address a = Address::ipv6("::1", 0);
    return ::bind(s.fileno(), a.data(), a.size()) == 0;
  } catch (...) {
    return false;
  }
}

void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

Socket listening_socket(Address* bound) {
  Socket s = Socket::create(AF_INET);
  Address any = any_loopback(AF_INET);
  if (::bind(s.fileno(), any.data(), any.size()) < 0) throw_errno("bind");
  if (::listen(s.fileno(), 64) < 0) throw_errno("listen");
  *bound = s.getsockname();
  return s;
}

Socket start_connect(const Address& to) {
  Socket s = Socket::create(to.family());
  if (::connect(s.fileno(), to.data(), to.size()) < 0 && errno != EINPROGRESS) {
    throw_errno("connect");
  }
  return s;
}

Socket accept_within(const Socket& listener, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  for (;;) {
    int fd = ::accept4(listener.fileno(), nullptr, nullptr,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return Socket(fd);
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
        errno != ECONNABORTED) {
      throw_errno("accept4");
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now());
    if (left <= std::chrono::milliseconds(0) ||
        !wait_fd(listener.fileno(), POLLIN, left)) {
      return Socket();
    }
  }
}

std::pair<Socket, Socket> tcp_pair() {
  Address addr;
  Socket listener = listening_socket(&addr);
  Socket client = start_connect(addr);
  Socket server = accept_within(listener);
  if (!server) throw std::runtime_error("tcp_pair: no connection to accept");
  if (!wait_fd(client.fileno(), POLLOUT)) {
    throw std::runtime_error("tcp_pair: the connect did not complete");
  }
  if (int err = client.pending_error(); err != 0) {
    throw std::system_error(err, std::generic_category(), "tcp_pair: connect");
  }
  return {std::move(client), std::move(server)};
}

void reset_on_close(int fd) {
  const linger abortive{1, 0};
  if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive) < 0) {
    throw_errno("setsockopt(SO_LINGER)");
  }
}

// --- I/O
// -----------------------------------------------------------------------

bool wait_fd(int fd, short events, std::chrono::milliseconds limit) {
  pollfd p{fd, events, 0};
  const int ms = static_cast<int>(
      std::min<std::chrono::milliseconds::rep>(limit.count(), INT_MAX));
  int n;
  do {
    n = ::poll(&p, 1, ms);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

void write_all(const Socket& s, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = s.send_some(data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n == 0) throw std::runtime_error("write_all: send returned 0");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) throw_errno("write_all: send");
    if (!wait_fd(s.fileno(), POLLOUT)) {
      throw std::runtime_error("write_all: no room to send within 5 s");
    }
  }
}

std::string read_available(const Socket& s, bool* eof) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = s.recv_some(buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      if (eof) *eof = true;
      return out;
    } else if (errno != EINTR) {
      return out;
    }
  }
}

std::string read_exactly(int fd, size_t n, std::chrono::milliseconds limit) {
  std::string out;
  const auto deadline = Clock::now() + limit;
  char buf[4096];
  while (out.size() < n && Clock::now() < deadline) {
    if (!wait_fd(fd, POLLIN, std::chrono::milliseconds(100))) continue;
    ssize_t got = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

int pending_input(int fd) {
  int n = 0;
  if (fd < 0 || ::ioctl(fd, FIONREAD, &n) < 0) return 0;
  return n;
}

// --- Descriptors -------------------------------------------------------------

std::vector<int> open_fds() {
  for (const char* dir : {"/proc/self/fd", "/dev/fd"}) {
    if (auto fds = list_fd_dir(dir)) return *fds;
  }
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t top = rl.rlim_cur == RLIM_INFINITY
                         ? 65536
                         : std::min<rlim_t>(rl.rlim_cur, 65536);
  std::vector<int> fds;
  for (rlim_t fd = 0; fd < top; ++fd) {
    if (::fcntl(static_cast<int>(fd), F_GETFD) != -1) {
      fds.push_back(static_cast<int>(fd));
    }
  }
  return fds;
}

FdLimitAtLeast::FdLimitAtLeast(rlim_t n) {
  ::getrlimit(RLIMIT_NOFILE, &saved_);
  ok_ = saved_.rlim_cur == RLIM_INFINITY || saved_.rlim_cur >= n;
  if (!ok_ && (saved_.rlim_max == RLIM_INFINITY || saved_.rlim_max >= n)) {
    rlimit raised = saved_;
    raised.rlim_cur = n;
    ok_ = changed_ = ::setrlimit(RLIMIT_NOFILE, &raised) == 0;
  }
}

FdLimitAtLeast::~FdLimitAtLeast() {
  if (changed_) ::setrlimit(RLIMIT_NOFILE, &saved_);
}

// --- Logs --------------------------------------------------------------------

CapturedLog::CapturedLog() {
  previous_ = asyncore::set_log_sink(
      [this](asyncore::LogStream stream, std::string_view line) {
        std::string text(line);
        if (!text.empty() && text.back() == '\n') text.pop_back();
        (stream == asyncore::LogStream::kStdout ? out_ : err_).push_back(text);
      });
}

CapturedLog::~CapturedLog() { asyncore::set_log_sink(std::move(previous_)); }

// --- Leak checks -------------------------------------------------------------

void expect_no_channels(asyncore::ChannelMap& map, std::string_view which) {
  if (map.empty()) return;
  std::string names;
  for (const asyncore::Dispatcher* ch : map.channels()) {
    names += "\n  fd " + std::to_string(ch->fileno()) + ": " + ch->repr();
  }
  ADD_FAILURE() << which << " still holds " << map.size()
                << " channel(s) at the end of the test:" << names;
  try {
    map.close_all(/*ignore_all=*/true);
  } catch (...) {  // ExitNow from a close(): still empty the map
  }
  map.clear();
}

namespace {

// Opens the descriptors the library opens once, when first needed, and keeps
// for the life of the process, so they are not taken for a test's leaks:
// socket_map()'s backend, and the reserve fd the first listen() opens (for
// shedding connections on EMFILE, core/dispatcher.cc).
void open_process_wide_fds() {
  asyncore::socket_map().set_backend("auto");
  static const bool listened = [] {
    asyncore::ChannelMap scratch("poll");  // a backend without an fd
    asyncore::Dispatcher listener(&scratch);
    listener.create_socket(AF_INET);
    listener.bind(any_loopback(AF_INET));
    listener.listen(1);
    listener.close();
    return true;
  }();
  (void)listened;
}

}  // namespace

void LeakCheck::start() {
  open_process_wide_fds();
  fds_ = open_fds();
  started_ = true;
}

void LeakCheck::finish() {
  if (!started_) return;
  started_ = false;
  asyncore::ChannelMap& global = asyncore::socket_map();
  expect_no_channels(global, "socket_map()");
  // A test may have switched the default map's backend (and so closed or
  // opened its fd): back to the one start() counted.
  open_process_wide_fds();
  std::vector<int> now = open_fds();
#ifdef ASYNCOREPP_LIBKQUEUE
  // libkqueue closes a kqueue's internal fds (about 9) from a thread of its
  // own about 200 ms after close(), with nothing to wait on: look again for
  // up to 2 s before calling anything a leak.
  for (int i = 0; i < 200 && now != fds_; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    now = open_fds();
  }
#endif
  std::vector<int> leaked, gone;
  std::set_difference(now.begin(), now.end(), fds_.begin(), fds_.end(),
                      std::back_inserter(leaked));
  std::set_difference(fds_.begin(), fds_.end(), now.begin(), now.end(),
                      std::back_inserter(gone));
  EXPECT_TRUE(leaked.empty() && gone.empty())
      << "open fds: " << fds_.size() << " at the start of the test, "
      << now.size() << " at the end"
      << (leaked.empty() ? "" : "; still open: " + describe_fds(leaked, true))
      << (gone.empty()
              ? ""
              : "; closed though open before: " + describe_fds(gone, false));
}

}  // namespace testing_util
