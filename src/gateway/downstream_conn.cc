// The client's connection (DownstreamConn): bytes in and out (TLS included), HTTP/1.1 framing,
// keep-alive and pipelining, timeouts, local answers. The exchange (exchange.cc) is what it
// carries.
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

// DownstreamConn

DownstreamConn::DownstreamConn(Worker* w) : worker_(w) {
  timer_.set_callback([this] { OnClientTimeout(); });
  ex_.upstream.retry_timer.set_callback([this] { OnRetryTimer(); });
}

void DownstreamConn::Open(int fd, const SocketAddress& peer, int listener_index) {
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
  ex_.request.bytes_in = 0;
  ex_.admission.client_ip.clear();
  ex_.view = nullptr;
  // A pooled connection object must not remember the route of its previous life: that route
  // belongs to a snapshot a reload may have freed.
  ex_.route = nullptr;
  ex_.upstream.conn = nullptr;
  worker_->stats().open_clients.fetch_add(1, std::memory_order_relaxed);
  jwt_verifier_.reset();  // a new connection verifies its first token in full
  jwt_token_.clear();
  if (const auto& server = cfg.listeners[listener_index].tls.server) {
    if (!tls_.Start(server, fd_)) {
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

void DownstreamConn::ArmClientTimer(int64_t ms) { worker_->loop().ArmTimer(&timer_, ms); }

bool DownstreamConn::IdleForDrain() const {
  return open_ && state_ == State::kIdle && in_.readable() == 0;
}

void DownstreamConn::OnIo(uint32_t events) {
  if (!open_) return;
  rdhup_ = (events & kPeerGone) != 0;
  if (state_ == State::kTunnel) {
    TunnelPump();
    return;
  }
  if (tls_.active()) {
    // TLS reads may need the socket writable and writes readable (handshakes, key updates).
    if ((events & kReadable) || (tls_.read_wants_write() && (events & EPOLLOUT))) DoRead();
    if (open_ && ((events & EPOLLOUT) || (tls_.write_wants_read() && (events & kReadable)))) {
      DoWrite();
    }
    return;
  }
  if (events & kReadable) DoRead();
  if (open_ && (events & EPOLLOUT)) DoWrite();
}

ssize_t DownstreamConn::Recv(char* buf, size_t n) {
  if (!tls_.active()) return recv(fd_, buf, n, 0);
  ssize_t r = tls_.Recv(buf, n);
  if (r < 0 && errno == EPROTO && !tls_.handshake_done()) {
    LogDebug("TLS handshake with ", peer_ip_, " failed: ", tls_.failure_reason());
  }
  return r;
}

ssize_t DownstreamConn::Send(const char* buf, size_t n) {
  if (!tls_.active()) return send(fd_, buf, n, MSG_NOSIGNAL);
  return tls_.Send(buf, n);
}

void DownstreamConn::DoRead() {
  while (open_ && state_ != State::kTunnel) {
    if (in_.writable() == 0) {
      if (state_ == State::kIdle || state_ == State::kHead) {
        if (in_.rpos > 0) {
          in_.Compact();
          continue;
        }
      } else if (state_ == State::kProxy && !ex_.request.body_done &&
                 ex_.request.body_pos > in_.rpos) {
        // The body is larger than the buffer: drop what was already forwarded. From here on the
        // request can no longer be resent to another server.
        in_.rpos = ex_.request.body_pos;
        ex_.request.body_retained = false;
        size_t shift = in_.rpos;
        in_.Compact();
        ex_.request.body_pos -= shift;
        ex_.request.body_start = 0;
        continue;
      }
      read_paused_ = true;  // resumed when the current exchange consumes the buffer
      return;
    }
    size_t want = in_.writable();
    ssize_t n = Recv(in_.write_ptr(), want);
    if (n > 0) {
      in_.wpos += static_cast<size_t>(n);
      ex_.request.bytes_in += static_cast<uint64_t>(n);
      Process();
      // A short plain read drained the socket (see UpstreamConn::ReadAvailable); TLS hands out
      // one record at a time, so it reads on until it would block.
      if (static_cast<size_t>(n) < want && !rdhup_ && !tls_.active()) return;
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

void DownstreamConn::OnClientEof() {
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
      if (ex_.response.done) {
        close_after_ = true;
        DoWrite();
        return;
      }
      // As nginx without proxy_ignore_client_abort: the client gave up, so does the upstream
      // request; logged as 499.
      worker_->stats().client_aborts.Add(1);
      if (!ex_.log.logged) LogAndCount(499);
      ReleaseUpstream(false);
      Close();
      return;
    case State::kDelayed:
    case State::kLimiting:
    case State::kSticky:
    case State::kCacheWait:
    case State::kCacheL2:
      worker_->stats().client_aborts.Add(1);
      if (!ex_.log.logged) LogAndCount(499);
      Close();
      return;
    default:
      Close();
      return;
  }
}

void DownstreamConn::Process() {
  for (;;) {
    switch (state_) {
      case State::kIdle:
        if (in_.readable() == 0) return;
        state_ = State::kHead;
        ex_.request.start_us = MonotonicUs();
        ex_.request.start_ms = worker_->loop().now_ms();
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
          ex_.request.method = http::Method::kOther;
          ex_.log.method.assign("-");
          ex_.log.path.assign("-");
          ex_.log.request_id_len = 0;
          ex_.log.trace_id[0] = 0;
          SendError(err.status, err.reason, true);
          return;
        }
        HandleRequest();
        return;
      }
      case State::kProxy:
        if (!ex_.request.body_done && ex_.upstream.conn != nullptr) {
          ForwardBody();
          if (ex_.upstream.conn != nullptr &&
              ex_.upstream.conn->state_ == UpstreamConn::State::kActive)
            ex_.upstream.conn->Flush();
        }
        return;
      default:
        return;
    }
  }
}

void DownstreamConn::SendLocal(int status, std::string_view body, std::string_view content_type,
                               std::string_view location, bool close,
                               std::string_view extra_headers) {
  if (ex_.cache.zone != nullptr) CacheComplete(false);
  if (close) ex_.request.keep_alive = false;
  if (worker_->draining()) ex_.request.keep_alive = false;
  ex_.response.status = status;
  ex_.response.started = ex_.response.done = true;
  BanStatus(status);
  std::string& o = out_.buf;
  o.append(ex_.request.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  StrAppend(&o, status, " ", http::StatusReason(status), "\r\nServer: bulwark\r\nDate: ");
  o.append(worker_->http_date());
  o.append("\r\n");
  if (!content_type.empty()) AppendHeaderLine(&o, "Content-Type", content_type);
  StrAppend(&o, "Content-Length: ", body.size(), "\r\n");
  if (!location.empty()) AppendHeaderLine(&o, "Location", location);
  o.append(extra_headers);
  if (ex_.route != nullptr) {
    if (AddHeaderStatus(status)) o.append(ex_.route->cfg->add_header_block);
    o.append(ex_.route->cfg->add_header_always_block);
  } else if (ex_.view != nullptr) {
    // No route (404, refused before routing): the listener's headers, as nginx's server level.
    for (const auto& h : ex_.view->snap->config->listeners[listener_index_].add_headers) {
      if (h.always || AddHeaderStatus(status)) AppendHeaderLine(&o, h.name, h.value);
    }
  }
  if (ex_.log.request_id_len > 0)
    AppendHeaderLine(&o, "X-Request-Id",
                     std::string_view(ex_.log.request_id, ex_.log.request_id_len));
  if (!ex_.request.keep_alive) {
    o.append("Connection: close\r\n");
  } else if (ex_.request.version_minor == 0) {
    o.append("Connection: keep-alive\r\n");
  }
  o.append("\r\n");
  if (ex_.request.method != http::Method::kHead) o.append(body);
  ex_.response.bytes_out = body.size();
  if (!ex_.log.logged) LogAndCount(status);
  state_ = State::kLocal;
  close_after_ = close_after_ || !ex_.request.keep_alive;
  DoWrite();
}

void DownstreamConn::SendError(int status, std::string_view reason, bool close,
                               std::string_view extra_headers) {
  std::string body = StrCat(status, " ", http::StatusReason(status), "\n");
  if (status >= 500 || status == 413 || status == 404) LogDebug("answering ", status, ": ", reason);
  SendLocal(status, body, "text/plain", "", close, extra_headers);
}

void DownstreamConn::WriteOut() {
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

void DownstreamConn::DoWrite() {
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
      if (!ex_.log.logged && state_ == State::kProxy) LogAndCount(499);
      ReleaseUpstream(false);
      Close();
      break;
    }
    if (out_.pending() > 0) break;  // wait for EPOLLOUT
    if (state_ == State::kLocal && ex_.response.done) {
      if (close_after_) {
        Close();
        break;
      }
      StartNextRequest();
      continue;
    }
    if (state_ == State::kProxy && ex_.upstream.conn != nullptr && ex_.response.started) {
      ForwardResponseBody();
      if (ex_.upstream.conn != nullptr && ex_.upstream.conn->read_paused_ &&
          out_.pending() < kMaxPending)
        ex_.upstream.conn->ReadAvailable();
    }
  } while (write_again_);
  in_write_ = false;
}

void DownstreamConn::StartNextRequest() {
  if (ex_.view != nullptr) {
    worker_->ReleaseView(ex_.view);
    ex_.view = nullptr;
  }
  ex_.route = nullptr;
  ResetCacheState();
  // Consume the finished request (head and body); what follows is the next pipelined request.
  in_.rpos = std::max(in_.rpos, std::min(ex_.request.body_pos, in_.wpos));
  if (in_.rpos == in_.wpos) in_.rpos = in_.wpos = 0;
  ex_.request.body_pos = ex_.request.body_start = 0;
  scanner_.Reset();
  state_ = State::kIdle;
  ex_.response.started = ex_.response.done = false;
  ex_.log.request_id_len = 0;
  ex_.request.bytes_in = in_.readable();
  ex_.admission.client_ip.clear();
  if (worker_->draining()) {
    Close();
    return;
  }
  ArmClientTimer(worker_->config().http.keepalive_timeout_ms);
  if (in_.readable() > 0) Process();
  if (open_ && read_paused_ && state_ == State::kIdle) DoRead();
}

void DownstreamConn::OnClientTimeout() {
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
      if (ex_.cache.zone != nullptr) {
        ex_.cache.zone->lock_timeouts.fetch_add(1, std::memory_order_relaxed);
        ex_.cache.zone->misses.fetch_add(1, std::memory_order_relaxed);
      }
      ex_.cache.store = false;
      state_ = State::kHead;
      ProceedUpstream();
      return;
    case State::kHead:
      worker_->stats().timeouts.Add(1);
      ex_.request.method = http::Method::kOther;
      ex_.log.method.assign("-");
      ex_.log.path.assign("-");
      ex_.log.request_id_len = 0;
      SendError(408, "client header timeout", true);
      return;
    case State::kProxy:
      worker_->stats().timeouts.Add(1);
      if (!ex_.request.body_done && !ex_.response.started) {
        ReleaseUpstream(false);
        SendError(408, "client body timeout", true);
        return;
      }
      if (!ex_.log.logged) LogAndCount(499);
      ReleaseUpstream(false);
      Close();
      return;
    default:
      ReleaseUpstream(false);
      Close();
      return;
  }
}

void DownstreamConn::Close() {
  if (!open_) return;
  open_ = false;
  ResetCacheState();  // a leader that goes away wakes its waiters (they fetch themselves)
  if (ex_.upstream.conn != nullptr) ReleaseUpstream(false);
  EndUpstreamAccounting();
  ReleaseConnLimits();
  worker_->loop().CancelTimer(&ex_.upstream.retry_timer);
  worker_->loop().CancelTimer(&timer_);
  worker_->loop().Remove(fd_);
  tls_.End();  // close_notify if the handshake finished and the socket takes it
  jwt_verifier_.reset();
  if (gz_) {
    deflateEnd(gz_.get());
    gz_.reset();
  }
  close(fd_);
  fd_ = -1;
  worker_->CountDescriptor(-1);
  if (ex_.view != nullptr) {
    worker_->ReleaseView(ex_.view);
    ex_.view = nullptr;
  }
  ex_.route = nullptr;
  state_ = State::kClosing;
  worker_->stats().open_clients.fetch_sub(1, std::memory_order_relaxed);
  worker_->FreeClient(this);
}

}  // namespace bulwark::gateway
