#include "core/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "backends/internal/throw_errno.h"

namespace asyncore {
namespace {

#ifdef MSG_NOSIGNAL
constexpr int kNoSigPipe = MSG_NOSIGNAL;
#else
constexpr int kNoSigPipe = 0;  // SO_NOSIGPIPE is set on the socket instead
#endif

[[noreturn]] void throw_errno(const char* what) {
  internal::throw_errno(errno, what);
}

// Where MSG_NOSIGNAL does not exist (macOS), the socket itself must say so.
void suppress_sigpipe(int fd) {
#ifdef SO_NOSIGPIPE
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#else
  (void)fd;
#endif
}

Address resolve(std::string_view host, uint16_t port, int family) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string h(host);
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(h.empty() ? nullptr : h.c_str(), service.c_str(),
                         &hints, &res);
  if (rc != 0 || res == nullptr) {
    throw std::invalid_argument("cannot resolve host '" + h +
                                "': " + ::gai_strerror(rc));
  }
  Address a = Address::from_sockaddr(res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  return a;
}

}  // namespace

Address Address::inet(std::string_view host, uint16_t port) {
  return resolve(host, port, AF_UNSPEC);
}

Address Address::ipv4(std::string_view host, uint16_t port) {
  return resolve(host, port, AF_INET);
}

Address Address::ipv6(std::string_view host, uint16_t port) {
  return resolve(host, port, AF_INET6);
}

Address Address::unix_path(std::string_view path) {
  sockaddr_un un{};
  if (path.size() >= sizeof un.sun_path) {
    throw std::invalid_argument("unix socket path too long: " +
                                std::string(path));
  }
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), path.size());
  return from_sockaddr(
      reinterpret_cast<const sockaddr*>(&un),
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                             (path.empty() || path[0] != '\0' ? 1 : 0)));
}

Address Address::from_sockaddr(const sockaddr* sa, socklen_t len) {
  Address a;
  if (sa != nullptr && len != 0) a.assign(sa, len);
  return a;
}

void Address::assign(const sockaddr* sa, socklen_t len) {
  reset();
  if (sa->sa_family == AF_INET && len == sizeof v4_) {
    std::memcpy(&v4_, sa, sizeof v4_);
    return;
  }
  auto* heap = new Heap{};
  heap->len = len < sizeof heap->ss ? len : sizeof heap->ss;
  std::memcpy(&heap->ss, sa, heap->len);
  v4_ = sockaddr_in{};
  other_.family = heap->len >= sizeof(sa_family_t) ? sa->sa_family : AF_UNSPEC;
  other_.heap = heap;
}

void Address::reset() noexcept {
  delete heap();
  v4_ = sockaddr_in{};
}

Address::Address(const Address& other) : v4_{} {
  if (!other.empty()) assign(other.data(), other.size());
}

Address::Address(Address&& other) noexcept : v4_(other.v4_) {
  other.v4_ = sockaddr_in{};  // the heap block, if any, is ours now
}

Address& Address::operator=(const Address& other) {
  if (this != &other) {
    if (other.empty()) {
      reset();
    } else {
      assign(other.data(), other.size());
    }
  }
  return *this;
}

Address& Address::operator=(Address&& other) noexcept {
  if (this != &other) {
    reset();
    v4_ = other.v4_;
    other.v4_ = sockaddr_in{};
  }
  return *this;
}

uint16_t Address::port() const {
  switch (family()) {
    case AF_INET:
      return ntohs(reinterpret_cast<const sockaddr_in*>(data())->sin_port);
    case AF_INET6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(data())->sin6_port);
    default:
      return 0;
  }
}

std::string Address::host() const {
  char buf[INET6_ADDRSTRLEN] = {};
  switch (family()) {
    case AF_INET:
      ::inet_ntop(AF_INET,
                  &reinterpret_cast<const sockaddr_in*>(data())->sin_addr, buf,
                  sizeof buf);
      return buf;
    case AF_INET6:
      ::inet_ntop(AF_INET6,
                  &reinterpret_cast<const sockaddr_in6*>(data())->sin6_addr,
                  buf, sizeof buf);
      return buf;
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(data());
      const size_t len = size();
      size_t n = len > offsetof(sockaddr_un, sun_path)
                     ? len - offsetof(sockaddr_un, sun_path)
                     : 0;
      std::string path(un->sun_path, n);
      if (!path.empty() && path[0] != '\0') path = path.c_str();  // drop NULs
      return path;
    }
    default:
      return "";
  }
}

