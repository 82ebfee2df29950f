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

void DownstreamConn::TunnelPump() {
  if (ex_.upstream.conn == nullptr) {
    Close();
    return;
  }
  int64_t idle_ms = ex_.upstream.conn->read_timeout_ms_;
  bool progress = true;
  bool done = false;
  while (progress && !done) {
    progress = false;
    // client -> upstream
    if (ex_.upstream.conn->out_.pending() < kMaxPending) {
      char* p = in_.data.get();
      ssize_t n = Recv(p, in_.cap);
      if (n > 0) {
        ex_.upstream.conn->out_.buf.append(p, static_cast<size_t>(n));
        progress = true;
      } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        done = true;
      }
    }
    while (ex_.upstream.conn->out_.pending() > 0) {
      ssize_t n = send(ex_.upstream.conn->fd_,
                       ex_.upstream.conn->out_.buf.data() + ex_.upstream.conn->out_.off,
                       ex_.upstream.conn->out_.pending(), MSG_NOSIGNAL);
      if (n > 0) {
        ex_.upstream.conn->out_.off += static_cast<size_t>(n);
        progress = true;
      } else {
        if (n < 0 && errno != EAGAIN && errno != EINTR) done = true;
        break;
      }
    }
    if (ex_.upstream.conn->out_.pending() == 0) ex_.upstream.conn->out_.Clear();
    // upstream -> client
    if (out_.pending() < kMaxPending) {
      Buffer& b = ex_.upstream.conn->in_;
      if (b.readable() > 0) {
        out_.buf.append(b.read_ptr(), b.readable());
        b.Consume(b.readable());
        progress = true;
      }
      ssize_t n = recv(ex_.upstream.conn->fd_, b.data.get(), b.cap, 0);
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
    ReleaseUpstream(false);
    Close();
    return;
  }
  ArmClientTimer(idle_ms);
}

}  // namespace bulwark::gateway
