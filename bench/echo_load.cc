// Closed-loop load for an echo server: C connections, each with one message
// of S bytes outstanding; a message counts once all S bytes came back, and
// the connection sends the next at once. One thread, raw epoll, so that the
// client costs as little as it can; bench/echo_bench.py pins it to another
// core than the server.
//
//   echo_load --port P [--host 127.0.0.1] [--connections C] [--size S]
//             (--seconds T | --messages M)
// Prints one JSON object: messages, seconds, messages_per_second, p50_us,
// p99_us (round-trip latency), errors.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/fd_limit.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 1;
  int size = 64;
  double seconds = 0;
  long messages = 0;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "echo_load: %s\nusage: echo_load --port P [--host H] "
               "[--connections C] [--size S] (--seconds T | --messages M)\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
    const char* value = argv[++i];
    char* end = nullptr;
    const double number = std::strtod(value, &end);
    const bool numeric = *value != '\0' && *end == '\0' && number >= 0;
    if (flag == "--host") {
      o.host = value;
    } else if (!numeric) {
      usage(("bad value for " + flag + ": " + value).c_str());
    } else if (flag == "--port") {
      o.port = static_cast<int>(number);
    } else if (flag == "--connections") {
      o.connections = static_cast<int>(number);
    } else if (flag == "--size") {
      o.size = static_cast<int>(number);
    } else if (flag == "--seconds") {
      o.seconds = number;
    } else if (flag == "--messages") {
      o.messages = static_cast<long>(number);
    } else {
      usage(("unknown flag " + flag).c_str());
    }
  }
  if (o.port <= 0 || o.port > 65535) usage("--port is required (1-65535)");
  if (o.connections < 1 || o.size < 1 || o.size > 65536) {
    usage("--connections >= 1 and --size 1..65536");
  }
  if ((o.seconds > 0) == (o.messages > 0)) {
    usage("give one of --seconds or --messages");
  }
  return o;
}

struct Connection {
  int fd = -1;
  int sent = 0;      // bytes of the current message written
  int received = 0;  // bytes of its echo read
  Clock::time_point started;
};

// Round-trip latencies in microsecond buckets (the last one: everything
// longer), enough for percentiles without keeping every sample.
class Histogram {
 public:
  void add(Clock::duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d);
    const size_t i =
        std::min<size_t>(static_cast<size_t>(us.count()), buckets_.size() - 1);
    ++buckets_[i];
    ++count_;
  }
  double percentile(double p) const {
    const long want = static_cast<long>(p * static_cast<double>(count_));
    long seen = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      seen += buckets_[i];
      if (seen > want) return static_cast<double>(i);
    }
    return static_cast<double>(buckets_.size() - 1);
  }

 private:
  std::vector<long> buckets_ = std::vector<long>(1000000);
  long count_ = 0;
};

int connect_to(const Options& o) {
  const int fd =
      ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(o.port));
  if (::inet_pton(AF_INET, o.host.c_str(), &sa.sin_addr) != 1) {
    usage("--host must be an IPv4 address");
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 &&
      errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  raise_fd_limit();
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<Connection> conns(static_cast<size_t>(o.connections));
  const std::string message(static_cast<size_t>(o.size), 'm');
  std::vector<char> buf(65536);
  long errors = 0;
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = connect_to(o);
    if (conns[i].fd < 0) {
      std::fprintf(stderr, "echo_load: connect: %s\n", std::strerror(errno));
      return 1;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;  // OUT: the connect completed, send
    ev.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
  }

  Histogram latency;
  long done = 0;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(o.seconds));
  std::vector<epoll_event> ready(1024);
  auto send_rest = [&](Connection& c) {
    while (c.sent < o.size) {
      const ssize_t n =
          ::send(c.fd, message.data() + c.sent,
                 static_cast<size_t>(o.size - c.sent), MSG_NOSIGNAL);
      if (n <= 0) return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
      c.sent += static_cast<int>(n);
    }
    return true;
  };
  bool finished = false;
  while (!finished) {
    const int n =
        ::epoll_wait(ep, ready.data(), static_cast<int>(ready.size()), 100);
    if (n < 0 && errno != EINTR) break;
    const auto now = Clock::now();
    for (int k = 0; k < n; ++k) {
      Connection& c = conns[ready[k].data.u64];
      if (ready[k].events & (EPOLLERR | EPOLLHUP)) {
        ++errors;
        finished = true;
        break;
      }
      if ((ready[k].events & EPOLLOUT) && c.started == Clock::time_point{}) {
        // Connected: from now on only input matters.
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = ready[k].data.u64;
        ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        c.started = now;
        if (!send_rest(c)) ++errors;
        continue;
      }
      if (!(ready[k].events & EPOLLIN)) continue;
      const ssize_t got = ::recv(c.fd, buf.data(), buf.size(), 0);
      if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        ++errors;
        finished = true;
        break;
      }
      c.received += static_cast<int>(got);
      if (c.received < o.size) continue;
      latency.add(now - c.started);
      ++done;
      if ((o.messages > 0 && done >= o.messages) ||
          (o.seconds > 0 && now >= deadline)) {
        finished = true;
        break;
      }
      c.received -= o.size;
      c.sent = 0;
      c.started = now;
      if (!send_rest(c)) ++errors;
    }
  }
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  for (Connection& c : conns) ::close(c.fd);
  ::close(ep);
  std::printf(
      "{\"messages\": %ld, \"seconds\": %.3f, \"messages_per_second\": %.0f, "
      "\"p50_us\": %.0f, \"p99_us\": %.0f, \"errors\": %ld}\n",
      done, seconds, static_cast<double>(done) / seconds,
      latency.percentile(0.50), latency.percentile(0.99), errors);
  return errors == 0 ? 0 : 1;
}
