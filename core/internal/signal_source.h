// Where a loop's signals come from: one descriptor that becomes readable
// when a watched signal arrives, so that handlers run on the loop's thread as
// ordinary events and nothing unsafe happens inside a signal handler.
//  - signalfd (Linux): the watched signals are blocked in the loop's thread
//    and read from the descriptor. Threads started later inherit the block;
//    a thread that existed before and does not block them may still take
//    the signal in its own way (start threads after on_signal(), or block
//    the signals before starting them).
//  - the self-pipe (elsewhere, or when forced): a sigaction handler writes
//    the signal number to a pipe.
// A signal is watched by at most one source in the process at a time.
#ifndef ASYNCOREPP_CORE_INTERNAL_SIGNAL_SOURCE_H_
#define ASYNCOREPP_CORE_INTERNAL_SIGNAL_SOURCE_H_

#include <memory>
#include <vector>

namespace asyncore::internal {

class SignalSource {
 public:
  enum class Kind { kBest, kSelfPipe };
  // Throws std::system_error.
  static std::unique_ptr<SignalSource> create(Kind kind = Kind::kBest);
  virtual ~SignalSource() = default;  // stops watching every signal

  virtual int fd() const = 0;
  // Starts watching signo. Throws std::logic_error if another source of the
  // process watches it, std::system_error if the OS refuses.
  virtual void add(int signo) = 0;
  // Stops watching signo and restores what was there before. Idempotent.
  virtual void remove(int signo) = 0;
  // The descriptor was readable: appends the signals that arrived.
  virtual void drain(std::vector<int>* delivered) = 0;
};

// The kind every new source uses (tests force the self-pipe on Linux).
void set_default_signal_source(SignalSource::Kind kind);

}  // namespace asyncore::internal

#endif  // ASYNCOREPP_CORE_INTERNAL_SIGNAL_SOURCE_H_
