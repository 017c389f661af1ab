// asyncore::Dispatcher: one channel, a non-blocking socket plus the
// asyncore event handlers (Python's asyncore.dispatcher, spec A.2).
//
// Ownership. Create channels with asyncore::make<T>(args...), which returns a
// std::shared_ptr<T>. While a channel is registered (after create_socket,
// set_socket or construction from a socket) its map holds a reference, so a
// server may drop its own pointers to per-connection handlers, as in Python.
// close() unregisters the channel; the map's reference is released after the
// current loop iteration, so closing itself or any other channel from any
// handler is safe. A channel built without make<T> (on the stack, say) is
// registered without an owning reference and unregisters in its destructor.
//
// Threads: a channel and its map belong to the thread that runs their loop.
#ifndef ASYNCOREPP_CORE_DISPATCHER_H_
#define ASYNCOREPP_CORE_DISPATCHER_H_

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/socket.h"
#include "core/timer_queue.h"

namespace asyncore {

class ChannelMap;

// Thrown by a handler to leave loop() at once; the map is left as it is.
class ExitNow : public std::runtime_error {
 public:
  ExitNow() : std::runtime_error("asyncore::ExitNow") {}
  using std::runtime_error::runtime_error;
};

// Dispatcher::recv() found no data (EAGAIN): distinct from EOF (spec D6).
class WouldBlock : public std::system_error {
 public:
  WouldBlock()
      : std::system_error(EWOULDBLOCK, std::generic_category(), "recv") {}
};

// Python's _DISCONNECTED: errnos meaning "the peer went away", which close
// the channel instead of reaching handle_error().
bool is_disconnect_error(int err);
bool is_disconnect_error(const std::error_code& ec);

// What accept() returns: the new connection (blocking, close-on-exec; the
// Dispatcher(Socket) constructor makes it non-blocking) and the peer address.
struct Accepted {
  Socket sock;
  Address addr;
};

class Dispatcher : public std::enable_shared_from_this<Dispatcher> {
 public:
  // A channel with no socket yet (call create_socket or set_socket); `map`
  // defaults to the process-wide socket_map().
  explicit Dispatcher(ChannelMap* map = nullptr);
  // Wraps an existing socket (typically from accept()), makes it
  // non-blocking and registers it. connected() is true unless the socket has
  // no peer (ENOTCONN/EINVAL: listening or unconnected sockets are fine).
  explicit Dispatcher(Socket sock, ChannelMap* map = nullptr);
  virtual ~Dispatcher();

  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // --- State (Python's attributes) ----------------------------------------
  bool connected() const { return connected_; }
  bool accepting() const { return interest_state_ & kAcceptingBit; }
  bool connecting() const { return connecting_; }
  const Address& addr() const { return addr_; }
  void set_connected(bool on);
  void set_accepting(bool on);
  void set_connecting(bool on);
  void set_addr(Address a) { addr_ = std::move(a); }
  // (debug, Python's attribute, is declared at the end: the layout packs it
  // with the flags.)

  Socket& socket() { return socket_; }
  const Socket& socket() const { return socket_; }
  // The fd this channel is registered under, -1 when not registered.
  int fileno() const { return fileno_; }
  // The map given at construction (or socket_map()).
  ChannelMap* map() const { return map_; }
  // The map this channel is registered in now, or nullptr.
  ChannelMap* registered_map() const { return registered_in_; }
  // Changes every time the channel is registered or unregistered (0 before
  // the first time); the loop uses it to skip events a channel registered
  // after the wait must not see, and to stop delivering events to a channel
  // closed mid-dispatch (spec D1).
  uint64_t registration() const { return registration_; }

  // --- Map membership ------------------------------------------------------
  // Registers under fileno() in `map` (default: map()). A second channel with
  // the same fd replaces the first, which is then unregistered.
  void add_channel(ChannelMap* map = nullptr);
  // Unregisters (from `map`, default: wherever it is registered). Idempotent.
  void del_channel(ChannelMap* map = nullptr);

