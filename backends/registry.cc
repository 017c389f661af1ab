// The backend table, best first (libevent's eventops order): `auto` takes the
// first entry whose kernel object can be created.
#include <cstring>
#include <stdexcept>

#include "backends/backend.h"

namespace asyncore {
namespace {

struct Entry {
  const char* name;
  std::unique_ptr<Backend> (*make)();
};

constexpr Entry kBackends[] = {
#ifdef ASYNCOREPP_HAVE_KQUEUE
    {"kqueue", make_kqueue_backend},
#endif
#if defined(__linux__)
    {"epoll", make_epoll_backend},
#endif
    {"poll", make_poll_backend},
    {"select", make_select_backend},
};

std::string available_list() {
  std::string out;
  for (const std::string& name : available_backends()) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

}  // namespace

const std::vector<std::string>& available_backends() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const Entry& e : kBackends) v.emplace_back(e.name);
    return v;
  }();
  return names;
}

std::unique_ptr<Backend> make_backend(std::string_view name) {
  if (name == "auto") {
    for (const Entry& e : kBackends) {
      try {
        return e.make();
      } catch (const std::system_error&) {
        // e.g. epoll_create1 refused by a sandbox: fall through to the next.
      }
    }
  }
  for (const Entry& e : kBackends) {
    if (name == e.name) return e.make();
  }
  throw std::invalid_argument("unknown or unavailable backend '" +
                              std::string(name) + "'; available here: auto, " +
                              available_list());
}

}  // namespace asyncore
