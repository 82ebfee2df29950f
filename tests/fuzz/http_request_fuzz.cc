// libFuzzer target: the request head parser, the response parser and the chunked decoder.
#include <cstddef>
#include <cstdint>
#include <string>

#include "http/chunked.h"
#include "http/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  bulwark::http::Limits limits;
  limits.max_header_bytes = 8192;
  limits.max_request_line = 4096;
  limits.max_headers = 64;
  bulwark::http::RequestHead req;
  bulwark::http::ParseError err;
  // Byte by byte through the scanner must agree with the one-shot parse.
  bulwark::http::ParseStatus whole = bulwark::http::ParseRequest(p, size, limits, &req, &err);
  bulwark::http::HeadScanner sc;
  size_t end = 0;
  bulwark::http::ParseStatus st = bulwark::http::ParseStatus::kNeedMore;
  for (size_t i = 1; i <= size && st == bulwark::http::ParseStatus::kNeedMore; ++i)
    st = sc.Scan(p, i, limits, true, &end, &err);
  if (st == bulwark::http::ParseStatus::kDone) {
    st = bulwark::http::ParseRequestHead(p, end, limits, &req, &err);
  }
  if ((st == bulwark::http::ParseStatus::kDone) != (whole == bulwark::http::ParseStatus::kDone))
    __builtin_trap();
  if (whole == bulwark::http::ParseStatus::kDone) {
    if (req.head_len > size) __builtin_trap();
    if (req.body == bulwark::http::BodyKind::kChunked && req.content_length != 0) __builtin_trap();
    size_t consumed = 0;
    bulwark::http::ChunkedDecoder d;
    uint64_t total = 0;
    d.Feed(p + req.head_len, size - req.head_len, &consumed,
           [&](const char*, size_t n) { total += n; });
    if (consumed > size - req.head_len || total > size) __builtin_trap();
    // The trailer section is kept whole and bounded; what TrailerFields keeps for an HTTP/2
    // client is a lower-case token name and a value without CR, LF or NUL.
    if (d.trailers().size() > 2 * 16384) __builtin_trap();  // 16 KiB counted, plus LFs
    for (const auto& [name, value] : bulwark::http::TrailerFields(d.trailers())) {
      if (name.empty()) __builtin_trap();
      for (char c : name)
        if (c >= 'A' && c <= 'Z') __builtin_trap();
      for (char c : value)
        if (c == '\r' || c == '\n' || c == '\0') __builtin_trap();
    }
  }
  bulwark::http::ResponseHead resp;
  bulwark::http::ParseResponse(p, size, limits, bulwark::http::Method::kGet, &resp, &err);
  return 0;
}
