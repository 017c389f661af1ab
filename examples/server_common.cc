#include "examples/server_common.h"

#include <signal.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "backends/backend.h"
#include "core/channel_map.h"
#include "core/loop.h"

namespace examples {
std::string backend_choices() {
  std::string out = "auto";
  for (const std::string& name : asyncore::available_backends())
    out += "|" + name;
  return out;
}

namespace {

std::string format_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

std::string usage(std::string_view program, const FlagSpec& spec) {
  std::string out;
  out += "usage: ";
  out += program;
  out += " [--host HOST] [--port PORT] [--backend NAME] [options]\n\n";
  out += spec.summary;
  out += "\n\noptions:\n";
  if (spec.server) {
    out += "  --host HOST      address to listen on (default 127.0.0.1)\n";
    out +=
        "  --port PORT      port to listen on, 0 picks a free one "
        "(default 8080)\n";
  } else {
    out += "  --host HOST      address to connect to (default 127.0.0.1)\n";
    out += "  --port PORT      port to connect to (default 8080)\n";
  }
  out += "  --backend NAME   event backend: " + backend_choices() +
         " (default auto)\n";
  if (spec.threads) {
    out +=
        "  --threads N      event loops, one per thread, sharing the port "
        "(default 1)\n";
  }
  if (spec.idle_timeout) {
    out +=
        "  --idle-timeout S close connections idle for S seconds, 0 never "
        "(default " +
        format_seconds(*spec.idle_timeout) + ")\n";
  }
  if (spec.server) {
    out +=
        "  --drain-seconds S  on SIGINT/SIGTERM, stop accepting and let "
        "output flush\n"
        "                   for up to S seconds before closing (default "
        "2)\n";
  }
  out += spec.usage_extra;
  out += "  --help           show this help and exit\n";
  return out;
}

[[noreturn]] void fail(std::string_view program, std::string_view message,
                       const std::string& text) {
  std::cerr << program << ": " << message << "\n\n" << text;
  std::exit(2);
}

// A whole non-negative decimal number of seconds ("2", "0.5"), or nullopt.
std::optional<double> parse_seconds(const std::string& value) {
  char* end = nullptr;
  errno = 0;
  const double s = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || errno == ERANGE || !(s >= 0) ||
      s > 1e9) {
    return std::nullopt;
  }
  return s;
}

}  // namespace

ServerFlags parse_server_flags(int argc, char** argv, const FlagSpec& spec) {
  std::string_view program = argc > 0 ? argv[0] : "server";
  if (auto slash = program.rfind('/'); slash != std::string_view::npos) {
    program.remove_prefix(slash + 1);
  }
  const std::string text = usage(program, spec);
  ServerFlags flags;
  flags.extra = spec.extra;
  if (spec.idle_timeout) flags.idle_timeout = *spec.idle_timeout;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << text;
      std::exit(0);
    }
    if (arg.substr(0, 2) != "--")
      fail(program, "unexpected argument '" + std::string(arg) + "'", text);
    std::string name(arg.substr(2));
    std::string value;
    const auto eq = name.find('=');
    if (eq != std::string::npos) name.resize(eq);
    const bool known = name == "host" || name == "port" || name == "backend" ||
                       flags.extra.count(name) ||
                       (name == "threads" && spec.threads) ||
                       (name == "idle-timeout" && spec.idle_timeout) ||
                       (name == "drain-seconds" && spec.server);
    if (!known) fail(program, "unknown flag --" + name, text);
    if (eq != std::string::npos) {
      value = std::string(arg.substr(2 + eq + 1));
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      fail(program, "flag --" + name + " needs a value", text);
    }
    if (name == "host") {
      flags.host = value;
    } else if (name == "port") {
      char* end = nullptr;
      long port = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || port < 0 || port > 65535) {
        fail(program, "bad port '" + value + "' (0-65535)", text);
      }
      flags.port = static_cast<uint16_t>(port);
    } else if (name == "backend") {
      bool available = value == "auto";
      for (const std::string& b : asyncore::available_backends())
        available |= b == value;
      if (!available) {
        fail(program,
             "backend '" + value + "' is not available here (choose " +
                 backend_choices() + ")",
             text);
      }
      flags.backend = value;
    } else if (name == "threads") {
      char* end = nullptr;
      errno = 0;
      const long n = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || errno == ERANGE || n < 1 ||
          n > 1024) {
        fail(program, "bad --threads '" + value + "' (1-1024)", text);
      }
      flags.threads = static_cast<int>(n);
    } else if (name == "idle-timeout" || name == "drain-seconds") {
      const std::optional<double> s = parse_seconds(value);
      if (!s) {
        fail(program, "bad --" + name + " '" + value + "' (seconds, >= 0)",
             text);
      }
      (name == "idle-timeout" ? flags.idle_timeout : flags.drain_seconds) = *s;
    } else {
      flags.extra[name] = value;
    }
  }
  return flags;
}

asyncore::Address listen_address(const ServerFlags& flags) {
  try {
    return asyncore::Address::inet(flags.host, flags.port);
  } catch (const std::invalid_argument& e) {
    std::cerr << e.what() << "\n";
    std::exit(2);
  }
}

void announce_listening(const asyncore::Address& bound) {
  std::printf("listening on %s\n", bound.to_string().c_str());
  std::fflush(stdout);
}

namespace {
// Set by run_server before any listener exists when it runs several loops.
std::atomic<bool> g_reuse_port{false};
}  // namespace

