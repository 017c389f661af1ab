#include "tests/test_util.h"

#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace testing_util {
namespace {

// Where AF_UNIX socket paths go: TEST_TMPDIR if its paths fit in sun_path
// (108 bytes on Linux, 104 on BSD). Bazel's sandboxed TEST_TMPDIR usually
// does not, so then a fresh mkdtemp() directory under /tmp: unique even
// across concurrent test processes, which may all see the same pid in their
// PID namespaces. Removed, with whatever is left in it, at exit.
class SocketDir {
 public:
  SocketDir() {
    const char* dir = std::getenv("TEST_TMPDIR");
    if (dir != nullptr && std::strlen(dir) < 64) {
      path_ = dir;
      return;
    }
    char tmpl[] = "/tmp/asyncore.XXXXXX";
    owned_ = ::mkdtemp(tmpl) != nullptr;
    path_ = owned_ ? tmpl : "/tmp";
  }
  ~SocketDir() {
    if (!owned_) return;
    if (DIR* d = ::opendir(path_.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") ::unlink((path_ + "/" + name).c_str());
      }
      ::closedir(d);
    }
    ::rmdir(path_.c_str());
  }
  SocketDir(const SocketDir&) = delete;
  SocketDir& operator=(const SocketDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool owned_ = false;
};

const std::string& socket_dir() {
  static SocketDir dir;
  return dir.path();
}

}  // namespace

asyncore::Address any_loopback(int family) {
  switch (family) {
    case AF_INET6:
      return asyncore::Address::ipv6("::1", 0);
    case AF_UNIX: {
      static std::atomic<int> counter{0};
      std::string path = socket_dir() + "/s" + std::to_string(::getpid()) +
                         "_" + std::to_string(counter++);
      ::unlink(path.c_str());
      return asyncore::Address::unix_path(path);
    }
    default:
      return asyncore::Address::ipv4("127.0.0.1", 0);
  }
}

CapturedLog::CapturedLog() {
  previous_ = asyncore::set_log_sink(
      [this](asyncore::LogStream stream, std::string_view line) {
        std::string text(line);
        if (!text.empty() && text.back() == '\n') text.pop_back();
        (stream == asyncore::LogStream::kStdout ? out_ : err_).push_back(text);
      });
}

CapturedLog::~CapturedLog() { asyncore::set_log_sink(std::move(previous_)); }

bool ipv6_available() {
  try {
    asyncore::Socket s = asyncore::Socket::create(AF_INET6, SOCK_STREAM);
    asyncore::Address a = asyncore::Address::ipv6("::1", 0);
    return ::bind(s.fileno(), a.data(), a.size()) == 0;
  } catch (...) {
    return false;
  }
}

}  // namespace testing_util
