#include "core/file_dispatcher.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace asyncore {

FileWrapper::FileWrapper(int fd) : Socket(::fcntl(fd, F_DUPFD_CLOEXEC, 0)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "dup");
  is_file_ = true;
}

std::string FileWrapper::read(size_t max) {
  std::string data(max, '\0');
  ssize_t n = recv_some(data.data(), max);
  if (n < 0) throw std::system_error(errno, std::generic_category(), "read");
  data.resize(static_cast<size_t>(n));
  return data;
}

size_t FileWrapper::write(std::string_view data) {
  ssize_t n = send_some(data.data(), data.size());
  if (n < 0) throw std::system_error(errno, std::generic_category(), "write");
  return static_cast<size_t>(n);
}

int FileWrapper::getsockopt(int level, int option) const {
  if (level == SOL_SOCKET && option == SO_ERROR) return 0;
  throw std::logic_error("FileWrapper::getsockopt: only SO_ERROR is supported");
}

FileDispatcher::FileDispatcher(int fd, ChannelMap* map) : Dispatcher(map) {
  set_connected(true);
  set_file(fd);
  int on = 1;
  ::ioctl(fd, FIONBIO, &on);
}

void FileDispatcher::set_file(int fd) { set_socket(FileWrapper(fd)); }

}  // namespace asyncore