  // --- Socket operations ---------------------------------------------------
  // New non-blocking, close-on-exec socket, registered. Throws system_error.
  void create_socket(int family = AF_INET, int type = SOCK_STREAM);
  // Adopts `sock` and registers it (unregistering any previous socket first:
  // Python would leave a stale map entry behind).
  void set_socket(Socket sock, ChannelMap* map = nullptr);
  // SO_REUSEADDR on; errors are ignored, as in Python.
  void set_reuse_addr();
  // Marks the channel accepting (first, as Python does) and listens.
  void listen(int backlog);
  // Records addr (first, as Python does) and binds; throws system_error.
  void bind(const Address& address);
  // Starts connecting. In progress: returns, handle_connect() comes later.
  // Completed at once (typical for AF_UNIX): handle_connect() runs before
  // this returns. Refused at once: throws system_error, connecting() stays
  // true (spec A.2).
  void connect(const Address& address);
  // One pending connection, or nullopt when there is none (EAGAIN) or the
  // client already left (ECONNABORTED). Other errors (EMFILE, ENFILE, ...)
  // throw; before throwing for EMFILE/ENFILE the pending connections are
  // accepted and closed with a reserve descriptor, so a level-triggered
  // listener does not spin while the process is out of descriptors
  // (libuv's trick; spec C8/D8).
  std::optional<Accepted> accept();
  // Bytes sent; 0 when the socket would block, or when the peer is gone (then
  // handle_close() has been called). Other errors throw system_error.
  size_t send(std::string_view data);
  // send() of several buffers in one syscall (sendmsg/writev), same rules.
  size_t send_vectored(const struct iovec* iov, int count);
  // Up to `max` bytes. EOF: calls handle_eof() and returns empty; a
  // disconnect: calls handle_close() and returns empty. No data: throws
  // WouldBlock. Other errors throw system_error.
  std::string recv(size_t max);
  // recv() into a caller's buffer: returns the count, 0 meaning EOF or a
  // disconnect (handle_eof() or handle_close() has been called).
  size_t recv_into(void* buf, size_t max);
  // Clears the state flags, unregisters, then closes the socket (ENOTCONN and
  // EBADF are ignored). Idempotent.
  virtual void close();

  // --- Interest ------------------------------------------------------------
  // Asked once per loop iteration each, unless interest is declared (below).
  virtual bool readable();
  virtual bool writable();

  // --- Idle timeout --------------------------------------------------------
  // Once `seconds` pass with no activity through this channel's
  // recv()/send() calls (and their variants), handle_idle_timeout() runs; 0
  // turns it off. Activity is bytes received (kInput: a chat member who only
  // listens is idle) or bytes either way (kTraffic: a long download is not).
  // A read or write costs no system call and no timer operation (it stamps
  // the loop's clock, read once per iteration); the timer checks the stamp
  // when it fires and re-arms for the rest. The timer lives in the map the
  // channel is registered in and does not keep loop() running.
  enum class IdleMeasure { kInput, kTraffic };
  void set_idle_timeout(double seconds,
                        IdleMeasure measure = IdleMeasure::kInput);
  // Default: handle_close().
  virtual void handle_idle_timeout();

  // --- Graceful shutdown ---------------------------------------------------
  // ChannelMap::drain() asks every channel to finish. Default:
  // handle_close() at once (a listener then refuses new connections).
  // DispatcherWithSend and AsyncChat call it once their queued output has
  // been sent.
  virtual void handle_drain();

  // The peer will send nothing more: from now on the loop does not watch
  // this channel for input, whatever readable() answers (an EOF already
  // seen would otherwise be reported again at every iteration). The
  // buffered channels call it when they drain after EOF. Not undone.
  void stop_reading();
  bool reading_stopped() const { return interest_state_ & kReadingStoppedBit; }

