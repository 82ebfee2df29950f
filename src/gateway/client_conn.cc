// The client connection: bytes in and out (TLS included), HTTP/1.1 framing, keep-alive and
// pipelining, timeouts, local answers. The exchange (exchange.cc) is what it carries.
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

// ClientConn

ClientConn::ClientConn(Worker* w) : worker_(w) {
  timer_.set_callback([this] { OnClientTimeout(); });
  retry_timer_.set_callback([this] { OnRetryTimer(); });
}

void ClientConn::Open(int fd, const SocketAddress& peer, int listener_index) {
  const GatewayConfig& cfg = worker_->config();
  fd_ = fd;
  open_ = true;
  peer_ = peer;
  peer_ip_ = peer.IpString();
  listener_index_ = listener_index;
  in_.Init(cfg.http.limits.max_header_bytes + kBodySlackBytes);
  out_.Clear();
  scanner_.Reset();
  state_ = State::kIdle;
  requests_ = 0;
  read_paused_ = eof_ = close_after_ = false;
  in_write_ = write_again_ = write_failed_ = false;
  bytes_in_ = 0;
  client_ip_.clear();
  view_ = nullptr;
  // A pooled connection object must not remember the route of its previous life: that route
  // belongs to a snapshot a reload may have freed.
  route_ = nullptr;
  up_ = nullptr;
  worker_->stats().open_clients.fetch_add(1, std::memory_order_relaxed);
  tls_done_ = read_wants_write_ = write_wants_read_ = false;
  jwt_verifier_.reset();  // a new connection verifies its first token in full
  jwt_token_.clear();
  tls_ = cfg.listeners[listener_index].tls.server;
  if (tls_ != nullptr) {
    ssl_ = tls_->NewSsl(fd_);
    if (ssl_ == nullptr) {
      Close();
      return;
    }
  }
  if (!worker_->loop().Add(fd_, kConnEvents, this).ok()) {
    Close();
    return;
  }
  // As nginx: the header timeout runs from the moment the connection is accepted.
  ArmClientTimer(cfg.http.client_header_timeout_ms);
}

void ClientConn::ArmClientTimer(int64_t ms) { worker_->loop().ArmTimer(&timer_, ms); }

bool ClientConn::IdleForDrain() const {
  return open_ && state_ == State::kIdle && in_.readable() == 0;
}

void ClientConn::OnIo(uint32_t events) {
  if (!open_) return;
  rdhup_ = (events & kPeerGone) != 0;
  if (state_ == State::kTunnel) {
    TunnelPump();
    return;
  }
  if (ssl_ != nullptr) {
    // TLS reads may need the socket writable and writes readable (handshakes, key updates).
    if ((events & kReadable) || (read_wants_write_ && (events & EPOLLOUT))) DoRead();
    if (open_ && ((events & EPOLLOUT) || (write_wants_read_ && (events & kReadable)))) DoWrite();
    return;
  }
  if (events & kReadable) DoRead();
  if (open_ && (events & EPOLLOUT)) DoWrite();
}

ssize_t ClientConn::Recv(char* buf, size_t n) {
  if (ssl_ == nullptr) return recv(fd_, buf, n, 0);
  ERR_clear_error();
  int r = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(n, INT32_MAX)));
  if (r > 0) {
    if (!tls_done_) {
      tls_done_ = true;
      tls_->CountHandshake(ssl_);
    }
    return r;
  }
  int e = SSL_get_error(ssl_, r);
  read_wants_write_ = e == SSL_ERROR_WANT_WRITE;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    if (!tls_done_ && SSL_is_init_finished(ssl_)) {
      tls_done_ = true;
      tls_->CountHandshake(ssl_);
    }
    errno = EAGAIN;
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
    if (!tls_done_) tls_->CountFailure();  // gave up in the middle of the handshake
    return 0;
  }
  if (!tls_done_) {
    tls_->CountFailure();
    LogDebug("TLS handshake with ", peer_ip_, " failed: ",
             ERR_reason_error_string(ERR_peek_error()) ? ERR_reason_error_string(ERR_peek_error())
                                                       : "error");
  }
  ERR_clear_error();
  errno = EPROTO;
  return -1;
}

