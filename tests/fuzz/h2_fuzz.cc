// libFuzzer target: the HTTP/2 input path. The input follows the client preface into an
// nghttp2 server session set up as the gateway's (no automatic window updates, bounded
// CONTINUATION frames); each complete header block becomes the HTTP/1.1 head an exchange would
// read (http::H2RequestBuilder), which must parse into exactly the fields that went in: nothing
// a client sends over HTTP/2 can smuggle a header, a request line or a body framing into it.
#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/h2_request.h"
#include "http/parser.h"

namespace {

struct Stream {
  bulwark::http::H2RequestBuilder builder;
  std::string method;
  size_t fields = 0;  // regular fields other than cookie and host
  bool host = false, cookie = false;
};

constexpr size_t kMaxList = 8192;

Stream g_stream;  // one header block at a time: HEADERS and its CONTINUATIONs are contiguous

int OnBeginHeaders(nghttp2_session*, const nghttp2_frame*, void*) {
  g_stream = Stream();
  return 0;
}

int OnHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
             const uint8_t* value, size_t valuelen, uint8_t, void*) {
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  size_t before = g_stream.builder.list_bytes();
  g_stream.builder.Add(n, v, kMaxList);
  if (g_stream.builder.too_large() || before + namelen + valuelen + 32 > kMaxList) return 0;
  if (n == ":method") g_stream.method.assign(v);
  if (!n.empty() && n[0] != ':') {
    if (n == "cookie") {
      g_stream.cookie = g_stream.cookie || !v.empty();  // empty crumbs make no Cookie header
    } else if (n == "host") {
      g_stream.host = true;
    } else {
      ++g_stream.fields;
    }
  }
  return 0;
}

int OnFrameRecv(nghttp2_session*, const nghttp2_frame* f, void*) {
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (g_stream.builder.too_large()) return 0;
  bool chunked = false;
  bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  std::string head;
  g_stream.builder.Build(end, &chunked, &head);
  bulwark::http::Limits limits;
  limits.max_header_bytes = 4 * kMaxList;
  limits.max_request_line = 4 * kMaxList;
  limits.max_headers = 10000;
  bulwark::http::RequestHead req;
  bulwark::http::ParseError err;
  auto st = bulwark::http::ParseRequest(head.data(), head.size(), limits, &req, &err);
  if (st == bulwark::http::ParseStatus::kNeedMore) __builtin_trap();  // always a whole head
  if (st != bulwark::http::ParseStatus::kDone) return 0;              // refused: 400 and friends
  if (req.head_len != head.size()) __builtin_trap();
  if (req.method_str != g_stream.method) __builtin_trap();
  // :authority or host, the joined cookie, the chunked framing: one header each.
  size_t expected = g_stream.fields + (g_stream.cookie ? 1 : 0) + (chunked ? 1 : 0);
  size_t hosts = 0;
  for (const auto& h : req.headers) hosts += h.name == "host" ? 1 : 0;
  if (req.headers.size() - hosts != expected || hosts > 1) __builtin_trap();
  return 0;
}

int OnDataChunk(nghttp2_session* s, uint8_t, int32_t id, const uint8_t*, size_t len, void*) {
  nghttp2_session_consume(s, id, len);  // as the gateway does once the exchange took the bytes
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnDataChunk);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, 8);
  nghttp2_session* s = nullptr;
  nghttp2_session_server_new2(&s, cb, nullptr, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
                                 {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxList}};
  nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, 2);
  static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  nghttp2_session_mem_recv(s, reinterpret_cast<const uint8_t*>(kPreface), sizeof(kPreface) - 1);
  // In two pieces, as a network would split it.
  size_t half = size / 2;
  if (nghttp2_session_mem_recv(s, data, half) >= 0) {
    nghttp2_session_mem_recv(s, data + half, size - half);
  }
  const uint8_t* out = nullptr;
  while (nghttp2_session_mem_send(s, &out) > 0) {
  }
  nghttp2_session_del(s);
  return 0;
}
