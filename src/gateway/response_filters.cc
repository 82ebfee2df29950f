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

void Exchange::BuildResponseHead() {
  std::string& o = down_->output().buf;
  response_.body_kind = response_.head.body;
  response_.left = response_.head.content_length;
  response_.dechunk = false;
  if (response_.body_kind == http::BodyKind::kChunked && request_.version_minor == 0) {
    response_.dechunk = true;  // an HTTP/1.0 client gets the decoded body, delimited by close
    request_.keep_alive = false;
  }
  if (response_.body_kind == http::BodyKind::kUntilClose) request_.keep_alive = false;
  if (worker_->draining()) request_.keep_alive = false;
  BanStatus(response_.status);
  response_.gzip = ShouldGzip();
  if (response_.gzip) {
    const GzipConfig& g = route_->cfg->gzip;
    if (!gz_) {
      gz_ = std::make_unique<z_stream>();
      *gz_ = z_stream{};
      // windowBits 15 + 16: a gzip wrapper, as nginx sends.
      if (deflateInit2(gz_.get(), g.level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        gz_.reset();
        response_.gzip = false;
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
  o.append(request_.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  StrAppend(&o, response_.status);
  o.push_back(' ');
  o.append(response_.head.reason.empty() ? http::StatusReason(response_.status)
                                         : response_.head.reason);
  o.append("\r\n");
  bool has_request_id = false;
  for (const auto& hd : response_.head.headers) {
    if (http::IsHopByHop(hd.name)) continue;
    if (!response_.head.connection.empty() && NamedInConnection(response_.head.connection, hd.name))
      continue;
    if (HiddenHeader(hd.name)) continue;  // proxy_hide_header
    if (hd.name.size() == 12 && http::EqualsLower(hd.name, "x-request-id")) has_request_id = true;
    if (response_.gzip) {
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
  if (response_.gzip) {
    o.append("Content-Encoding: gzip\r\n");
    if (route_->cfg->gzip.vary) o.append("Vary: Accept-Encoding\r\n");
  }
  if (!has_request_id)
    AppendHeaderLine(&o, "X-Request-Id", std::string_view(log_.request_id, log_.request_id_len));
  if (cache_.status != nullptr) AppendHeaderLine(&o, "X-Cache", cache_.status);
  StickyResponse(&o);
  if (route_ != nullptr) {
    if (AddHeaderStatus(response_.status)) o.append(route_->cfg->add_header_block);
    o.append(route_->cfg->add_header_always_block);
  }
  if (response_.status == 101) {
    o.append("Connection: upgrade\r\n");
    AppendHeaderLine(&o, "Upgrade", response_.head.upgrade);
  } else {
    if (response_.gzip || (response_.body_kind == http::BodyKind::kChunked && !response_.dechunk))
      o.append("Transfer-Encoding: chunked\r\n");
    if (!request_.keep_alive) {
      o.append("Connection: close\r\n");
    } else if (request_.version_minor == 0) {
      o.append("Connection: keep-alive\r\n");
    }
  }
  o.append("\r\n");
}

bool Exchange::ShouldGzip() const {
  if (route_ == nullptr || !route_->cfg->gzip.enabled || !request_.accept_gzip) return false;
  const GzipConfig& g = route_->cfg->gzip;
  // nginx gzip filter: 200, 403 and 404 only; HTTP/1.1 clients (gzip_http_version 1.1); not HEAD;
  // not through a proxy unless gzip_proxied any; not already encoded; a listed type; long enough.
  if (response_.status != 200 && response_.status != 403 && response_.status != 404) return false;
  if (request_.version_minor != 1 || request_.method == http::Method::kHead) return false;
  if (response_.body_kind == http::BodyKind::kNone) return false;
  if (request_.via && !g.proxied) return false;
  if (response_.body_kind == http::BodyKind::kLength &&
      response_.head.content_length < static_cast<uint64_t>(g.min_length))
    return false;
  bool typed = false;
  for (const auto& h : response_.head.headers) {
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

void Exchange::GzipFeed(const char* d, size_t n, bool finish) {
  z_stream& z = *gz_;
  std::string& out = down_->output().buf;
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
      AppendHex(&out, have);
      out.append("\r\n");
      out.append(reinterpret_cast<char*>(buf), have);
      out.append("\r\n");
      response_.bytes_out += have;
    }
    if (finish ? rc == Z_STREAM_END : (z.avail_in == 0 && z.avail_out != 0)) break;
    if (rc == Z_STREAM_ERROR) break;
  }
  if (finish) out.append("0\r\n\r\n");
}

void Exchange::ForwardResponseBody() {
  if (upstream_.conn == nullptr) return;
  Buffer& b = upstream_.conn->in_;
  OutQueue& out = down_->output();
  while (!response_.done) {
    if (response_.body_kind == http::BodyKind::kNone) {
      response_.done = true;
      break;
    }
    if (b.readable() == 0 || out.pending() > kMaxPending) break;
    const char* p = b.read_ptr();
    size_t avail = b.readable();
    if (response_.gzip) {
      // The decoded body goes through deflate; what comes out is sent as chunks.
      if (response_.body_kind == http::BodyKind::kChunked) {
        size_t consumed = 0;
        http::ChunkedDecoder::Result r =
            response_.chunks.Feed(p, avail, &consumed, [&](const char* d, size_t n) {
              if (cache_.capture) CaptureBody(d, n);
              GzipFeed(d, n, false);
            });
        if (r == http::ChunkedDecoder::Result::kError) {
          BrokenUpstreamFraming();
          return;
        }
        b.Consume(consumed);
        if (r == http::ChunkedDecoder::Result::kDone) response_.done = true;
      } else {
        size_t n = response_.body_kind == http::BodyKind::kLength
                       ? static_cast<size_t>(std::min<uint64_t>(avail, response_.left))
                       : avail;
        if (cache_.capture) CaptureBody(p, n);
        GzipFeed(p, n, false);
        b.Consume(n);
        if (response_.body_kind == http::BodyKind::kLength) {
          response_.left -= n;
          if (response_.left == 0) response_.done = true;
        }
      }
      if (response_.done) GzipFeed(nullptr, 0, true);
      continue;
    }
    switch (response_.body_kind) {
      case http::BodyKind::kLength: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(avail, response_.left));
        out.buf.append(p, n);
        if (cache_.capture) CaptureBody(p, n);
        b.Consume(n);
        response_.left -= n;
        response_.bytes_out += n;
        if (response_.left == 0) response_.done = true;
        break;
      }
      case http::BodyKind::kChunked: {
        size_t consumed = 0;
        http::ChunkedDecoder::Result r =
            response_.chunks.Feed(p, avail, &consumed, [&](const char* d, size_t n) {
              if (response_.dechunk) out.buf.append(d, n);
              if (cache_.capture) CaptureBody(d, n);
            });
        if (r == http::ChunkedDecoder::Result::kError) {
          BrokenUpstreamFraming();
          return;
        }
        if (!response_.dechunk) out.buf.append(p, consumed);
        b.Consume(consumed);
        response_.bytes_out += consumed;
        if (r == http::ChunkedDecoder::Result::kDone) response_.done = true;
        break;
      }
      case http::BodyKind::kUntilClose:
        out.buf.append(p, avail);
        if (cache_.capture) CaptureBody(p, avail);
        b.Consume(avail);
        response_.bytes_out += avail;
        break;
      case http::BodyKind::kNone:
        break;
    }
  }
  down_->Write();
  if (!down_->open()) return;
  if (response_.done) FinishExchange();
}

}  // namespace bulwark::gateway
