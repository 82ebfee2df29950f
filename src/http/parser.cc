#include "http/parser.h"

#include <cstring>

namespace bulwark::http {
namespace {

// RFC 9110 5.6.2 tchar.
struct TcharTable {
  bool v[256] = {};
  constexpr TcharTable() {
    for (int c = '0'; c <= '9'; ++c) v[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) v[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) v[c] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) v[static_cast<unsigned char>(c)] = true;
  }
};
constexpr TcharTable kTcharTable;
constexpr const bool* kTchar = kTcharTable.v;

inline char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

inline bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

// Field values: VCHAR, obs-text, SP, HTAB. Anything else (NUL, CR, other controls, DEL) is refused.
bool ValidFieldValue(std::string_view v) {
  for (unsigned char c : v) {
    if (c < 0x20 ? c != '\t' : c == 0x7f) return false;
  }
  return true;
}

ParseStatus Fail(ParseError* err, int status, std::string_view reason) {
  err->status = status;
  err->reason = reason;
  return ParseStatus::kError;
}

size_t SkipLeadingCrlf(const char* data, size_t len) {
  size_t pos = 0;
  while (pos + 1 < len && data[pos] == '\r' && data[pos + 1] == '\n') pos += 2;
  return pos;
}

// Parses "1*DIGIT" into *out; false on anything else or overflow past 2^62.
bool ParseContentLength(std::string_view v, uint64_t* out) {
  if (v.empty() || v.size() > 18) return false;
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = n;
  return true;
}

// Last token of a comma list, trimmed.
std::string_view LastToken(std::string_view list) {
  size_t comma = list.rfind(',');
  return TrimOws(comma == std::string_view::npos ? list : list.substr(comma + 1));
}

// Parses header lines in [pos, len) into `out`, deriving framing fields. `pos` is just after the
// start line's CRLF. Returns kDone or kError.
ParseStatus ParseHeaders(const char* data, size_t pos, size_t len, const Limits& limits,
                         bool is_request, MessageHead* out, RequestHead* req, ParseError* err) {
  bool seen_cl = false, seen_te = false;
  int host_count = 0;
  uint64_t cl = 0;
  std::string_view te;
  while (pos < len) {
    const char* eol = static_cast<const char*>(std::memchr(data + pos, '\n', len - pos));
    if (eol == nullptr) return Fail(err, 400, "incomplete header");
    size_t end = static_cast<size_t>(eol - data);  // index of '\n'
    if (end == pos || data[end - 1] != '\r') return Fail(err, 400, "bare LF in header");
    std::string_view line(data + pos, end - 1 - pos);
    pos = end + 1;
    if (line.empty()) break;  // end of head
    if (IsOws(line[0])) return Fail(err, 400, "obsolete line folding");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return Fail(err, 400, "malformed header line");
    std::string_view name = line.substr(0, colon);
    for (unsigned char c : name) {
      // Catches "Name : value" too: whitespace before the colon must be refused (RFC 9112 5.1).
      if (!kTchar[c]) return Fail(err, 400, "invalid character in header name");
    }
    std::string_view value = TrimOws(line.substr(colon + 1));
    if (!ValidFieldValue(value)) return Fail(err, 400, "invalid character in header value");
    if (static_cast<int>(out->headers.size()) >= limits.max_headers) {
      return Fail(err, 431, "too many headers");
    }
    out->headers.push_back({name, value});

    switch (name.size()) {
      case 4:
        if (is_request && EqualsLower(name, "host")) {
          ++host_count;
          req->host = value;
        }
        break;
      case 6:
        if (is_request && EqualsLower(name, "expect"))
          req->expect_continue = EqualsLower(value, "100-continue");
        break;
      case 7:
        if (EqualsLower(name, "upgrade")) out->upgrade = value;
        break;
      case 10:
        if (EqualsLower(name, "connection")) {
          if (out->connection.empty()) out->connection = value;
          if (ListHasToken(value, "close")) out->keep_alive = false;
          if (ListHasToken(value, "keep-alive") && out->version_minor == 0) out->keep_alive = true;
          if (ListHasToken(value, "upgrade")) out->connection_upgrade = true;
        }
        break;
      case 14:
        if (EqualsLower(name, "content-length")) {
          uint64_t v;
          if (!ParseContentLength(value, &v)) return Fail(err, 400, "invalid Content-Length");
          if (seen_cl && v != cl) return Fail(err, 400, "conflicting Content-Length headers");
          seen_cl = true;
          cl = v;
        }
        break;
      case 17:
        if (EqualsLower(name, "transfer-encoding")) {
          if (seen_te) return Fail(err, 400, "duplicate Transfer-Encoding");
          seen_te = true;
          te = value;
        }
        break;
      default:
        break;
    }
  }
  out->head_len = pos;
  if (seen_te) {
    if (seen_cl) return Fail(err, 400, "both Content-Length and Transfer-Encoding");
    if (out->version_minor == 0) return Fail(err, 400, "Transfer-Encoding in an HTTP/1.0 message");
    if (!EqualsLower(LastToken(te), "chunked"))
      return Fail(err, 400, "chunked is not the final transfer coding");
    if (!EqualsLower(te, "chunked")) return Fail(err, 501, "unsupported transfer coding");
    out->body = BodyKind::kChunked;
  } else if (seen_cl) {
    out->content_length = cl;
    out->body = cl > 0 ? BodyKind::kLength : BodyKind::kNone;
  }
  if (is_request) {
    if (host_count > 1) return Fail(err, 400, "duplicate Host header");
    if (host_count == 0 && out->version_minor == 1 && req->host.empty())
      return Fail(err, 400, "missing Host header");
  }
  return ParseStatus::kDone;
}

}  // namespace