std::string Address::to_string() const {
  switch (family()) {
    case AF_INET:
      return host() + ":" + std::to_string(port());
    case AF_INET6:
      return "[" + host() + "]:" + std::to_string(port());
    default:
      return host();
  }
}

bool operator==(const Address& a, const Address& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    is_file_ = other.is_file_;
    datagram_ = other.datagram_;
  }
  return *this;
}

bool Socket::sends_messages() const {
  if (datagram_ < 0) {
    int type = SOCK_STREAM;
    socklen_t len = sizeof type;
    if (is_file_ || ::getsockopt(fd_, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
      type = SOCK_STREAM;  // a file, or not a socket: a byte stream
    }
    datagram_ = type == SOCK_DGRAM || type == SOCK_SEQPACKET;
  }
  return datagram_ == 1;
}

void Socket::reset() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

namespace {

// Non-blocking and close-on-exec from the start where the OS allows it.
#ifdef SOCK_NONBLOCK
constexpr int kNewSocketFlags = SOCK_NONBLOCK | SOCK_CLOEXEC;
#else
constexpr int kNewSocketFlags = 0;
#endif

// What every socket this library creates gets.
void prepare_new_socket(int fd) {
  if (kNewSocketFlags == 0) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  suppress_sigpipe(fd);
}

}  // namespace

Socket Socket::create(int family, int type) {
  int fd = ::socket(family, type | kNewSocketFlags, 0);
  if (fd < 0) throw_errno("socket");
  prepare_new_socket(fd);
  return Socket(fd);
}

std::pair<Socket, Socket> Socket::pair(int family, int type) {
  int fds[2];
  if (::socketpair(family, type | kNewSocketFlags, 0, fds) < 0) {
    throw_errno("socketpair");
  }
  prepare_new_socket(fds[0]);
  prepare_new_socket(fds[1]);
  return {Socket(fds[0]), Socket(fds[1])};
}

void Socket::close() {
  if (fd_ < 0) return;
  int fd = std::exchange(fd_, -1);
  if (::close(fd) < 0 && errno != EINTR) throw_errno("close");
}

ssize_t Socket::send_some(const void* data, size_t len) const {
  ssize_t n;
  do {
    n = is_file_ ? ::write(fd_, data, len) : ::send(fd_, data, len, kNoSigPipe);
  } while (n < 0 && errno == EINTR);
  return n;
}

ssize_t Socket::send_vectored(const struct iovec* iov, int count) const {
  ssize_t n;
  do {
    if (is_file_) {
      n = ::writev(fd_, iov, count);
    } else {
      msghdr msg{};
      msg.msg_iov = const_cast<struct iovec*>(iov);
      msg.msg_iovlen = static_cast<decltype(msg.msg_iovlen)>(count);
      n = ::sendmsg(fd_, &msg, kNoSigPipe);
    }
  } while (n < 0 && errno == EINTR);
  return n;
}

ssize_t Socket::sendto(std::string_view data, const Address& to) const {
  ssize_t n;
  do {
    n = ::sendto(fd_, data.data(), data.size(), kNoSigPipe, to.data(),
                 to.size());
  } while (n < 0 && errno == EINTR);
  return n;
}

ssize_t Socket::recvfrom(void* buf, size_t len, Address* from) const {
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  ssize_t n;
  do {
    n = ::recvfrom(fd_, buf, len, 0, reinterpret_cast<sockaddr*>(&ss), &sl);
  } while (n < 0 && errno == EINTR);
  if (n >= 0 && from != nullptr) {
    *from = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), sl);
  }
  return n;
}

void Socket::set_blocking(bool blocking) const {
  int on = blocking ? 0 : 1;  // FIONBIO: one syscall instead of F_GETFL+F_SETFL
  if (::ioctl(fd_, FIONBIO, &on) < 0) throw_errno("ioctl(FIONBIO)");
}

bool Socket::blocking() const {
  int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0) throw_errno("fcntl(F_GETFL)");
  return !(flags & O_NONBLOCK);
}

int Socket::getsockopt_int(int level, int option) const {
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(fd_, level, option, &value, &len) < 0)
    throw_errno("getsockopt");
  return value;
}

void Socket::setsockopt_int(int level, int option, int value) const {
  if (::setsockopt(fd_, level, option, &value, sizeof value) < 0) {
    throw_errno("setsockopt");
  }
}

int Socket::pending_error() const {
  if (is_file_) return 0;
  return getsockopt_int(SOL_SOCKET, SO_ERROR);
}

Address Socket::getsockname() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len) < 0) {
    throw_errno("getsockname");
  }
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

Address Socket::getpeername() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) < 0) {
    throw_errno("getpeername");
  }
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace asyncore
