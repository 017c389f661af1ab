// //bench:chat_parse: how fast asynchat::AsyncChat splits its input.
//
//   bazel run -c opt //bench:chat_parse
//   bazel run -c opt //bench:chat_parse -- --benchmark_filter=Scaling
//
// AsyncChat's scanner (process_input) is private and reachable only through
// handle_read(), which recv(2)s from the channel's socket. Each case runs the
// real handle_read() -> process_input() path over one of two transports
// (the "mem" argument):
//   mem:0  a real AF_UNIX socketpair: the peer send(2)s 64 KiB blocks and the
//          channel's handle_read() is called until each block is consumed;
//          syscalls and the kernel's two copies included.
//   mem:1  in memory: this binary defines recv(2) itself (it interposes the
//          libc symbol, for the one fd registered below; every other fd goes
//          to the real syscall), so handle_read()'s recv copies straight
//          from the stream with one memcpy and no syscall. Nothing in chat/
//          or core/ changes; this is what a feed-bytes seam would measure.
// ac_in_buffer_size is the read size (1 B, 4 KiB or 64 KiB). Baselines on
// the same bytes:
//   BM_Memchr      memchr() from '\n' to '\n' over the same buffer: the
//                  issue's target is AsyncChat within 2x of it at 64 KiB reads;
//   BM_MemcpyMemchr  the same after copying each 64 KiB block into a read
//                  buffer: the floor for any parser fed by reads (mem:1 does
//                  exactly that one copy);
//   BM_SocketOnly  the mem:0 send/recv syscalls with no parsing: the part of
//                  every mem:0 number that is the kernel's.
//   BM_ChatFeed    the lines handed over with AsyncChat::feed(): the scan
//                  alone, no read copy; the figure to hold against BM_Memchr.
// The channel's callbacks only count (bytes collected, terminators seen), the
// least any user does; every case checks the counts at the end.
//
// Columns: times are CPU time (the thread's, syscalls included; the machine
// may be shared). "B/s" is in decimal units (939.7M/s = 939.7 MB/s);
// bytes_per_second is the same in binary units. "time/B" (the scaling cases)
// must stay flat as the input grows: that is the linear-time check. "rss_MB"
// is the process's peak RSS; the streams are generated block by block (a
// 1 GiB stream costs 64 KiB), so it shows the channel's memory staying
// bounded. The default run takes about a minute; the single largest case
// is the 1 GiB counting-down integer terminator (~0.2 s per iteration).
// (Debian's libbenchmark prints "Library was built as DEBUG": that is the
// library's own build, not the code measured, which -c opt optimizes.)
#include <benchmark/benchmark.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "chat/async_chat.h"
#include "core/channel_map.h"
#include "core/socket.h"

// The in-memory transport: recv() on `fd` copies from [data, data + left).
namespace memory_transport {
int fd = -1;
const char* data = nullptr;
size_t left = 0;
}  // namespace memory_transport

// Replaces libc's recv(2) in this binary (see the file comment).
extern "C" ssize_t recv(int fd, void* buf, size_t len, int flags) {
  namespace mt = memory_transport;
  if (fd != mt::fd || fd < 0) {
    return ::syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr);
  }
  if (mt::left == 0) {
    errno = EAGAIN;
    return -1;
  }
  const size_t n = len < mt::left ? len : mt::left;
  std::memcpy(buf, mt::data, n);
  mt::data += n;
  mt::left -= n;
  return static_cast<ssize_t>(n);
}

