#include "core/dispatcher.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <typeinfo>

#include "backends/internal/throw_errno.h"
#include "core/channel_map.h"
#include "core/internal/readwrite.h"
#include "core/log.h"

namespace asyncore {
namespace {

using internal::throw_errno;

const std::vector<std::string>& default_ignore_log_types() {
  // Never destroyed: channels may log from destructors run at exit.
  static const auto& types = *new std::vector<std::string>{"warning"};
  return types;
}

std::string demangle(const char* name) {
  int status = 0;
  char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string result = status == 0 && out ? out : name;
  std::free(out);
  return result;
}

// "<type>:<what>" of the exception being handled.
std::string describe_current_exception() {
  std::exception_ptr error = std::current_exception();
  if (!error) return "unknown:no active exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return demangle(typeid(e).name()) + ":" + e.what();
  } catch (...) {
    return "unknown:non-standard exception";
  }
}

// One descriptor kept open so that, when accept() fails with EMFILE, it can
// be closed to make room for accepting (and dropping) the pending
// connections. Process-wide, as the descriptor limit is.
class ReserveFd {
 public:
  // Opens the reserve, once per process (at the first listen()).
  static ReserveFd& instance() {
    static ReserveFd reserve;
    return reserve;
  }

  void shed_pending(int listen_fd) {
    std::lock_guard<std::mutex> lock(mutex_);  // loops may run on many threads
    if (fd_ < 0) fd_ = open_reserve();  // failed earlier: maybe possible now
    if (fd_ < 0) return;
    ::close(fd_);
    // Only what is pending now: poll first, so a blocking listener (set_socket
    // does not change the mode) cannot block here.
    pollfd p{listen_fd, POLLIN, 0};
    while (::poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
      int fd = ::accept(listen_fd, nullptr, nullptr);
      if (fd < 0) break;
      ::close(fd);
    }
    fd_ = open_reserve();
  }

 private:
  ReserveFd() : fd_(open_reserve()) {}
  static int open_reserve() { return ::open("/", O_RDONLY | O_CLOEXEC); }
  std::mutex mutex_;
  int fd_;
};

}  // namespace

bool is_disconnect_error(int err) {
  switch (err) {
    case ECONNRESET:
    case ENOTCONN:
    case ESHUTDOWN:
    case ECONNABORTED:
    case EPIPE:
    case EBADF:
      return true;
    default:
      return false;
  }
}

bool is_disconnect_error(const std::error_code& ec) {
  return (ec.category() == std::generic_category() ||
          ec.category() == std::system_category()) &&
         is_disconnect_error(ec.value());
}

Dispatcher::Dispatcher(ChannelMap* map) : map_(map ? map : &socket_map()) {}

Dispatcher::Dispatcher(Socket sock, ChannelMap* map)
    : map_(map ? map : &socket_map()) {
  if (!sock) return;  // Python: a falsy socket means "no socket"
  sock.set_blocking(false);
  set_socket(std::move(sock), map);
  connected_ = true;
  try {
    addr_ = socket_.getpeername();
  } catch (const std::system_error& e) {
    if (e.code().value() == ENOTCONN || e.code().value() == EINVAL) {
      connected_ = false;  // a listening or unconnected socket
    } else {
      del_channel(map);
      throw;
    }
  }
}

Dispatcher::~Dispatcher() {
  // Only channels the map does not own can still be registered here.
  if (registered_in_ != nullptr) registered_in_->remove(fileno_, this);
}

void Dispatcher::set_accepting(bool on) {
  interest_state_ =
      on ? interest_state_ | kAcceptingBit : interest_state_ & ~kAcceptingBit;
  declared_interest_changed();
  predicates_changed();
}

void Dispatcher::set_connected(bool on) {
  connected_ = on;
  predicates_changed();
}

void Dispatcher::set_connecting(bool on) {
  connecting_ = on;
  predicates_changed();
}

void Dispatcher::add_channel(ChannelMap* map) {
  ChannelMap* target = map ? map : map_;
  if (fileno_ < 0) {
    throw std::logic_error("add_channel: the channel has no socket yet");
  }
  if (registered_in_ != nullptr) registered_in_->remove(fileno_, this);
  // During construction there is no shared_ptr yet; make<T> adopts later.
  target->add(fileno_, this, weak_from_this().lock());
  if (idle()) arm_idle_timer();  // in the map it is now registered in
}

