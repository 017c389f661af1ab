#include "core/signals.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <stdexcept>
#include <system_error>

#include "core/channel_map.h"
#include "core/loop.h"

namespace asyncore {
namespace {

// The write end of the self-pipe; -1 when no SignalDispatcher exists.
std::atomic<int> g_signal_pipe{-1};

#ifdef MSG_NOSIGNAL
constexpr int kSendFlags = MSG_DONTWAIT | MSG_NOSIGNAL;
#else
constexpr int kSendFlags = MSG_DONTWAIT;  // the socket has SO_NOSIGPIPE
#endif

extern "C" void on_signal_delivered(int signo) {
  int saved = errno;  // the interrupted code may be reading errno
  int fd = g_signal_pipe.load(std::memory_order_relaxed);
  if (fd >= 0) {
    unsigned char byte = static_cast<unsigned char>(signo);
    // A full pipe already holds a wake-up; losing this byte is harmless.
    [[maybe_unused]] ssize_t n = ::send(fd, &byte, 1, kSendFlags);
  }
  errno = saved;
}

}  // namespace

SignalDispatcher::SignalDispatcher(std::vector<int> signals,
                                   std::function<void(int)> on_signal,
                                   ChannelMap* map)
    : Dispatcher(map),
      signals_(std::move(signals)),
      on_signal_(std::move(on_signal)) {
  if (g_signal_pipe.load() >= 0) {
    throw std::logic_error("only one SignalDispatcher may exist at a time");
  }
  auto [reader, writer] = Socket::pair(AF_UNIX, SOCK_STREAM);
  set_connected(true);
  set_socket(std::move(reader));
  g_signal_pipe.store(writer.release());
  for (int signo : signals_) {
    struct sigaction action {};
    action.sa_handler = on_signal_delivered;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    struct sigaction old {};
    if (::sigaction(signo, &action, &old) < 0) {
      int err = errno;
      restore();
      throw std::system_error(err, std::generic_category(), "sigaction");
    }
    previous_.emplace_back(signo, old);
  }
}

SignalDispatcher::~SignalDispatcher() { restore(); }

void SignalDispatcher::restore() {
  for (auto& [signo, old] : previous_) ::sigaction(signo, &old, nullptr);
  previous_.clear();
  int fd = g_signal_pipe.exchange(-1);
  if (fd >= 0) ::close(fd);
}

void SignalDispatcher::close() {
  restore();
  Dispatcher::close();
}

void SignalDispatcher::handle_read() {
  unsigned char buf[64];
  size_t n;
  try {
    n = recv_into(buf, sizeof buf);
  } catch (const WouldBlock&) {
    return;
  }
  ChannelMap* map = registered_map();
  for (size_t i = 0; i < n; ++i) {
    if (on_signal_) {
      on_signal_(buf[i]);
    } else if (map != nullptr) {
      map->close_all(/*ignore_all=*/true);
      return;
    }
  }
}

}  // namespace asyncore
