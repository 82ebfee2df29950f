// What the gateway's connection and exchange files share: limits, event masks and small
// header helpers. Internal to the gateway's proxy (proxy.h and its .cc files).
#pragma once

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <time.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/event_loop.h"
#include "core/strings.h"
#include "http/parser.h"

namespace bulwark::gateway {

inline constexpr size_t kUpstreamBufferBytes = 32 * 1024;
inline constexpr size_t kBodySlackBytes = 16 * 1024;  // client buffer room beyond the largest head
inline constexpr size_t kMaxPending = 256 * 1024;  // output queued before the other side is paused
inline constexpr uint32_t kConnEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
// Events after which the peer may have closed: its EOF (or error) must be read.
inline constexpr uint32_t kPeerGone = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
// Events that call for a read.
inline constexpr uint32_t kReadable = EPOLLIN | kPeerGone;

inline bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// A client-supplied X-Request-Id is kept when it is short and made of safe characters, so it
// cannot inject anything into logs or upstream headers.
inline bool ValidRequestId(std::string_view v) {
  if (v.empty() || v.size() > 128) return false;
  for (char c : v) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=';
    if (!ok) return false;
  }
  return true;
}

// W3C Trace Context: "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>", ids not all zero.
inline bool ValidTraceparent(std::string_view v) {
  if (v.size() < 55) return false;
  if (v.substr(0, 2) == "ff" || !IsHex(v[0]) || !IsHex(v[1]) || v[2] != '-' || v[35] != '-' ||
      v[52] != '-') {
    return false;
  }
  if (v.substr(0, 2) == "00" && v.size() != 55) return false;
  bool trace_zero = true, parent_zero = true;
  for (int i = 3; i < 35; ++i) {
    if (!IsHex(v[i])) return false;
    trace_zero &= v[i] == '0';
  }
  for (int i = 36; i < 52; ++i) {
    if (!IsHex(v[i])) return false;
    parent_zero &= v[i] == '0';
  }
  return !trace_zero && !parent_zero && IsHex(v[53]) && IsHex(v[54]);
}

// True when `name` is listed in a Connection header value (those headers are hop-by-hop too).
inline bool NamedInConnection(std::string_view connection, std::string_view name) {
  while (!connection.empty()) {
    size_t comma = connection.find(',');
    std::string_view tok = connection.substr(0, comma);
    while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) tok.remove_prefix(1);
    while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) tok.remove_suffix(1);
    if (EqualsIgnoreCase(tok, name)) return true;
    if (comma == std::string_view::npos) break;
    connection.remove_prefix(comma + 1);
  }
  return false;
}

inline void AppendHex(std::string* out, uint64_t v) {
  char buf[17];
  int n = 0;
  do {
    buf[16 - n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  out->append(buf + 17 - n, n);
}

// Microseconds as milliseconds with three decimals ("12.345"), without printf's float path.
inline void AppendMillis(std::string* out, int64_t us) {
  if (us < 0) us = 0;
  StrAppend(out, us / 1000, ".");
  int frac = static_cast<int>(us % 1000);
  out->push_back(static_cast<char>('0' + frac / 100));
  out->push_back(static_cast<char>('0' + frac / 10 % 10));
  out->push_back(static_cast<char>('0' + frac % 10));
}

// nginx ngx_http_gzip_ok: the codings list names gzip without q=0 (q=0, q=0.0, q=0.00...).
inline bool AcceptsGzip(std::string_view v) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = v.substr(0, comma);
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    size_t semi = item.find(';');
    std::string_view name = item.substr(0, semi);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (name.size() != 4 || !http::EqualsLower(name, "gzip")) continue;
    if (semi == std::string_view::npos) return true;
    std::string_view params = item.substr(semi + 1);
    size_t q = params.find("q=");
    if (q == std::string_view::npos) return true;
    std::string_view qv = params.substr(q + 2);
    bool zero = !qv.empty() && qv[0] == '0';
    for (size_t i = 1; zero && i < qv.size() && qv[i] != ' ' && qv[i] != ';'; ++i)
      zero = qv[i] == '.' || qv[i] == '0';
    if (!zero) return true;
  }
  return false;
}

// nginx add_header without `always` applies to these statuses only.
inline bool AddHeaderStatus(int status) {
  switch (status) {
    case 200:
    case 201:
    case 204:
    case 206:
    case 301:
    case 302:
    case 303:
    case 304:
    case 307:
    case 308:
      return true;
    default:
      return false;
  }
}

// The value of cookie `name` in the request's Cookie headers (nullopt when absent).
inline std::optional<std::string_view> CookieValue(const http::RequestHead& req,
                                                   std::string_view name) {
  for (const auto& h : req.headers) {
    if (h.name.size() != 6 || !http::EqualsLower(h.name, "cookie")) continue;
    std::string_view v = h.value;
    while (!v.empty()) {
      size_t semi = v.find(';');
      std::string_view pair = v.substr(0, semi);
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      size_t eq = pair.find('=');
      if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
        std::string_view val = pair.substr(eq + 1);
        while (!val.empty() && val.back() == ' ') val.remove_suffix(1);
        return val;
      }
      if (semi == std::string_view::npos) break;
      v.remove_prefix(semi + 1);
    }
  }
  return std::nullopt;
}

inline void AppendHex16(std::string* out, uint64_t v) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) out->push_back(kHex[(v >> (i * 4)) & 15]);
}

inline bool ParseHex16(std::string_view s, uint64_t* v) {
  if (s.size() != 16) return false;
  uint64_t r = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    r = (r << 4) | static_cast<uint64_t>(d);
  }
  *v = r;
  return true;
}

// The signature in a sticky cookie: HMAC-SHA256 over the upstream and server id, 64 bits of it.
inline void AppendStickyMac(std::string* out, std::string_view secret, std::string_view upstream,
                            uint64_t id) {
  std::string data(upstream);
  data.push_back('\n');
  AppendHex16(&data, id);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | md[i];
  AppendHex16(out, v);
}

// "ID.MAC" with a valid MAC -> the server id.
inline bool ParseStickyCookie(std::string_view v, std::string_view secret,
                              std::string_view upstream, uint64_t* id) {
  if (v.size() != 33 || v[16] != '.') return false;
  uint64_t parsed = 0;
  if (!ParseHex16(v.substr(0, 16), &parsed)) return false;
  std::string mac;
  AppendStickyMac(&mac, secret, upstream, parsed);
  if (CRYPTO_memcmp(mac.data(), v.data() + 17, 16) != 0) return false;
  *id = parsed;
  return true;
}

inline void AppendHeaderLine(std::string* out, std::string_view name, std::string_view value) {
  out->append(name);
  out->append(": ");
  out->append(value);
  out->append("\r\n");
}

}  // namespace bulwark::gateway
