#include "chat/async_chat.h"

#include <sys/uio.h>

#include <algorithm>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace asynchat {
namespace {

// Buffers gathered into one sendmsg(2): enough to fill a socket buffer with
// small messages, well under every system's IOV_MAX.
constexpr int kMaxGather = 64;

}  // namespace

size_t find_prefix_at_end(std::string_view haystack, std::string_view needle) {
  if (needle.empty()) return 0;
  for (size_t l = needle.size() - 1; l > 0; --l) {
    if (haystack.size() >= l &&
        haystack.substr(haystack.size() - l) == needle.substr(0, l)) {
      return l;
    }
  }
  return 0;
}

namespace {

// Input buffers larger than this are not kept by an idle channel.
constexpr size_t kIdleInputCapacity = 4096;

// The large read buffer, lent to whichever channel of this thread is
// reading: a server with many idle AsyncChat channels does not hold
// ac_in_buffer_size bytes for each of them.
asyncore::ByteBuffer& spare_input_buffer() {
  thread_local asyncore::ByteBuffer spare;
  return spare;
}

}  // namespace

void AsyncChat::handle_read() {
  const size_t want = ac_in_buffer_size ? ac_in_buffer_size : 1;
  unborrow();  // called from a callback inside feed()
  asyncore::ByteBuffer& spare = spare_input_buffer();
  if (in_.empty() && in_.capacity() < want && spare.capacity() >= want) {
    std::swap(in_, spare);
  }
  size_t n;
  try {
    n = recv_into(in_.prepare(want), want);
  } catch (const asyncore::WouldBlock&) {
    return;  // a spurious wake-up is not an error (bpo-16133)
  } catch (const std::system_error&) {
    handle_error();
    return;
  }
  in_.commit(n);
  process_input();
  if (in_.capacity() > kIdleInputCapacity && in_.size() <= kIdleInputCapacity) {
    // Keep only what is left (at most a terminator prefix, usually nothing)
    // and give the large buffer back. Swaps only: safe even if a callback
    // above ran another channel's handle_read().
    asyncore::ByteBuffer rest;
    rest.append(in_.view());
    in_.clear();
    if (spare.capacity() < in_.capacity()) std::swap(spare, in_);
    in_ = std::move(rest);
  }
}

void AsyncChat::process_input() {
  // Callbacks may change the terminator, discard the buffers or close the
  // channel: nothing computed before a callback is trusted after it. A
  // callback that closes the channel still gets the rest of the records of
  // this read (spec S23, as Python).
  while (!input().empty()) {
    const Terminator& t = get_terminator();
    if (!t.is_set()) {
      throw std::logic_error(
          "AsyncChat: data arrived before set_terminator() was called");
    }
    if (!t) {  // None, 0 or "": collect everything
      collect_incoming_data(input());
      clear_input();
      continue;
    }
    if (t.kind() == Terminator::Kind::kCount) {
      const uint64_t n = t.count();
      if (input().size() < n) {
        const size_t got = input().size();
        collect_incoming_data(input());
        clear_input();
        // Saturating: a callback may have set a smaller count meanwhile.
        if (terminator_.kind_ == Terminator::Kind::kCount) {
          terminator_.count_ -= std::min<uint64_t>(terminator_.count_, got);
        }
      } else {
        collect_incoming_data(input().substr(0, static_cast<size_t>(n)));
        consume_input(static_cast<size_t>(n));
        terminator_ = uint64_t{0};  // Python: terminator = 0, then the callback
        found_terminator();
      }
      continue;
    }
    const std::string& term = t.string();
    const std::string_view buffered = input();
    // One byte (the common "\n"): memchr, not a memcmp per candidate.
    const size_t index =
        term.size() == 1 ? buffered.find(term[0]) : buffered.find(term);
    if (index != std::string_view::npos) {
      const size_t skip = index + term.size();
      if (index > 0) collect_incoming_data(buffered.substr(0, index));
      consume_input(skip);
      found_terminator();
      continue;
    }
    const size_t held = find_prefix_at_end(buffered, term);
    if (held == 0) {
      collect_incoming_data(buffered);
      clear_input();
    } else {
      // Keep only what may be the start of a terminator.
      if (held != buffered.size()) {
        collect_incoming_data(buffered.substr(0, buffered.size() - held));
        consume_input(buffered.size() - held);
      }
      break;
    }
  }
}

void AsyncChat::feed(std::string_view data) {
  if (in_.empty() && borrowed_.empty()) {
    // Scan the caller's bytes in place; keep only what is left unclassified.
    borrowed_ = data;
  } else {
    unborrow();  // a feed() from inside a callback: keep the order
    in_.append(data);
  }
  process_input();
  unborrow();
}