ssize_t ClientConn::Send(const char* buf, size_t n) {
  if (ssl_ == nullptr) return send(fd_, buf, n, MSG_NOSIGNAL);
  ERR_clear_error();
  int r = SSL_write(ssl_, buf, static_cast<int>(std::min<size_t>(n, INT32_MAX)));
  if (r > 0) {
    write_wants_read_ = false;
    return r;
  }
  int e = SSL_get_error(ssl_, r);
  write_wants_read_ = e == SSL_ERROR_WANT_READ;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  ERR_clear_error();
  errno = EPIPE;
  return -1;
}

void ClientConn::DoRead() {
  while (open_ && state_ != State::kTunnel) {
    if (in_.writable() == 0) {
      if (state_ == State::kIdle || state_ == State::kHead) {
        if (in_.rpos > 0) {
          in_.Compact();
          continue;
        }
      } else if (state_ == State::kProxy && !body_done_ && body_pos_ > in_.rpos) {
        // The body is larger than the buffer: drop what was already forwarded. From here on the
        // request can no longer be resent to another server.
        in_.rpos = body_pos_;
        body_retained_ = false;
        size_t shift = in_.rpos;
        in_.Compact();
        body_pos_ -= shift;
        body_start_ = 0;
        continue;
      }
      read_paused_ = true;  // resumed when the current exchange consumes the buffer
      return;
    }
    size_t want = in_.writable();
    ssize_t n = Recv(in_.write_ptr(), want);
    if (n > 0) {
      in_.wpos += static_cast<size_t>(n);
      bytes_in_ += static_cast<uint64_t>(n);
      Process();
      // A short plain read drained the socket (see UpstreamConn::ReadAvailable); TLS hands out
      // one record at a time, so it reads on until it would block.
      if (static_cast<size_t>(n) < want && !rdhup_ && ssl_ == nullptr) return;
      continue;
    }
    if (n == 0) {
      eof_ = true;
      OnClientEof();
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      read_paused_ = false;
      return;
    }
    Close();
    return;
  }
}

void ClientConn::OnClientEof() {
  switch (state_) {
    case State::kIdle:
    case State::kHead:
      Close();
      return;
    case State::kLocal:
      close_after_ = true;  // finish writing what is queued, then close
      DoWrite();
      return;
    case State::kProxy:
      if (resp_done_) {
        close_after_ = true;
        DoWrite();
        return;
      }
      // As nginx without proxy_ignore_client_abort: the client gave up, so does the upstream
      // request; logged as 499.
      worker_->stats().client_aborts.Add(1);
      if (!logged_) LogAndCount(499);
      ReleaseUpstream(false);
      Close();
      return;
    case State::kDelayed:
    case State::kLimiting:
    case State::kSticky:
    case State::kCacheWait:
    case State::kCacheL2:
      worker_->stats().client_aborts.Add(1);
      if (!logged_) LogAndCount(499);
      Close();
      return;
    default:
      Close();
      return;
  }
}

void ClientConn::Process() {
  for (;;) {
    switch (state_) {
      case State::kIdle:
        if (in_.readable() == 0) return;
        state_ = State::kHead;
        start_us_ = MonotonicUs();
        start_ms_ = worker_->loop().now_ms();
        if (requests_ > 0) ArmClientTimer(worker_->config().http.client_header_timeout_ms);
        continue;
      case State::kHead: {
        const http::Limits& limits = worker_->config().http.limits;
        size_t end = 0;
        http::ParseError err;
        http::ParseStatus st =
            scanner_.Scan(in_.read_ptr(), in_.readable(), limits, true, &end, &err);
        if (st == http::ParseStatus::kNeedMore) return;
        if (st == http::ParseStatus::kDone)
          st = http::ParseRequestHead(in_.read_ptr(), end, limits, &req_, &err);
        if (st == http::ParseStatus::kError) {
          worker_->stats().parse_errors.Add(1);
          method_ = http::Method::kOther;
          log_method_.assign("-");
          log_path_.assign("-");
          request_id_len_ = 0;
          trace_id_[0] = 0;
          SendError(err.status, err.reason, true);
          return;
        }
        HandleRequest();
        return;
      }
      case State::kProxy:
        if (!body_done_ && up_ != nullptr) {
          ForwardBody();
          if (up_ != nullptr && up_->state_ == UpstreamConn::State::kActive) up_->Flush();
        }
        return;
      default:
        return;
    }
  }
}