  // Declared interest: the loop stops calling readable()/writable() for this
  // channel and uses the values last given to set_readable()/set_writable()
  // (both start true), so an iteration costs work only for channels that
  // changed or became ready.
  //
  // Automatic for the library's own predicates: a channel made by make<T>()
  // whose class overrides neither readable() nor writable() below a library
  // class (Dispatcher, DispatcherWithSend, asynchat::AsyncChat,
  // SignalDispatcher, ...) gets declared interest that the library keeps
  // equal to those predicates, so the loop never asks them. A class that
  // overrides either is asked every iteration, as in Python. The test is at
  // compile time: the type of &T::readable names the class that last
  // declared it. set_declared_interest() stays an explicit choice either
  // way; ASYNCOREPP_AUTO_DECLARED=0 in the environment (or
  // set_automatic_declared_interest(false)) asks every channel, as Python.
  void set_declared_interest(bool on);
  bool declared_interest() const { return declared_; }
  // Declared by make<T>() because the predicates are the library's.
  bool automatic_interest() const { return automatic_; }
  void set_readable(bool on);
  void set_writable(bool on);
  bool declared_readable() const { return want_read_; }
  bool declared_writable() const { return want_write_; }

  // --- Events (the loop calls these; override the handle_* ones) ----------
  virtual void handle_read_event();
  virtual void handle_write_event();
  virtual void handle_expt_event();
  virtual void handle_connect_event();

  virtual void handle_read();
  virtual void handle_write();
  virtual void handle_expt();
  virtual void handle_connect();
  virtual void handle_accept();
  virtual void handle_accepted(Socket sock, const Address& addr);
  // The peer finished sending: recv() saw end of file. Default: Python's,
  // handle_close(). DispatcherWithSend and AsyncChat first send what they
  // still have queued (their drain_on_eof).
  virtual void handle_eof();
  virtual void handle_close();
  // Called from inside the catch block of the failing handler, so
  // std::current_exception() (or `throw;`) gives the error. Default: logs one
  // line ("uncaptured exception, closing channel ...") and calls
  // handle_close().
  virtual void handle_error();

  // --- Logging -------------------------------------------------------------
  // "log: <message>" to stderr.
  virtual void log(std::string_view message);
  // "<type>: <message>" to stdout unless `type` is ignored (see below).
  virtual void log_info(std::string_view message,
                        std::string_view type = "info");
  // Python's ignore_log_types; {"warning"} by default.
  void set_ignore_log_types(std::vector<std::string> types);
  bool is_log_type_ignored(std::string_view type) const;

  // "<asyncore::Dispatcher listening 127.0.0.1:80 at 0x...>", with the
  // dynamic type's name (Python's repr()).
  std::string repr() const;

 protected:
  // Re-evaluates declared interest after accepting() changed (listen/close).
  void declared_interest_changed();
  // connected(), connecting() or accepting() changed: a class whose
  // predicates read them brings its declared interest up to date.
  virtual void predicates_changed() {}

 private:
  friend class ChannelMap;
  template <class T, class... Args>
  friend std::shared_ptr<T> make(Args&&... args);
  // make<T>()'s half of automatic declared interest.
  void declare_automatically();

  // Gives the map its owning reference once make<T>() has one to give.
  void adopt();
  // Called by the map when it (un)registers the channel.
  void registered(ChannelMap* map, uint64_t registration) {
    registered_in_ = map;
    registration_ = registration;
  }
  void unregistered(uint64_t registration) {
    registered_in_ = nullptr;
    registration_ = registration;
    if (Idle* idle = this->idle()) idle->timer.cancel();
  }
  // Bytes moved: what set_idle_timeout() measures.
  void note_activity(bool sent);
  void arm_idle_timer();
  void check_idle();

  struct Idle {
    Duration timeout;
    TimePoint last;  // the last byte that counts
    TimerHandle timer;
    bool count_sends;
  };
  // asyncore's send() result rules applied to a send syscall's return value.
  size_t sent_or_closed(ssize_t n);
  // recv() returned 0 (EOF) or failed (errno): Python's rules.
  [[gnu::noinline, gnu::cold]] size_t recv_ended(ssize_t n);

