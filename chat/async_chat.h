// asynchat::AsyncChat: a channel that splits its input at terminators and
// queues its output as a FIFO of buffers and producers (Python's
// asynchat.async_chat, spec A.5).
//
// Input: each read appends to one buffer of not-yet-classified bytes, which
// is scanned once: bytes that cannot be part of the terminator go to
// collect_incoming_data() as they arrive; only a possible terminator prefix
// is held back. The terminator is re-read after each message, so
// found_terminator() may change it for bytes already buffered.
//
// Output: push() queues bytes, push_with_producer() a producer,
// close_when_done() a close marker. Each write event makes one send: up to
// ac_out_buffer_size bytes gathered from consecutive queued buffers with a
// single sendmsg(2), or one chunk of the producer at the head.
//
// Linear time: consumed input and output are dropped by moving an offset,
// never by copying the rest (see core/byte_buffer.h).
//
// Beyond Python: graceful close and back-pressure as DispatcherWithSend's
// (core/buffered_dispatcher.h; the limit measures queued_memory()); and a
// write event on a stream socket that is neither connected nor connecting
// (reset before it was accepted) tries the send, whose error closes the
// channel, where Python's async_chat would wait for ever.
#ifndef ASYNCOREPP_CHAT_ASYNC_CHAT_H_
#define ASYNCOREPP_CHAT_ASYNC_CHAT_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "chat/output_queue.h"
#include "chat/producer.h"
#include "chat/terminator.h"
#include "core/buffered_dispatcher.h"
#include "core/byte_buffer.h"

namespace asynchat {

class AsyncChat : public asyncore::BufferedDispatcher {
 public:
  static constexpr size_t kDefaultBufferSize = 65536;  // Python 3's value

  using BufferedDispatcher::BufferedDispatcher;

  // Bytes read per handle_read(); bytes sent per write event at most.
  size_t ac_in_buffer_size = kDefaultBufferSize;
  size_t ac_out_buffer_size = kDefaultBufferSize;

  // --- To override ---------------------------------------------------------
  // Receives message bytes as they arrive (never empty).
  virtual void collect_incoming_data(std::string_view data) = 0;
  // Called when the terminator has been seen (and removed from the input).
  virtual void found_terminator() = 0;

  // --- Input ---------------------------------------------------------------
  // A byte string, a byte count (negative throws std::invalid_argument) or
  // nullptr (None: collect everything).
  void set_terminator(Terminator terminator) {
    terminator_ = std::move(terminator);
  }
  // Read before each message; overridable as in Python.
  virtual const Terminator& get_terminator() const { return terminator_; }
  // Handles `data` as if it had just been read from the socket: for bytes
  // that arrive another way (a TLS layer, a test). Scans them in place and
  // copies only what stays unclassified (at most a terminator prefix).
  void feed(std::string_view data);

  // --- Output --------------------------------------------------------------
  // Queues bytes and tries to send.
  void push(std::string_view data);
  void push(std::string&& data);
  void push(const char* data) { push(std::string_view(data)); }
  // Queues a producer (drained one chunk per write event) and tries to send.
  void push_with_producer(std::unique_ptr<Producer> producer);
  // A byte string as a degenerate producer: the same as push().
  void push_with_producer(std::string data) { push(std::move(data)); }
  // Closes the channel once everything queued before this call is sent.
  void close_when_done() override;
  // One send attempt from the head of the queue (see the class comment).
  void initiate_send();
  // Drops buffered input, collected data and queued output ("emergencies").
  void discard_buffers();
  // Bytes queued in buffers (producers not counted) and entries queued.
  size_t queued_bytes() const { return queued_bytes_; }
  // Memory the output queue holds: its bytes plus each entry's overhead
  // (what back-pressure measures: many tiny entries count too).
  size_t queued_memory() const {
    return queued_bytes_ + fifo_.size() * sizeof(Entry);
  }
  // Bytes of memory held for unprocessed input (bounded while idle).
  size_t input_capacity() const { return in_.capacity(); }
  size_t queued_entries() const { return fifo_.size(); }

  // --- asyncore handlers ---------------------------------------------------
  void handle_read() override;
  void handle_write() override;
  // Closes at once, dropping queued output (Python).
  void handle_close() override;
  // Output queued, or not connected yet (to see the connect complete).
  bool writable() override;

 protected:
  size_t queued_size() const final { return queued_memory(); }
  bool output_queued() const final { return !fifo_.empty(); }
  // Output queued, or not connected yet: writable() and the declared value.
  bool wants_write() const final { return !fifo_.empty() || !connected(); }

  // Python's _collect_incoming_data / _get_data: an optional place to
  // accumulate a message.
  void append_incoming(std::string_view data) {
    if (!incoming_) incoming_ = std::make_unique<std::string>();
    incoming_->append(data);
  }
  std::string take_incoming() {
    return incoming_ ? std::exchange(*incoming_, {}) : std::string();
  }

 private:
  struct Entry {
    std::string data;
    size_t sent = 0;                     // bytes of data already sent
    std::unique_ptr<Producer> producer;  // set: a producer entry
    bool close = false;                  // set: close_when_done() marker
  };

  // Splits the buffered input at terminators (Python's handle_read loop).
  void process_input();
  // The unclassified input: borrowed_ while feed() scans a caller's bytes in
  // place (then in_ is empty), else in_.
  std::string_view input() const;
  void consume_input(size_t n);
  void clear_input();
  // Moves borrowed bytes into in_ (before they may be referenced no more).
  void unborrow();
  // Sends queued buffers from the head; returns after one syscall.
  void send_gathered();

  Terminator terminator_;
  asyncore::ByteBuffer in_;
  std::string_view borrowed_;
  std::unique_ptr<std::string> incoming_;  // only if append_incoming is used
  OutputQueue<Entry> fifo_;
  size_t queued_bytes_ = 0;
};

}  // namespace asynchat

template <>
struct asyncore::internal::LibraryPredicates<asynchat::AsyncChat>
    : std::true_type {};

#endif  // ASYNCOREPP_CHAT_ASYNC_CHAT_H_