void Dispatcher::del_channel(ChannelMap* map) {
  ChannelMap* from = registered_in_;
  if (from != nullptr && map != nullptr && map != from) {
    return;  // not registered there: keep the fd so close() can unregister
  }
  if (from != nullptr) from->remove(fileno_, this);
  fileno_ = -1;
}

void Dispatcher::adopt() {
  if (registered_in_ != nullptr) {
    registered_in_->adopt(fileno_, this, shared_from_this());
  }
}

void Dispatcher::create_socket(int family, int type) {
  set_socket(Socket::create(family, type));
}

void Dispatcher::set_socket(Socket sock, ChannelMap* map) {
  if (registered_in_ != nullptr) del_channel();
  socket_ = std::move(sock);
  fileno_ = socket_.fileno();
  add_channel(map);
}

void Dispatcher::set_reuse_addr() {
  try {
    socket_.setsockopt_int(
        SOL_SOCKET, SO_REUSEADDR,
        socket_.getsockopt_int(SOL_SOCKET, SO_REUSEADDR) | 1);
  } catch (const std::system_error&) {
    // Python swallows OSError here.
  }
}

void Dispatcher::listen(int backlog) {
  set_accepting(true);
  ReserveFd::instance();
  if (::listen(socket_.fileno(), backlog) < 0) throw_errno(errno, "listen");
}

void Dispatcher::bind(const Address& address) {
  addr_ = address;
  if (::bind(socket_.fileno(), address.data(), address.size()) < 0) {
    const int err = errno;  // before to_string() can change it
    throw_errno(err, "bind " + address.to_string());
  }
}

void Dispatcher::connect(const Address& address) {
  connected_ = false;
  connecting_ = true;
  predicates_changed();
  int err = ::connect(socket_.fileno(), address.data(), address.size()) == 0
                ? 0
                : errno;
  // EINTR: the connection still completes asynchronously (POSIX).
  if (err == EINPROGRESS || err == EALREADY || err == EWOULDBLOCK ||
      err == EINTR) {
    addr_ = address;
    return;
  }
  if (err == 0 || err == EISCONN) {
    addr_ = address;
    handle_connect_event();
    return;
  }
  throw_errno(err, "connect " + address.to_string());
}

std::optional<Accepted> Dispatcher::accept() {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int fd;
  do {
#ifdef SOCK_CLOEXEC
    fd = ::accept4(socket_.fileno(), reinterpret_cast<sockaddr*>(&ss), &len,
                   SOCK_CLOEXEC);
#else
    fd = ::accept(socket_.fileno(), reinterpret_cast<sockaddr*>(&ss), &len);
    if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    int err = errno;
    if (err == EWOULDBLOCK || err == EAGAIN || err == ECONNABORTED) {
      return std::nullopt;
    }
    if (err == EMFILE || err == ENFILE)
      ReserveFd::instance().shed_pending(socket_.fileno());
    throw_errno(err, "accept");
  }
  Socket sock(fd);
#ifdef SO_NOSIGPIPE
  sock.setsockopt_int(SOL_SOCKET, SO_NOSIGPIPE, 1);
#endif
  return Accepted{std::move(sock), Address::from_sockaddr(
                                       reinterpret_cast<sockaddr*>(&ss), len)};
}

size_t Dispatcher::send(std::string_view data) {
  return sent_or_closed(socket_.send_some(data.data(), data.size()));
}

size_t Dispatcher::send_vectored(const struct iovec* iov, int count) {
  return sent_or_closed(socket_.send_vectored(iov, count));
}

size_t Dispatcher::sent_or_closed(ssize_t n) {
  if (n >= 0) {
    if (n > 0) note_activity(/*sent=*/true);
    return static_cast<size_t>(n);
  }
  int err = errno;
  if (err == EWOULDBLOCK || err == EAGAIN) return 0;
  if (is_disconnect_error(err)) {
    handle_close();
    return 0;
  }
  throw_errno(err, "send");
}

size_t Dispatcher::recv_into(void* buf, size_t max) {
  const ssize_t n = socket_.recv_some(buf, max);
  if (n > 0) [[likely]] {
    note_activity(/*sent=*/false);
    return static_cast<size_t>(n);
  }
  return recv_ended(n);
}

// Out of line, so that the common path above needs no stack frame.
size_t Dispatcher::recv_ended(ssize_t n) {
  if (n == 0) {  // EOF: the peer closed, or shut down its sending side
    handle_eof();
    return 0;
  }
  int err = errno;
  if (err == EWOULDBLOCK || err == EAGAIN) throw WouldBlock();
  if (is_disconnect_error(err)) {
    handle_close();
    return 0;
  }
  throw_errno(err, "recv");
}

