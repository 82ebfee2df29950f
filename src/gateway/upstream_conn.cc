// UpstreamConn: one connection to an upstream server, active for one exchange or idle in its
// worker's keep-alive pool.
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

// UpstreamConn

UpstreamConn::UpstreamConn(Worker* w) : worker_(w) {
  timer_.set_callback([this] {
    if (state_ == State::kIdle) {
      worker_->RemoveIdle(this);
      Close();
    } else if (owner_ != nullptr) {
      owner_->OnUpstreamFailure(UpstreamFailure::kTimeout);
    }
  });
}

absl::Status UpstreamConn::Connect(ServerState* server, int server_index,
                                   const ServerConfig& config, const UpstreamTlsConfig& tls,
                                   int64_t connect_timeout_ms) {
  worker_->MakeRoomForUpstream();
  auto fd = ConnectTcp(config.address);
  if (!fd.ok()) return fd.status();
  fd_ = *fd;
  server_ = server;
  address_ = config.address;
  tls_.End();
  tls_client_.reset();
  if (tls.enabled && tls.client != nullptr) {
    TlsPeer peer = TlsPeerFor(tls, config);
    if (!tls_.StartClient(tls.client, fd_, peer.sni, peer.verify_name,
                          std::move(peer.session_key))) {
      close(fd_);
      fd_ = -1;
      return absl::ResourceExhaustedError("TLS: out of memory");
    }
    tls_client_ = tls.client;
  }
  server_index_ = server_index;
  in_.Init(kUpstreamBufferBytes);
  out_.Clear();
  requests_ = 0;
  read_paused_ = eof_ = false;
  state_ = State::kConnecting;
  absl::Status s = worker_->loop().Add(fd_, kConnEvents, this);
  if (!s.ok()) {
    close(fd_);
    fd_ = -1;
    state_ = State::kFree;
    return s;
  }
  worker_->stats().open_upstreams.fetch_add(1, std::memory_order_relaxed);
  worker_->CountDescriptor(1);
  ArmTimer(connect_timeout_ms);
  return absl::OkStatus();
}

void UpstreamConn::ArmTimer(int64_t ms) {
  if (deadline_ms_ > 0)
    ms = std::min(ms, std::max<int64_t>(1, deadline_ms_ - worker_->loop().now_ms()));
  worker_->loop().ArmTimer(&timer_, ms);
}

void UpstreamConn::OnIo(uint32_t events) {
  switch (state_) {
    case State::kFree:
      return;
    case State::kIdle: {
      // An idle keep-alive connection should be silent: input, hang-up or an error means the
      // server closed it (or broke protocol). Drop it now rather than hand it to the next
      // request. (A bare EPOLLOUT is only send-buffer space coming back.) Over TLS, a record
      // that carries no data (a TLS 1.3 session ticket) is not a reason.
      if (!(events & kReadable)) return;
      if (tls_.active() && !(events & kPeerGone)) {
        char byte;
        if (tls_.Recv(&byte, 1) < 0 && errno == EAGAIN) return;
      }
      worker_->RemoveIdle(this);
      Close();
      return;
    }
    case State::kConnecting: {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (events & EPOLLERR)) {
        if (owner_ != nullptr) owner_->OnUpstreamFailure(UpstreamFailure::kConnect);
        return;
      }
      if (tls_.active()) {
        state_ = State::kHandshaking;
        Handshake();
        return;
      }
      state_ = State::kActive;
      if (owner_ != nullptr) owner_->OnUpstreamConnected();
      return;
    }
    case State::kHandshaking:
      Handshake();
      return;
    case State::kActive:
      if (owner_ == nullptr) return;
      rdhup_ = (events & kPeerGone) != 0;
      // A TLS write that waits for the peer's records goes on when they arrive.
      if ((events & EPOLLOUT) || (tls_.write_wants_read() && (events & kReadable))) {
        Flush();
        if (state_ != State::kActive || owner_ == nullptr) return;
      }
      if (events & kReadable) ReadAvailable();
      return;
  }
}

void UpstreamConn::Handshake() {
  int r = tls_.Handshake();
  if (r == 0) return;  // the socket's next event goes on with it
  if (r < 0) {
    // nginx: "SSL_do_handshake() failed ... while SSL handshaking to upstream"; a connect
    // failure for retries and the server's health.
    LogWarn("upstream: TLS handshake with ", server_ != nullptr ? server_->address_text() : "",
            " failed: ", tls_.failure_reason());
    if (owner_ != nullptr) owner_->OnUpstreamFailure(UpstreamFailure::kConnect);
    return;
  }
  state_ = State::kActive;
  if (owner_ != nullptr) owner_->OnUpstreamConnected();
}

void UpstreamConn::Flush() {
  for (;;) {
    while (out_.pending() > 0) {
      ssize_t n = SendOn(tls_, fd_, out_.buf.data() + out_.off, out_.pending());
      if (n > 0) {
        out_.off += static_cast<size_t>(n);
        wrote_any_ = true;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        return;  // EPOLLOUT resumes us; the send timeout is armed by the owner
      } else {
        if (owner_ != nullptr) owner_->OnUpstreamFailure(UpstreamFailure::kWrite);
        return;
      }
    }
    out_.Clear();
    if (owner_ == nullptr || state_ != State::kActive) return;
    owner_->OnUpstreamDrained();  // may queue more request body
    if (owner_ == nullptr || state_ != State::kActive || out_.pending() == 0) return;
  }
}

void UpstreamConn::ReadAvailable() {
  while (state_ == State::kActive && owner_ != nullptr) {
    if (in_.writable() == 0) {
      in_.Compact();
      if (in_.writable() == 0) {
        read_paused_ = true;  // the client is slower than the server; resumed when it drains
        return;
      }
    }
    size_t want = in_.writable();
    ssize_t n = RecvOn(tls_, fd_, in_.write_ptr(), want);
    if (n > 0) {
      in_.wpos += static_cast<size_t>(n);
      got_any_ = true;
      owner_->OnUpstreamData();
      // As nginx does with edge-triggered epoll: a short read means the socket is drained, so
      // skip the read that would only return EAGAIN -- unless the peer also closed (RDHUP),
      // whose EOF we must still read. (Not over TLS: a read returns one record, and OpenSSL
      // may hold more that no event will announce.)
      if (static_cast<size_t>(n) < want && !rdhup_ && !tls_.active()) return;
      continue;
    }
    if (n == 0) {
      eof_ = true;
      owner_->OnUpstreamEof();
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      read_paused_ = false;
      return;
    }
    owner_->OnUpstreamFailure(UpstreamFailure::kRead);
    return;
  }
}

void UpstreamConn::MakeIdle(int64_t keepalive_timeout_ms) {
  state_ = State::kIdle;
  owner_ = nullptr;
  out_.Clear();
  in_.rpos = in_.wpos = 0;
  ArmTimer(keepalive_timeout_ms);
}

void UpstreamConn::Close() {
  if (state_ == State::kFree) return;
  worker_->loop().CancelTimer(&timer_);
  if (fd_ >= 0) {
    worker_->loop().Remove(fd_);
    tls_.End();  // close_notify, as nginx's ssl_shutdown to upstreams
    tls_client_.reset();
    close(fd_);
    fd_ = -1;
    worker_->stats().open_upstreams.fetch_sub(1, std::memory_order_relaxed);
    worker_->CountDescriptor(-1);
  }
  state_ = State::kFree;
  owner_ = nullptr;
  server_ = nullptr;
  worker_->FreeUpstream(this);
}

}  // namespace bulwark::gateway
