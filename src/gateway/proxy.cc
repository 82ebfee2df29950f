#include "gateway/proxy.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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
#include "gateway/rate_limit.h"
#include "gateway/shared_limit.h"
#include "gateway/worker.h"

namespace bulwark::gateway {
namespace {

constexpr size_t kUpstreamBufferBytes = 32 * 1024;
constexpr size_t kBodySlackBytes = 16 * 1024;  // client buffer room beyond the largest head
constexpr size_t kMaxPending = 256 * 1024;     // output queued before the other side is paused
constexpr uint32_t kConnEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
// Events after which the peer may have closed: its EOF (or error) must be read.
constexpr uint32_t kPeerGone = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
// Events that call for a read.
constexpr uint32_t kReadable = EPOLLIN | kPeerGone;

int64_t NowMicros() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// A client-supplied X-Request-Id is kept when it is short and made of safe characters, so it
// cannot inject anything into logs or upstream headers.
bool ValidRequestId(std::string_view v) {
  if (v.empty() || v.size() > 128) return false;
  for (char c : v) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=';
    if (!ok) return false;
  }
  return true;
}

// W3C Trace Context: "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>", ids not all zero.
bool ValidTraceparent(std::string_view v) {
  if (v.size() < 55) return false;
  if (v.substr(0, 2) == "ff" || !IsHex(v[0]) || !IsHex(v[1]) || v[2] != '-' || v[35] != '-' ||
      v[52] != '-') {
    return false;
  }
  if (v.substr(0, 2) == "00" && v.size() != 55) return false;
  bool trace_zero = true, parent_zero = true;
  for (int i = 3; i < 35; ++i) {
    if (!IsHex(v[i])) return false;
    trace_zero &= v[i] == '0';
  }
  for (int i = 36; i < 52; ++i) {
    if (!IsHex(v[i])) return false;
    parent_zero &= v[i] == '0';
  }
  return !trace_zero && !parent_zero && IsHex(v[53]) && IsHex(v[54]);
}

// True when `name` is listed in a Connection header value (those headers are hop-by-hop too).
bool NamedInConnection(std::string_view connection, std::string_view name) {
  while (!connection.empty()) {
    size_t comma = connection.find(',');
    std::string_view tok = connection.substr(0, comma);
    while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) tok.remove_prefix(1);
    while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) tok.remove_suffix(1);
    if (EqualsIgnoreCase(tok, name)) return true;
    if (comma == std::string_view::npos) break;
    connection.remove_prefix(comma + 1);
  }
  return false;
}

void AppendHex(std::string* out, uint64_t v) {
  char buf[17];
  int n = 0;
  do {
    buf[16 - n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  out->append(buf + 17 - n, n);
}

// Microseconds as milliseconds with three decimals ("12.345"), without printf's float path.
void AppendMillis(std::string* out, int64_t us) {
  if (us < 0) us = 0;
  StrAppend(out, us / 1000, ".");
  int frac = static_cast<int>(us % 1000);
  out->push_back(static_cast<char>('0' + frac / 100));
  out->push_back(static_cast<char>('0' + frac / 10 % 10));
  out->push_back(static_cast<char>('0' + frac % 10));
}

// nginx ngx_http_gzip_ok: the codings list names gzip without q=0 (q=0, q=0.0, q=0.00...).
bool AcceptsGzip(std::string_view v) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = v.substr(0, comma);
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    size_t semi = item.find(';');
    std::string_view name = item.substr(0, semi);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (name.size() != 4 || !http::EqualsLower(name, "gzip")) continue;
    if (semi == std::string_view::npos) return true;
    std::string_view params = item.substr(semi + 1);
    size_t q = params.find("q=");
    if (q == std::string_view::npos) return true;
    std::string_view qv = params.substr(q + 2);
    bool zero = !qv.empty() && qv[0] == '0';
    for (size_t i = 1; zero && i < qv.size() && qv[i] != ' ' && qv[i] != ';'; ++i)
      zero = qv[i] == '.' || qv[i] == '0';
    if (!zero) return true;
  }
  return false;
}

// nginx add_header without `always` applies to these statuses only.
bool AddHeaderStatus(int status) {
  switch (status) {
    case 200: case 201: case 204: case 206: case 301: case 302: case 303: case 304: case 307:
    case 308:
      return true;
    default:
      return false;
  }
}

// The value of cookie `name` in the request's Cookie headers (nullopt when absent).
std::optional<std::string_view> CookieValue(const http::RequestHead& req, std::string_view name) {
  for (const auto& h : req.headers) {
    if (h.name.size() != 6 || !http::EqualsLower(h.name, "cookie")) continue;
    std::string_view v = h.value;
    while (!v.empty()) {
      size_t semi = v.find(';');
      std::string_view pair = v.substr(0, semi);
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      size_t eq = pair.find('=');
      if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
        std::string_view val = pair.substr(eq + 1);
        while (!val.empty() && val.back() == ' ') val.remove_suffix(1);
        return val;
      }
      if (semi == std::string_view::npos) break;
      v.remove_prefix(semi + 1);
    }
  }
  return std::nullopt;
}

void AppendHex16(std::string* out, uint64_t v) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) out->push_back(kHex[(v >> (i * 4)) & 15]);
}

bool ParseHex16(std::string_view s, uint64_t* v) {
  if (s.size() != 16) return false;
  uint64_t r = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    r = (r << 4) | static_cast<uint64_t>(d);
  }
  *v = r;
  return true;
}

// The signature in a sticky cookie: HMAC-SHA256 over the upstream and server id, 64 bits of it.
void AppendStickyMac(std::string* out, std::string_view secret, std::string_view upstream,
                     uint64_t id) {
  std::string data(upstream);
  data.push_back('\n');
  AppendHex16(&data, id);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | md[i];
  AppendHex16(out, v);
}

// "ID.MAC" with a valid MAC -> the server id.
bool ParseStickyCookie(std::string_view v, std::string_view secret, std::string_view upstream,
                       uint64_t* id) {
  if (v.size() != 33 || v[16] != '.') return false;
  uint64_t parsed = 0;
  if (!ParseHex16(v.substr(0, 16), &parsed)) return false;
  std::string mac;
  AppendStickyMac(&mac, secret, upstream, parsed);
  if (CRYPTO_memcmp(mac.data(), v.data() + 17, 16) != 0) return false;
  *id = parsed;
  return true;
}

void AppendHeaderLine(std::string* out, std::string_view name, std::string_view value) {
  out->append(name);
  out->append(": ");
  out->append(value);
  out->append("\r\n");
}

}  // namespace

void Buffer::Compact() {
  if (rpos == 0) return;
  size_t n = wpos - rpos;
  if (n > 0) std::memmove(data.get(), data.get() + rpos, n);
  rpos = 0;
  wpos = n;
}

// ---------------------------------------------------------------------------------------------
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
                                   int64_t connect_timeout_ms) {
  worker_->MakeRoomForUpstream();
  auto fd = ConnectTcp(server->address());
  if (!fd.ok()) return fd.status();
  fd_ = *fd;
  server_ = server;
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
  if (deadline_ms_ > 0) ms = std::min(ms, std::max<int64_t>(1, deadline_ms_ - worker_->loop().now_ms()));
  worker_->loop().ArmTimer(&timer_, ms);
}

void UpstreamConn::OnIo(uint32_t events) {
  switch (state_) {
    case State::kFree:
      return;
    case State::kIdle:
      // An idle keep-alive connection should be silent: input, hang-up or an error means the
      // server closed it (or broke protocol). Drop it now rather than hand it to the next
      // request. (A bare EPOLLOUT is only send-buffer space coming back.)
      if (!(events & kReadable)) return;
      worker_->RemoveIdle(this);
      Close();
      return;
    case State::kConnecting: {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (events & EPOLLERR)) {
        if (owner_ != nullptr) owner_->OnUpstreamFailure(UpstreamFailure::kConnect);
        return;
      }
      state_ = State::kActive;
      if (owner_ != nullptr) owner_->OnUpstreamConnected();
      return;
    }
    case State::kActive:
      if (owner_ == nullptr) return;
      rdhup_ = (events & kPeerGone) != 0;
      if (events & EPOLLOUT) {
        Flush();
        if (state_ != State::kActive || owner_ == nullptr) return;
      }
      if (events & kReadable) ReadAvailable();
      return;
  }
}

