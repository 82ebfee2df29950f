// The byte tunnel after a 101 Switching Protocols (WebSocket): both directions pumped with
// backpressure until either side closes.
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

void DownstreamConn::StartTunnel() {
  state_ = State::kTunnel;
  worker_->loop().CancelTimer(&timer_);
  // Bytes the client sent after its request head belong to the new protocol.
  size_t start = ex_.request().body_start;
  size_t extra = in_.wpos - start;
  UpstreamConn* up = ex_.upstream_conn();
  if (extra > 0 && up != nullptr) up->out_.buf.append(in_.data.get() + start, extra);
  in_.rpos = in_.wpos = 0;
  TunnelPump();
}

void DownstreamConn::TunnelPump() {
  UpstreamConn* up = ex_.upstream_conn();
  if (up == nullptr) {
    Close();
    return;
  }
  int64_t idle_ms = up->read_timeout_ms_;
  bool progress = true;
  bool done = false;
  while (progress && !done) {
    progress = false;
    // client -> upstream
    if (up->out_.pending() < kMaxPending) {
      char* p = in_.data.get();
      ssize_t n = Recv(p, in_.cap);
      if (n > 0) {
        up->out_.buf.append(p, static_cast<size_t>(n));
        progress = true;
      } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        done = true;
      }
    }
    while (up->out_.pending() > 0) {
      ssize_t n = SendOn(up->tls_, up->fd_, up->out_.buf.data() + up->out_.off, up->out_.pending());
      if (n > 0) {
        up->out_.off += static_cast<size_t>(n);
        progress = true;
      } else {
        if (n < 0 && errno != EAGAIN && errno != EINTR) done = true;
        break;
      }
    }
    if (up->out_.pending() == 0) up->out_.Clear();
    // upstream -> client
    if (out_.pending() < kMaxPending) {
      Buffer& b = up->in_;
      if (b.readable() > 0) {
        out_.buf.append(b.read_ptr(), b.readable());
        b.Consume(b.readable());
        progress = true;
      }
      ssize_t n = RecvOn(up->tls_, up->fd_, b.data.get(), b.cap);
      if (n > 0) {
        out_.buf.append(b.data.get(), static_cast<size_t>(n));
        progress = true;
      } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        done = true;
      }
    }
    WriteOut();
    if (write_failed_) done = true;
  }
  if (done) {
    WriteOut();
    ex_.ReleaseUpstream(false);
    Close();
    return;
  }
  ArmClientTimer(idle_ms);
}

}  // namespace bulwark::gateway
