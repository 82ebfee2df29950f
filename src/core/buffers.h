// The byte containers of bulwark's connections, the gateway's and the pg proxy's alike. Input:
// `Buffer`, fixed capacity (an HTTP head has a hard limit, and the body streams through), and
// `ByteBuffer`, growable up to the caller's limit (a PostgreSQL message must be whole before it
// is routed). Output: `OutQueue`. All keep their memory between uses, so a connection
// allocates once, not per request.
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace bulwark {

// A fixed-capacity byte buffer with read and write positions. Allocated once per connection.
struct Buffer {
  std::unique_ptr<char[]> data;
  size_t cap = 0;
  size_t rpos = 0;
  size_t wpos = 0;

  void Init(size_t capacity) {
    if (cap != capacity) {
      data.reset(new char[capacity]);
      cap = capacity;
    }
    rpos = wpos = 0;
  }
  char* read_ptr() { return data.get() + rpos; }
  size_t readable() const { return wpos - rpos; }
  char* write_ptr() { return data.get() + wpos; }
  size_t writable() const { return cap - wpos; }
  void Consume(size_t n) {
    rpos += n;
    if (rpos == wpos) rpos = wpos = 0;
  }
  // Moves unread bytes to the front.
  void Compact() {
    if (rpos == 0) return;
    size_t n = wpos - rpos;
    if (n > 0) std::memmove(data.get(), data.get() + rpos, n);
    rpos = 0;
    wpos = n;
  }
};

// A growable byte buffer with read and write positions, for protocol streams: reads land at the
// end, messages are consumed from the front, and the unread part moves to the front only when
// the free space runs out. Grows (up to the caller's limit) only when one message is larger than
// what it holds.
class ByteBuffer {
 public:
  explicit ByteBuffer(size_t initial = 16 * 1024) : cap_(initial) {}

  std::string_view view() const { return {data_.get() + rpos_, wpos_ - rpos_}; }
  const char* read_ptr() const { return data_.get() + rpos_; }
  size_t size() const { return wpos_ - rpos_; }
  bool empty() const { return wpos_ == rpos_; }
  size_t capacity() const { return cap_; }

  void Consume(size_t n) {
    rpos_ += n;
    if (rpos_ == wpos_) rpos_ = wpos_ = 0;
  }
  void Clear() { rpos_ = wpos_ = 0; }

  // Room for at least `n` more bytes at the end (moving or growing as needed).
  char* Reserve(size_t n) {
    if (!data_) data_.reset(new char[cap_]);
    if (cap_ - wpos_ >= n) return data_.get() + wpos_;
    size_t used = wpos_ - rpos_;
    if (cap_ >= used + n && rpos_ > 0) {
      std::memmove(data_.get(), data_.get() + rpos_, used);
    } else {
      size_t cap = cap_;
      while (cap < used + n) cap *= 2;
      std::unique_ptr<char[]> d(new char[cap]);
      if (used) std::memcpy(d.get(), data_.get() + rpos_, used);
      data_ = std::move(d);
      cap_ = cap;
    }
    rpos_ = 0;
    wpos_ = used;
    return data_.get() + wpos_;
  }
  // Free space at the end without moving anything (0 when full).
  size_t tail_room() const { return data_ ? cap_ - wpos_ : 0; }
  char* write_ptr() { return data_.get() + wpos_; }
  void Commit(size_t n) { wpos_ += n; }

  void Append(std::string_view s) {
    std::memcpy(Reserve(s.size()), s.data(), s.size());
    wpos_ += s.size();
  }
  void Append(char c) {
    *Reserve(1) = c;
    ++wpos_;
  }
  // Gives memory back after a large message passed (a connection keeps its buffer for life).
  void Shrink(size_t to) {
    if (cap_ > to && empty()) {
      data_.reset();
      cap_ = to;
      rpos_ = wpos_ = 0;
    }
  }

 private:
  std::unique_ptr<char[]> data_;
  size_t cap_;
  size_t rpos_ = 0, wpos_ = 0;
};

// Bytes queued for a socket: appended at the end of `buf`, written from `off`. Keeps its
// capacity between uses.
struct OutQueue {
  std::string buf;
  size_t off = 0;
  size_t pending() const { return buf.size() - off; }
  const char* data() const { return buf.data() + off; }
  // `n` bytes were written; an emptied queue starts again at the front.
  void Consumed(size_t n) {
    off += n;
    if (off == buf.size()) Clear();
  }
  void Clear() {
    buf.clear();
    off = 0;
  }
};

}  // namespace bulwark
