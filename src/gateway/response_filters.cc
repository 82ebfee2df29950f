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

void ClientConn::BuildResponseHead() {
  std::string& o = out_.buf;
  resp_body_ = resp_.body;
  resp_left_ = resp_.content_length;
  resp_dechunk_ = false;
  if (resp_body_ == http::BodyKind::kChunked && version_minor_ == 0) {
    resp_dechunk_ = true;  // an HTTP/1.0 client gets the decoded body, delimited by close
    keep_alive_ = false;
  }
  if (resp_body_ == http::BodyKind::kUntilClose) keep_alive_ = false;
  if (worker_->draining()) keep_alive_ = false;
  BanStatus(status_);
  gzip_ = ShouldGzip();
  if (gzip_) {
    const GzipConfig& g = route_->cfg->gzip;
    if (!gz_) {
      gz_ = std::make_unique<z_stream>();
      *gz_ = z_stream{};
      // windowBits 15 + 16: a gzip wrapper, as nginx sends.
      if (deflateInit2(gz_.get(), g.level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        gz_.reset();
        gzip_ = false;
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
  o.append(version_minor_ == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  StrAppend(&o, status_);
  o.push_back(' ');
  o.append(resp_.reason.empty() ? http::StatusReason(status_) : resp_.reason);
  o.append("\r\n");
  bool has_request_id = false;
  for (const auto& hd : resp_.headers) {
    if (http::IsHopByHop(hd.name)) continue;
    if (!resp_.connection.empty() && NamedInConnection(resp_.connection, hd.name)) continue;
    if (hd.name.size() == 12 && http::EqualsLower(hd.name, "x-request-id")) has_request_id = true;
    if (gzip_) {
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
  if (gzip_) {
    o.append("Content-Encoding: gzip\r\n");
    if (route_->cfg->gzip.vary) o.append("Vary: Accept-Encoding\r\n");
  }
  if (!has_request_id)
    AppendHeaderLine(&o, "X-Request-Id", std::string_view(request_id_, request_id_len_));
  if (cache_status_ != nullptr) AppendHeaderLine(&o, "X-Cache", cache_status_);
  StickyResponse(&o);
  if (route_ != nullptr) {
    if (AddHeaderStatus(status_)) o.append(route_->cfg->add_header_block);
    o.append(route_->cfg->add_header_always_block);
  }
  if (status_ == 101) {
    o.append("Connection: upgrade\r\n");
    AppendHeaderLine(&o, "Upgrade", resp_.upgrade);
  } else {
    if (gzip_ || (resp_body_ == http::BodyKind::kChunked && !resp_dechunk_))
      o.append("Transfer-Encoding: chunked\r\n");
    if (!keep_alive_) {
      o.append("Connection: close\r\n");
    } else if (version_minor_ == 0) {
      o.append("Connection: keep-alive\r\n");
    }
  }
  o.append("\r\n");
}

bool ClientConn::ShouldGzip() const {
  if (route_ == nullptr || !route_->cfg->gzip.enabled || !accept_gzip_) return false;
  const GzipConfig& g = route_->cfg->gzip;
  // nginx gzip filter: 200, 403 and 404 only; HTTP/1.1 clients (gzip_http_version 1.1); not HEAD;
  // not through a proxy unless gzip_proxied any; not already encoded; a listed type; long enough.
  if (status_ != 200 && status_ != 403 && status_ != 404) return false;
  if (version_minor_ != 1 || method_ == http::Method::kHead) return false;
  if (resp_body_ == http::BodyKind::kNone) return false;
  if (via_ && !g.proxied) return false;
  if (resp_body_ == http::BodyKind::kLength &&
      resp_.content_length < static_cast<uint64_t>(g.min_length))
    return false;
  bool typed = false;
  for (const auto& h : resp_.headers) {
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

void ClientConn::GzipFeed(const char* d, size_t n, bool finish) {
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
      bytes_out_ += have;
    }
    if (finish ? rc == Z_STREAM_END : (z.avail_in == 0 && z.avail_out != 0)) break;
    if (rc == Z_STREAM_ERROR) break;
  }
  if (finish) out_.buf.append("0\r\n\r\n");
}

void ClientConn::ForwardResponseBody() {
  if (up_ == nullptr) return;
  Buffer& b = up_->in_;
  while (!resp_done_) {
    if (resp_body_ == http::BodyKind::kNone) {
      resp_done_ = true;
      break;
    }
    if (b.readable() == 0 || out_.pending() > kMaxPending) break;
    const char* p = b.read_ptr();
    size_t avail = b.readable();
    if (gzip_) {
      // The decoded body goes through deflate; what comes out is sent as chunks.
      if (resp_body_ == http::BodyKind::kChunked) {
        size_t consumed = 0;
        http::ChunkedDecoder::Result r =
            resp_chunks_.Feed(p, avail, &consumed, [&](const char* d, size_t n) {
              if (cache_capture_) CaptureBody(d, n);
              GzipFeed(d, n, false);
            });
        if (r == http::ChunkedDecoder::Result::kError) {
          BrokenUpstreamFraming();
          return;
        }
        b.Consume(consumed);
        if (r == http::ChunkedDecoder::Result::kDone) resp_done_ = true;
      } else {
        size_t n = resp_body_ == http::BodyKind::kLength
                       ? static_cast<size_t>(std::min<uint64_t>(avail, resp_left_))
                       : avail;
        if (cache_capture_) CaptureBody(p, n);
        GzipFeed(p, n, false);
        b.Consume(n);
        if (resp_body_ == http::BodyKind::kLength) {
          resp_left_ -= n;
          if (resp_left_ == 0) resp_done_ = true;
        }
      }
      if (resp_done_) GzipFeed(nullptr, 0, true);
      continue;
    }
    switch (resp_body_) {
      case http::BodyKind::kLength: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(avail, resp_left_));
        out_.buf.append(p, n);
        if (cache_capture_) CaptureBody(p, n);
        b.Consume(n);
        resp_left_ -= n;
        bytes_out_ += n;
        if (resp_left_ == 0) resp_done_ = true;
        break;
      }
      case http::BodyKind::kChunked: {
        size_t consumed = 0;
        http::ChunkedDecoder::Result r =
            resp_chunks_.Feed(p, avail, &consumed, [&](const char* d, size_t n) {
              if (resp_dechunk_) out_.buf.append(d, n);
              if (cache_capture_) CaptureBody(d, n);
            });
        if (r == http::ChunkedDecoder::Result::kError) {
          BrokenUpstreamFraming();
          return;
        }
        if (!resp_dechunk_) out_.buf.append(p, consumed);
        b.Consume(consumed);
        bytes_out_ += consumed;
        if (r == http::ChunkedDecoder::Result::kDone) resp_done_ = true;
        break;
      }
      case http::BodyKind::kUntilClose:
        out_.buf.append(p, avail);
        if (cache_capture_) CaptureBody(p, avail);
        b.Consume(avail);
        bytes_out_ += avail;
        break;
      case http::BodyKind::kNone:
        break;
    }
  }
  WriteOut();
  if (!open_) return;
  if (resp_done_) FinishExchange();
}

}  // namespace bulwark::gateway
