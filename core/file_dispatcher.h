// FileWrapper and FileDispatcher: asyncore over pipes, ttys and other file
// descriptors (POSIX only; spec A.4).
#ifndef ASYNCOREPP_CORE_FILE_DISPATCHER_H_
#define ASYNCOREPP_CORE_FILE_DISPATCHER_H_

#include <string>
#include <string_view>

#include "core/dispatcher.h"
#include "core/socket.h"

namespace asyncore {

// Owns a duplicate of a file descriptor (the caller may close its own) and
// gives it the socket calls a Dispatcher makes: recv/send are read/write,
// SO_ERROR is always 0. Closes the duplicate on destruction.
class FileWrapper : public Socket {
 public:
  // dup()s fd (close-on-exec). Throws std::system_error.
  explicit FileWrapper(int fd);

  std::string recv(size_t max) { return read(max); }
  std::string read(size_t max);
  size_t send(std::string_view data) { return write(data); }
  size_t write(std::string_view data);
  // Only (SOL_SOCKET, SO_ERROR) is meaningful for a file: 0. Anything else
  // throws std::logic_error, as Python raises NotImplementedError.
  int getsockopt(int level, int option) const;
  // Socket::close(): marks closed first; errors throw; a second call is a
  // no-op.
};

class FileDispatcher : public Dispatcher {
 public:
  // Wraps a dup of fd, registers it and makes the fd non-blocking (the open
  // file description is shared with the dup). connected() is true.
  explicit FileDispatcher(int fd, ChannelMap* map = nullptr);

  // Replaces the wrapped file with a dup of fd and registers it.
  void set_file(int fd);
};

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_FILE_DISPATCHER_H_