std::string Dispatcher::recv(size_t max) {
  std::string data(max, '\0');
  data.resize(recv_into(data.data(), max));
  return data;
}

void Dispatcher::close() {
  connected_ = false;
  interest_state_ &= ~kAcceptingBit;
  connecting_ = false;
  predicates_changed();
  del_channel();
  try {
    socket_.close();
  } catch (const std::system_error& e) {
    if (e.code().value() != ENOTCONN && e.code().value() != EBADF) throw;
  }
}

bool Dispatcher::readable() { return true; }
bool Dispatcher::writable() { return true; }

void Dispatcher::stop_reading() {
  if (reading_stopped()) return;
  interest_state_ |= kReadingStoppedBit;
  declared_interest_changed();
}

namespace {

std::atomic<bool>& automatic_flag() {
  static std::atomic<bool> on = [] {
    const char* env = std::getenv("ASYNCOREPP_AUTO_DECLARED");
    return env == nullptr || std::string_view(env) != "0";
  }();
  return on;
}

}  // namespace

void set_automatic_declared_interest(bool on) { automatic_flag().store(on); }

bool automatic_declared_interest() { return automatic_flag().load(); }

void Dispatcher::declare_automatically() {
  if (declared_ || !automatic_declared_interest()) return;  // a user's choice
  set_readable(readable());
  set_writable(writable());
  set_declared_interest(true);
  automatic_ = true;
}

void Dispatcher::set_declared_interest(bool on) {
  automatic_ = false;  // an explicit choice, or make<T>() setting it after
  if (declared_ == on) return;
  declared_ = on;
  if (registered_in_ != nullptr) registered_in_->set_declared(this, on);
}

void Dispatcher::set_readable(bool on) {
  if (want_read_ == on) return;
  want_read_ = on;
  declared_interest_changed();
}

void Dispatcher::set_writable(bool on) {
  if (want_write_ == on) return;
  want_write_ = on;
  declared_interest_changed();
}

void Dispatcher::declared_interest_changed() {
  if (declared_ && registered_in_ != nullptr) registered_in_->mark_dirty(this);
}

void Dispatcher::handle_read_event() {
  if (accepting()) {
    handle_accept();
  } else if (!connected_) {
    const uint64_t registration = registration_;
    if (connecting_) handle_connect_event();
    // Closed inside handle_connect: no handle_read on a closed channel (D1).
    if (registration_ != registration) return;
    handle_read();
  } else {
    handle_read();
  }
}

void Dispatcher::handle_write_event() {
  if (accepting()) return;  // listeners have nothing to write
  if (!connected_ && connecting_) {
    const uint64_t registration = registration_;
    handle_connect_event();
    // Closed inside handle_connect: no handle_write on a closed channel (D1).
    if (registration_ != registration) return;
  }
  handle_write();
}

void Dispatcher::handle_expt_event() {
  // A pending socket error means the connection is gone; otherwise this is
  // out-of-band data.
  if (socket_.pending_error() != 0) {
    handle_close();
  } else {
    handle_expt();
  }
}

void Dispatcher::handle_connect_event() {
  int err = socket_.pending_error();
  if (err != 0) throw_errno(err, "connect " + addr_.to_string());
  const uint64_t registration = registration_;
  handle_connect();  // Python runs it before the flags change
  // A registered channel closed by handle_connect must not come back as
  // "connected" (D1); an unregistered one keeps Python's behaviour.
  if (registration_ != registration) return;
  connected_ = true;
  connecting_ = false;
  predicates_changed();
}

void Dispatcher::handle_read() { log_info("unhandled read event", "warning"); }
void Dispatcher::handle_write() {
  log_info("unhandled write event", "warning");
}
void Dispatcher::handle_expt() {
  log_info("unhandled incoming priority event", "warning");
}
void Dispatcher::handle_connect() {
  log_info("unhandled connect event", "warning");
}

void Dispatcher::handle_accept() {
  if (std::optional<Accepted> pair = accept()) {
    handle_accepted(std::move(pair->sock), pair->addr);
  }
}

void Dispatcher::handle_accepted(Socket sock, const Address&) {
  sock.close();
  log_info("unhandled accepted event", "warning");
}

void Dispatcher::handle_eof() { handle_close(); }

void Dispatcher::handle_drain() { handle_close(); }

void Dispatcher::handle_idle_timeout() { handle_close(); }