void UpstreamConn::Flush() {
  for (;;) {
    while (out_.pending() > 0) {
      ssize_t n = send(fd_, out_.buf.data() + out_.off, out_.pending(), MSG_NOSIGNAL);
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
    ssize_t n = recv(fd_, in_.write_ptr(), want, 0);
    if (n > 0) {
      in_.wpos += static_cast<size_t>(n);
      got_any_ = true;
      owner_->OnUpstreamData();
      // As nginx does with edge-triggered epoll: a short read means the socket is drained, so
      // skip the read that would only return EAGAIN -- unless the peer also closed (RDHUP),
      // whose EOF we must still read.
      if (static_cast<size_t>(n) < want && !rdhup_) return;
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

// ---------------------------------------------------------------------------------------------
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
        start_us_ = NowMicros();
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

std::optional<uint64_t> ClientConn::AffinityHash(const UpstreamConfig& cfg) {
  if (cfg.balance != BalanceKind::kHash) return std::nullopt;
  switch (cfg.hash_key) {
    case HashKeyKind::kClientIp:
      return StableHash(client_ip_);
    case HashKeyKind::kHeader:
      if (const http::Header* h = req_.Find(cfg.hash_key_name)) return StableHash(h->value);
      return std::nullopt;
    case HashKeyKind::kCookie:
      if (auto v = CookieValue(req_, cfg.hash_key_name)) return StableHash(*v);
      return std::nullopt;
  }
  return std::nullopt;
}

void ClientConn::HandleRequest() {
  ++requests_;
  worker_->stats().requests.Add(1);
  view_ = worker_->AcquireView();
  const GatewayConfig& cfg = *view_->snap->config;
  logged_ = false;
  resp_started_ = resp_done_ = false;
  route_ = nullptr;
  status_ = 0;
  bytes_out_ = 0;
  upstream_us_ = -1;
  attempts_ = 0;
  log_upstream_.clear();
  ban_key_.clear();
  ban_counted_ = false;
  limit_rejected_ = false;
  jwt_ok_ = false;
  upstream_index_ = -1;
  attempt_probe_ = counted_active_ = counted_retry_ = false;
  probe_server_ = nullptr;
  limit_result_ = -1;
  method_ = req_.method;
  version_minor_ = req_.version_minor;
  keep_alive_ = req_.keep_alive && !worker_->draining() && requests_ < cfg.http.keepalive_requests;
  log_method_.assign(req_.method_str);
  log_path_.assign(req_.target.substr(0, 2048));

  const http::Header* rid = req_.Find("x-request-id");
  if (rid != nullptr && ValidRequestId(rid->value)) {
    request_id_len_ = rid->value.size();
    std::memcpy(request_id_, rid->value.data(), request_id_len_);
  } else {
    worker_->RandomHex(request_id_, 32);
    request_id_len_ = 32;
  }
  const http::Header* tp = req_.Find("traceparent");
  incoming_trace_ = tp != nullptr && ValidTraceparent(tp->value);
  if (incoming_trace_) {
    std::memcpy(trace_id_, tp->value.data() + 3, 32);
  } else {
    worker_->RandomHex(trace_id_, 32);
  }
  trace_id_[32] = 0;

  accept_gzip_ = via_ = false;
  for (const auto& h : req_.headers) {
    if (h.name.size() == 15 && http::EqualsLower(h.name, "accept-encoding")) {
      accept_gzip_ = accept_gzip_ || AcceptsGzip(h.value);
    } else if (h.name.size() == 3 && http::EqualsLower(h.name, "via")) {
      via_ = true;
    }
  }
  body_kind_ = req_.body;
  body_left_ = req_.content_length;
  body_start_ = in_.rpos + req_.head_len;
  body_pos_ = body_start_;
  body_done_ = body_kind_ == http::BodyKind::kNone;
  body_retained_ = true;
  body_bytes_ = 0;
  req_chunks_.Reset();
  has_body_ = !body_done_;

  // The client address: like nginx real_ip with real_ip_recursive on, the rightmost address in
  // X-Forwarded-For that is not a trusted proxy, when the peer itself is trusted.
  trusted_peer_ = false;
  for (const auto& c : cfg.trusted_proxies) {
    if (c.Contains(peer_)) {
      trusted_peer_ = true;
      break;
    }
  }
  client_ip_ = peer_ip_;
  client_addr_ = IpAddress::From(peer_);
  if (trusted_peer_) {
    if (const http::Header* xff = req_.Find("x-forwarded-for")) {
      std::string_view list = xff->value;
      while (!list.empty()) {
        size_t comma = list.rfind(',');
        std::string_view ip = comma == std::string_view::npos ? list : list.substr(comma + 1);
        while (!ip.empty() && ip.front() == ' ') ip.remove_prefix(1);
        while (!ip.empty() && ip.back() == ' ') ip.remove_suffix(1);
        std::optional<IpAddress> parsed = IpAddress::Parse(ip);
        if (parsed.has_value()) {
          client_ip_.assign(ip);
          client_addr_ = *parsed;
          bool ip_trusted = false;
          for (const auto& c : cfg.trusted_proxies) ip_trusted |= c.Contains(*parsed);
          if (!ip_trusted) break;
        } else if (!ip.empty()) {
          break;  // garbage is not an address: keep the last good one
        }
        if (comma == std::string_view::npos) break;
        list = list.substr(0, comma);
      }
    }
  }

  if (method_ == http::Method::kConnect) {
    SendError(501, "CONNECT is not supported", true);
    return;
  }
  if (body_kind_ == http::BodyKind::kLength &&
      req_.content_length > static_cast<uint64_t>(cfg.http.client_max_body_size)) {
    SendError(413, "request body larger than client_max_body_size", true);
    return;
  }
  if (!NormalizeRequestPath(cfg)) return;
  route_ = view_->snap->routers[listener_index_]->Match(req_.host, path_, req_.method_str);
  if (!Protect(cfg)) return;
  if (route_ == nullptr) {
    SendError(404, "no route matches", has_body_);
    return;
  }
  Proceed();
}

bool ClientConn::NormalizeRequestPath(const GatewayConfig& cfg) {
  if (http::PathIsNormal(req_.path, cfg.http.path)) {
    path_ = upstream_path_ = req_.path;
    return true;
  }
  http::ParseError err;
  if (!http::NormalizePath(req_.path, cfg.http.path, &path_buf_, &upstream_path_buf_, &err)) {
    worker_->stats().bad_paths.Add(1);
    SendError(err.status, err.reason, has_body_);
    return false;
  }
  path_ = path_buf_;
  // What goes upstream (Envoy normalize_path): the normal form, or the client's own path.
  upstream_path_ = cfg.http.upstream_path == UpstreamPath::kOriginal
                       ? req_.path
                       : std::string_view(upstream_path_buf_);
  return true;
}

bool ClientConn::AppendKey(const KeySpec& spec, bool binary_ip, std::string* out) const {
  size_t start = out->size();
  bool any = false;
  for (size_t i = 0; i < spec.parts.size(); ++i) {
    const KeyPart& p = spec.parts[i];
    if (i > 0) out->push_back(binary_ip ? '\x1f' : '+');
    switch (p.kind) {
      case KeyPartKind::kClientIp:
        if (binary_ip) {
          out->append(client_addr_.Binary());
        } else {
          out->append(client_ip_);
        }
        any = true;
        break;
      case KeyPartKind::kHeader:
        if (const http::Header* h = req_.Find(p.name); h != nullptr && !h->value.empty()) {
          out->append(h->value.substr(0, 1024));
          any = true;
        }
        break;
      case KeyPartKind::kRoute:
        if (route_ != nullptr) {
          out->append(route_->cfg->name);
          any = true;
        }
        break;
      case KeyPartKind::kJwtClaim:
        if (jwt_ok_) {
          auto it = jwt_claims_.find(p.name);
          if (it != jwt_claims_.end() && (it->is_string() || it->is_number())) {
            std::string v = it->is_string() ? it->get<std::string>() : it->dump();
            if (!v.empty()) {
              out->append(v.substr(0, 1024));
              any = true;
            }
          }
        }
        break;
    }
  }
  if (!any) out->resize(start);  // as nginx: a key whose parts are all empty is not limited
  return any;
}

bool ClientConn::Protect(const GatewayConfig& cfg) {
  const Snapshot& snap = *view_->snap;
  const ListenerConfig& lcfg = cfg.listeners[listener_index_];
  const AccessList& acl = route_ != nullptr ? route_->cfg->access : lcfg.access;
  if (!acl.rules.empty() && !acl.Allows(client_addr_)) {
    worker_->stats().access_denied.Add(1);
    SendError(403, "access denied", has_body_);
    return false;
  }
  BanTable* bans = worker_->shared().bans;
  int64_t now = worker_->loop().now_ms();
  if (bans != nullptr && bans->active() > 0) {
    for (const KeySpec& spec : snap.ban_keys) {
      key_buf_.clear();
      if (AppendKey(spec, false, &key_buf_) && bans->IsBanned(key_buf_, now)) {
        SendError(cfg.bans.status, "banned", has_body_);
        return false;
      }
    }
  }
  if (route_ == nullptr) return true;
  const RouteConfig& rc = *route_->cfg;
  if (rc.jwt_index >= 0 && !VerifyJwt(cfg.jwt_providers[rc.jwt_index])) return false;
  if (rc.ban.set) {
    ban_key_.clear();
    AppendKey(rc.ban.key, false, &ban_key_);
  }
  const LimitReqConfig& lr = rc.limit_req;
  if (lr.rules.empty()) return true;

  // Keys first (the buffer may grow), then views into it.
  int n = std::min<int>(static_cast<int>(lr.rules.size()), LimitDecision::kMaxRules);
  size_t offsets[LimitDecision::kMaxRules + 1];
  key_buf_.clear();
  for (int i = 0; i < n; ++i) {
    offsets[i] = key_buf_.size();
    AppendKey(cfg.limit_zones[lr.rules[i].zone_index].key, true, &key_buf_);
  }
  offsets[n] = key_buf_.size();
  LimitRequest* reqs = limit_reqs_;
  for (int i = 0; i < n; ++i) {
    const LimitReqRule& rule = lr.rules[i];
    reqs[i].zone = snap.zones[rule.zone_index].get();
    reqs[i].burst = rule.burst;
    reqs[i].delay = rule.delay;
    reqs[i].key = std::string_view(key_buf_).substr(offsets[i], offsets[i + 1] - offsets[i]);
  }
  limit_n_ = n;
  if (cfg.limit_zones[lr.rules[0].zone_index].shared) {
    RedisClient* redis = worker_->redis();
    if (redis != nullptr && redis->connected()) {
      // Decided in Redis: the request waits for the answer (a few hundred microseconds on a
      // LAN; at most redis.timeout before the fallback decides instead).
      std::vector<std::string_view> keys, args;
      SharedLimit::BuildArgs(cfg.redis.key_prefix, reqs, n, &redis_buf_, &keys, &args);
      uint64_t seq = ++limit_seq_;
      state_ = State::kLimiting;
      redis->Eval(SharedLimit::Script(), SharedLimit::Sha1(), keys, args,
                  [this, seq](const RedisReply& r) { OnSharedLimit(seq, r); });
      return false;
    }
    return ApplyLimitOutcome(FallbackDecision());
  }
  return ApplyLimitOutcome(LimitDecision::Decide(reqs, n, now, lr.dry_run));
}

LimitOutcome ClientConn::FallbackDecision() {
  const GatewayConfig& cfg = *view_->snap->config;
  const LimitReqConfig& lr = route_->cfg->limit_req;
  const LimitZoneConfig& zc = cfg.limit_zones[lr.rules[0].zone_index];
  limit_reqs_[0].zone->CountFallback();
  LimitOutcome out;
  switch (zc.redis_failure) {
    case RedisFailure::kLocal:
      // Each instance limits on its own until Redis is back.
      return LimitDecision::Decide(limit_reqs_, limit_n_, worker_->loop().now_ms(), lr.dry_run);
    case RedisFailure::kOpen:
      out.applied = true;
      out.rule = 0;
      limit_reqs_[0].zone->Count(LimitResult::kPassed);
      return out;
    case RedisFailure::kClosed:
      out.applied = true;
      out.rule = 0;
      out.result = lr.dry_run ? LimitResult::kRejectedDryRun : LimitResult::kRejected;
      out.retry_after_s = 1;
      limit_reqs_[0].zone->Count(out.result);
      return out;
  }
  return out;
}

void ClientConn::OnSharedLimit(uint64_t seq, const RedisReply& r) {
  if (!open_ || state_ != State::kLimiting || seq != limit_seq_) return;  // the client left
  state_ = State::kHead;
  LimitOutcome out;
  if (r.is_error() || !SharedLimit::ParseReply(r, limit_reqs_, limit_n_,
                                               route_->cfg->limit_req.dry_run, &out)) {
    if (!r.is_error()) LogWarn("unexpected reply from the shared rate-limit script");
    out = FallbackDecision();
  }
  if (ApplyLimitOutcome(out)) Proceed();
}

bool ClientConn::ApplyLimitOutcome(const LimitOutcome& out) {
  if (!out.applied) return true;
  const RouteConfig& rc = *route_->cfg;
  const LimitReqConfig& lr = rc.limit_req;
  limit_result_ = static_cast<int>(out.result);
  if (out.result == LimitResult::kRejected) {
    LogDebug("limiting requests, excess: ", out.excess / 1000, ".", out.excess % 1000,
             " by zone \"", limit_reqs_[out.rule].zone->name(), "\", client: ", client_ip_);
    limit_rejected_ = true;
    if (rc.ban.set && rc.ban.on_rate_limited) StrikeBan("rate_limited");
    std::string extra;
    if (lr.retry_after) extra = StrCat("Retry-After: ", out.retry_after_s, "\r\n");
    SendError(lr.status, "rate limited", has_body_, extra);
    return false;
  }
  if (out.result == LimitResult::kDelayed && out.delay_ms > 0) {
    // As nginx: the request waits, its body unread, then continues.
    state_ = State::kDelayed;
    ArmClientTimer(out.delay_ms);
    return false;
  }
  return true;
}

bool ClientConn::VerifyJwt(const JwtProviderConfig& p) {
  std::string_view token;
  if (const http::Header* h = req_.Find(p.header)) {
    token = h->value;
    if (token.size() > 7 && http::EqualsLower(token.substr(0, 7), "bearer ")) token.remove_prefix(7);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  }
  int64_t now_s = WallMicros() / 1000000;
  bool cached = !token.empty() && jwt_verifier_ == p.verifier && token == jwt_token_;
  security::JwtFailure f = cached ? p.verifier->CheckTimes(jwt_claims_, now_s)
                                  : p.verifier->Verify(token, now_s, &jwt_claims_);
  if (f != security::JwtFailure::kNone) {
    jwt_verifier_.reset();
    jwt_token_.clear();
    p.counters->rejected[static_cast<int>(f)].fetch_add(1, std::memory_order_relaxed);
    // RFC 6750: say it is a bearer token that is wanted, and why this one was not taken.
    std::string extra = "WWW-Authenticate: Bearer realm=\"bulwark\"";
    if (f != security::JwtFailure::kMissing) {
      StrAppend(&extra, ", error=\"invalid_token\", error_description=\"",
                security::JwtFailureName(f), "\"");
    }
    extra.append("\r\n");
    SendError(401, "token refused", has_body_, extra);
    return false;
  }
  p.counters->verified.fetch_add(1, std::memory_order_relaxed);
  jwt_ok_ = true;
  if (cached) return true;  // claims and their headers are still those of this token
  jwt_verifier_ = p.verifier;
  jwt_token_.assign(token);
  jwt_headers_.clear();
  for (const auto& [claim, header] : p.forward_claims) {
    auto it = jwt_claims_.find(claim);
    if (it == jwt_claims_.end()) continue;
    std::string v = it->is_string() ? it->get<std::string>() : it->dump();
    bool clean = v.size() <= 1024;
    for (char c : v) clean &= c >= 32 && c != 127;
    if (clean) AppendHeaderLine(&jwt_headers_, header, v);
  }
  return true;
}

std::string ClientConn::ExpandVariables(std::string_view t) const {
  // nginx variables a `return` commonly uses: return 301 https://$host$request_uri;
  // $host is the Host without its port (a bracketed IPv6 literal is kept whole).
  std::string_view host = req_.host;
  if (!host.empty() && host[0] == '[') {
    host = host.substr(0, host.find(']') + 1);  // [v6] without its port (npos + 1 is 0: all)
    if (host.empty()) host = req_.host;
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string out;
  size_t i = 0;
  while (i < t.size()) {
    if (t[i] != '$') {
      out.push_back(t[i++]);
      continue;
    }
    size_t j = i + 1;
    while (j < t.size() && (std::isalnum(static_cast<unsigned char>(t[j])) || t[j] == '_')) ++j;
    std::string_view name = t.substr(i + 1, j - i - 1);
    if (name == "scheme") {
      out.append(ssl_ != nullptr ? "https" : "http");
    } else if (name == "host") {
      out.append(AsciiLower(std::string(host)));
    } else if (name == "http_host") {
      out.append(req_.host);
    } else if (name == "request_uri") {
      out.append(req_.target);
    } else if (name == "uri") {
      out.append(path_);  // decoded and normalised, as nginx's $uri
    } else if (name == "upstream_request_uri") {
      // The target as it goes upstream (NormalizeRequestPath chose the path).
      out.append(upstream_path_);
      if (!req_.query.empty()) {
        out.push_back('?');
        out.append(req_.query);
      }
    } else if (name == "args") {
      out.append(req_.query);
    } else if (name == "remote_addr") {
      out.append(client_ip_);
    } else if (name == "request_method") {
      // A cache key's method: HEAD is answered from GET entries (nginx proxy_cache_convert_head).
      out.append(method_ == http::Method::kHead && cache_zone_ != nullptr ? "GET"
                                                                         : req_.method_str);
    } else if (name.size() > 5 && name.substr(0, 5) == "http_") {
      std::string h = AsciiLower(std::string(name.substr(5)));
      std::replace(h.begin(), h.end(), '_', '-');
      if (const http::Header* hd = req_.Find(h)) out.append(hd->value);
    } else if (name.size() > 7 && name.substr(0, 7) == "cookie_") {
      out.append(CookieValue(req_, name.substr(7)).value_or(""));
    } else {
      out.append(t.substr(i, j - i));  // unknown: left as written
    }
    i = j;
  }
  return out;
}

void ClientConn::BanStatus(int status) {
  // Counted once, before the answer leaves: the client's next request, on whichever worker,
  // must already see the ban.
  if (ban_counted_ || route_ == nullptr || ban_key_.empty() || limit_rejected_) return;
  ban_counted_ = true;
  for (int s : route_->cfg->ban.statuses) {
    if (s == status) {
      StrikeBan(StrCat(status));
      break;
    }
  }
}

void ClientConn::StrikeBan(std::string_view what) {
  BanTable* bans = worker_->shared().bans;
  if (bans == nullptr || route_ == nullptr || ban_key_.empty()) return;
  const GatewayConfig& cfg = *view_->snap->config;
  for (const auto& c : cfg.bans.never_ban) {
    if (c.Contains(client_addr_)) return;
  }
  const BanRuleConfig& rule = route_->cfg->ban;
  if (bans->Strike(ban_key_, route_->cfg->name, rule, worker_->loop().now_ms(), what)) {
    std::string reason =
        StrCat(rule.maxretry, " x ", what, " within ", FormatDurationMs(rule.findtime_ms));
    LogWarn("security event: banned ", ban_key_, " for ", FormatDurationMs(rule.bantime_ms),
            " (route ", route_->cfg->name, ": ", reason, ")");
    RedisClient* redis = worker_->redis();
    if (redis != nullptr && redis->connected()) {
      // Shared with the other instances: kept in Redis for the ban's time (for instances that
      // start or reconnect later) and announced to the ones listening now.
      const std::string& prefix = cfg.redis.key_prefix;
      std::string msg = BanMessage("ban", ban_key_, route_->cfg->name, reason, rule.bantime_ms,
                                   worker_->shared().instance_id);
      std::string rkey = BanRedisKey(prefix, ban_key_);
      std::string ms = StrCat(rule.bantime_ms);
      redis->Command({"SET", rkey, msg, "PX", ms}, [](const RedisReply&) {});
      redis->Command({"PUBLISH", BanChannel(prefix), msg}, [](const RedisReply&) {});
    }
  }
}

bool ClientConn::AcquireConnLimits() {
  const LimitConnConfig& lc = route_->cfg->limit_conn;
  if (lc.rules.empty()) return true;
  const Snapshot& snap = *view_->snap;
  held_conn_keys_.clear();
  for (const LimitConnRule& rule : lc.rules) {
    ConnZone* zone = snap.conn_zones[static_cast<size_t>(rule.zone_index)].get();
    size_t offset = held_conn_keys_.size();
    if (!AppendKey(snap.config->conn_zones[static_cast<size_t>(rule.zone_index)].key, true,
                   &held_conn_keys_)) {
      continue;  // as nginx: an empty key is not limited
    }
    std::string_view key = std::string_view(held_conn_keys_).substr(offset);
    if (zone->Acquire(key, rule.max)) {
      held_conn_[static_cast<size_t>(held_conn_n_++)] = {zone, offset, key.size()};
      continue;
    }
    if (lc.dry_run) {
      held_conn_keys_.resize(offset);
      zone->Count(ConnResult::kRejectedDryRun);
      continue;
    }
    zone->Count(ConnResult::kRejected);
    LogDebug("limiting connections by zone \"", zone->name(), "\", client: ", client_ip_);
    ReleaseConnLimits();
    limit_rejected_ = true;
    SendError(lc.status, "too many requests in progress", has_body_);
    return false;
  }
  for (int i = 0; i < held_conn_n_; ++i) held_conn_[static_cast<size_t>(i)].zone->Count(ConnResult::kPassed);
  return true;
}

void ClientConn::ReleaseConnLimits() {
  for (int i = 0; i < held_conn_n_; ++i) {
    const HeldConn& h = held_conn_[static_cast<size_t>(i)];
    h.zone->Release(std::string_view(held_conn_keys_).substr(h.offset, h.len));
  }
  held_conn_n_ = 0;
}

void ClientConn::Proceed() {
  const Router::Route* route = route_;
  bool has_body = has_body_;
  if (!AcquireConnLimits()) return;
  if (route->cfg->ret.has_value()) {
    const ReturnConfig& r = *route->cfg->ret;
    if (r.location.find('$') == std::string::npos && r.body.find('$') == std::string::npos) {
      SendLocal(r.status, r.body, r.content_type, r.location, has_body);
    } else {
      // $uri is decoded: a %0D%0A in the request must not start a header of the answer (the
      // classic `return 302 https://$host$uri` header injection). Controls and spaces are
      // escaped again.
      std::string location;
      for (char c : ExpandVariables(r.location)) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) {
          AppendHexEscape(&location, '%', u);
        } else {
          location.push_back(c);
        }
      }
      std::string body = ExpandVariables(r.body);
      SendLocal(r.status, body, r.content_type, location, has_body);
    }
    return;
  }
  upgrade_requested_ = req_.connection_upgrade && !req_.upgrade.empty();
  if (route->cfg->cache.enabled && route->cfg->cache.zone_index >= 0 && CacheLookup(true)) return;
  ProceedUpstream();
}

void ClientConn::ProceedUpstream() {
  const GatewayConfig& cfg = *view_->snap->config;
  const Router::Route* route = route_;
  bool has_body = has_body_;
  BuildUpstreamHead(*route, trusted_peer_);

  if (req_.expect_continue && has_body && req_.version_minor == 1) {
    // bulwark answers 100-continue itself (as nginx does) and does not forward Expect.
    out_.buf.append("HTTP/1.1 100 Continue\r\n\r\n");
    WriteOut();
  }

  upstream_index_ = route->upstream_index;
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_index_];
  key_hash_ = AffinityHash(*ur.cfg);
  tried_.reset();
  ur.live->active_requests.fetch_add(1, std::memory_order_relaxed);
  counted_active_ = true;
  sticky_cookie_id_ = session_server_id_ = 0;
  session_value_.clear();
  const StickyConfig& sticky = ur.cfg->sticky;
  if (sticky.enabled) {
    if (!sticky.cookie.empty()) {
      uint64_t id = 0;
      if (ParseStickyCookie(CookieValue(req_, sticky.cookie).value_or(""), StickySecret(),
                            ur.cfg->name, &id))
        sticky_cookie_id_ = id;
    }
    std::string_view sv =
        sticky.session_cookie.empty() ? std::string_view()
                                      : CookieValue(req_, sticky.session_cookie).value_or("");
    if (!sv.empty() && sv.size() <= 512) {
      session_value_.assign(sv);
      RedisClient* redis = worker_->redis();
      if (redis != nullptr && redis->connected()) {
        // The session table (seed 002's design): session -> server, refreshed on every use.
        std::string key = StrCat(cfg.redis.key_prefix, "sticky:", ur.cfg->name, ":", session_value_);
        std::string ttl = StrCat(sticky.ttl_ms);
        uint64_t seq = ++limit_seq_;
        state_ = State::kSticky;
        redis->Command({"GETEX", key, "PX", ttl},
                       [this, seq](const RedisReply& r) { OnStickyLookup(seq, r); });
        return;
      }
    }
  }
  ChooseAndStart(0);
}

// ---------------------------------------------------------------- HTTP cache

namespace {

// Wait tokens: unique per wait in the process, so a pooled conn never takes a wake-up meant
// for the request it served before.
std::atomic<uint64_t> g_cache_wait_tokens{1};

bool IsStatusWithoutBody(int status) { return status == 204 || status == 304 || status < 200; }

}  // namespace

void ClientConn::ResetCacheState() {
  if (cache_zone_ != nullptr) CacheComplete(false);
  cache_zone_ = nullptr;
  cache_key_.clear();
  cache_status_ = nullptr;
  cache_store_ = cache_capture_ = false;
  cache_stale_.reset();
  cache_stale_until_ = 0;
  cache_handoff_.reset();
  cache_obj_.tags.clear();
  cache_obj_.vary.clear();
  cache_obj_.head.clear();
  // A large captured body is not kept around on an idle connection.
  if (cache_obj_.body.capacity() > 64 * 1024) {
    std::string().swap(cache_obj_.body);
  } else {
    cache_obj_.body.clear();
  }
}

bool ClientConn::VaryMatches(const cache::HttpObjectView& v) const {
  for (const auto& [name, value] : v.vary) {
    const http::Header* h = req_.Find(name);
    std::string_view now = h != nullptr ? h->value : std::string_view();
    if (now != value) return false;
  }
  return true;
}

bool ClientConn::CacheLookup(bool first) {
  const RouteCacheConfig& cc = route_->cfg->cache;
  HttpCacheZone* zone = view_->snap->cache_zones[static_cast<size_t>(cc.zone_index)].get();
  cache_zone_ = zone;
  bool head = method_ == http::Method::kHead;
  bool allowed = false;
  for (const std::string& m : cc.methods) {
    if ((m == "GET" && method_ == http::Method::kGet) || (m == "HEAD" && head)) allowed = true;
  }
  // RFC 9111 §3.5: a shared cache does not answer requests with credentials from a stored
  // response (Varnish passes them too); upgrades are never cached.
  if (!allowed || upgrade_requested_ || req_.Find("authorization") != nullptr) {
    cache_status_ = "BYPASS";
    zone->bypass.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (first) cache_key_ = ExpandVariables(cc.key);
  int64_t now = worker_->loop().now_ms();
  cache::Lookup l = zone->l1(worker_->index()).Get(cache_key_, now);
  cache::HttpObjectView v;
  if (l.hit() && l.value != nullptr && cache::DecodeHttpObject(*l.value, &v) && VaryMatches(v)) {
    if (l.state == cache::Freshness::kFresh) {
      zone->hits.fetch_add(1, std::memory_order_relaxed);
      ServeCached(l.value, v, "HIT");
      return true;
    }
    if (now < l.fresh_until_ms + v.stale_if_error_ms) {
      cache_stale_ = l.value;
      cache_stale_until_ = l.fresh_until_ms + v.stale_if_error_ms;
    }
    // stale-while-revalidate, as nginx's proxy_cache_use_stale updating: while one request
    // refreshes the entry, the others get the stale copy at once.
    if (now < l.fresh_until_ms + v.stale_while_revalidate_ms && zone->InFlight(cache_key_)) {
      zone->stale.fetch_add(1, std::memory_order_relaxed);
      ServeCached(l.value, v, "STALE");
      return true;
    }
  }
  cache_status_ = "MISS";
  // One outcome per request: a request that waits for another's fetch is counted when it
  // wakes (a hit, or a miss if it must go to the server after all), not here as well.
  auto miss = [zone] { zone->misses.fetch_add(1, std::memory_order_relaxed); };
  if (head || !first) {  // HEAD is answered from GET entries but not stored
    miss();
    return false;
  }
  cache_store_ = true;
  if (!cc.lock) {
    miss();
    return false;
  }
  cache_wait_token_ = g_cache_wait_tokens.fetch_add(1, std::memory_order_relaxed);
  HttpCacheZone::Waiter me{worker_, this, cache_wait_token_};
  if (zone->JoinFlight(cache_key_, &me)) {
    miss();
    cache_leader_ = true;
    RedisClient* redis = worker_->redis();
    if (zone->config().redis && redis != nullptr && redis->connected()) {
      // The second level, shared by the instances: asked once per key, by the leader.
      uint64_t seq = ++limit_seq_;
      state_ = State::kCacheL2;
      const GatewayConfig& gw = *view_->snap->config;
      redis->Command({"GET", HttpCacheRedisKey(gw.redis.key_prefix, zone->config().name, cache_key_)},
                     [this, seq](const RedisReply& r) { OnCacheL2(seq, r); });
      return true;
    }
    return false;
  }
  // Another request is fetching this key: wait for it (nginx proxy_cache_lock).
  zone->coalesced.fetch_add(1, std::memory_order_relaxed);
  cache_store_ = false;
  state_ = State::kCacheWait;
  ArmClientTimer(cc.lock_timeout_ms);
  return true;
}

void ClientConn::OnCacheL2(uint64_t seq, const RedisReply& r) {
  if (!open_ || state_ != State::kCacheL2 || seq != limit_seq_) return;  // the client left
  state_ = State::kHead;
  HttpCacheZone* zone = cache_zone_;
  int64_t fresh_until = 0, stale_until = 0;
  std::string_view object;
  cache::HttpObjectView v;
  if (r.is_error()) zone->l2_errors.fetch_add(1, std::memory_order_relaxed);
  if (r.type == RedisReply::Type::kString &&
      DecodeL2Entry(r.str, &fresh_until, &stale_until, &object) &&
      cache::DecodeHttpObject(object, &v) && VaryMatches(v)) {
    int64_t wall = WallMicros() / 1000;
    int64_t now = worker_->loop().now_ms();
    auto value = std::make_shared<const std::string>(object);
    cache::HttpObjectView view;
    cache::DecodeHttpObject(*value, &view);
    if (fresh_until > wall) {
      zone->l2_hits.fetch_add(1, std::memory_order_relaxed);
      cache::PutOptions o;
      o.fresh_until_ms = now + (fresh_until - wall);
      o.stale_until_ms = now + (stale_until - wall);
      for (std::string_view t : view.tags) o.tags.emplace_back(t);
      zone->l1(worker_->index()).Put(cache_key_, value, o, now);
      cache_handoff_ = value;
      cache_handoff_opts_ = o;
      ServeCached(value, view, "HIT");  // and wakes the requests waiting on this key
      return;
    }
    if (wall < fresh_until + view.stale_if_error_ms) {
      cache_stale_ = value;  // stale-if-error from the shared level
      cache_stale_until_ = now + (fresh_until + view.stale_if_error_ms - wall);
    }
  }
  zone->l2_misses.fetch_add(1, std::memory_order_relaxed);
  ProceedUpstream();
}

void ClientConn::OnCacheWake(uint64_t token, std::shared_ptr<const std::string> value,
                             cache::PutOptions options) {
  if (!open_ || state_ != State::kCacheWait || token != cache_wait_token_) return;
  worker_->loop().CancelTimer(&timer_);
  if (value != nullptr && cache_zone_ != nullptr && cache_zone_->config().per_worker) {
    // This worker's own L1 gets the leader's copy (the deadlines are on the same clock).
    cache_zone_->l1(worker_->index()).Put(cache_key_, std::move(value), options,
                                          worker_->loop().now_ms());
  }
  state_ = State::kHead;
  // The fetch is over: a hit now, or (not storable, or it failed) straight to the server.
  if (CacheLookup(false)) return;
  ProceedUpstream();
}

void ClientConn::ServeCached(const std::shared_ptr<const std::string>& value,
                             const cache::HttpObjectView& v, const char* status) {
  cache_status_ = status;
  if (cache_zone_ != nullptr) CacheComplete(false);
  if (worker_->draining()) keep_alive_ = false;
  if (has_body_ && !body_done_) keep_alive_ = false;  // the request body is not read
  status_ = v.status;
  resp_started_ = resp_done_ = true;
  log_upstream_.clear();
  std::string& o = out_.buf;
  o.append(version_minor_ == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  StrAppend(&o, v.status, " ", http::StatusReason(v.status), "\r\n");
  o.append(v.head);
  int64_t age = std::max<int64_t>(0, WallMicros() / 1000000 - v.stored_unix_s) + v.initial_age_s;
  StrAppend(&o, "Age: ", age, "\r\nX-Cache: ", status, "\r\n");
  if (request_id_len_ > 0)
    AppendHeaderLine(&o, "X-Request-Id", std::string_view(request_id_, request_id_len_));
  if (AddHeaderStatus(v.status)) o.append(route_->cfg->add_header_block);
  o.append(route_->cfg->add_header_always_block);
  if (!IsStatusWithoutBody(v.status)) StrAppend(&o, "Content-Length: ", v.body.size(), "\r\n");
  if (!keep_alive_) {
    o.append("Connection: close\r\n");
  } else if (version_minor_ == 0) {
    o.append("Connection: keep-alive\r\n");
  }
  o.append("\r\n");
  if (method_ != http::Method::kHead && !IsStatusWithoutBody(v.status)) {
    o.append(v.body);
    bytes_out_ = v.body.size();
  }
  (void)value;  // the caller's reference keeps `v` valid until here
  if (!logged_) LogAndCount(v.status);
  state_ = State::kLocal;
  close_after_ = close_after_ || !keep_alive_;
  DoWrite();
}

bool ClientConn::ServeStaleOnError() {
  if (cache_stale_ == nullptr || worker_->loop().now_ms() >= cache_stale_until_) return false;
  cache::HttpObjectView v;
  std::shared_ptr<const std::string> keep = cache_stale_;
  if (!cache::DecodeHttpObject(*keep, &v)) return false;
  if (cache_zone_ != nullptr) cache_zone_->stale.fetch_add(1, std::memory_order_relaxed);
  ServeCached(keep, v, "STALE");
  return true;
}

void ClientConn::CacheDecide() {
  const RouteCacheConfig& cc = route_->cfg->cache;
  cache::ResponseFacts f;
  f.status = resp_.status;
  std::string_view vary_value;
  bool vary_seen = false;
  for (const auto& hd : resp_.headers) {
    if (http::EqualsLower(hd.name, "cache-control")) {
      cache::ParseCacheControl(hd.value, &f.cc);
    } else if (http::EqualsLower(hd.name, "expires")) {
      f.expires = cache::ParseHttpDate(hd.value);
    } else if (http::EqualsLower(hd.name, "date")) {
      f.date = cache::ParseHttpDate(hd.value);
    } else if (http::EqualsLower(hd.name, "age")) {
      int64_t a = 0;
      if (ParseInt(hd.value, &a) && a >= 0) f.age = a;
    } else if (http::EqualsLower(hd.name, "set-cookie")) {
      f.has_set_cookie = true;
    } else if (http::EqualsLower(hd.name, "vary")) {
      if (vary_seen) f.vary_star = true;  // two Vary lines: not worth merging, not stored
      vary_seen = true;
      vary_value = hd.value;
      if (hd.value.find('*') != std::string_view::npos) f.vary_star = true;
    }
  }
  cache::HttpCacheRules rules;
  rules.default_ttl_ms = cc.ttl_ms;
  rules.statuses = cc.statuses;
  rules.stale_while_revalidate_ms = cc.stale_while_revalidate_ms;
  rules.stale_if_error_ms = cc.stale_if_error_ms;
  rules.ignore_set_cookie = cc.ignore_set_cookie;
  int64_t now_s = WallMicros() / 1000000;
  cache_decision_ = cache::DecideStorage(f, rules, now_s);
  if (!cache_decision_.store ||
      (resp_.body == http::BodyKind::kLength &&
       resp_.content_length > static_cast<uint64_t>(cc.max_object_bytes))) {
    if (cache_decision_.store) cache_zone_->too_big.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  cache_obj_ = cache::HttpObject{};
  cache_obj_.status = resp_.status;
  for (const auto& hd : resp_.headers) {
    if (http::IsHopByHop(hd.name)) continue;
    if (!resp_.connection.empty() && NamedInConnection(resp_.connection, hd.name)) continue;
    if (http::EqualsLower(hd.name, "content-length") || http::EqualsLower(hd.name, "age") ||
        http::EqualsLower(hd.name, "x-request-id") || http::EqualsLower(hd.name, "x-cache") ||
        http::EqualsLower(hd.name, "set-cookie"))
      continue;
    AppendHeaderLine(&cache_obj_.head, hd.name, hd.value);
    for (const std::string& tag_header : cc.tag_headers) {
      if (!http::EqualsLower(hd.name, tag_header)) continue;
      // Cache-Tag (comma-separated) and Surrogate-Key (space-separated) lists.
      for (std::string& part : Split(hd.value, ',', true)) {
        for (std::string& t : Split(part, ' ', true)) {
          if (cache_obj_.tags.size() < cache::kMaxTags && t.size() <= 256)
            cache_obj_.tags.push_back(std::move(t));
        }
      }
    }
  }
  for (std::string& name : Split(vary_value, ',', true)) {
    std::string n = AsciiLower(std::string(Trim(name)));
    if (n.empty()) continue;
    if (cache_obj_.vary.size() >= cache::kMaxVaryHeaders) return;  // too many: not stored
    const http::Header* h = req_.Find(n);
    cache_obj_.vary.emplace_back(n, h != nullptr ? std::string(h->value) : std::string());
  }
  int64_t apparent = f.date >= 0 ? std::max<int64_t>(0, now_s - f.date) : 0;
  cache_obj_.stored_unix_s = now_s;
  cache_obj_.initial_age_s = std::max(apparent, f.age);
  cache_obj_.stale_while_revalidate_ms = cache_decision_.stale_while_revalidate_ms;
  cache_obj_.stale_if_error_ms = cache_decision_.stale_if_error_ms;
  if (resp_.body == http::BodyKind::kLength) {
    cache_obj_.body.reserve(static_cast<size_t>(resp_.content_length));
  }
  cache_capture_ = true;
}

void ClientConn::CaptureBody(const char* d, size_t n) {
  if (cache_obj_.body.size() + n > static_cast<size_t>(route_->cfg->cache.max_object_bytes)) {
    cache_capture_ = false;  // too big to keep: the response still streams to the client
    cache_zone_->too_big.fetch_add(1, std::memory_order_relaxed);
    cache_obj_.body.clear();
    return;
  }
  cache_obj_.body.append(d, n);
}

void ClientConn::CacheComplete(bool store) {
  HttpCacheZone* zone = cache_zone_;
  if (zone == nullptr) return;
  if (store && cache_capture_) {
    int64_t now = worker_->loop().now_ms();
    cache::PutOptions o;
    o.fresh_until_ms = now + cache_decision_.fresh_ms;
    o.stale_until_ms = o.fresh_until_ms + std::max(cache_decision_.stale_while_revalidate_ms,
                                                   cache_decision_.stale_if_error_ms);
    o.tags = cache_obj_.tags;
    auto value = std::make_shared<const std::string>(cache::EncodeHttpObject(cache_obj_));
    zone->l1(worker_->index()).Put(cache_key_, value, o, now);
    zone->stored.fetch_add(1, std::memory_order_relaxed);
    cache_handoff_ = value;
    cache_handoff_opts_ = o;
    RedisClient* redis = worker_->redis();
    if (zone->config().redis && redis != nullptr && redis->connected()) {
      const std::string& prefix = view_->snap->config->redis.key_prefix;
      int64_t wall = WallMicros() / 1000;
      int64_t life = o.stale_until_ms - now;
      std::string rkey = HttpCacheRedisKey(prefix, zone->config().name, cache_key_);
      std::string px = StrCat(std::max<int64_t>(life, 1));
      redis->Command({"SET", rkey,
                      EncodeL2Entry(wall + cache_decision_.fresh_ms, wall + life, *value), "PX",
                      px},
                     [zone](const RedisReply& r) {
                       (r.is_error() ? zone->l2_errors : zone->l2_sets)
                           .fetch_add(1, std::memory_order_relaxed);
                     });
      for (const std::string& t : cache_obj_.tags) {
        std::string tk = HttpCacheRedisTagKey(prefix, zone->config().name, t);
        redis->Command({"SADD", tk, rkey}, [](const RedisReply&) {});
        redis->Command({"PEXPIRE", tk, StrCat(life + 60000), "GT"}, [](const RedisReply&) {});
        redis->Command({"PEXPIRE", tk, StrCat(life + 60000), "NX"}, [](const RedisReply&) {});
      }
    }
  } else if (cache_store_ && cache_leader_) {
    zone->not_stored.fetch_add(1, std::memory_order_relaxed);
  }
  cache_capture_ = false;
  cache_store_ = false;
  if (!cache_leader_) return;
  cache_leader_ = false;
  std::shared_ptr<const std::string> value = std::move(cache_handoff_);
  for (const HttpCacheZone::Waiter& w : zone->FinishFlight(cache_key_)) {
    ClientConn* c = w.conn;
    uint64_t token = w.token;
    w.worker->loop().Post([c, token, value, o = cache_handoff_opts_] {
      c->OnCacheWake(token, value, o);
    });
  }
}

void ClientConn::OnStickyLookup(uint64_t seq, const RedisReply& r) {
  if (!open_ || state_ != State::kSticky || seq != limit_seq_) return;
  state_ = State::kHead;
  uint64_t id = 0;
  // Redis down or slow: the session is balanced like any request (and re-pinned later).
  if (r.type == RedisReply::Type::kString && ParseHex16(r.str, &id)) session_server_id_ = id;
  ChooseAndStart(session_server_id_);
}

std::string_view ClientConn::StickySecret() const {
  const StickyConfig& st = view_->snap->upstreams[upstream_index_].cfg->sticky;
  return st.secret.empty() ? std::string_view(worker_->shared().sticky_secret)
                           : std::string_view(st.secret);
}

void ClientConn::ChooseAndStart(uint64_t session_server) {
  const GatewayConfig& cfg = *view_->snap->config;
  Balancer& bal = *view_->balancers[upstream_index_];
  int64_t now = worker_->loop().now_ms();
  int idx = -1;
  if (session_server != 0) idx = bal.FindSticky(session_server, now, tried_);
  if (idx < 0 && sticky_cookie_id_ != 0) idx = bal.FindSticky(sticky_cookie_id_, now, tried_);
  if (idx < 0) idx = bal.Select(now, key_hash_, tried_);
  if (bal.panicked()) worker_->stats().panic_selections.Add(1);
  if (idx < 0) {
    // Every server is down, drained or failed: answer now instead of queueing (nginx: "no live
    // upstreams").
    worker_->stats().no_upstream.Add(1);
    if (ServeStaleOnError()) return;
    SendError(503, "no live upstreams", has_body_);
    return;
  }
  state_ = State::kProxy;
  if (has_body_) {
    ArmClientTimer(cfg.http.client_body_timeout_ms);
  } else {
    worker_->loop().CancelTimer(&timer_);
  }
  StartAttempt(idx);
}

void ClientConn::StickyResponse(std::string* o) {
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_index_];
  const StickyConfig& st = ur.cfg->sticky;
  if (!st.enabled || up_ == nullptr) return;
  uint64_t id = view_->balancers[upstream_index_]->peer(up_->server_index_).sticky_id;
  if (!st.cookie.empty() && id != sticky_cookie_id_) {
    // Pin (or re-pin, when the pinned server could not answer) to the server that did.
    o->append("Set-Cookie: ");
    o->append(st.cookie);
    o->push_back('=');
    AppendHex16(o, id);
    o->push_back('.');
    AppendStickyMac(o, StickySecret(), ur.cfg->name, id);
    StrAppend(o, "; Path=", st.path);
    if (st.max_age_ms > 0) StrAppend(o, "; Max-Age=", st.max_age_ms / 1000);
    if (st.http_only) o->append("; HttpOnly");
    if (st.secure) o->append("; Secure");
    StrAppend(o, "; SameSite=", st.same_site, "\r\n");
  }
  if (st.session_cookie.empty()) return;
  // A session the application just created, or one whose server changed, is (re)recorded.
  std::string_view created;
  for (const auto& h : resp_.headers) {
    if (h.name.size() != 10 || !http::EqualsLower(h.name, "set-cookie")) continue;
    std::string_view v = h.value;
    if (v.size() > st.session_cookie.size() && v.substr(0, st.session_cookie.size()) == st.session_cookie &&
        v[st.session_cookie.size()] == '=') {
      v.remove_prefix(st.session_cookie.size() + 1);
      created = v.substr(0, v.find(';'));
    }
  }
  std::string_view session = !created.empty() ? created : std::string_view(session_value_);
  if (session.empty() || session.size() > 512) return;
  if (created.empty() && session_server_id_ == id) return;
  RedisClient* redis = worker_->redis();
  if (redis == nullptr || !redis->connected()) return;
  std::string key = StrCat(view_->snap->config->redis.key_prefix, "sticky:", ur.cfg->name, ":", session);
  std::string value;
  AppendHex16(&value, id);
  redis->Command({"SET", key, value, "PX", StrCat(st.ttl_ms)}, [](const RedisReply&) {});
}

void ClientConn::BuildUpstreamHead(const Router::Route& route, bool trusted) {
  std::string& h = up_head_;
  h.clear();
  h.append(req_.method_str);
  h.push_back(' ');
  const GatewayConfig& cfg = *view_->snap->config;
  if (cfg.http.upstream_path == UpstreamPath::kOriginal && !req_.target.empty() &&
      req_.target[0] == '/') {
    h.append(req_.target);
  } else {
    // Envoy normalize_path; absolute-form is sent on in origin-form.
    h.append(upstream_path_);
    if (!req_.query.empty()) {
      h.push_back('?');
      h.append(req_.query);
    }
  }
  h.append(" HTTP/1.1\r\n");
  if (!req_.host.empty()) {
    AppendHeaderLine(&h, "Host", req_.host);
  } else {
    AppendHeaderLine(&h, "Host", route.cfg->upstream);
  }
  std::string_view xff, xfp, xfh;
  for (const auto& hd : req_.headers) {
    std::string_view n = hd.name;
    if (http::IsHopByHop(n)) continue;
    switch (n.size()) {
      case 4:
        if (http::EqualsLower(n, "host")) continue;
        break;
      case 6:
        if (http::EqualsLower(n, "expect") && req_.expect_continue) continue;
        break;
      case 9:
        if (http::EqualsLower(n, "x-real-ip")) continue;
        break;
      case 11:
        if (http::EqualsLower(n, "traceparent")) continue;
        break;
      case 12:
        if (http::EqualsLower(n, "x-request-id")) continue;
        break;
      case 14:
        if (http::EqualsLower(n, "content-length")) continue;
        break;
      case 15:
        if (http::EqualsLower(n, "x-forwarded-for")) {
          xff = hd.value;
          continue;
        }
        break;
      case 16:
        if (http::EqualsLower(n, "x-forwarded-host")) {
          xfh = hd.value;
          continue;
        }
        break;
      case 17:
        if (http::EqualsLower(n, "x-forwarded-proto")) {
          xfp = hd.value;
          continue;
        }
        break;
      default:
        break;
    }
    // Same default as nginx (underscores_in_headers off): such names are dropped, because some
    // servers read "X_Foo" as "X-Foo" and that disagreement can be abused.
    if (n.find('_') != std::string_view::npos) continue;
    if (route.cfg->jwt_index >= 0) {
      // Headers that carry verified claims upstream are only ever bulwark's: a client's own
      // copy is dropped, so it cannot pose as someone else.
      bool spoof = false;
      for (const auto& fc : view_->snap->config->jwt_providers[route.cfg->jwt_index].forward_claims)
        spoof |= n.size() == fc.second.size() && EqualsIgnoreCase(n, fc.second);
      if (spoof) continue;
    }
    if (!req_.connection.empty() && NamedInConnection(req_.connection, n)) continue;
    AppendHeaderLine(&h, n, hd.value);
  }
  // X-Forwarded-*: trusted proxies' values are extended; anyone else's are replaced, so a client
  // cannot forge its address.
  h.append("X-Forwarded-For: ");
  if (trusted && !xff.empty()) {
    h.append(xff);
    h.append(", ");
  }
  h.append(peer_ip_);
  h.append("\r\n");
  AppendHeaderLine(&h, "X-Forwarded-Proto",
                   trusted && !xfp.empty() ? xfp
                   : ssl_ != nullptr       ? std::string_view("https")
                                           : std::string_view("http"));
  if (trusted && !xfh.empty()) {
    AppendHeaderLine(&h, "X-Forwarded-Host", xfh);
  } else if (!req_.host.empty()) {
    AppendHeaderLine(&h, "X-Forwarded-Host", req_.host);
  }
  AppendHeaderLine(&h, "X-Real-IP", client_ip_);
  if (jwt_ok_) h.append(jwt_headers_);
  AppendHeaderLine(&h, "X-Request-Id", std::string_view(request_id_, request_id_len_));
  if (incoming_trace_) {
    AppendHeaderLine(&h, "traceparent", req_.Find("traceparent")->value);
  } else {
    char span[16];
    worker_->RandomHex(span, 16);
    h.append("traceparent: 00-");
    h.append(trace_id_, 32);
    h.push_back('-');
    h.append(span, 16);
    h.append("-01\r\n");
  }
  if (body_kind_ == http::BodyKind::kLength) {
    h.append("Content-Length: ");
    StrAppend(&h, req_.content_length);
    h.append("\r\n");
  } else if (body_kind_ == http::BodyKind::kChunked) {
    h.append("Transfer-Encoding: chunked\r\n");
  }
  if (upgrade_requested_) {
    h.append("Connection: upgrade\r\n");
    AppendHeaderLine(&h, "Upgrade", req_.upgrade);
  }
  h.append("\r\n");
}

void ClientConn::StartAttempt(int server_index) {
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_index_];
  const UpstreamConfig& ucfg = *ur.cfg;
  Balancer& bal = *view_->balancers[upstream_index_];
  ServerState* s = bal.peer(server_index).state;
  tried_.set(server_index);
  ++attempts_;
  log_upstream_.assign(s->address_text());
  ServerCounters& sc = worker_->server_counters_mut(s->id());
  sc.requests.Add(1);
  if (attempts_ > 1) sc.retries.Add(1);
  s->active().fetch_add(1, std::memory_order_relaxed);
  upstream_start_us_ = NowMicros();

  int64_t now = worker_->loop().now_ms();
  attempt_probe_ = s->ClaimProbe(now);
  probe_server_ = s;
  int64_t deadline = ucfg.retry.enabled && ucfg.retry.per_try_timeout_ms > 0
                         ? now + ucfg.retry.per_try_timeout_ms
                         : 0;
  UpstreamConn* c = worker_->TakeIdle(s->id());
  if (c != nullptr) {
    c->server_index_ = server_index;
    c->deadline_ms_ = deadline;
  } else {
    c = worker_->NewUpstream();
    c->deadline_ms_ = deadline;
    absl::Status st = c->Connect(s, server_index, ucfg.connect_timeout_ms);
    if (!st.ok()) {
      worker_->FreeUpstream(c);
      s->active().fetch_sub(1, std::memory_order_relaxed);
      s->OnFailure(now);
      bal.RecordFailure(server_index);
      sc.failures.Add(1);
      RecordAttemptOutcome(s, 0);
      RetryOrFail(UpstreamFailure::kConnect, /*sent=*/false);
      return;
    }
  }
  up_ = c;
  c->owner_ = this;
  c->wrote_any_ = c->got_any_ = false;
  c->read_paused_ = false;
  c->send_timeout_ms_ = ucfg.send_timeout_ms;
  c->read_timeout_ms_ = ucfg.read_timeout_ms;
  resp_scanner_.Reset();
  resp_chunks_.Reset();
  resp_started_ = resp_done_ = false;

  // (Re)send the request: the head, then whatever body bytes are in the buffer.
  c->out_.Clear();
  c->out_.buf.append(up_head_);
  body_pos_ = body_start_;
  body_left_ = req_.content_length;
  body_bytes_ = 0;
  body_done_ = body_kind_ == http::BodyKind::kNone;
  req_chunks_.Reset();
  ForwardBody();
  if (up_ == c && c->state_ == UpstreamConn::State::kActive) {
    c->ArmTimer(ucfg.send_timeout_ms);
    c->Flush();
  }
}

void ClientConn::OnUpstreamConnected() {
  if (up_ == nullptr) return;
  up_->ArmTimer(up_->send_timeout_ms_);
  up_->Flush();
}

void ClientConn::OnUpstreamDrained() {
  if (up_ == nullptr) return;
  if (!body_done_) {
    ForwardBody();
    if (read_paused_ && up_ != nullptr && up_->out_.pending() < kMaxPending) DoRead();
  }
  if (up_ == nullptr || up_->out_.pending() != 0 || resp_started_) return;
  if (body_done_) {
    // The whole request is sent: from now on the read timeout measures the wait for the
    // response (nginx proxy_read_timeout).
    up_->ArmTimer(up_->read_timeout_ms_);
  } else {
    // Waiting for more body from the client, whose own timeout (client_body_timeout) governs.
    worker_->loop().CancelTimer(&up_->timer_);
  }
}

void ClientConn::ForwardBody() {
  if (up_ == nullptr) return;
  int64_t max_body = view_->snap->config->http.client_max_body_size;
  while (!body_done_) {
    size_t avail = in_.wpos - body_pos_;
    if (avail == 0 || up_->out_.pending() > kMaxPending) break;
    const char* p = in_.data.get() + body_pos_;
    if (body_kind_ == http::BodyKind::kLength) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(avail, body_left_));
      up_->out_.buf.append(p, n);
      body_pos_ += n;
      body_left_ -= n;
      body_bytes_ += n;
      if (body_left_ == 0) body_done_ = true;
    } else {
      size_t consumed = 0;
      std::string& out = up_->out_.buf;
      http::ChunkedDecoder::Result r =
          req_chunks_.Feed(p, avail, &consumed, [&](const char* d, size_t n) {
            AppendHex(&out, n);
            out.append("\r\n");
            out.append(d, n);
            out.append("\r\n");
            body_bytes_ += n;
          });
      body_pos_ += consumed;
      if (r == http::ChunkedDecoder::Result::kError ||
          body_bytes_ > static_cast<uint64_t>(max_body)) {
        bool too_big = r != http::ChunkedDecoder::Result::kError;
        ReleaseUpstream(false);
        worker_->stats().parse_errors.Add(too_big ? 0 : 1);
        if (resp_started_) {
          Close();
        } else {
          SendError(too_big ? 413 : 400,
                    too_big ? "request body larger than client_max_body_size" : req_chunks_.error(),
                    true);
        }
        return;
      }
      if (r == http::ChunkedDecoder::Result::kDone) {
        out.append("0\r\n\r\n");
        body_done_ = true;
      }
    }
  }
  if (body_done_ && state_ == State::kProxy)
    worker_->loop().CancelTimer(&timer_);
  else if (!body_done_ && state_ == State::kProxy)
    ArmClientTimer(view_->snap->config->http.client_body_timeout_ms);
}

void ClientConn::OnUpstreamData() {
  if (up_ == nullptr) return;
  if (state_ == State::kTunnel) {
    TunnelPump();
    return;
  }
  if (!resp_started_ && !ParseUpstreamHead()) return;
  ForwardResponseBody();
}

bool ClientConn::ParseUpstreamHead() {
  http::Limits limits;
  limits.max_header_bytes = kUpstreamBufferBytes;
  limits.max_request_line = kUpstreamBufferBytes;
  limits.max_headers = 256;
  for (;;) {
    Buffer& b = up_->in_;
    size_t end = 0;
    http::ParseError err;
    http::ParseStatus st =
        resp_scanner_.Scan(b.read_ptr(), b.readable(), limits, false, &end, &err);
    if (st == http::ParseStatus::kNeedMore) {
      if (b.readable() >= kUpstreamBufferBytes) {
        OnUpstreamFailure(UpstreamFailure::kInvalidResponse);
      }
      return false;
    }
    if (st == http::ParseStatus::kDone)
      st = http::ParseResponseHead(b.read_ptr(), end, limits, method_, &resp_, &err);
    if (st == http::ParseStatus::kError || (resp_.status == 101 && !upgrade_requested_)) {
      OnUpstreamFailure(UpstreamFailure::kInvalidResponse);
      return false;
    }
    if (resp_.status < 200 && resp_.status != 101) {
      // Interim responses (100 Continue, 103 Early Hints) are not passed on: bulwark already
      // answered the client's Expect itself.
      b.Consume(end);
      resp_scanner_.Reset();
      continue;
    }
    // The response head is here: the attempt's outcome is known.
    ServerState* s = up_->server_;
    RecordAttemptOutcome(s, resp_.status);
    const UpstreamConfig& ucfg = *view_->snap->upstreams[upstream_index_].cfg;
    if (ucfg.retry.enabled && resp_.status >= 500 &&
        std::find(ucfg.retry.statuses.begin(), ucfg.retry.statuses.end(), resp_.status) !=
            ucfg.retry.statuses.end() &&
        MayRetry(/*sent=*/true)) {
      // Envoy retry_on 5xx statuses: drop this answer and try another server. nginx counts
      // such statuses as failures of the server (proxy_next_upstream http_50x).
      s->OnFailure(worker_->loop().now_ms());
      view_->balancers[upstream_index_]->RecordFailure(up_->server_index_);
      worker_->server_counters_mut(s->id()).failures.Add(1);
      int status = resp_.status;
      ReleaseUpstream(false);
      resp_scanner_.Reset();
      if (!RetryNext(status)) return false;
      return false;
    }
    if (cache_stale_ != nullptr && resp_.status >= 500 && resp_.status != 501 &&
        resp_.status <= 504 && worker_->loop().now_ms() < cache_stale_until_) {
      // RFC 5861 stale-if-error (nginx proxy_cache_use_stale http_50x): the stale copy instead
      // of the server's error.
      ReleaseUpstream(false);
      resp_scanner_.Reset();
      ServeStaleOnError();
      return false;
    }
    up_->deadline_ms_ = 0;  // the per-try timeout covers the wait for the response head
    resp_started_ = true;
    status_ = resp_.status;
    if (cache_store_) CacheDecide();
    BuildResponseHead();
    b.Consume(end);
    if (status_ == 101) {
      state_ = State::kTunnel;
      worker_->loop().CancelTimer(&timer_);
      // Bytes the client sent after its request head belong to the new protocol.
      size_t extra = in_.wpos - body_start_;
      if (extra > 0) up_->out_.buf.append(in_.data.get() + body_start_, extra);
      in_.rpos = in_.wpos = 0;
      if (!logged_) LogAndCount(101);
      TunnelPump();
      return false;
    }
    return true;
  }
}

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

void ClientConn::BrokenUpstreamFraming() {
  // A broken response after its head was sent: all that can be done is cut the connection.
  LogWarnFor(std::string_view(request_id_, request_id_len_), "upstream: ", log_upstream_,
             " sent invalid chunked framing: ", resp_chunks_.error());
  if (!logged_) LogAndCount(status_);
  ReleaseUpstream(false);
  Close();
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

void ClientConn::OnUpstreamEof() {
  if (up_ == nullptr) return;
  if (!resp_started_) {
    OnUpstreamFailure(up_->got_any_ ? UpstreamFailure::kInvalidResponse : UpstreamFailure::kClosed);
    return;
  }
  if (resp_body_ == http::BodyKind::kUntilClose) {
    ForwardResponseBody();
    if (up_ == nullptr) return;
    resp_done_ = true;
    if (gzip_) GzipFeed(nullptr, 0, true);
    FinishExchange();
    return;
  }
  if (!resp_done_) {
    // Truncated response: the client cannot be told except by closing.
    LogWarnFor(std::string_view(request_id_, request_id_len_), "upstream: ", log_upstream_,
               " closed the connection mid-response");
    if (!logged_) LogAndCount(status_);
    ReleaseUpstream(false);
    Close();
  }
}

void ClientConn::OnUpstreamFailure(UpstreamFailure why) {
  if (up_ == nullptr) return;
  if (state_ == State::kTunnel) {
    ReleaseUpstream(false);
    Close();
    return;
  }
  UpstreamConn* c = up_;
  ServerState* s = c->server_;
  int idx = c->server_index_;
  bool sent = c->wrote_any_;
  // A pooled connection the server closed just as we reused it is not the server's fault.
  bool stale = c->requests_ > 0 && !c->got_any_ &&
               (why == UpstreamFailure::kClosed || why == UpstreamFailure::kWrite ||
                why == UpstreamFailure::kRead);
  ReleaseUpstream(false);
  if (why == UpstreamFailure::kTimeout) worker_->stats().timeouts.Add(1);
  if (!stale) {
    s->OnFailure(worker_->loop().now_ms());
    RecordAttemptOutcome(s, 0);
    view_->balancers[upstream_index_]->RecordFailure(idx);
    worker_->server_counters_mut(s->id()).failures.Add(1);
    LogWarnFor(std::string_view(request_id_, request_id_len_), "upstream: ", s->upstream(),
               " server ", s->address_text(), " failed: ",
               why == UpstreamFailure::kConnect           ? "connect error"
               : why == UpstreamFailure::kTimeout         ? "timeout"
               : why == UpstreamFailure::kInvalidResponse ? "invalid response"
                                                          : "connection error");
  } else {
    tried_.reset(idx);  // the server may be tried again on a fresh connection
    if (attempt_probe_) RecordAttemptOutcome(s, -1);  // give the probe slot back
  }
  if (resp_started_) {
    if (!logged_) LogAndCount(status_);
    Close();
    return;
  }
  RetryOrFail(why, sent && !stale);
}

bool ClientConn::MayRetry(bool sent) {
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_index_];
  const UpstreamConfig& u = *ur.cfg;
  int64_t now = worker_->loop().now_ms();
  // nginx proxy_next_upstream: a request that reached a server is only resent if it is
  // idempotent (or non_idempotent is allowed); the body must still be here; tries and time are
  // bounded.
  bool non_idempotent_ok = route_ != nullptr && route_->cfg->retry_non_idempotent.has_value()
                               ? *route_->cfg->retry_non_idempotent
                               : u.retry_non_idempotent;
  bool allowed = body_retained_ &&
                 (!sent || http::IsIdempotent(method_) || non_idempotent_ok) &&
                 (u.next_upstream_tries == 0 || attempts_ < u.next_upstream_tries) &&
                 (u.next_upstream_timeout_ms == 0 || now - start_ms_ < u.next_upstream_timeout_ms);
  if (!allowed || !u.retry.enabled || counted_retry_) return allowed;
  // Envoy's retry budget: retries in flight stay under a share of the requests in flight.
  int64_t active = ur.live->active_requests.load(std::memory_order_relaxed);
  int64_t budget = std::max<int64_t>(u.retry.min_retry_concurrency,
                                     active * u.retry.budget_percent / 100);
  if (ur.live->active_retries.load(std::memory_order_relaxed) >= budget) {
    worker_->stats().retry_budget_exhausted.Add(1);
    return false;
  }
  ur.live->active_retries.fetch_add(1, std::memory_order_relaxed);
  counted_retry_ = true;
  return true;
}

bool ClientConn::RetryOrFail(UpstreamFailure why, bool sent) {
  const UpstreamConfig& u = *view_->snap->upstreams[upstream_index_].cfg;
  bool condition = true;
  if (u.retry.enabled) {
    condition = why == UpstreamFailure::kConnect   ? u.retry.on_connect_failure
                : why == UpstreamFailure::kTimeout ? u.retry.on_timeout
                                                   : u.retry.on_reset;
  }
  int status = why == UpstreamFailure::kTimeout ? 504 : 502;
  if (condition && MayRetry(sent)) return RetryNext(status);
  bool close = !body_done_ || !body_retained_;
  SendError(status, status == 504 ? "upstream timed out" : "upstream failed", close);
  return false;
}

bool ClientConn::RetryNext(int status_if_none) {
  const UpstreamConfig& u = *view_->snap->upstreams[upstream_index_].cfg;
  if (u.retry.enabled && u.retry.backoff_base_ms > 0) {
    // Envoy retry_back_off: fully jittered, the n-th retry waits a random time below
    // (2^n - 1) x base, capped at max.
    int64_t cap = u.retry.backoff_base_ms;
    for (int i = 1; i < attempts_ && cap < u.retry.backoff_max_ms; ++i) cap = cap * 2 + u.retry.backoff_base_ms;
    cap = std::min(cap, u.retry.backoff_max_ms);
    uint64_t r = worker_->Random();
    int64_t wait = cap > 0 ? static_cast<int64_t>(r % static_cast<uint64_t>(cap)) : 0;
    retry_status_ = status_if_none;
    worker_->stats().retry_backoffs.Add(1);
    worker_->loop().ArmTimer(&retry_timer_, std::max<int64_t>(wait, 1));
    return true;
  }
  int idx = view_->balancers[upstream_index_]->Select(worker_->loop().now_ms(), key_hash_, tried_);
  if (idx >= 0) {
    StartAttempt(idx);
    return true;
  }
  if (ServeStaleOnError()) return false;
  bool close = !body_done_ || !body_retained_;
  SendError(status_if_none, "upstream failed", close);
  return false;
}

void ClientConn::OnRetryTimer() {
  if (!open_ || state_ != State::kProxy || up_ != nullptr || view_ == nullptr) return;
  int idx = view_->balancers[upstream_index_]->Select(worker_->loop().now_ms(), key_hash_, tried_);
  if (idx >= 0) {
    StartAttempt(idx);
    return;
  }
  bool close = !body_done_ || !body_retained_;
  SendError(retry_status_, "upstream failed", close);
}

void ClientConn::RecordAttemptOutcome(ServerState* s, int status) {
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_index_];
  const UpstreamConfig& u = *ur.cfg;
  bool probe = attempt_probe_ && probe_server_ == s;
  if (probe) attempt_probe_ = false;
  if (!u.breaker.enabled && !u.outlier.enabled && !probe) return;
  if (status < 0) {  // not the server's fault: only release a probe slot
    if (probe) {
      s->RecordOutcome(false, false, true, worker_->loop().now_ms(), BreakerConfig{},
                       OutlierConfig{}, ur.servers);
    }
    return;
  }
  bool breaker_failure =
      status == 0 || std::find(u.breaker.statuses.begin(), u.breaker.statuses.end(), status) !=
                         u.breaker.statuses.end();
  // Envoy counts connection errors and timeouts as 5xx for consecutive_5xx.
  bool outlier_failure = status == 0 || status >= 500;
  int64_t now = worker_->loop().now_ms();
  int change = s->RecordOutcome(breaker_failure, outlier_failure, probe, now, u.breaker, u.outlier,
                                ur.servers);
  if (change & ServerState::kOpened) {
    LogWarn("upstream ", s->upstream(), " server ", s->address_text(),
            ": circuit breaker opened for ", FormatDurationMs(s->open_until_ms() - now));
  }
  if (change & ServerState::kClosed) {
    LogInfo("upstream ", s->upstream(), " server ", s->address_text(), ": circuit breaker closed");
  }
  if (change & ServerState::kEjected) {
    LogWarn("upstream ", s->upstream(), " server ", s->address_text(), ": ejected for ",
            FormatDurationMs(s->ejected_until_ms() - now), " (", u.outlier.consecutive_5xx,
            " consecutive errors)");
  }
}

