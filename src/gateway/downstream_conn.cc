// The client's connection (DownstreamConn): bytes in and out (TLS included), HTTP/1.1 framing,
// keep-alive and pipelining, timeouts, the 101 tunnel (tunnel.cc). The exchange (exchange.cc)
// is what it carries.
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
#include "gateway/h2.h"
#include "gateway/proxy.h"
#include "gateway/proxy_internal.h"
#include "gateway/rate_limit.h"
#include "gateway/shared_limit.h"
#include "gateway/worker.h"

namespace bulwark::gateway {

// DownstreamConn

DownstreamConn::DownstreamConn(Worker* w) : worker_(w), ex_(w, this) {
  timer_.set_callback([this] { OnClientTimeout(); });
}

DownstreamConn::~DownstreamConn() = default;

void DownstreamConn::Open(int fd, const SocketAddress& peer, int listen_fd, int listener_index) {
  const GatewayConfig& cfg = worker_->config();
  ++generation_;
  h2_.reset();
  fd_ = fd;
  open_ = true;
  peer_ = peer;
  peer_ip_ = peer.IpString();
  listen_fd_ = listen_fd;
  listener_index_ = listener_index;
  in_.Init(cfg.http.limits.max_header_bytes + kBodySlackBytes);
  out_.Clear();
  scanner_.Reset();
  state_ = State::kIdle;
  requests_ = 0;
  read_paused_ = eof_ = close_after_ = false;
  in_write_ = write_again_ = write_failed_ = false;
  // The exchange of a pooled connection's previous life was ended by Close (End): it holds no
  // snapshot, route or upstream any more.
  ex_.request().bytes_in = 0;
  worker_->stats().open_clients.fetch_add(1, std::memory_order_relaxed);
  verified_token_ = {};  // a new connection verifies its first token in full
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

void DownstreamConn::Drain() {
  if (h2_ != nullptr) {
    h2_->Drain();
    h2_->Flush();
    return;
  }
  if (IdleForDrain()) Close();
}

void DownstreamConn::Relisten(int index) {
  listener_index_ = index;
  if (index >= 0 || !open_) return;
  listen_fd_ = -1;  // gone for good: a later listener may get the same descriptor number
  if (h2_ != nullptr) {
    Drain();
    return;
  }
  close_after_ = true;
  if (IdleForDrain()) Close();
}

void DownstreamConn::CloseSoon(bool linger) {
  uint64_t gen = generation_;
  worker_->loop().Defer([this, gen, linger] {
    if (!open_ || generation_ != gen || lingering_) return;
    if (!linger) {
      Close();
      return;
    }
    // nginx lingering_close (lingering_timeout 5s): close_notify, FIN, then drain until the
    // client closes too.
    if (h2_ != nullptr) h2_->Shutdown();
    tls_.End();
    shutdown(fd_, SHUT_WR);
    lingering_ = true;
    ArmClientTimer(5000);
    OnIo(EPOLLIN);
  });
}

void DownstreamConn::FlushH2Soon() {
  uint64_t gen = generation_;
  worker_->loop().Defer([this, gen] {
    if (open_ && generation_ == gen && h2_ != nullptr) h2_->Flush();
  });
}

bool DownstreamConn::SendQueued() {
  WriteOut();
  return out_.pending() == 0 && !write_failed_;
}

void DownstreamConn::OnIo(uint32_t events) {
  if (!open_) return;
  rdhup_ = (events & kPeerGone) != 0;
  if (lingering_) {
    char scratch[4096];
    for (;;) {
      ssize_t n = recv(fd_, scratch, sizeof(scratch), 0);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      Close();  // EOF or an error: the client is done
      return;
    }
  }
  if (state_ == State::kH2) {
    H2Io(events);
    return;
  }
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
      } else if (state_ == State::kExchange && ex_.DropForwardedBody(in_)) {
        continue;  // the body is larger than the buffer
      }
      read_paused_ = true;  // resumed when the current exchange consumes the buffer
      return;
    }
    size_t want = in_.writable();
    ssize_t n = Recv(in_.write_ptr(), want);
    if (n > 0) {
      in_.wpos += static_cast<size_t>(n);
      ex_.request().bytes_in += static_cast<uint64_t>(n);
      Process();
      if (state_ == State::kH2) {
        if (open_) H2Io(EPOLLIN);
        return;
      }
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
  if (state_ == State::kExchange) {
    if (ex_.phase() == Exchange::Phase::kDone ||
        (ex_.phase() == Exchange::Phase::kProxy && ex_.response().done)) {
      close_after_ = true;  // finish writing what is queued, then close
      DoWrite();
      return;
    }
    // As nginx without proxy_ignore_client_abort: the client gave up, so does the upstream
    // request; logged as 499.
    ex_.OnClientGone(/*eof=*/true);
  }
  Close();
}

void DownstreamConn::Process() {
  for (;;) {
    switch (state_) {
      case State::kIdle:
        if (in_.readable() == 0) return;
        if (listener_index_ < 0) {  // its listener left with a reload (Relisten)
          Close();
          return;
        }
        if (requests_ == 0 && worker_->config().listeners[listener_index_].http2 &&
            MaybeStartH2()) {
          return;
        }
        state_ = State::kHead;
        ex_.request().start_us = MonotonicUs();
        ex_.request().start_ms = worker_->loop().now_ms();
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
        state_ = State::kExchange;
        if (st == http::ParseStatus::kError) {
          worker_->stats().parse_errors.Add(1);
          ex_.RefuseUnparsed(err.status, err.reason);
          return;
        }
        ++requests_;
        ex_.Begin();
        return;
      }
      case State::kExchange:
        ex_.OnInput();
        return;
      default:
        return;
    }
  }
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
      if (state_ == State::kExchange) ex_.OnClientGone(/*eof=*/false);
      Close();
      break;
    }
    if (out_.pending() > 0) break;  // wait for EPOLLOUT
    if (state_ != State::kExchange) break;
    if (ex_.phase() == Exchange::Phase::kDone && ex_.response().done) {
      if (close_after_) {
        Close();
        break;
      }
      StartNextRequest();
      continue;
    }
    ex_.OnOutputDrained();
  } while (write_again_);
  in_write_ = false;
}