  // What few channels use, allocated on first use.
  struct Extras {
    std::unique_ptr<std::vector<std::string>>
        ignore_log_types;        // null: default
    std::unique_ptr<Idle> idle;  // only while an idle timeout is set
  };
  Extras& extras();
  Idle* idle() const { return extras_ ? extras_->idle.get() : nullptr; }

  // Laid out for size (an idle connection costs what is here, see
  // tests/footprint_test.cc): pointers, then the 16-byte Address, then the
  // small fields and the flags.
  ChannelMap* map_;
  ChannelMap* registered_in_ = nullptr;
  uint64_t registration_ = 0;
  std::unique_ptr<Extras> extras_;
  Address addr_;
  Socket socket_;
  int fileno_ = -1;
  // The map's bookkeeping, here because the loop touches the channel anyway:
  // the position in the map's list of asked channels (-1: declared), the
  // interest phase that last asked it, the interest registered with the
  // backend, and whether declared interest changed since that phase.
  int asked_index_ = -1;
  uint32_t asked_pass_ = 0;
  uint8_t interest_ = 0;
  // The states beside the predicates' answers that decide the interest, as
  // bits of the interest phase's lookup index (r | w << 1 | these).
  static constexpr uint8_t kAcceptingBit = 1u << 2;
  static constexpr uint8_t kReadingStoppedBit = 1u << 3;
  uint8_t interest_state_ = 0;
  bool connected_ : 1 = false;
  bool connecting_ : 1 = false;
  bool declared_ : 1 = false;
  bool automatic_ : 1 = false;
  bool dirty_ : 1 = false;
  bool want_read_ : 1 = true;
  bool want_write_ : 1 = true;

 public:
  // When on, DispatcherWithSend and AsyncChat log what they send.
  bool debug = false;
};

namespace internal {

// Specialised true for each library class whose readable()/writable() the
// library keeps declared (see Dispatcher::set_declared_interest).
template <class C>
struct LibraryPredicates : std::false_type {};

// The class a pointer to member function belongs to (void for anything but
// a plain `bool (C::*)()`, which then counts as a user's).
template <class M>
struct MemberOf {
  using type = void;
};
template <class C>
struct MemberOf<bool (C::*)()> {
  using type = C;
};

template <class T>
constexpr bool has_library_predicates() {
  return LibraryPredicates<
             typename MemberOf<decltype(&T::readable)>::type>::value &&
         LibraryPredicates<
             typename MemberOf<decltype(&T::writable)>::type>::value;
}

}  // namespace internal

template <>
struct internal::LibraryPredicates<Dispatcher> : std::true_type {};

// Process-wide (default: on unless ASYNCOREPP_AUTO_DECLARED=0 is set).
void set_automatic_declared_interest(bool on);
bool automatic_declared_interest();

// Creates a channel and hands its registration to the map (see the class
// comment). Use this instead of std::make_shared for every Dispatcher.
template <class T, class... Args>
std::shared_ptr<T> make(Args&&... args) {
  auto channel = std::make_shared<T>(std::forward<Args>(args)...);
  channel->adopt();
  if constexpr (internal::has_library_predicates<T>()) {
    channel->declare_automatically();
  }
  return channel;
}

// Python's module-level helpers: run one event through `obj`, sending any
// exception but ExitNow to obj.handle_error() (spec A.1).
void read(Dispatcher& obj);
void write(Dispatcher& obj);
void exception(Dispatcher& obj);
// Turns poll(2)-style readiness into events, in asyncore's order: IN ->
// handle_read_event, OUT -> handle_write_event, PRI -> handle_expt_event,
// HUP/ERR/NVAL -> handle_close. A disconnect errno thrown by any step closes
// the channel; other exceptions go to handle_error(); ExitNow escapes. Once a
// step closes a registered channel the remaining steps are skipped (spec D1).
void readwrite(Dispatcher& obj, unsigned flags);

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_DISPATCHER_H_