void ClientConn::EndUpstreamAccounting() {
  if (view_ == nullptr || upstream_index_ < 0) return;
  if (!counted_active_ && !counted_retry_ && !attempt_probe_) return;
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_index_];
  if (attempt_probe_ && probe_server_ != nullptr) {
    // The request ended before its probe had an answer: free the slot without a verdict.
    probe_server_->RecordOutcome(false, false, true, worker_->loop().now_ms(), BreakerConfig{},
                                 OutlierConfig{}, ur.servers);
    attempt_probe_ = false;
  }
  if (counted_active_) ur.live->active_requests.fetch_sub(1, std::memory_order_relaxed);
  if (counted_retry_) ur.live->active_retries.fetch_sub(1, std::memory_order_relaxed);
  counted_active_ = counted_retry_ = false;
  worker_->loop().CancelTimer(&retry_timer_);
}

void ClientConn::ReleaseUpstream(bool reusable) {
  UpstreamConn* c = up_;
  if (c == nullptr) return;
  up_ = nullptr;
  if (c->server_ != nullptr) c->server_->active().fetch_sub(1, std::memory_order_relaxed);
  c->owner_ = nullptr;
  c->deadline_ms_ = 0;
  const UpstreamConfig& u = *view_->snap->upstreams[upstream_index_].cfg;
  if (reusable && worker_->PutIdle(c, u.keepalive)) {
    c->MakeIdle(u.keepalive_timeout_ms);
  } else {
    c->Close();
  }
}

