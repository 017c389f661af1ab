// Where Dispatcher::log() and log_info() write. Python prints to stderr and
// stdout; tests and servers can redirect both through one replaceable sink.
#ifndef ASYNCOREPP_CORE_LOG_H_
#define ASYNCOREPP_CORE_LOG_H_

#include <functional>
#include <string>
#include <string_view>

namespace asyncore {

enum class LogStream { kStdout, kStderr };

// Receives one whole line, newline included.
using LogSink = std::function<void(LogStream stream, std::string_view line)>;

// Installs `sink` (an empty function restores the default, which writes to
// stdout/stderr) and returns the previous one. Not thread-safe: set it before
// loops run.
LogSink set_log_sink(LogSink sink);

// Writes one line through the current sink.
void write_log_line(LogStream stream, std::string_view line);

// os.strerror with Python's fallbacks: never empty ("Unknown error -1").
std::string strerror(int err);

}  // namespace asyncore

#endif  // ASYNCOREPP_CORE_LOG_H_
