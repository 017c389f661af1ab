// The reflector of //bench:event_chain's largest runs (see event_chain.h):
// a child process holding the far ends of the pairs, echoing every byte.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "bench/event_chain.h"

namespace event_chain {

namespace {

constexpr size_t kMostPerMessage = 253;  // SCM_MAX_FD

// Takes the fds of one control message into the epoll set; false once the
// parent closed the control socket.
bool take_fds(int control, int ep) {
  char byte;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char space[CMSG_SPACE(kMostPerMessage * sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = space;
  msg.msg_controllen = sizeof space;
  const ssize_t n = ::recvmsg(control, &msg, MSG_CMSG_CLOEXEC);
  if (n <= 0) return n < 0 && errno == EINTR;
  if (byte == 's') {  // wait_for_reflector(): everything before is taken
    return ::write(control, "k", 1) == 1;
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
  }
  return true;
}

[[noreturn]] void reflect(int control) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = control;
  if (ep < 0 || ::epoll_ctl(ep, EPOLL_CTL_ADD, control, &ev) < 0) ::_exit(1);
  std::vector<epoll_event> ready(1024);
  char buf[4096];
  for (;;) {
    const int n =
        ::epoll_wait(ep, ready.data(), static_cast<int>(ready.size()), -1);
    if (n < 0 && errno != EINTR) ::_exit(1);
    for (int i = 0; i < n; ++i) {
      const int fd = ready[i].data.fd;
      if (fd == control) {
        if (!take_fds(control, ep)) ::_exit(0);
        continue;
      }
      const ssize_t got = ::read(fd, buf, sizeof buf);
      if (got > 0) {
        (void)!::send(fd, buf, static_cast<size_t>(got), MSG_NOSIGNAL);
      } else if (got == 0) {
        ::close(fd);
      }
    }
  }
}

}  // namespace

pid_t start_reflector(int control) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork for the reflector failed");
  if (pid == 0) reflect(control);
  return pid;
}

void send_to_reflector(int control, const std::vector<int>& fds) {
  for (size_t at = 0; at < fds.size(); at += kMostPerMessage) {
    const size_t count = std::min(kMostPerMessage, fds.size() - at);
    char byte = 'f';
    iovec iov{&byte, 1};
    alignas(cmsghdr) char space[CMSG_SPACE(kMostPerMessage * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space;
    msg.msg_controllen = CMSG_SPACE(count * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(count * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data() + at, count * sizeof(int));
    if (::sendmsg(control, &msg, MSG_NOSIGNAL) != 1) {
      throw std::runtime_error(std::string("sendmsg to the reflector: ") +
                               std::strerror(errno));
    }
  }
  for (int fd : fds) ::close(fd);
}

void wait_for_reflector(int control) {
  char byte = 's';
  if (::write(control, &byte, 1) != 1 || ::read(control, &byte, 1) != 1) {
    throw std::runtime_error("the reflector is gone");
  }
}

}  // namespace event_chain