std::string_view MethodName(Method m) {
  switch (m) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPost:
      return "POST";
    case Method::kPut:
      return "PUT";
    case Method::kDelete:
      return "DELETE";
    case Method::kOptions:
      return "OPTIONS";
    case Method::kPatch:
      return "PATCH";
    case Method::kTrace:
      return "TRACE";
    case Method::kConnect:
      return "CONNECT";
    case Method::kOther:
      return "OTHER";
  }
  return "OTHER";
}

bool IsIdempotent(Method m) {
  switch (m) {
    case Method::kGet:
    case Method::kHead:
    case Method::kPut:
    case Method::kDelete:
    case Method::kOptions:
    case Method::kTrace:
      return true;
    default:
      return false;
  }
}

bool EqualsLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (Lower(s[i]) != lower[i]) return false;
  }
  return true;
}

bool ListHasToken(std::string_view list, std::string_view lower_token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view tok = TrimOws(list.substr(0, comma));
    if (EqualsLower(tok, lower_token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool IsHopByHop(std::string_view n) {
  switch (n.size()) {
    case 2:
      return EqualsLower(n, "te");
    case 7:
      return EqualsLower(n, "upgrade") || EqualsLower(n, "trailer");
    case 10:
      return EqualsLower(n, "connection") || EqualsLower(n, "keep-alive");
    case 16:
      return EqualsLower(n, "proxy-connection");
    case 17:
      return EqualsLower(n, "transfer-encoding");
    case 18:
      return EqualsLower(n, "proxy-authenticate");
    case 19:
      return EqualsLower(n, "proxy-authorization");
    default:
      return false;
  }
}

const Header* MessageHead::Find(std::string_view lower_name) const {
  for (const auto& h : headers) {
    if (EqualsLower(h.name, lower_name)) return &h;
  }
  return nullptr;
}

void MessageHead::ClearMessage() {
  headers.clear();  // keeps its capacity: no allocation per message
  version_minor = 1;
  body = BodyKind::kNone;
  content_length = 0;
  keep_alive = true;
  connection_upgrade = false;
  connection = {};
  upgrade = {};
  head_len = 0;
}

void RequestHead::Clear() {
  ClearMessage();
  method = Method::kGet;
  method_str = target = path = query = host = {};
  expect_continue = false;
}

void ResponseHead::Clear() {
  ClearMessage();
  status = 0;
  reason = {};
}

ParseStatus HeadScanner::Scan(const char* data, size_t len, const Limits& limits, bool is_request,
                              size_t* end, ParseError* err) {
  size_t i = scanned_;
  while (i < len) {
    const char* nl = static_cast<const char*>(std::memchr(data + i, '\n', len - i));
    if (nl == nullptr) break;
    size_t p = static_cast<size_t>(nl - data);
    if (p == line_start_ || data[p - 1] != '\r') return Fail(err, 400, "bare LF");
    size_t line_len = p - 1 - line_start_;
    if (line_len == 0) {
      if (lines_ == 0) {
        // RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request-line.
        if (!is_request) return Fail(err, 400, "empty status line");
        line_start_ = p + 1;
        i = p + 1;
        if (line_start_ > limits.max_header_bytes) return Fail(err, 400, "too many empty lines");
        continue;
      }
      *end = p + 1;
      scanned_ = p + 1;
      if (*end > limits.max_header_bytes) return Fail(err, 431, "request header fields too large");
      return ParseStatus::kDone;
    }
    if (lines_ == 0 && line_len > limits.max_request_line)
      return Fail(err, 414, "request line too long");
    ++lines_;
    if (lines_ - 1 > limits.max_headers) return Fail(err, 431, "too many headers");
    line_start_ = p + 1;
    i = p + 1;
  }
  scanned_ = len;
  if (lines_ == 0 && len - line_start_ > limits.max_request_line)
    return Fail(err, 414, "request line too long");
  if (len > limits.max_header_bytes) return Fail(err, 431, "request header fields too large");
  return ParseStatus::kNeedMore;
}

ParseStatus ParseRequestHead(const char* data, size_t len, const Limits& limits, RequestHead* out,
                             ParseError* err) {
  out->Clear();
  size_t pos = SkipLeadingCrlf(data, len);
  const char* eol = static_cast<const char*>(std::memchr(data + pos, '\n', len - pos));
  if (eol == nullptr) return Fail(err, 400, "incomplete request line");
  size_t end = static_cast<size_t>(eol - data);
  if (end == pos || data[end - 1] != '\r') return Fail(err, 400, "bare LF");
  std::string_view line(data + pos, end - 1 - pos);
  if (line.size() > limits.max_request_line) return Fail(err, 414, "request line too long");

  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return Fail(err, 400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  for (unsigned char c : method) {
    if (!kTchar[c]) return Fail(err, 400, "invalid method");
  }
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1)
    return Fail(err, 400, "malformed request line");
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (unsigned char c : target) {
    if (c <= 0x20 || c == 0x7f) return Fail(err, 400, "invalid character in request target");
  }
  std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    out->version_minor = 1;
  } else if (version == "HTTP/1.0") {
    out->version_minor = 0;
    out->keep_alive = false;
  } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/" && version[5] >= '0' &&
             version[5] <= '9' && version[6] == '.' && version[7] >= '0' && version[7] <= '9') {
    return Fail(err, 505, "HTTP version not supported");
  } else {
    return Fail(err, 400, "malformed HTTP version");
  }

  out->method_str = method;
  out->method = Method::kOther;
  switch (method.size()) {
    case 3:
      if (method == "GET")
        out->method = Method::kGet;
      else if (method == "PUT")
        out->method = Method::kPut;
      break;
    case 4:
      if (method == "POST")
        out->method = Method::kPost;
      else if (method == "HEAD")
        out->method = Method::kHead;
      break;
    case 5:
      if (method == "PATCH")
        out->method = Method::kPatch;
      else if (method == "TRACE")
        out->method = Method::kTrace;
      break;
    case 6:
      if (method == "DELETE") out->method = Method::kDelete;
      break;
    case 7:
      if (method == "OPTIONS")
        out->method = Method::kOptions;
      else if (method == "CONNECT")
        out->method = Method::kConnect;
      break;
    default:
      break;
  }

  out->target = target;
  std::string_view t = target;
  if (t[0] != '/') {
    // absolute-form (RFC 9112 3.2.2): the authority replaces Host.
    std::string_view rest;
    if (t.size() > 7 && EqualsLower(t.substr(0, 7), "http://")) {
      rest = t.substr(7);
    } else if (t.size() > 8 && EqualsLower(t.substr(0, 8), "https://")) {
      rest = t.substr(8);
    } else if (t == "*" && out->method == Method::kOptions) {
      rest = {};
    } else if (out->method == Method::kConnect) {
      rest = {};  // authority-form; the proxy refuses CONNECT itself
    } else {
      return Fail(err, 400, "invalid request target");
    }
    size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    if (!authority.empty()) out->host = authority;
    t = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (target == "*") t = target;
  }
  // A fragment is not part of a request target (RFC 9112 3.2); like nginx, it ends the path or
  // the query where a client sends one anyway.
  t = t.substr(0, t.find('#'));
  size_t q = t.find('?');
  out->path = t.substr(0, q);
  out->query = q == std::string_view::npos ? std::string_view() : t.substr(q + 1);

  std::string_view absolute_host = out->host;
  ParseStatus st = ParseHeaders(data, end + 1, len, limits, true, out, out, err);
  if (st != ParseStatus::kDone) return st;
  if (!absolute_host.empty()) out->host = absolute_host;
  return ParseStatus::kDone;
}

ParseStatus ParseRequest(const char* data, size_t len, const Limits& limits, RequestHead* out,
                         ParseError* err) {
  HeadScanner scanner;
  size_t end = 0;
  ParseStatus st = scanner.Scan(data, len, limits, true, &end, err);
  if (st != ParseStatus::kDone) return st;
  return ParseRequestHead(data, end, limits, out, err);
}

ParseStatus ParseResponseHead(const char* data, size_t len, const Limits& limits,
                              Method request_method, ResponseHead* out, ParseError* err) {
  out->Clear();
  const char* eol = static_cast<const char*>(std::memchr(data, '\n', len));
  if (eol == nullptr) return Fail(err, 502, "incomplete status line");
  size_t end = static_cast<size_t>(eol - data);
  if (end == 0 || data[end - 1] != '\r') return Fail(err, 502, "bare LF in status line");
  std::string_view line(data, end - 1);
  // "HTTP/1.x SSS[ reason]"
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || (line[7] != '0' && line[7] != '1') ||
      line[8] != ' ') {
    return Fail(err, 502, "malformed status line");
  }
  out->version_minor = line[7] - '0';
  out->keep_alive = out->version_minor == 1;
  int status = 0;
  for (int i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return Fail(err, 502, "malformed status code");
    status = status * 10 + (line[i] - '0');
  }
  if (status < 100) return Fail(err, 502, "malformed status code");
  if (line.size() > 12) {
    if (line[12] != ' ') return Fail(err, 502, "malformed status line");
    out->reason = line.substr(13);
    if (!ValidFieldValue(out->reason)) return Fail(err, 502, "invalid reason phrase");
  }
  out->status = status;
  ParseStatus st = ParseHeaders(data, end + 1, len, limits, false, out, nullptr, err);
  if (st != ParseStatus::kDone) {
    err->status = 502;
    return st;
  }
  // RFC 9112 6.3: responses to HEAD, 1xx, 204 and 304 never have a body, whatever the headers say.
  if (request_method == Method::kHead || status < 200 || status == 204 || status == 304) {
    out->body = BodyKind::kNone;
  } else if (out->body == BodyKind::kNone && out->Find("content-length") == nullptr) {
    out->body = BodyKind::kUntilClose;
    out->keep_alive = false;
  }
  return ParseStatus::kDone;
}