void ClientConn::SendLocal(int status, std::string_view body, std::string_view content_type,
                           std::string_view location, bool close, std::string_view extra_headers) {
  if (cache_zone_ != nullptr) CacheComplete(false);
  if (close) keep_alive_ = false;
  if (worker_->draining()) keep_alive_ = false;
  status_ = status;
  resp_started_ = resp_done_ = true;
  BanStatus(status);
  std::string& o = out_.buf;
  o.append(version_minor_ == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  StrAppend(&o, status, " ", http::StatusReason(status), "\r\nServer: bulwark\r\nDate: ");
  o.append(worker_->http_date());
  o.append("\r\n");
  if (!content_type.empty()) AppendHeaderLine(&o, "Content-Type", content_type);
  StrAppend(&o, "Content-Length: ", body.size(), "\r\n");
  if (!location.empty()) AppendHeaderLine(&o, "Location", location);
  o.append(extra_headers);
  if (route_ != nullptr) {
    if (AddHeaderStatus(status)) o.append(route_->cfg->add_header_block);
    o.append(route_->cfg->add_header_always_block);
  } else if (view_ != nullptr) {
    // No route (404, refused before routing): the listener's headers, as nginx's server level.
    for (const auto& h : view_->snap->config->listeners[listener_index_].add_headers) {
      if (h.always || AddHeaderStatus(status)) AppendHeaderLine(&o, h.name, h.value);
    }
  }
  if (request_id_len_ > 0)
    AppendHeaderLine(&o, "X-Request-Id", std::string_view(request_id_, request_id_len_));
  if (!keep_alive_) {
    o.append("Connection: close\r\n");
  } else if (version_minor_ == 0) {
    o.append("Connection: keep-alive\r\n");
  }
  o.append("\r\n");
  if (method_ != http::Method::kHead) o.append(body);
  bytes_out_ = body.size();
  if (!logged_) LogAndCount(status);
  state_ = State::kLocal;
  close_after_ = close_after_ || !keep_alive_;
  DoWrite();
}

void ClientConn::SendError(int status, std::string_view reason, bool close,
                           std::string_view extra_headers) {
  std::string body = StrCat(status, " ", http::StatusReason(status), "\n");
  if (status >= 500 || status == 413 || status == 404) LogDebug("answering ", status, ": ", reason);
  SendLocal(status, body, "text/plain", "", close, extra_headers);
}

void ClientConn::WriteOut() {
  while (out_.pending() > 0) {
    ssize_t n = Send(out_.buf.data() + out_.off, out_.pending());
    if (n > 0) {
      out_.off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      ArmClientTimer(worker_->config().http.send_timeout_ms);
      return;
    }
    write_failed_ = true;
    return;
  }
  out_.Clear();
}

void ClientConn::DoWrite() {
  // Flattened: a completed response may start the next pipelined request, which may complete
  // at once and call back here; loop instead of recursing.
  if (in_write_) {
    write_again_ = true;
    return;
  }
  in_write_ = true;
  do {
    write_again_ = false;
    if (!open_) break;
    WriteOut();
    if (write_failed_) {
      if (!logged_ && state_ == State::kProxy) LogAndCount(499);
      ReleaseUpstream(false);
      Close();
      break;
    }
    if (out_.pending() > 0) break;  // wait for EPOLLOUT
    if (state_ == State::kLocal && resp_done_) {
      if (close_after_) {
        Close();
        break;
      }
      StartNextRequest();
      continue;
    }
    if (state_ == State::kProxy && up_ != nullptr && resp_started_) {
      ForwardResponseBody();
      if (up_ != nullptr && up_->read_paused_ && out_.pending() < kMaxPending) up_->ReadAvailable();
    }
  } while (write_again_);
  in_write_ = false;
}

void ClientConn::StartNextRequest() {
  if (view_ != nullptr) {
    worker_->ReleaseView(view_);
    view_ = nullptr;
  }
  route_ = nullptr;
  ResetCacheState();
  // Consume the finished request (head and body); what follows is the next pipelined request.
  in_.rpos = std::max(in_.rpos, std::min(body_pos_, in_.wpos));
  if (in_.rpos == in_.wpos) in_.rpos = in_.wpos = 0;
  body_pos_ = body_start_ = 0;
  scanner_.Reset();
  state_ = State::kIdle;
  resp_started_ = resp_done_ = false;
  request_id_len_ = 0;
  bytes_in_ = in_.readable();
  client_ip_.clear();
  if (worker_->draining()) {
    Close();
    return;
  }
  ArmClientTimer(worker_->config().http.keepalive_timeout_ms);
  if (in_.readable() > 0) Process();
  if (open_ && read_paused_ && state_ == State::kIdle) DoRead();
}

void ClientConn::OnClientTimeout() {
  if (!open_) return;
  switch (state_) {
    case State::kIdle:
      Close();  // keep-alive or fresh connection that sent nothing: close quietly, as nginx
      return;
    case State::kDelayed:
      // The limit_req delay is over.
      Proceed();
      return;
    case State::kCacheWait:
      // proxy_cache_lock_timeout: go to the server, and do not store what it answers.
      if (cache_zone_ != nullptr) {
        cache_zone_->lock_timeouts.fetch_add(1, std::memory_order_relaxed);
        cache_zone_->misses.fetch_add(1, std::memory_order_relaxed);
      }
      cache_store_ = false;
      state_ = State::kHead;
      ProceedUpstream();
      return;
    case State::kHead:
      worker_->stats().timeouts.Add(1);
      method_ = http::Method::kOther;
      log_method_.assign("-");
      log_path_.assign("-");
      request_id_len_ = 0;
      SendError(408, "client header timeout", true);
      return;
    case State::kProxy:
      worker_->stats().timeouts.Add(1);
      if (!body_done_ && !resp_started_) {
        ReleaseUpstream(false);
        SendError(408, "client body timeout", true);
        return;
      }
      if (!logged_) LogAndCount(499);
      ReleaseUpstream(false);
      Close();
      return;
    default:
      ReleaseUpstream(false);
      Close();
      return;
  }
}

void ClientConn::Close() {
  if (!open_) return;
  open_ = false;
  ResetCacheState();  // a leader that goes away wakes its waiters (they fetch themselves)
  if (up_ != nullptr) ReleaseUpstream(false);
  EndUpstreamAccounting();
  ReleaseConnLimits();
  worker_->loop().CancelTimer(&retry_timer_);
  worker_->loop().CancelTimer(&timer_);
  worker_->loop().Remove(fd_);
  if (ssl_ != nullptr) {
    if (tls_done_) SSL_shutdown(ssl_);  // close_notify if the socket takes it; no waiting
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  tls_.reset();
  jwt_verifier_.reset();
  if (gz_) {
    deflateEnd(gz_.get());
    gz_.reset();
  }
  close(fd_);
  fd_ = -1;
  worker_->CountDescriptor(-1);
  if (view_ != nullptr) {
    worker_->ReleaseView(view_);
    view_ = nullptr;
  }
  route_ = nullptr;
  state_ = State::kClosing;
  worker_->stats().open_clients.fetch_sub(1, std::memory_order_relaxed);
  worker_->FreeClient(this);
}

}  // namespace bulwark::gateway