void Dispatcher::set_idle_timeout(double seconds, IdleMeasure measure) {
  if (!(seconds > 0)) {
    if (Idle* idle = this->idle()) {
      idle->timer.cancel();
      extras_->idle.reset();
    }
    return;
  }
  if (!idle()) extras().idle = std::make_unique<Idle>();
  Idle* idle = this->idle();
  idle->timeout = from_seconds(seconds);
  idle->last = Clock::now();
  idle->count_sends = measure == IdleMeasure::kTraffic;
  arm_idle_timer();
}

Dispatcher::Extras& Dispatcher::extras() {
  if (!extras_) extras_ = std::make_unique<Extras>();
  return *extras_;
}

void Dispatcher::note_activity(bool sent) {
  Idle* idle = this->idle();
  if (idle && registered_in_ != nullptr && (!sent || idle->count_sends)) {
    idle->last = registered_in_->now();
  }
}

void Dispatcher::arm_idle_timer() {
  Idle* idle = this->idle();
  idle->timer.cancel();
  if (registered_in_ == nullptr) return;  // armed when registered
  idle->timer = registered_in_->schedule(
      idle->last + idle->timeout, Duration::zero(), [this] { check_idle(); },
      /*keep_alive=*/false);
}

void Dispatcher::check_idle() {
  // Reads and writes only stamped the time: re-arm for what is left.
  const Idle* idle = this->idle();
  if (Clock::now() < idle->last + idle->timeout) {
    arm_idle_timer();
    return;
  }
  try {
    handle_idle_timeout();
  } catch (const ExitNow&) {
    throw;
  } catch (...) {
    handle_error();
  }
}

void Dispatcher::handle_close() {
  log_info("unhandled close event", "warning");
  close();
}

void Dispatcher::handle_error() {
  std::string self;
  try {
    self = repr();
  } catch (...) {
    self = "<unknown channel>";
  }
  log_info("uncaptured exception, closing channel " + self + " (" +
               describe_current_exception() + ")",
           "error");
  handle_close();
}

void Dispatcher::log(std::string_view message) {
  std::string line = "log: ";
  line += message;
  line += '\n';
  write_log_line(LogStream::kStderr, line);
}

void Dispatcher::log_info(std::string_view message, std::string_view type) {
  if (is_log_type_ignored(type)) return;
  std::string line(type);
  line += ": ";
  line += message;
  line += '\n';
  write_log_line(LogStream::kStdout, line);
}

void Dispatcher::set_ignore_log_types(std::vector<std::string> types) {
  extras().ignore_log_types =
      std::make_unique<std::vector<std::string>>(std::move(types));
}

bool Dispatcher::is_log_type_ignored(std::string_view type) const {
  const auto& types = extras_ && extras_->ignore_log_types
                          ? *extras_->ignore_log_types
                          : default_ignore_log_types();
  for (const std::string& t : types) {
    if (t == type) return true;
  }
  return false;
}

std::string Dispatcher::repr() const {
  std::string out = "<" + demangle(typeid(*this).name());
  if (accepting() && !addr_.empty()) {
    out += " listening";
  } else if (connected_) {
    out += " connected";
  }
  if (!addr_.empty()) out += " " + addr_.to_string();
  char at[32];
  std::snprintf(at, sizeof at, " at %p>", static_cast<const void*>(this));
  return out + at;
}

// --- Module-level helpers ---------------------------------------------------

namespace {

template <class Step>
void guarded(Dispatcher& obj, Step step) {
  try {
    step();
  } catch (const ExitNow&) {
    throw;
  } catch (...) {
    obj.handle_error();
  }
}

}  // namespace

void read(Dispatcher& obj) {
  guarded(obj, [&] { obj.handle_read_event(); });
}

void write(Dispatcher& obj) {
  guarded(obj, [&] { obj.handle_write_event(); });
}

void exception(Dispatcher& obj) {
  guarded(obj, [&] { obj.handle_expt_event(); });
}

void readwrite(Dispatcher& obj, unsigned flags) {
  internal::readwrite_inline(obj, flags);
}

void internal::readwrite_failed(Dispatcher& obj) {
  try {
    throw;
  } catch (const ExitNow&) {
    throw;
  } catch (const std::system_error& e) {
    if (is_disconnect_error(e.code())) {
      obj.handle_close();
    } else {
      obj.handle_error();
    }
  } catch (...) {
    obj.handle_error();
  }
}

}  // namespace asyncore