void DownstreamConn::ExchangeDone(bool keep_alive) {
  close_after_ = close_after_ || !keep_alive;
  DoWrite();
}

void DownstreamConn::CancelTimer() { worker_->loop().CancelTimer(&timer_); }

void DownstreamConn::StartNextRequest() {
  ex_.Finish();
  // Consume the finished request (head and body); what follows is the next pipelined request.
  Exchange::Request& r = ex_.request();
  in_.rpos = std::max(in_.rpos, std::min(r.body_pos, in_.wpos));
  if (in_.rpos == in_.wpos) in_.rpos = in_.wpos = 0;
  r.body_pos = r.body_start = 0;
  r.bytes_in = in_.readable();
  scanner_.Reset();
  state_ = State::kIdle;
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
  if (lingering_) {
    Close();
    return;
  }
  switch (state_) {
    case State::kH2:
      h2_->OnTimeout();
      if (h2_->failed()) Close();
      return;
    case State::kIdle:
      Close();  // keep-alive or fresh connection that sent nothing: close quietly, as nginx
      return;
    case State::kHead:
      worker_->stats().timeouts.Add(1);
      state_ = State::kExchange;
      ex_.RefuseUnparsed(408, "client header timeout");
      return;
    case State::kExchange:
      ex_.OnTimeout();
      return;
    default:
      Close();
      return;
  }
}

void DownstreamConn::Close() {
  if (!open_) return;
  open_ = false;
  ex_.End();
  worker_->loop().CancelTimer(&timer_);
  // The session object stays until the connection's next life (Open): a stream's exchange may
  // be on the stack; Shutdown has ended its streams and freed nghttp2's state.
  if (h2_ != nullptr) h2_->Shutdown();
  worker_->loop().Remove(fd_);
  tls_.End();  // close_notify if the handshake finished and the socket takes it
  lingering_ = false;
  verified_token_ = {};
  close(fd_);
  fd_ = -1;
  worker_->CountDescriptor(-1);
  state_ = State::kClosing;
  worker_->stats().open_clients.fetch_sub(1, std::memory_order_relaxed);
  worker_->FreeClient(this);
}

// HTTP/2

bool DownstreamConn::MaybeStartH2() {
  if (tls_.active()) {
    if (!tls_.alpn_h2()) return false;
  } else {
    // Prior knowledge (RFC 9113 3.3): the connection starts with the preface. A prefix of it
    // waits for more bytes; anything else is HTTP/1.1 (nginx sniffs the same way).
    static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t n = std::min(in_.readable(), kPreface.size());
    if (std::string_view(in_.read_ptr(), n) != kPreface.substr(0, n)) return false;
    if (n < kPreface.size()) return true;  // wait: Process returns, DoRead reads on
  }
  state_ = State::kH2;
  out_.Clear();
  h2_ = std::make_unique<H2Session>(this, worker_);
  if (!h2_->Start()) {
    Close();
    return true;
  }
  return true;
}

void DownstreamConn::H2Io(uint32_t events) {
  // Bytes already read (the preface, what followed it) go first.
  if (in_.readable() > 0) {
    bool ok = h2_->Receive(in_.read_ptr(), in_.readable());
    in_.rpos = in_.wpos = 0;
    if (!ok) {
      h2_->Flush();  // the GOAWAY nghttp2 queued
      if (open_) Close();
      return;
    }
  }
  bool readable = (events & kReadable) != 0 ||
                  (tls_.active() && tls_.read_wants_write() && (events & EPOLLOUT));
  while (open_ && readable) {
    ssize_t n = Recv(in_.data.get(), in_.cap);
    if (n > 0) {
      if (!h2_->Receive(in_.data.get(), static_cast<size_t>(n))) {
        h2_->Flush();
        if (open_) Close();
        return;
      }
      // Streams run between reads: one connection cannot monopolise the worker with a
      // never-ending read, and responses go out as soon as they are ready.
      h2_->Flush();
      if (!open_) return;
      if (static_cast<size_t>(n) < in_.cap && !rdhup_ && !tls_.active()) break;
      continue;
    }
    if (n == 0) {
      eof_ = true;
      Close();
      return;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      Close();
      return;
    }
    break;
  }
  if (!open_) return;
  h2_->Flush();
  if (open_ && h2_->failed()) Close();
}

}  // namespace bulwark::gateway