void AsyncChat::unborrow() {
  // Invariant: in_ is empty while borrowed_ is not, so appending keeps order.
  in_.append(borrowed_);
  borrowed_ = {};
}

std::string_view AsyncChat::input() const {
  return borrowed_.empty() ? in_.view() : borrowed_;
}

void AsyncChat::consume_input(size_t n) {
  if (borrowed_.empty()) {
    in_.consume(n);
  } else {
    borrowed_.remove_prefix(n < borrowed_.size() ? n : borrowed_.size());
  }
}

void AsyncChat::clear_input() {
  in_.clear();
  borrowed_ = {};
}

void AsyncChat::push(std::string_view data) { push(std::string(data)); }

void AsyncChat::push(std::string&& data) {
  if (debug) log_info("sending " + data);
  queued_bytes_ += data.size();
  fifo_.push_back(Entry{std::move(data), 0, nullptr, false});
  initiate_send();
}

void AsyncChat::push_with_producer(std::unique_ptr<Producer> producer) {
  if (!producer) return;
  fifo_.push_back(Entry{{}, 0, std::move(producer), false});
  initiate_send();
}

void AsyncChat::close_when_done() {
  Entry marker;
  marker.close = true;
  fifo_.push_back(std::move(marker));
  queue_changed();
}

void AsyncChat::discard_buffers() {
  clear_input();
  incoming_.reset();
  fifo_.clear();
  queued_bytes_ = 0;
  queue_changed();
}

void AsyncChat::handle_write() {
  if (!connected() && !connecting()) {
    // Write-ready with no connection and none in progress: initiate_send()
    // would wait for a connect that never comes (and the loop would report
    // the fd writable for ever). Try the send instead: its error (EPIPE,
    // ECONNRESET, ENOTCONN) closes the channel.
    send_gathered();
    queue_changed();
    return;
  }
  initiate_send();
}

void AsyncChat::handle_close() { close(); }

bool AsyncChat::writable() { return wants_write(); }

void AsyncChat::initiate_send() {
  while (!fifo_.empty() && connected()) {
    Entry& first = fifo_.front();
    if (first.close) {
      fifo_.pop_front();
      queue_changed();
      handle_close();
      return;
    }
    if (first.producer) {
      Producer* producer = first.producer.get();
      std::string data = producer->more();
      // more() is user code: it may have discarded or changed the queue.
      if (fifo_.empty() || fifo_.front().producer.get() != producer) continue;
      if (data.empty()) {
        fifo_.pop_front();
      } else {
        queued_bytes_ += data.size();
        fifo_.push_front(Entry{std::move(data), 0, nullptr, false});
      }
      continue;
    }
    send_gathered();
    break;
  }
  queue_changed();
}

void AsyncChat::send_gathered() {
  // Consecutive buffers from the head, up to ac_out_buffer_size bytes; a
  // producer or a close marker ends the run. On a stream the gathering is
  // invisible to the peer (the bytes and their order are the same, only
  // the number of sends differs); where each send is a message (SOCK_DGRAM)
  // it would merge messages, so there the head goes alone, as in Python:
  // one push (or ac_out_buffer_size of it) per datagram, an empty push an
  // empty datagram.
  iovec iov[kMaxGather];
  int count = 0;
  size_t total = 0;
  const size_t limit = ac_out_buffer_size ? ac_out_buffer_size : 1;
  const int most = socket().sends_messages() ? 1 : kMaxGather;
  for (size_t i = 0; i < fifo_.size(); ++i) {
    const Entry& e = fifo_[i];
    if (count == most || total == limit || e.producer || e.close) break;
    size_t len = e.data.size() - e.sent;
    if (len > limit - total) len = limit - total;
    iov[count].iov_base = const_cast<char*>(e.data.data() + e.sent);
    iov[count].iov_len = len;
    ++count;
    total += len;
  }
  size_t sent;
  try {
    // An empty head still makes a zero-length send, as Python's push(b"").
    sent = send_vectored(iov, count);
  } catch (const std::system_error&) {
    handle_error();
    return;
  }
  queued_bytes_ -= sent;
  // Drop what went out. The queue may have changed if handle_close() ran
  // inside the send (then nothing was sent).
  for (int i = 0; i < count && !fifo_.empty(); ++i) {
    Entry& e = fifo_.front();
    const size_t offered = iov[i].iov_len;
    if (sent >= offered && e.sent + offered == e.data.size()) {
      sent -= offered;
      fifo_.pop_front();
      continue;
    }
    e.sent += sent < offered ? sent : offered;
    break;
  }
}

}  // namespace asynchat
