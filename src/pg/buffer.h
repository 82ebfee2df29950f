// A growable byte buffer with read and write positions, for protocol streams: reads land at the
// end, messages are consumed from the front, and the unread part moves to the front only when
// the free space runs out. Grows (up to the caller's limit) only when one message is larger than
// what it holds.
#pragma once

#include <cstring>
#include <memory>
#include <string_view>

namespace bulwark::pg {

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

}  // namespace bulwark::pg
