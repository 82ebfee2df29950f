// Response filters: the client's response head (hop-by-hop headers, add_header, X-Cache,
// sticky cookies) and the body, passed through, de-chunked for HTTP/1.0 or gzipped
// (nginx's gzip filter).
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "core/log.h"
#include "core/strings.h"
#include "core/units.h"
#include "gateway/bans.h"
#include "gateway/proxy.h"
#include "gateway/proxy_internal.h"
#include "gateway/rate_limit.h"
#include "gateway/shared_limit.h"
#include "gateway/worker.h"

namespace bulwark::gateway {

void DownstreamConn::BuildResponseHead() {
  std::string& o = out_.buf;
  ex_.response.body_kind = ex_.response.head.body;
  ex_.response.left = ex_.response.head.content_length;
  ex_.response.dechunk = false;
  if (ex_.response.body_kind == http::BodyKind::kChunked && ex_.request.version_minor == 0) {
    ex_.response.dechunk = true;  // an HTTP/1.0 client gets the decoded body, delimited by close
    ex_.request.keep_alive = false;
  }
  if (ex_.response.body_kind == http::BodyKind::kUntilClose) ex_.request.keep_alive = false;
  if (worker_->draining()) ex_.request.keep_alive = false;
  BanStatus(ex_.response.status);
  ex_.response.gzip = ShouldGzip();
  if (ex_.response.gzip) {
    const GzipConfig& g = ex_.route->cfg->gzip;
    if (!gz_) {
      gz_ = std::make_unique<z_stream>();
      *gz_ = z_stream{};
      // windowBits 15 + 16: a gzip wrapper, as nginx sends.
      if (deflateInit2(gz_.get(), g.level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        gz_.reset();
        ex_.response.gzip = false;
      }
      gz_level_ = g.level;
    } else {
      deflateReset(gz_.get());
      if (gz_level_ != g.level) {
        deflateParams(gz_.get(), g.level, Z_DEFAULT_STRATEGY);
        gz_level_ = g.level;
      }
    }
  }
  o.append(ex_.request.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  StrAppend(&o, ex_.response.status);
  o.push_back(' ');
  o.append(ex_.response.head.reason.empty() ? http::StatusReason(ex_.response.status)
                                            : ex_.response.head.reason);
  o.append("\r\n");
  bool has_request_id = false;
  for (const auto& hd : ex_.response.head.headers) {
    if (http::IsHopByHop(hd.name)) continue;
    if (!ex_.response.head.connection.empty() &&
        NamedInConnection(ex_.response.head.connection, hd.name))
      continue;
    if (hd.name.size() == 12 && http::EqualsLower(hd.name, "x-request-id")) has_request_id = true;
    if (ex_.response.gzip) {
      if (hd.name.size() == 14 && http::EqualsLower(hd.name, "content-length")) continue;
      if (hd.name.size() == 4 && http::EqualsLower(hd.name, "etag") &&
          !(hd.value.size() > 2 && hd.value[0] == 'W' && hd.value[1] == '/')) {
        // As nginx: the compressed body is not byte-identical, so a strong ETag becomes weak.
        o.append("ETag: W/");
        o.append(hd.value);
        o.append("\r\n");
        continue;
      }
    }
    AppendHeaderLine(&o, hd.name, hd.value);
  }
  if (ex_.response.gzip) {
    o.append("Content-Encoding: gzip\r\n");
    if (ex_.route->cfg->gzip.vary) o.append("Vary: Accept-Encoding\r\n");
  }
  if (!has_request_id)
    AppendHeaderLine(&o, "X-Request-Id",
                     std::string_view(ex_.log.request_id, ex_.log.request_id_len));
  if (ex_.cache.status != nullptr) AppendHeaderLine(&o, "X-Cache", ex_.cache.status);
  StickyResponse(&o);
  if (ex_.route != nullptr) {
    if (AddHeaderStatus(ex_.response.status)) o.append(ex_.route->cfg->add_header_block);
    o.append(ex_.route->cfg->add_header_always_block);
  }
  if (ex_.response.status == 101) {
    o.append("Connection: upgrade\r\n");
    AppendHeaderLine(&o, "Upgrade", ex_.response.head.upgrade);
  } else {
    if (ex_.response.gzip ||
        (ex_.response.body_kind == http::BodyKind::kChunked && !ex_.response.dechunk))
      o.append("Transfer-Encoding: chunked\r\n");
    if (!ex_.request.keep_alive) {
      o.append("Connection: close\r\n");
    } else if (ex_.request.version_minor == 0) {
      o.append("Connection: keep-alive\r\n");
    }
  }
  o.append("\r\n");
}

bool DownstreamConn::ShouldGzip() const {
  if (ex_.route == nullptr || !ex_.route->cfg->gzip.enabled || !ex_.request.accept_gzip)
    return false;
  const GzipConfig& g = ex_.route->cfg->gzip;
  // nginx gzip filter: 200, 403 and 404 only; HTTP/1.1 clients (gzip_http_version 1.1); not HEAD;
  // not through a proxy unless gzip_proxied any; not already encoded; a listed type; long enough.
  if (ex_.response.status != 200 && ex_.response.status != 403 && ex_.response.status != 404)
    return false;
  if (ex_.request.version_minor != 1 || ex_.request.method == http::Method::kHead) return false;
  if (ex_.response.body_kind == http::BodyKind::kNone) return false;
  if (ex_.request.via && !g.proxied) return false;
  if (ex_.response.body_kind == http::BodyKind::kLength &&
      ex_.response.head.content_length < static_cast<uint64_t>(g.min_length))
    return false;
  bool typed = false;
  for (const auto& h : ex_.response.head.headers) {
    if (h.name.size() == 16 && http::EqualsLower(h.name, "content-encoding")) return false;
    if (h.name.size() == 13 && http::EqualsLower(h.name, "content-range")) return false;
    if (h.name.size() == 12 && http::EqualsLower(h.name, "content-type")) {
      std::string_view t = h.value.substr(0, h.value.find(';'));
      while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
      for (const auto& want : g.types) {
        if (want == "*" || (t.size() == want.size() && EqualsIgnoreCase(t, want))) typed = true;
      }
    }
  }
  return typed;
}

void DownstreamConn::GzipFeed(const char* d, size_t n, bool finish) {
  z_stream& z = *gz_;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(d));
  z.avail_in = static_cast<uInt>(n);
  unsigned char buf[16384];
  for (;;) {
    z.next_out = buf;
    z.avail_out = sizeof(buf);
    // Z_SYNC_FLUSH at the end of each batch keeps streamed responses moving (nginx buffers
    // instead; a slightly larger output is the price).
    int rc = deflate(&z, finish ? Z_FINISH : Z_SYNC_FLUSH);
    size_t have = sizeof(buf) - z.avail_out;
    if (have > 0) {
      AppendHex(&out_.buf, have);
      out_.buf.append("\r\n");
      out_.buf.append(reinterpret_cast<char*>(buf), have);
      out_.buf.append("\r\n");
      ex_.response.bytes_out += have;
    }
    if (finish ? rc == Z_STREAM_END : (z.avail_in == 0 && z.avail_out != 0)) break;
    if (rc == Z_STREAM_ERROR) break;
  }
  if (finish) out_.buf.append("0\r\n\r\n");
}

void DownstreamConn::ForwardResponseBody() {
  if (ex_.upstream.conn == nullptr) return;
  Buffer& b = ex_.upstream.conn->in_;
  while (!ex_.response.done) {
    if (ex_.response.body_kind == http::BodyKind::kNone) {
      ex_.response.done = true;
      break;
    }
    if (b.readable() == 0 || out_.pending() > kMaxPending) break;
    const char* p = b.read_ptr();
    size_t avail = b.readable();
    if (ex_.response.gzip) {
      // The decoded body goes through deflate; what comes out is sent as chunks.
      if (ex_.response.body_kind == http::BodyKind::kChunked) {
        size_t consumed = 0;
        http::ChunkedDecoder::Result r =
            ex_.response.chunks.Feed(p, avail, &consumed, [&](const char* d, size_t n) {
              if (ex_.cache.capture) CaptureBody(d, n);
              GzipFeed(d, n, false);
            });
        if (r == http::ChunkedDecoder::Result::kError) {
          BrokenUpstreamFraming();
          return;
        }
        b.Consume(consumed);
        if (r == http::ChunkedDecoder::Result::kDone) ex_.response.done = true;
      } else {
        size_t n = ex_.response.body_kind == http::BodyKind::kLength
                       ? static_cast<size_t>(std::min<uint64_t>(avail, ex_.response.left))
                       : avail;
        if (ex_.cache.capture) CaptureBody(p, n);
        GzipFeed(p, n, false);
        b.Consume(n);
        if (ex_.response.body_kind == http::BodyKind::kLength) {
          ex_.response.left -= n;
          if (ex_.response.left == 0) ex_.response.done = true;
        }
      }
      if (ex_.response.done) GzipFeed(nullptr, 0, true);
      continue;
    }
    switch (ex_.response.body_kind) {
      case http::BodyKind::kLength: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(avail, ex_.response.left));
        out_.buf.append(p, n);
        if (ex_.cache.capture) CaptureBody(p, n);
        b.Consume(n);
        ex_.response.left -= n;
        ex_.response.bytes_out += n;
        if (ex_.response.left == 0) ex_.response.done = true;
        break;
      }
      case http::BodyKind::kChunked: {
        size_t consumed = 0;
        http::ChunkedDecoder::Result r =
            ex_.response.chunks.Feed(p, avail, &consumed, [&](const char* d, size_t n) {
              if (ex_.response.dechunk) out_.buf.append(d, n);
              if (ex_.cache.capture) CaptureBody(d, n);
            });
        if (r == http::ChunkedDecoder::Result::kError) {
          BrokenUpstreamFraming();
          return;
        }
        if (!ex_.response.dechunk) out_.buf.append(p, consumed);
        b.Consume(consumed);
        ex_.response.bytes_out += consumed;
        if (r == http::ChunkedDecoder::Result::kDone) ex_.response.done = true;
        break;
      }
      case http::BodyKind::kUntilClose:
        out_.buf.append(p, avail);
        if (ex_.cache.capture) CaptureBody(p, avail);
        b.Consume(avail);
        ex_.response.bytes_out += avail;
        break;
      case http::BodyKind::kNone:
        break;
    }
  }
  WriteOut();
  if (!open_) return;
  if (ex_.response.done) FinishExchange();
}

}  // namespace bulwark::gateway
