#include "core/internal/signal_source.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <stdexcept>
#include <string>

#include "backends/internal/throw_errno.h"

#if defined(__linux__)
#include <sys/signalfd.h>
#endif

namespace asyncore::internal {
namespace {

#ifdef NSIG
constexpr int kSignals = NSIG;
#else
constexpr int kSignals = 65;
#endif

// Which source watches each signal: one per process.
std::mutex g_owners_mutex;
std::array<const SignalSource*, kSignals> g_owners{};

std::atomic<SignalSource::Kind> g_default_kind{SignalSource::Kind::kBest};

void claim(int signo, const SignalSource* source) {
  if (signo <= 0 || signo >= kSignals) {
    throw std::invalid_argument("on_signal: bad signal number " +
                                std::to_string(signo));
  }
  std::lock_guard<std::mutex> lock(g_owners_mutex);
  if (g_owners[signo] != nullptr && g_owners[signo] != source) {
    throw std::logic_error("on_signal: signal " + std::to_string(signo) +
                           " is already watched by another loop");
  }
  g_owners[signo] = source;
}

void release(int signo, const SignalSource* source) {
  std::lock_guard<std::mutex> lock(g_owners_mutex);
  if (g_owners[signo] == source) g_owners[signo] = nullptr;
}

// --- The self-pipe
// -------------------------------------------------------------

// The write end of the pipe of the source that watches each signal, plus
// one (zero-initialised: 0 means none).
std::array<std::atomic<int>, kSignals> g_pipe_for{};

#ifdef MSG_NOSIGNAL
constexpr int kSendFlags = MSG_DONTWAIT | MSG_NOSIGNAL;
#else
constexpr int kSendFlags = MSG_DONTWAIT;  // the socket has SO_NOSIGPIPE
#endif

extern "C" void write_signal_to_pipe(int signo) {
  const int saved = errno;  // the interrupted code may be reading errno
  const int fd = g_pipe_for[signo].load(std::memory_order_relaxed) - 1;
  if (fd >= 0) {
    const auto byte = static_cast<unsigned char>(signo);
    // A full pipe already holds a wake-up; losing this byte only merges two
    // deliveries of the same kind, as the kernel does with pending signals.
    [[maybe_unused]] ssize_t n = ::send(fd, &byte, 1, kSendFlags);
  }
  errno = saved;
}

class SelfPipe final : public SignalSource {
 public:
  SelfPipe() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) {
      throw_errno(errno, "on_signal: socketpair()");
    }
    for (int fd : fds) {
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
#ifdef SO_NOSIGPIPE
      const int on = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#endif
    }
    read_fd_ = fds[0];
    write_fd_ = fds[1];
  }
  ~SelfPipe() override {
    for (int signo = 1; signo < kSignals; ++signo) remove(signo);
    ::close(read_fd_);
    ::close(write_fd_);
  }

  int fd() const override { return read_fd_; }

  void add(int signo) override {
    claim(signo, this);
    if (watched_[signo]) return;
    g_pipe_for[signo].store(write_fd_ + 1);
    struct sigaction action {};
    action.sa_handler = write_signal_to_pipe;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    if (::sigaction(signo, &action, &previous_[signo]) < 0) {
      const int err = errno;
      g_pipe_for[signo].store(0);
      release(signo, this);
      throw_errno(err, "on_signal: sigaction()");
    }
    watched_[signo] = true;
  }

  void remove(int signo) override {
    if (signo <= 0 || signo >= kSignals || !watched_[signo]) return;
    ::sigaction(signo, &previous_[signo], nullptr);
    g_pipe_for[signo].store(0);
    watched_[signo] = false;
    release(signo, this);
  }

  void drain(std::vector<int>* delivered) override {
    unsigned char buf[64];
    ssize_t n;
    while ((n = ::recv(read_fd_, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
      for (ssize_t i = 0; i < n; ++i) delivered->push_back(buf[i]);
    }
  }

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;
  std::array<bool, kSignals> watched_{};
  std::array<struct sigaction, kSignals> previous_{};
};

// --- signalfd
// ------------------------------------------------------------------

#if defined(__linux__)
class SignalFd final : public SignalSource {
 public:
  SignalFd() {
    sigemptyset(&mask_);
    fd_ = ::signalfd(-1, &mask_, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd_ < 0) throw_errno(errno, "on_signal: signalfd()");
  }
  ~SignalFd() override {
    for (int signo = 1; signo < kSignals; ++signo) remove(signo);
    ::close(fd_);
  }

  int fd() const override { return fd_; }

  void add(int signo) override {
    claim(signo, this);
    if (sigismember(&mask_, signo) == 1) return;
    sigset_t one, old;
    sigemptyset(&one);
    sigaddset(&one, signo);
    // Blocked first, so that it waits in the kernel for signalfd to read.
    ::pthread_sigmask(SIG_BLOCK, &one, &old);
    was_blocked_[signo] = sigismember(&old, signo) == 1;
    sigaddset(&mask_, signo);
    if (::signalfd(fd_, &mask_, 0) < 0) {
      const int err = errno;
      sigdelset(&mask_, signo);
      if (!was_blocked_[signo]) ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
      release(signo, this);
      throw_errno(err, "on_signal: signalfd()");
    }
  }

  void remove(int signo) override {
    if (signo <= 0 || signo >= kSignals || sigismember(&mask_, signo) != 1) {
      return;
    }
    sigdelset(&mask_, signo);
    ::signalfd(fd_, &mask_, 0);
    if (!was_blocked_[signo]) {
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, signo);
      ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
    }
    release(signo, this);
  }

  void drain(std::vector<int>* delivered) override {
    signalfd_siginfo info[16];
    ssize_t n;
    while ((n = ::read(fd_, info, sizeof info)) > 0) {
      for (size_t i = 0; i < static_cast<size_t>(n) / sizeof info[0]; ++i) {
        delivered->push_back(static_cast<int>(info[i].ssi_signo));
      }
    }
  }

 private:
  int fd_ = -1;
  sigset_t mask_;
  std::array<bool, kSignals> was_blocked_{};
};
#endif

}  // namespace

std::unique_ptr<SignalSource> SignalSource::create(Kind kind) {
  if (kind == Kind::kBest) kind = g_default_kind.load();
#if defined(__linux__)
  if (kind == Kind::kBest) return std::make_unique<SignalFd>();
#endif
  return std::make_unique<SelfPipe>();
}

void set_default_signal_source(SignalSource::Kind kind) {
  g_default_kind.store(kind);
}

}  // namespace asyncore::internal