TcpListener::TcpListener(const asyncore::Address& address, int backlog) {
  create_socket(address.family(), SOCK_STREAM);
  set_reuse_addr();
  if (g_reuse_port.load()) {
    socket().setsockopt_int(SOL_SOCKET, SO_REUSEPORT, 1);
  }
  bind(address);
  listen(backlog);
}

void TcpListener::handle_accept() {
  // Several per readiness event (Python takes one): a burst of 9 000
  // connects would otherwise cost 9 000 iterations, each O(channels) on
  // poll or select.
  for (int i = 0; i < kAcceptBurst; ++i) {
    std::optional<asyncore::Accepted> pair = accept();
    if (!pair) return;
    ++accepted_;
    handle_accepted(std::move(pair->sock), pair->addr);
    if (registered_map() == nullptr) return;  // closed by handle_accepted
  }
}

void TcpListener::handle_error() {
  try {
    throw;
  } catch (const std::exception& e) {
    log_info(std::string("accept failed: ") + e.what(), "error");
  }
}

RunOptions run_options(const ServerFlags& flags) {
  return RunOptions{.backend = flags.backend,
                    .threads = flags.threads,
                    .drain_seconds = flags.drain_seconds};
}

namespace {

// One loop of a server: its thread's socket_map() and what it serves.
struct ServerLoop {
  asyncore::ChannelMap* map = nullptr;
  std::shared_ptr<asyncore::Dispatcher> server;
  std::exception_ptr error;
};

// Creates the server of one loop in the calling thread's socket_map().
void start_loop(ServerLoop* loop, const RunOptions& options,
                const asyncore::Address& address,
                const ServerFactory& make_server) {
  loop->map = &asyncore::socket_map();
  loop->map->set_backend(options.backend);
  loop->server = make_server(address);
}

long accepted_by(const ServerLoop& loop) {
  auto* listener = dynamic_cast<TcpListener*>(loop.server.get());
  return listener != nullptr ? listener->accepted() : 0;
}

}  // namespace

int run_server(std::string_view program, const RunOptions& options,
               const asyncore::Address& address,
               const ServerFactory& make_server) {
  ::signal(SIGPIPE, SIG_IGN);  // sockets use MSG_NOSIGNAL; this covers pipes
  const int threads = options.threads < 1 ? 1 : options.threads;
  g_reuse_port.store(threads > 1);
  std::vector<ServerLoop> loops(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  int status = 0;
  try {
    // Loop 0 runs here. Its listener fixes the port; its signal watch comes
    // before the workers exist, so that they inherit the blocked signals.
    start_loop(&loops[0], options, address, make_server);
    const asyncore::Address bound = loops[0].server->socket().getsockname();
    asyncore::ChannelMap& main_map = *loops[0].map;
    // The first signal drains every loop; a second one closes at once.
    int signals_seen = 0;
    auto drain_all = [&loops, &options, &signals_seen](int) {
      const bool now = ++signals_seen > 1;
      const double seconds = options.drain_seconds;
      for (ServerLoop& loop : loops) {
        asyncore::ChannelMap* map = loop.map;
        if (map == nullptr) continue;
        map->post([map, seconds, now] {
          if (now) {
            map->close_all(/*ignore_all=*/true);
          } else {
            map->drain(seconds);
          }
        });
      }
    };
    asyncore::SignalHandle on_int = main_map.on_signal(SIGINT, drain_all);
    asyncore::SignalHandle on_term = main_map.on_signal(SIGTERM, drain_all);
    // The workers: each creates its server, then reports (or fails).
    std::mutex mutex;
    std::condition_variable started;
    int ready = 1;
    for (int i = 1; i < threads; ++i) {
      workers.emplace_back([&, i] {
        ServerLoop& loop = loops[static_cast<size_t>(i)];
        try {
          start_loop(&loop, options, bound, make_server);
        } catch (...) {
          loop.error = std::current_exception();
        }
        {
          std::lock_guard<std::mutex> lock(mutex);
          ++ready;
        }
        started.notify_all();
        if (loop.error) return;
        try {
          asyncore::loop({.timeout = std::nullopt});
        } catch (...) {
          loop.error = std::current_exception();
        }
      });
    }
    {
      std::unique_lock<std::mutex> lock(mutex);
      started.wait(lock, [&] { return ready == threads; });
    }
    for (const ServerLoop& loop : loops) {
      if (loop.error) std::rethrow_exception(loop.error);
    }
    announce_listening(bound);
    asyncore::loop({.timeout = std::nullopt});
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    status = 1;
  }
  if (status != 0) {
    // Stop the workers that did start (their maps outlive this call).
    for (ServerLoop& loop : loops) {
      if (loop.map != nullptr && &loop != &loops[0]) {
        asyncore::ChannelMap* map = loop.map;
        map->post([map] { map->close_all(/*ignore_all=*/true); });
      }
    }
  }
  for (std::thread& t : workers) t.join();
  for (size_t i = 1; i < loops.size(); ++i) {
    if (loops[i].error && status == 0) {
      try {
        std::rethrow_exception(loops[i].error);
      } catch (const std::exception& e) {
        std::cerr << program << ": loop " << i << ": " << e.what() << "\n";
        status = 1;
      }
    }
  }
  if (threads > 1) {
    for (size_t i = 0; i < loops.size(); ++i) {
      std::printf("loop %zu accepted %ld connections\n", i,
                  accepted_by(loops[i]));
    }
    std::fflush(stdout);
  }
  return status;
}

}  // namespace examples
