// The echo servers //bench:echo compares ours with, each written the way
// that library's own examples write one:
//   raw       epoll, level-triggered, a read buffer per call, what is not
//             sent at once kept per connection (the floor)
//   libevent  evconnlistener + bufferevent (the input buffer moved to the
//             output)
//   libuv     uv_tcp_t, uv_read_start, uv_try_write then uv_write for the rest
//
//   echo_peers --impl raw|libevent|libuv [--port P]   (0: a free port)
// Prints "listening on 127.0.0.1:PORT" once it accepts; runs until killed.
// No TCP_NODELAY on accepted sockets, as in //examples:echo_server.
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/fd_limit.h"

namespace {

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "echo_peers: %s\nusage: echo_peers --impl raw|libevent|libuv "
               "[--port P]\n",
               why);
  std::exit(2);
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "echo_peers: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

sockaddr_in loopback(int port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sa;
}

void announce(int listen_fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&sa), &len);
  std::printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
  std::fflush(stdout);
}

// --- raw epoll
// ------------------------------------------------------------------

int raw_server(int port) {
  const int lfd =
      ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa = loopback(port);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("bind");
  if (::listen(lfd, 1024) < 0) die("listen");
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  announce(lfd);
  std::vector<std::string> pending;  // per fd: what send() did not take
  std::vector<epoll_event> ready(1024);
  char buf[8192];
  auto drop = [&](int fd) {
    ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    pending[static_cast<size_t>(fd)].clear();
  };
  // Sends what is pending and then `data`; keeps the rest and watches for
  // writability while anything is left. False: the connection failed.
  auto flush = [&](int fd, const char* data, size_t len) {
    std::string& rest = pending[static_cast<size_t>(fd)];
    const bool waiting = !rest.empty();
    if (waiting) {
      rest.append(data, len);
      data = rest.data();
      len = rest.size();
    }
    ssize_t n = ::send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      n = 0;
    }
    if (waiting) {
      rest.erase(0, static_cast<size_t>(n));
    } else if (static_cast<size_t>(n) < len) {
      rest.assign(data + n, len - static_cast<size_t>(n));
    }
    if (rest.empty() == waiting) {  // started or stopped waiting
      epoll_event e{};
      e.events = rest.empty() ? EPOLLIN : EPOLLIN | EPOLLOUT;
      e.data.fd = fd;
      ::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
    }
    return true;
  };
  for (;;) {
    const int n =
        ::epoll_wait(ep, ready.data(), static_cast<int>(ready.size()), -1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; ++i) {
      const int fd = ready[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          const int c =
              ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          if (static_cast<size_t>(c) >= pending.size()) pending.resize(c + 1);
          epoll_event e{};
          e.events = EPOLLIN;
          e.data.fd = c;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        }
        continue;
      }
      if (ready[i].events & EPOLLOUT) {
        if (!flush(fd, "", 0)) {
          drop(fd);
          continue;
        }
      }
      if (ready[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        const ssize_t got = ::recv(fd, buf, sizeof buf, 0);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
          drop(fd);
        } else if (got > 0 && !flush(fd, buf, static_cast<size_t>(got))) {
          drop(fd);
        }
      }
    }
  }
}

// --- libevent
// ---------------------------------------------------------------------

void libevent_read(bufferevent* bev, void*) {
  evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

void libevent_event(bufferevent* bev, short what, void*) {
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) bufferevent_free(bev);
}

void libevent_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr*,
                     int, void*) {
  bufferevent* bev = bufferevent_socket_new(evconnlistener_get_base(listener),
                                            fd, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(bev, libevent_read, nullptr, libevent_event, nullptr);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int libevent_server(int port) {
  event_base* base = event_base_new();
  sockaddr_in sa = loopback(port);
  evconnlistener* listener = evconnlistener_new_bind(
      base, libevent_accept, nullptr, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
      1024, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  if (listener == nullptr) die("evconnlistener_new_bind");
  announce(evconnlistener_get_fd(listener));
  event_base_dispatch(base);
  return 0;
}

// --- libuv
// --------------------------------------------------------------------------

struct UvWrite {
  uv_write_t req;
  uv_buf_t buf;
};

void uv_alloc(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
  buf->base = static_cast<char*>(std::malloc(suggested));
  buf->len = suggested;
}

void uv_closed(uv_handle_t* handle) { std::free(handle); }

void uv_written(uv_write_t* req, int) {
  auto* w = reinterpret_cast<UvWrite*>(req);
  std::free(w->buf.base);
  std::free(w);
}

void uv_echo_read(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf) {
  if (n < 0) {
    std::free(buf->base);
    uv_close(reinterpret_cast<uv_handle_t*>(stream), uv_closed);
    return;
  }
  if (n == 0) {
    std::free(buf->base);
    return;
  }
  uv_buf_t out = uv_buf_init(buf->base, static_cast<unsigned>(n));
  const int sent = uv_try_write(stream, &out, 1);
  const size_t done = sent > 0 ? static_cast<size_t>(sent) : 0;
  if (done == static_cast<size_t>(n)) {
    std::free(buf->base);
    return;
  }
  auto* w = static_cast<UvWrite*>(std::malloc(sizeof(UvWrite)));
  const size_t rest = static_cast<size_t>(n) - done;
  w->buf = uv_buf_init(static_cast<char*>(std::malloc(rest)),
                       static_cast<unsigned>(rest));
  std::memcpy(w->buf.base, buf->base + done, rest);
  std::free(buf->base);
  uv_write(&w->req, stream, &w->buf, 1, uv_written);
}

void uv_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* client = static_cast<uv_tcp_t*>(std::malloc(sizeof(uv_tcp_t)));
  uv_tcp_init(server->loop, client);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(client)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), uv_closed);
    return;
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(client), uv_alloc, uv_echo_read);
}

int libuv_server(int port) {
  uv_loop_t* loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  sockaddr_in sa = loopback(port);
  if (uv_tcp_bind(&server, reinterpret_cast<sockaddr*>(&sa), 0) != 0 ||
      uv_listen(reinterpret_cast<uv_stream_t*>(&server), 1024, uv_connection) !=
          0) {
    die("uv_listen");
  }
  uv_os_fd_t fd;
  uv_fileno(reinterpret_cast<uv_handle_t*>(&server), &fd);
  announce(fd);
  return uv_run(loop, UV_RUN_DEFAULT);
}

}  // namespace

int main(int argc, char** argv) {
  std::string impl;
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
    const std::string value = argv[++i];
    if (flag == "--impl") {
      impl = value;
    } else if (flag == "--port") {
      char* end = nullptr;
      const long p = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || p < 0 || p > 65535) {
        usage(("bad port " + value).c_str());
      }
      port = static_cast<int>(p);
    } else {
      usage(("unknown flag " + flag).c_str());
    }
  }
  raise_fd_limit();
  if (impl == "raw") return raw_server(port);
  if (impl == "libevent") return libevent_server(port);
  if (impl == "libuv") return libuv_server(port);
  usage("--impl must be raw, libevent or libuv");
}
