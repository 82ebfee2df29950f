// Little-endian fields for the records the caches keep in Redis and in memory: fixed-width
// integers and strings with a 16-bit length. The reader never reads past its input; every read
// says whether the field was there.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

namespace bulwark::cache {

inline void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
inline void PutU16(std::string* out, size_t v) { PutLe(out, v, 2); }
inline void PutU32(std::string* out, size_t v) { PutLe(out, v, 4); }
inline void PutI64(std::string* out, int64_t v) { PutLe(out, static_cast<uint64_t>(v), 8); }
// At most 65,535 bytes of `s` (the caller bounds what it stores).
inline void PutStr16(std::string* out, std::string_view s) {
  size_t n = std::min<size_t>(s.size(), 0xFFFF);
  PutU16(out, n);
  out->append(s.substr(0, n));
}

class LeReader {
 public:
  explicit LeReader(std::string_view d) : d_(d) {}
  bool U8(size_t* v) { return Le(v, 1); }
  bool U16(size_t* v) { return Le(v, 2); }
  bool U32(size_t* v) { return Le(v, 4); }
  bool I64(int64_t* v) {
    uint64_t u = 0;
    if (!Le(&u, 8)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool Bytes(size_t n, std::string_view* out) {
    if (d_.size() < n) return false;
    *out = d_.substr(0, n);
    d_.remove_prefix(n);
    return true;
  }
  bool Str16(std::string_view* out) {
    size_t n = 0;
    return U16(&n) && Bytes(n, out);
  }
  std::string_view rest() const { return d_; }

 private:
  template <typename T>
  bool Le(T* v, int bytes) {
    if (d_.size() < static_cast<size_t>(bytes)) return false;
    uint64_t u = 0;
    for (int i = 0; i < bytes; ++i)
      u |= static_cast<uint64_t>(static_cast<uint8_t>(d_[i])) << (8 * i);
    *v = static_cast<T>(u);
    d_.remove_prefix(static_cast<size_t>(bytes));
    return true;
  }

  std::string_view d_;
};

}  // namespace bulwark::cache
