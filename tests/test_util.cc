#include "tests/test_util.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace testing_util {

asyncore::Address any_loopback(int family) {
  switch (family) {
    case AF_INET6:
      return asyncore::Address::ipv6("::1", 0);
    case AF_UNIX: {
      static std::atomic<int> counter{0};
      const char* dir = std::getenv("TEST_TMPDIR");
      std::string path = std::string(dir ? dir : "/tmp") + "/s" +
                         std::to_string(::getpid()) + "_" +
                         std::to_string(counter++);
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
