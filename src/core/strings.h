// String helpers over std::string_view. (Debian's abseil is built with its own string_view type,
// so absl::StrCat and friends do not take std::string_view; these do.)
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/strings/string_view.h"

namespace bulwark {

namespace strings_internal {
inline void AppendPiece(std::string* out, std::string_view s) { out->append(s.data(), s.size()); }
inline void AppendPiece(std::string* out, absl::string_view s) { out->append(s.data(), s.size()); }
inline void AppendPiece(std::string* out, const std::string& s) { out->append(s); }
inline void AppendPiece(std::string* out, const char* s) { out->append(s); }
inline void AppendPiece(std::string* out, char c) { out->push_back(c); }
template <typename T,
          typename = std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, char> &&
                                      !std::is_same_v<T, bool>>>
void AppendPiece(std::string* out, T v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr);
}
inline void AppendPiece(std::string* out, bool v) { out->append(v ? "true" : "false"); }
void AppendPiece(std::string* out, double v);
}  // namespace strings_internal

template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  (strings_internal::AppendPiece(out, args), ...);
}

template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string s;
  StrAppend(&s, args...);
  return s;
}

// Parses a whole decimal integer (optional leading '-'); false on anything else or overflow.
template <typename T>
bool ParseInt(std::string_view s, T* out) {
  if (s.empty()) return false;
  const char* b = s.data();
  if (*b == '+') ++b;
  T v{};
  auto r = std::from_chars(b, s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return false;
  *out = v;
  return true;
}

bool StartsWith(std::string_view s, std::string_view prefix);
bool EndsWith(std::string_view s, std::string_view suffix);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
bool EndsWithIgnoreCase(std::string_view s, std::string_view suffix);
std::string AsciiLower(std::string_view s);
std::string AsciiUpper(std::string_view s);
std::vector<std::string> Split(std::string_view s, char sep, bool skip_empty = false);
std::string Join(const std::vector<std::string>& parts, std::string_view sep);
// Without leading and trailing spaces, tabs, CR and LF.
std::string_view Trim(std::string_view s);
// 1536 -> "1.5 KiB" (binary units, one decimal above bytes), for messages and listings.
std::string HumanBytes(int64_t n);
// Lower-case hex of `n` bytes.
std::string HexLower(const void* p, size_t n);
// strftime(3) of a Unix time in milliseconds, in UTC ("%Y%m%dT%H%M%SZ").
std::string FormatUtc(int64_t ms, const char* format);
// Go's url.QueryEscape: A-Z a-z 0-9 - _ . ~ as they are, space as '+', every other byte as %XX
// (what Prometheus and Alertmanager put in the links they make).
std::string UrlQueryEscape(std::string_view s);

// RFC 3986 2.3's unreserved characters: A-Z a-z 0-9 - . _ ~ (an escape of one may be decoded
// without changing what a URI means).
bool IsUriUnreserved(unsigned char c);
// 0-15 for a hex digit of either case, -1 for anything else.
constexpr int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
// Appends `marker` and `c` as two upper-case hex digits: "%2F" (URIs), "=0D" (RFC 2047 Q).
void AppendHexEscape(std::string* out, char marker, unsigned char c);
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace bulwark
