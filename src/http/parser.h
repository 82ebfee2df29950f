// HTTP/1.1 message heads (RFC 9112), parsed as views into the connection's read buffer.
//
// The parser is strict where leniency lets two parties disagree about where a message ends
// (request smuggling): bare LF and obs-fold are refused, Content-Length must be digits and agree
// with its duplicates, Transfer-Encoding must be exactly "chunked" and never appear with
// Content-Length. Each refusal carries the status to answer with; the connection is then closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::http {

struct Header {
  std::string_view name;
  std::string_view value;
};

struct Limits {
  size_t max_request_line = 8192;   // nginx large_client_header_buffers: 8k; over it is 414
  size_t max_header_bytes = 32768;  // the whole head; over it is 431
  int max_headers = 100;            // over it is 431
};

enum class Method : uint8_t {
  kGet,
  kHead,
  kPost,
  kPut,
  kDelete,
  kOptions,
  kPatch,
  kTrace,
  kConnect,
  kOther
};
constexpr int kMethodCount = 10;
std::string_view MethodName(Method m);
// RFC 9110 9.2.2: GET HEAD OPTIONS TRACE PUT DELETE are idempotent.
bool IsIdempotent(Method m);

enum class BodyKind : uint8_t { kNone, kLength, kChunked, kUntilClose };

struct ParseError {
  int status = 400;
  std::string_view reason;  // a short phrase for logs and the error page
};

enum class ParseStatus { kDone, kNeedMore, kError };

// Fields shared by requests and responses: headers and the framing derived from them.
struct MessageHead {
  std::vector<Header> headers;
  int version_minor = 1;
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;
  bool connection_upgrade = false;  // "Connection: upgrade" was present
  std::string_view connection;      // raw Connection value (lists more hop-by-hop headers)
  std::string_view upgrade;         // Upgrade header value
  size_t head_len = 0;              // bytes of the head, including leading CRLFs and the final CRLF

  const Header* Find(std::string_view lower_name) const;

 protected:
  void ClearMessage();
};

struct RequestHead : MessageHead {
  Method method = Method::kGet;
  std::string_view method_str;
  std::string_view target;  // as sent
  std::string_view path;    // target without the query (origin-form)
  std::string_view query;   // after '?', without it
  std::string_view host;
  bool expect_continue = false;
  void Clear();
};

struct ResponseHead : MessageHead {
  int status = 0;
  std::string_view reason;
  void Clear();
};

// Incremental parser state for one message: remembers how far lines were already checked, so a
// head trickling in byte by byte costs O(n) in total, not O(n^2).
class HeadScanner {
 public:
  void Reset() {
    scanned_ = 0;
    line_start_ = 0;
    lines_ = 0;
  }
  // Scans data[0..len) for the end of the head. Returns kDone with *end set past the final CRLF.
  ParseStatus Scan(const char* data, size_t len, const Limits& limits, bool is_request, size_t* end,
                   ParseError* err);

 private:
  size_t scanned_ = 0;
  size_t line_start_ = 0;
  int lines_ = 0;
};

// Parses a complete request head in data[0..len). `len` must cover the head (from HeadScanner).
ParseStatus ParseRequestHead(const char* data, size_t len, const Limits& limits, RequestHead* out,
                             ParseError* err);

// Convenience: scan and parse in one call (used by tests and the fuzzer).
ParseStatus ParseRequest(const char* data, size_t len, const Limits& limits, RequestHead* out,
                         ParseError* err);

// Parses a complete response head. `request_method` decides whether a body follows (HEAD).
ParseStatus ParseResponseHead(const char* data, size_t len, const Limits& limits,
                              Method request_method, ResponseHead* out, ParseError* err);
ParseStatus ParseResponse(const char* data, size_t len, const Limits& limits, Method request_method,
                          ResponseHead* out, ParseError* err);

// Case-insensitive ASCII comparison against an already lower-case name.
bool EqualsLower(std::string_view s, std::string_view lower);
// True when the comma-separated `list` contains `token` (case-insensitive).
bool ListHasToken(std::string_view list, std::string_view lower_token);
// The reason phrase for a status code ("Not Found").
std::string_view StatusReason(int status);
// True for hop-by-hop headers (RFC 9110 7.6.1) that a proxy never forwards.
bool IsHopByHop(std::string_view name);
// The fields of a chunked body's trailer section (ChunkedDecoder::trailers), names lower-cased,
// values without surrounding whitespace. Lines that are not "token: value", values with control
// characters, and fields RFC 9110 6.5.1 keeps out of trailers (framing, routing, hop-by-hop,
// Content-*, authentication, Set-Cookie) are left out, as HTTP/2 would refuse them.
std::vector<std::pair<std::string, std::string>> TrailerFields(std::string_view lines);

}  // namespace bulwark::http
