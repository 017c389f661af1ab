// libevent 2.1's implementation of the chain (see event_chain.cc).
#include <event2/event.h>

#include "bench/event_chain.h"

namespace event_chain {
namespace {

class Libevent : public Impl {
 public:
  Libevent(Chain& chain, const std::string& method) : chain_(chain) {
    event_config* config = event_config_new();
    for (const char** m = event_get_supported_methods(); *m != nullptr; ++m) {
      if (method != *m) event_config_avoid_method(config, *m);
    }
    base_ = event_base_new_with_config(config);
    event_config_free(config);
    if (base_ == nullptr || method != event_base_get_method(base_)) {
      if (base_ != nullptr) event_base_free(base_);
      throw std::runtime_error("libevent: method " + method + " not available");
    }
    targets_.resize(chain.size());
    for (int i = 0; i < chain.size(); ++i) {
      targets_[i] = {&chain, i};
      events_.push_back(event_new(base_, chain.read_ends[i],
                                  EV_READ | EV_PERSIST, on_read, &targets_[i]));
      event_add(events_.back(), nullptr);
    }
    run_nowait();
  }
  ~Libevent() override {
    for (event* ev : events_) event_free(ev);
    event_base_free(base_);
  }
  void run_nowait() override {
    event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
  }
  void reregister() override {
    for (int i = 0; i < chain_.size(); ++i) {
      event_del(events_[i]);
      event_assign(events_[i], base_, chain_.read_ends[i], EV_READ | EV_PERSIST,
                   on_read, &targets_[i]);
      event_add(events_[i], nullptr);
    }
  }

 private:
  struct Target {
    Chain* chain;
    int index;
  };
  static void on_read(evutil_socket_t fd, short, void* arg) {
    auto* target = static_cast<Target*>(arg);
    target->chain->on_readable(fd, target->index);
  }
  Chain& chain_;
  event_base* base_;
  std::vector<Target> targets_;
  std::vector<event*> events_;
};

}  // namespace

std::unique_ptr<Impl> make_libevent(Chain& chain, const std::string& method) {
  return std::make_unique<Libevent>(chain, method);
}

}  // namespace event_chain
