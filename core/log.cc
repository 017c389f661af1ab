#include "core/log.h"

#include <cstdio>
#include <cstring>
#include <utility>

namespace asyncore {
namespace {

LogSink& current_sink() {
  // Never destroyed: channels may log from destructors run at exit.
  static LogSink& sink = *new LogSink;
  return sink;
}

}  // namespace

LogSink set_log_sink(LogSink sink) {
  return std::exchange(current_sink(), std::move(sink));
}

void write_log_line(LogStream stream, std::string_view line) {
  if (const LogSink& sink = current_sink()) {
    sink(stream, line);
    return;
  }
  FILE* out = stream == LogStream::kStdout ? stdout : stderr;
  std::fwrite(line.data(), 1, line.size(), out);
  std::fflush(out);
}

std::string strerror(int err) {
  char buf[256] = {};
  // GNU strerror_r returns a pointer that may not be buf; XSI returns an int.
  auto result = ::strerror_r(err, buf, sizeof buf);
  const char* text;
  if constexpr (std::is_same_v<decltype(result), char*>) {
    text = result;
  } else {
    text = result == 0 ? buf : nullptr;
  }
  if (text == nullptr || *text == '\0')
    return "Unknown error " + std::to_string(err);
  return text;
}

}  // namespace asyncore
