// A line-based chat room on asynchat (terminator "\n", "\r\n" tolerated).
// The first line a client sends is its nickname; every later line goes to
// all *other* clients as "nick: text". Joins and leaves are announced as
// "* nick joined" / "* nick left"; "/quit" leaves. A line over 4 KiB gets
// "! line too long" and the client is disconnected. A client that stops
// reading is disconnected once 1 MiB of output is queued for it, so one slow
// or dead client never holds up the others; one that sends nothing for
// --idle-timeout seconds (default 300) is disconnected too, and its leave
// announced.
//
//   bazel run //examples:chat_server -- --port 7000
//   python3 -c "import socket; ..."   (or: nc 127.0.0.1 7000)

#include <iostream>
#include <memory>
#include <set>
#include <string>

#include "chat/async_chat.h"
#include "core/asyncore.h"
#include "examples/server_common.h"

namespace {

constexpr size_t kMaxLine = 4096;

class ChatClient;

// The people in the room.
class Room {
 public:
  void join(ChatClient* c) { members_.insert(c); }
  void leave(ChatClient* c) { members_.erase(c); }
  // Sends `line` to every member except `from` (nullptr: to all).
  void broadcast(const std::string& line, const ChatClient* from);

 private:
  std::set<ChatClient*> members_;
};

class ChatClient : public asynchat::AsyncChat {
 public:
  ChatClient(asyncore::Socket sock, Room* room)
      : AsyncChat(std::move(sock)), room_(room) {
    set_terminator("\n");
  }

  void collect_incoming_data(std::string_view data) override {
    if (too_long_) return;
    line_.append(data);
    // A trailing '\r' may be the first half of a "\r\n" terminator.
    if (line_.size() > kMaxLine + (line_.back() == '\r' ? 1 : 0))
      reject_long_line();
  }

  void found_terminator() override {
    if (too_long_) return;
    std::string line = std::exchange(line_, {});
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (nick_.empty()) {
      if (line.empty()) {
        push("! nickname required\n");
        return;
      }
      nick_ = line;
      room_->join(this);
      room_->broadcast("* " + nick_ + " joined\n", nullptr);
      return;
    }
    if (line == "/quit") {
      leave();
      close_when_done();
      return;
    }
    room_->broadcast(nick_ + ": " + line + "\n", this);
  }

  // Queues output for this client, dropping a client that stopped reading:
  // its queue is fed by the others, so pausing its reads (the library's
  // back-pressure) would not bound it. The bound is the library's mark.
  void deliver(const std::string& line) {
    if (queued_bytes() + line.size() > output_limit().high()) {
      close();
      return;
    }
    push(line);
  }

  void close() override {
    leave();
    AsyncChat::close();
  }

 private:
  void reject_long_line() {
    too_long_ = true;
    line_.clear();
    set_terminator(nullptr);  // ignore the rest of the input
    leave();
    push("! line too long\n");
    close_when_done();
  }

  // Announces the departure once, whichever way the client goes.
  void leave() {
    if (nick_.empty() || left_) return;
    left_ = true;
    room_->leave(this);
    room_->broadcast("* " + nick_ + " left\n", nullptr);
  }

  Room* room_;
  std::string nick_;
  std::string line_;
  bool too_long_ = false;
  bool left_ = false;
};

void Room::broadcast(const std::string& line, const ChatClient* from) {
  // deliver() may close (and so remove) a member: iterate over a copy.
  std::set<ChatClient*> members = members_;
  for (ChatClient* c : members) {
    if (c != from && members_.count(c)) c->deliver(line);
  }
}

class ChatServer : public examples::TcpListener {
 public:
  ChatServer(const asyncore::Address& address, double idle_timeout)
      : TcpListener(address), idle_timeout_(idle_timeout) {}

  void handle_accepted(asyncore::Socket sock,
                       const asyncore::Address&) override {
    auto client = asyncore::make<ChatClient>(std::move(sock), &room_);
    // Closing goes through close(), which announces the leave.
    client->set_idle_timeout(idle_timeout_);
  }

 private:
  Room room_;
  double idle_timeout_;
};

}  // namespace

int main(int argc, char** argv) {
  auto flags = examples::parse_server_flags(
      argc, argv,
      {.summary = "A line-based chat room: the first line is your nickname, "
                  "then every line goes to everyone else.",
       .idle_timeout = 300});
  const double idle_timeout = flags.idle_timeout;
  return examples::run_server("chat_server", examples::run_options(flags),
                              examples::listen_address(flags),
                              [idle_timeout](const asyncore::Address& address) {
                                return asyncore::make<ChatServer>(address,
                                                                  idle_timeout);
                              });
}
