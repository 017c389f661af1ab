#include "examples/server_common.h"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>

#include "backends/backend.h"
#include "core/channel_map.h"
#include "core/loop.h"
#include "core/signals.h"

namespace examples {
std::string backend_choices() {
  std::string out = "auto";
  for (const std::string& name : asyncore::available_backends())
    out += "|" + name;
  return out;
}

namespace {

std::string usage(std::string_view program, std::string_view summary,
                  std::string_view usage_extra) {
  std::string out;
  out += "usage: ";
  out += program;
  out += " [--host HOST] [--port PORT] [--backend NAME]";
  out += usage_extra.empty() ? "" : " [options]";
  out += "\n\n";
  out += summary;
  out += "\n\noptions:\n";
  out += "  --host HOST      address to listen on (default 127.0.0.1)\n";
  out +=
      "  --port PORT      port to listen on, 0 picks a free one (default "
      "8080)\n";
  out += "  --backend NAME   event backend: " + backend_choices() +
         " (default auto)\n";
  out += usage_extra;
  out += "  --help           show this help and exit\n";
  return out;
}

[[noreturn]] void fail(std::string_view program, std::string_view message,
                       const std::string& text) {
  std::cerr << program << ": " << message << "\n\n" << text;
  std::exit(2);
}

}  // namespace

ServerFlags parse_server_flags(int argc, char** argv, std::string_view summary,
                               std::map<std::string, std::string> extra,
                               std::string_view usage_extra) {
  std::string_view program = argc > 0 ? argv[0] : "server";
  if (auto slash = program.rfind('/'); slash != std::string_view::npos) {
    program.remove_prefix(slash + 1);
  }
  const std::string text = usage(program, summary, usage_extra);
  ServerFlags flags;
  flags.extra = std::move(extra);
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
    if (name != "host" && name != "port" && name != "backend" &&
        !flags.extra.count(name)) {
      fail(program, "unknown flag --" + name, text);
    }
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
      bool known = value == "auto";
      for (const std::string& b : asyncore::available_backends())
        known |= b == value;
      if (!known) {
        fail(program,
             "backend '" + value + "' is not available here (choose " +
                 backend_choices() + ")",
             text);
      }
      flags.backend = value;
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

TcpListener::TcpListener(const asyncore::Address& address, int backlog) {
  create_socket(address.family(), SOCK_STREAM);
  set_reuse_addr();
  bind(address);
  listen(backlog);
}

void TcpListener::handle_error() {
  try {
    throw;
  } catch (const std::exception& e) {
    log_info(std::string("accept failed: ") + e.what(), "error");
  }
}

int run_server(std::string_view program, std::string_view backend,
               const asyncore::Address& address,
               const ServerFactory& make_server) {
  ::signal(SIGPIPE, SIG_IGN);  // sockets use MSG_NOSIGNAL; this covers pipes
  try {
    asyncore::socket_map().set_backend(backend);
    std::shared_ptr<asyncore::Dispatcher> server = make_server(address);
    asyncore::make<asyncore::SignalDispatcher>(
        std::vector<int>{SIGINT, SIGTERM});
    announce_listening(server->socket().getsockname());
    asyncore::loop({.timeout = std::nullopt});
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace examples