void ClientConn::FinishExchange() {
  if (cache_zone_ != nullptr) CacheComplete(cache_capture_ && resp_done_);
  if (up_ != nullptr) {
    upstream_us_ = NowMicros() - upstream_start_us_;
    UpstreamConn* c = up_;
    c->server_->OnSuccess();
    ++c->requests_;
    const UpstreamConfig& u = *view_->snap->upstreams[upstream_index_].cfg;
    bool reusable = resp_.keep_alive && body_done_ && c->in_.readable() == 0 && !c->eof_ &&
                    resp_body_ != http::BodyKind::kUntilClose &&
                    c->requests_ < u.keepalive_requests;
    ReleaseUpstream(reusable);
  }
  if (!body_done_) keep_alive_ = false;  // the rest of the body is still on the wire
  if (!logged_) LogAndCount(status_);
  state_ = State::kLocal;
  close_after_ = close_after_ || !keep_alive_;
  DoWrite();
}

void ClientConn::SendLocal(int status, std::string_view body, std::string_view content_type,
                           std::string_view location, bool close,
                           std::string_view extra_headers) {
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

void ClientConn::TunnelPump() {
  if (up_ == nullptr) {
    Close();
    return;
  }
  int64_t idle_ms = up_->read_timeout_ms_;
  bool progress = true;
  bool done = false;
  while (progress && !done) {
    progress = false;
    // client -> upstream
    if (up_->out_.pending() < kMaxPending) {
      char* p = in_.data.get();
      ssize_t n = Recv(p, in_.cap);
      if (n > 0) {
        up_->out_.buf.append(p, static_cast<size_t>(n));
        progress = true;
      } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        done = true;
      }
    }
    while (up_->out_.pending() > 0) {
      ssize_t n =
          send(up_->fd_, up_->out_.buf.data() + up_->out_.off, up_->out_.pending(), MSG_NOSIGNAL);
      if (n > 0) {
        up_->out_.off += static_cast<size_t>(n);
        progress = true;
      } else {
        if (n < 0 && errno != EAGAIN && errno != EINTR) done = true;
        break;
      }
    }
    if (up_->out_.pending() == 0) up_->out_.Clear();
    // upstream -> client
    if (out_.pending() < kMaxPending) {
      Buffer& b = up_->in_;
      if (b.readable() > 0) {
        out_.buf.append(b.read_ptr(), b.readable());
        b.Consume(b.readable());
        progress = true;
      }
      ssize_t n = recv(up_->fd_, b.data.get(), b.cap, 0);
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

void ClientConn::LogAndCount(int status) {
  logged_ = true;
  EndUpstreamAccounting();
  ReleaseConnLimits();
  BanStatus(status);
  int64_t dur_us = NowMicros() - start_us_;
  uint32_t endpoint = route_ != nullptr ? route_->endpoint_id : worker_->unrouted_endpoint();
  worker_->http_shard_mut().Record(endpoint, static_cast<int>(method_), status, dur_us);
  if (worker_->shared().access_log == nullptr) return;
  std::string& o = worker_->log_buffer();
  o.append("{\"time\":\"");
  worker_->AppendLogTime(&o);
  o.append("\",\"request_id\":\"");
  o.append(request_id_, request_id_len_);
  o.append("\",\"trace_id\":\"");
  o.append(trace_id_);
  o.append("\",\"client_ip\":\"");
  AppendJsonEscaped(&o, client_ip_.empty() ? peer_ip_ : client_ip_);
  o.append("\",\"method\":\"");
  AppendJsonEscaped(&o, log_method_);
  o.append("\",\"path\":\"");
  AppendJsonEscaped(&o, log_path_);
  o.append("\",\"route\":\"");
  if (route_ != nullptr) AppendJsonEscaped(&o, route_->cfg->name);
  o.append("\",\"upstream\":\"");
  o.append(log_upstream_);
  o.push_back('"');
  if (limit_result_ >= 0) {
    o.append(",\"limit_req\":\"");
    o.append(LimitResultName(static_cast<LimitResult>(limit_result_)));
    o.push_back('"');
  }
  StrAppend(&o, ",\"status\":", status, ",\"bytes_sent\":", bytes_out_,
            ",\"bytes_received\":", bytes_in_, ",\"attempts\":", attempts_, ",\"duration_ms\":");
  AppendMillis(&o, dur_us);
  o.append(",\"upstream_ms\":");
  if (upstream_us_ >= 0) {
    AppendMillis(&o, upstream_us_);
  } else {
    o.append("null");
  }
  o.append("}\n");
  worker_->MaybeFlushLog();
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