ParseStatus ParseResponse(const char* data, size_t len, const Limits& limits, Method request_method,
                          ResponseHead* out, ParseError* err) {
  HeadScanner scanner;
  size_t end = 0;
  ParseStatus st = scanner.Scan(data, len, limits, false, &end, err);
  if (st == ParseStatus::kError) err->status = 502;
  if (st != ParseStatus::kDone) return st;
  return ParseResponseHead(data, end, limits, request_method, out, err);
}

std::string_view StatusReason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::vector<std::pair<std::string, std::string>> TrailerFields(std::string_view lines) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!lines.empty()) {
    size_t end = lines.find("\r\n");
    std::string_view line = lines.substr(0, end);
    lines.remove_prefix(end == std::string_view::npos ? lines.size() : end + 2);
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon), value = line.substr(colon + 1);
    bool ok = true;
    for (unsigned char c : name) ok &= kTchar[c];
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    for (unsigned char c : value) ok &= (c >= 0x20 && c != 0x7f) || c == '\t' || c >= 0x80;
    if (!ok || IsHopByHop(name)) continue;
    std::string lower(name);
    for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    if (lower == "host" || lower == "authorization" || lower == "set-cookie" || lower == "cookie" ||
        lower.rfind("content-", 0) == 0 || lower == "cache-control" || lower == "expect" ||
        lower == "range" || lower == "location" || lower == "age" || lower == "expires" ||
        lower == "date" || lower == "vary" || lower == "www-authenticate")
      continue;
    out.emplace_back(std::move(lower), std::string(value));
  }
  return out;
}

}  // namespace bulwark::http