namespace {

constexpr size_t kBlock = 64 * 1024;  // what the peer writes at a time
constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

// A channel whose callbacks only count.
class CountingChat : public asynchat::AsyncChat {
 public:
  using AsyncChat::AsyncChat;
  void collect_incoming_data(std::string_view data) override {
    bytes += data.size();
  }
  void found_terminator() override {
    ++terminators;
    if (rearm_count) set_terminator(rearm_count);
  }
  uint64_t bytes = 0;
  uint64_t terminators = 0;
  uint64_t rearm_count = 0;  // non-zero: a fixed-size record protocol
};

// A stream made of `repeats` copies of `block`, then `tail`: generated as it
// is sent, so a 1 GiB stream costs 64 KiB of memory.
struct Stream {
  std::string block;
  uint64_t repeats = 0;
  std::string tail;
  uint64_t size() const { return block.size() * repeats + tail.size(); }
};

// kBlock bytes of lines of `line_len` bytes, each ending in '\n'
// (line_len divides kBlock for the sizes used here).
std::string lines_block(size_t line_len) {
  std::string b(kBlock, '\0');
  for (size_t i = 0; i < kBlock; ++i) {
    b[i] =
        (i % line_len == line_len - 1) ? '\n' : static_cast<char>('a' + i % 26);
  }
  return b;
}

Stream lines_stream(size_t line_len, uint64_t total) {
  return Stream{lines_block(line_len), total / kBlock, ""};
}

// One line of `len` bytes (terminator included) ending in "\r\n".
Stream long_line_stream(uint64_t len) {
  Stream s;
  s.block.assign(kBlock, 'x');
  s.repeats = (len - 2) / kBlock;
  s.tail.assign(len - 2 - s.repeats * kBlock, 'x');
  s.tail += "\r\n";
  return s;
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux: KiB
}

void set_rates(benchmark::State& state, uint64_t stream_bytes, bool per_byte) {
  const double total = static_cast<double>(stream_bytes) *
                       static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(total));
  // Decimal units: "B/s=939.7M/s" is 939.7 MB/s.
  state.counters["B/s"] = benchmark::Counter(total, benchmark::Counter::kIsRate,
                                             benchmark::Counter::OneK::kIs1000);
  if (per_byte) {  // seconds per byte, shown as e.g. "1.15ns"
    state.counters["time/B"] = benchmark::Counter(
        total, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  }
  state.counters["rss_MB"] = peak_rss_mb();
}

// A channel on one end of a socketpair, the writer on the other; with
// `in_memory`, recv() on the channel's fd reads from memory instead.
class Pipe {
 public:
  Pipe(size_t read_size, bool in_memory)
      : read_size_(read_size), in_memory_(in_memory) {
    auto [a, b] = asyncore::Socket::pair();
    peer_ = std::move(b);
    chat_ = std::make_unique<CountingChat>(std::move(a), &map_);
    chat_->ac_in_buffer_size = read_size;
    if (in_memory_) memory_transport::fd = chat_->fileno();
  }
  ~Pipe() {
    if (in_memory_) memory_transport::fd = -1;
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  CountingChat& chat() { return *chat_; }

  // Has the channel read all of `data`. A recv (AF_UNIX stream, or the
  // in-memory one) takes everything available up to the size asked for, so
  // ceil(n / read_size) handle_read() calls consume n bytes exactly.
  void feed(std::string_view data) {
    while (!data.empty()) {
      size_t sent;
      if (in_memory_) {
        memory_transport::data = data.data();
        memory_transport::left = data.size();
        sent = data.size();
      } else {
        ssize_t n = peer_.send_some(data.data(), data.size());
        if (n <= 0) std::abort();  // 64 KiB always fits into an empty socket
        sent = static_cast<size_t>(n);
      }
      for (size_t reads = (sent + read_size_ - 1) / read_size_; reads > 0;
           --reads) {
        chat_->handle_read();
      }
      data.remove_prefix(sent);
    }
  }
  void feed(const Stream& s) {
    for (uint64_t i = 0; i < s.repeats; ++i) feed(s.block);
    if (!s.tail.empty()) feed(s.tail);
  }

  // Nothing may be left unread.
  bool drained() const {
    if (in_memory_) return memory_transport::left == 0;
    int avail = -1;
    return ::ioctl(chat_->fileno(), FIONREAD, &avail) == 0 && avail == 0;
  }

 private:
  asyncore::ChannelMap map_;
  asyncore::Socket peer_;
  std::unique_ptr<CountingChat> chat_;
  size_t read_size_;
  bool in_memory_;
};

// Runs `stream` through a fresh channel with terminator `term` each
// iteration; checks collected + terminator bytes == stream bytes.
void run_chat(benchmark::State& state, const Stream& stream, size_t read_size,
              bool in_memory, const std::string& term, bool per_byte) {
  Pipe pipe(read_size, in_memory);
  CountingChat& chat = pipe.chat();
  chat.set_terminator(term);
  for (auto _ : state) pipe.feed(stream);
  const uint64_t expect = stream.size() * state.iterations();
  if (!pipe.drained() ||
      chat.bytes + chat.terminators * term.size() != expect) {
    state.SkipWithError("AsyncChat lost or invented bytes");
    return;
  }
  set_rates(state, stream.size(), per_byte);
  state.counters["lines"] = static_cast<double>(chat.terminators) /
                            static_cast<double>(state.iterations());
}

// --- The table: line length x read size x transport -----------------

// Args: line length, read size, in memory. 1-byte socket reads are one
// syscall per byte: a smaller stream per iteration for those.
void BM_ChatLines(benchmark::State& state) {
  const size_t line_len = static_cast<size_t>(state.range(0));
  const size_t read_size = static_cast<size_t>(state.range(1));
  const bool in_memory = state.range(2) != 0;
  const Stream stream =
      lines_stream(line_len, read_size == 1 ? kBlock : 1 * kMiB);
  run_chat(state, stream, read_size, in_memory, "\n", false);
}
BENCHMARK(BM_ChatLines)
    ->ArgNames({"line", "read", "mem"})
    ->ArgsProduct({{16, 1024}, {1, 4096, 65536}, {0, 1}});

// The same lines handed over with AsyncChat::feed() in 64 KiB blocks: the
// scan alone, with no read copy (the figure to compare with BM_Memchr).
void BM_ChatFeed(benchmark::State& state) {
  const size_t line_len = static_cast<size_t>(state.range(0));
  const Stream stream = lines_stream(line_len, 1 * kMiB);
  asyncore::ChannelMap map;
  auto chat = asyncore::make<CountingChat>(&map);
  chat->set_terminator("\n");
  for (auto _ : state) {
    for (uint64_t r = 0; r < stream.repeats; ++r) chat->feed(stream.block);
  }
  if (chat->terminators != state.iterations() * (stream.size() / line_len)) {
    state.SkipWithError("feed miscounted");
    return;
  }
  set_rates(state, stream.size(), false);
}
BENCHMARK(BM_ChatFeed)->ArgName("line")->Arg(16)->Arg(1024);

// The two-byte "\r\n" (the prefix-holding path), 64 KiB reads.
void BM_ChatLinesCRLF(benchmark::State& state) {
  const size_t line_len = static_cast<size_t>(state.range(0));
  std::string block = lines_block(line_len);
  for (size_t i = line_len - 2; i < block.size(); i += line_len)
    block[i] = '\r';
  run_chat(state, Stream{block, kMiB / kBlock, ""}, kBlock, state.range(1) != 0,
           "\r\n", false);
}
BENCHMARK(BM_ChatLinesCRLF)
    ->ArgNames({"line", "mem"})
    ->ArgsProduct({{16, 1024}, {0, 1}});

// memchr() from each '\n' to the next over the same 1 MiB of lines (the
// block repeated, as the AsyncChat cases send it); with `copy_first`, each
// block is first copied into a read buffer, as recv does.
void run_memchr(benchmark::State& state, bool copy_first) {
  const size_t line_len = static_cast<size_t>(state.range(0));
  const Stream stream = lines_stream(line_len, 1 * kMiB);
  std::unique_ptr<char[]> buf(new char[kBlock]);
  uint64_t lines = 0;
  for (auto _ : state) {
    for (uint64_t r = 0; r < stream.repeats; ++r) {
      const char* p = stream.block.data();
      if (copy_first) {
        std::memcpy(buf.get(), p, kBlock);
        benchmark::ClobberMemory();
        p = buf.get();
      }
      const char* end = p + kBlock;
      while (const void* q =
                 std::memchr(p, '\n', static_cast<size_t>(end - p))) {
        ++lines;
        p = static_cast<const char*>(q) + 1;
      }
      benchmark::DoNotOptimize(p);
    }
  }
  if (lines != state.iterations() * (stream.size() / line_len)) {
    state.SkipWithError("memchr miscounted");
    return;
  }
  set_rates(state, stream.size(), false);
}

// Baseline: memchr alone.
void BM_Memchr(benchmark::State& state) { run_memchr(state, false); }
BENCHMARK(BM_Memchr)->ArgName("line")->Arg(16)->Arg(1024);

// Baseline: what any parser reading 64 KiB at a time does at least: copy
// each block into a read buffer, then memchr() through it.
void BM_MemcpyMemchr(benchmark::State& state) { run_memchr(state, true); }
BENCHMARK(BM_MemcpyMemchr)->ArgName("line")->Arg(16)->Arg(1024);

// Baseline: the same send and recv syscalls with no parsing at all.
void BM_SocketOnly(benchmark::State& state) {
  const size_t read_size = static_cast<size_t>(state.range(0));
  const Stream stream = lines_stream(16, read_size == 1 ? kBlock : 1 * kMiB);
  auto [a, b] = asyncore::Socket::pair();
  std::unique_ptr<char[]> buf(new char[read_size]);
  uint64_t got = 0;
  for (auto _ : state) {
    for (uint64_t r = 0; r < stream.repeats; ++r) {
      ssize_t n = b.send_some(stream.block.data(), stream.block.size());
      if (n != static_cast<ssize_t>(stream.block.size())) std::abort();
      for (size_t reads = (stream.block.size() + read_size - 1) / read_size;
           reads > 0; --reads) {
        ssize_t m = a.recv_some(buf.get(), read_size);
        if (m > 0) got += static_cast<uint64_t>(m);
      }
    }
  }
  if (got != stream.size() * state.iterations()) {
    state.SkipWithError("socket lost bytes");
    return;
  }
  set_rates(state, stream.size(), false);
}
BENCHMARK(BM_SocketOnly)->ArgName("read")->Arg(1)->Arg(4096)->Arg(65536);

// --- Linear time and bounded memory
// -------------------------------------------

// 16-byte lines, 64 KiB reads: 1, 10 and 100 MiB. time/B must stay flat.
void BM_ChatScaling(benchmark::State& state) {
  const Stream stream =
      lines_stream(16, static_cast<uint64_t>(state.range(0)) * kMiB);
  run_chat(state, stream, kBlock, state.range(1) != 0, "\n", true);
}
BENCHMARK(BM_ChatScaling)
    ->ArgNames({"MiB", "mem"})
    ->ArgsProduct({{1, 10, 100}, {0, 1}});

// 1-byte reads of 16-byte lines: over the socket 64 KiB to 1 MiB (a syscall
// per byte), in memory 1 MiB to 16 MiB.
void BM_ChatOneByteScaling(benchmark::State& state) {
  const Stream stream =
      lines_stream(16, static_cast<uint64_t>(state.range(0)) * kKiB);
  run_chat(state, stream, 1, state.range(1) != 0, "\n", true);
}
BENCHMARK(BM_ChatOneByteScaling)
    ->ArgNames({"KiB", "mem"})
    ->Args({64, 0})
    ->Args({256, 0})
    ->Args({1024, 0})
    ->Args({1024, 1})
    ->Args({4096, 1})
    ->Args({16384, 1});

// One line ending in "\r\n": 1 MiB and 16 MiB in 64 KiB reads, 1 MiB in
// 4 KiB reads, 1 MiB in 1-byte reads (and 16 MiB of those in memory).
void BM_ChatLongLine(benchmark::State& state) {
  const Stream stream =
      long_line_stream(static_cast<uint64_t>(state.range(0)) * kMiB);
  run_chat(state, stream, static_cast<size_t>(state.range(1)),
           state.range(2) != 0, "\r\n", true);
  if (state.counters["lines"] != 1) state.SkipWithError("not one line");
}
BENCHMARK(BM_ChatLongLine)
    ->ArgNames({"MiB", "read", "mem"})
    ->Args({1, 65536, 0})
    ->Args({16, 65536, 0})
    ->Args({1, 4096, 0})
    ->Args({1, 1, 0})
    ->Args({1, 65536, 1})
    ->Args({16, 65536, 1})
    ->Args({1, 1, 1})
    ->Args({16, 1, 1});

// The scanner's worst case: a stream of 'x' and the terminator "x...xy" of
// T bytes, so every byte starts a candidate match that fails at the last
// byte, and every read holds back T-1 bytes (find_prefix_at_end is O(T^2)
// per read, Python's algorithm). Linear in the stream for a fixed T.
// Args: T, MiB, read size (in memory).
void BM_ChatWorstCase(benchmark::State& state) {
  const size_t t = static_cast<size_t>(state.range(0));
  const std::string term = std::string(t - 1, 'x') + "y";
  const Stream stream{std::string(kBlock, 'x'),
                      static_cast<uint64_t>(state.range(1)) * kMiB / kBlock,
                      std::string(1, 'y')};  // "y" ends the one message
  run_chat(state, stream, static_cast<size_t>(state.range(2)), true, term,
           true);
}
BENCHMARK(BM_ChatWorstCase)
    ->ArgNames({"T", "MiB", "read"})
    ->Args({2, 1, 65536})
    ->Args({2, 16, 65536})
    ->Args({64, 1, 65536})
    ->Args({64, 16, 65536})
    ->Args({64, 1, 1})
    ->Args({64, 4, 1});

// An integer terminator counting down over the whole stream (it fires once,
// at the end): 1 MiB, 100 MiB and 1 GiB in 64 KiB reads.
void BM_ChatCount(benchmark::State& state) {
  const uint64_t total = static_cast<uint64_t>(state.range(0));
  Stream stream{std::string(kBlock, 'z'), total / kBlock, ""};
  Pipe pipe(kBlock, state.range(1) != 0);
  CountingChat& chat = pipe.chat();
  for (auto _ : state) {
    chat.set_terminator(total);
    pipe.feed(stream);
  }
  if (!pipe.drained() || chat.bytes != total * state.iterations() ||
      chat.terminators != static_cast<uint64_t>(state.iterations())) {
    state.SkipWithError("the count terminator misfired");
    return;
  }
  set_rates(state, total, true);
}
BENCHMARK(BM_ChatCount)
    ->ArgNames({"bytes", "mem"})
    ->ArgsProduct({{1 << 20, 100 << 20, int64_t{1} << 30}, {0, 1}});

// Fixed-size records: an integer terminator of 16 re-armed by every
// found_terminator() (netstring-like protocols), 64 KiB reads, 1 MiB.
void BM_ChatRecords(benchmark::State& state) {
  const Stream stream = lines_stream(16, 1 * kMiB);
  Pipe pipe(kBlock, state.range(0) != 0);
  CountingChat& chat = pipe.chat();
  chat.rearm_count = 16;
  chat.set_terminator(16);
  for (auto _ : state) pipe.feed(stream);
  if (chat.bytes != stream.size() * state.iterations() ||
      chat.terminators != chat.bytes / 16) {
    state.SkipWithError("records miscounted");
    return;
  }
  set_rates(state, stream.size(), false);
}
BENCHMARK(BM_ChatRecords)->ArgName("mem")->Arg(0)->Arg(1);

}  // namespace
