// Addresses and an owning socket handle: the small layer between the
// dispatchers and the BSD socket calls.
#ifndef ASYNCOREPP_CORE_SOCKET_H_
#define ASYNCOREPP_CORE_SOCKET_H_

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace asyncore {

// A socket address: IPv4, IPv6 or Unix-domain; empty plays Python's None.
// 16 bytes: an IPv4 address (the common case, and every channel holds one)
// is kept inline; other families on the heap.
class Address {
 public:
  Address() noexcept : v4_{} {}
  Address(const Address& other);
  Address(Address&& other) noexcept;
  Address& operator=(const Address& other);
  Address& operator=(Address&& other) noexcept;
  ~Address() { reset(); }

  // Numeric or resolvable host ("127.0.0.1", "::1", "localhost"); picks the
  // first result of getaddrinfo (which may block on DNS, as Python's does).
  // Throws std::invalid_argument when the host cannot be resolved.
  static Address inet(std::string_view host, uint16_t port);
  static Address ipv4(std::string_view host, uint16_t port);
  static Address ipv6(std::string_view host, uint16_t port);
  // A filesystem path; a leading '\0' makes a Linux abstract-namespace name.
  static Address unix_path(std::string_view path);
  static Address from_sockaddr(const sockaddr* sa, socklen_t len);

  bool empty() const { return v4_.sin_family == AF_UNSPEC && !heap(); }
  int family() const { return v4_.sin_family; }
  // Port for IPv4/IPv6, 0 otherwise.
  uint16_t port() const;
  // The numeric host for IPv4/IPv6, the path for Unix-domain addresses.
  std::string host() const;
  // "127.0.0.1:80", "[::1]:80", "/path/to/socket", "" when empty.
  std::string to_string() const;

  const sockaddr* data() const {
    return heap() ? reinterpret_cast<const sockaddr*>(&heap()->ss)
                  : reinterpret_cast<const sockaddr*>(&v4_);
  }
  socklen_t size() const {
    if (heap()) return heap()->len;
    return empty() ? 0 : static_cast<socklen_t>(sizeof v4_);
  }

  friend bool operator==(const Address& a, const Address& b);

 private:
  struct Heap {
    socklen_t len;
    sockaddr_storage ss;
  };
  void reset() noexcept;
  void assign(const sockaddr* sa, socklen_t len);
  // The heap block: meaningful only when the family is not AF_INET (whose
  // sin_zero bytes the pointer would overlap).
  const Heap* heap() const {
    return v4_.sin_family == AF_INET ? nullptr : other_.heap;
  }

  // Both members begin with the family (a common initial sequence). heap is
  // null for an empty or IPv4 address.
  union {
    sockaddr_in v4_;
    struct {
      sa_family_t family;
      Heap* heap;
    } other_;
  };
};
static_assert(sizeof(sockaddr_in) == 16);

// Owns one file descriptor (a socket, or for FileWrapper a pipe or file) and
// closes it on destruction. Move-only. I/O helpers return -1 with errno set,
// like the syscalls they wrap; Dispatcher turns that into asyncore's rules.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) noexcept : fd_(fd) {}
  ~Socket() { reset(); }
  Socket(Socket&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)),
        is_file_(other.is_file_),
        datagram_(other.datagram_) {}
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // A new non-blocking, close-on-exec socket. Throws std::system_error.
  static Socket create(int family = AF_INET, int type = SOCK_STREAM);
  // A connected pair (non-blocking, close-on-exec). Throws std::system_error.
  static std::pair<Socket, Socket> pair(int family = AF_UNIX,
                                        int type = SOCK_STREAM);

  int fileno() const { return fd_; }
  bool is_open() const { return fd_ >= 0; }
  bool is_file() const { return is_file_; }
  explicit operator bool() const { return is_open(); }

  // Gives up ownership and returns the fd.
  int release() { return std::exchange(fd_, -1); }
  // Marks the handle closed *before* closing, so a failing close can never
  // be retried on a reused fd number (bpo-30980). Throws std::system_error
  // if close(2) fails; a closed handle is a no-op.
  void close();

  // send(2) with MSG_NOSIGNAL (no SIGPIPE, spec D4), or write(2) for files.
  ssize_t send_some(const void* data, size_t len) const;
  // sendmsg(2) with MSG_NOSIGNAL, or writev(2) for files.
  ssize_t send_vectored(const struct iovec* iov, int count) const;
  // recv(2), or read(2) for files.
  ssize_t recv_some(void* buf, size_t len) const;
  ssize_t sendto(std::string_view data, const Address& to) const;
  ssize_t recvfrom(void* buf, size_t len, Address* from) const;

  void set_blocking(bool blocking) const;
  bool blocking() const;
  int getsockopt_int(int level, int option) const;
  void setsockopt_int(int level, int option, int value) const;
  // SO_ERROR, read and cleared; 0 for files (Python's file_wrapper).
  int pending_error() const;
  // SOCK_DGRAM (or SOCK_SEQPACKET): each send is one message. Asked of the
  // kernel once, then remembered.
  bool sends_messages() const;
  Address getsockname() const;
  Address getpeername() const;

 protected:
  void reset() noexcept;

  int fd_ = -1;
  bool is_file_ = false;
  mutable int8_t datagram_ = -1;  // sends_messages(): -1 until asked
};

// Here, not in socket.cc: it is on every read event's path.
inline ssize_t Socket::recv_some(void* buf, size_t len) const {
  ssize_t n;
  do {
    n = is_file_ ? ::read(fd_, buf, len) : ::recv(fd_, buf, len, 0);
  } while (n < 0 && errno == EINTR);
  return n;
}

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_SOCKET_H_
