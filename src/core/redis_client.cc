#include "core/redis_client.h"

#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/log.h"
#include "core/strings.h"

namespace bulwark {

RedisLookup SystemRedisLookup() {
  return [](const std::string& host, int port) -> std::optional<SocketAddress> {
    absl::StatusOr<SocketAddress> a = ResolveSocketAddress(host, port);
    if (!a.ok()) return std::nullopt;
    return *a;
  };
}

std::function<std::optional<SocketAddress>()> EndpointsInTurn(std::vector<RedisEndpoint> endpoints,
                                                              RedisLookup lookup) {
  return [endpoints = std::move(endpoints), lookup = std::move(lookup),
          next = size_t{0}]() mutable -> std::optional<SocketAddress> {
    for (size_t i = 0; i < endpoints.size(); ++i) {
      const RedisEndpoint& e = endpoints[next++ % endpoints.size()];
      if (std::optional<SocketAddress> a = lookup(e.host, e.port)) return a;
    }
    return std::nullopt;
  };
}

RedisClient::RedisClient(EventLoop* loop, RedisOptions options, std::string name)
    : loop_(loop), opt_(std::move(options)), name_(std::move(name)) {
  timer_.set_callback([this] { OnTimer(); });
  recheck_timer_.set_callback([this] {
    if (state_ != State::kReady) return;
    std::optional<SocketAddress> a = opt_.resolve();
    if (a.has_value() && a->ToString() != opt_.address.ToString()) {
      Fail(StrCat("the server is ", a->ToString(), " now"));
      return;
    }
    loop_->ArmTimer(&recheck_timer_, opt_.recheck_ms);
  });
}

RedisClient::~RedisClient() { Close(); }

std::string RedisClient::ScriptSha1(std::string_view script) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(script.data()), script.size(), md);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

void RedisClient::Start() {
  if (state_ == State::kIdle) Connect();
}

void RedisClient::Connect() {
  if (opt_.resolve) {
    std::optional<SocketAddress> a = opt_.resolve();
    if (!a.has_value()) {
      Fail("no server address known yet");
      return;
    }
    opt_.address = *a;
  }
  auto fd = ConnectTcp(opt_.address);
  if (!fd.ok()) {
    Fail(ToStd(fd.status().message()));
    return;
  }
  fd_ = *fd;
  out_.clear();
  out_off_ = 0;
  in_.clear();
  state_ = State::kConnecting;
  if (!loop_->Add(fd_, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, this).ok()) {
    Fail("cannot register the socket");
    return;
  }
  loop_->ArmTimer(&timer_, opt_.connect_timeout_ms);
}

void RedisClient::OnConnected() {
  state_ = State::kReady;
  // The handshake goes first; its replies are checked like any other.
  auto check = [this](const RedisReply& r) {
    if (r.is_error()) Fail(StrCat("handshake: ", r.str));
  };
  if (!opt_.password.empty() && !opt_.username.empty()) {
    AppendRespCommand(&out_, {"AUTH", opt_.username, opt_.password});
    pending_.push_front({check, loop_->now_ms() + opt_.command_timeout_ms * 10, true});
  } else if (!opt_.password.empty()) {
    AppendRespCommand(&out_, {"AUTH", opt_.password});
    pending_.push_front({check, loop_->now_ms() + opt_.command_timeout_ms * 10, true});
  }
  if (opt_.db != 0) {
    std::string db = StrCat(opt_.db);
    AppendRespCommand(&out_, {"SELECT", db});
    pending_.push_back({check, loop_->now_ms() + opt_.command_timeout_ms * 10, true});
  }
  backoff_ms_ = 0;
  up_.store(true, std::memory_order_relaxed);
  if (logged_down_) {
    LogInfo(name_, " ", opt_.address.ToString(), " is reachable again");
    logged_down_ = false;
  }
  ArmDeadline();
  if (opt_.resolve && opt_.recheck_ms > 0) loop_->ArmTimer(&recheck_timer_, opt_.recheck_ms);
  Flush();
  if (on_ready_ && state_ == State::kReady) on_ready_();
}

void RedisClient::Command(const std::vector<std::string_view>& args, Callback cb) {
  if (state_ != State::kReady) {
    loop_->Defer([cb = std::move(cb)] { cb(RedisReply::Error("not connected")); });
    return;
  }
  AppendRespCommand(&out_, args);
  bool was_empty = pending_.empty();
  pending_.push_back({std::move(cb), loop_->now_ms() + opt_.command_timeout_ms, false});
  if (was_empty) ArmDeadline();
  Flush();
}

RedisClient::EvalCalls RedisClient::MakeEvalCalls(const std::string& script,
                                                  const std::string& sha1,
                                                  const std::vector<std::string_view>& keys,
                                                  const std::vector<std::string_view>& args) {
  EvalCalls c;
  c.evalsha = {"EVALSHA", sha1, StrCat(keys.size())};
  c.evalsha.insert(c.evalsha.end(), keys.begin(), keys.end());
  c.evalsha.insert(c.evalsha.end(), args.begin(), args.end());
  c.eval = c.evalsha;
  c.eval[0] = "EVAL";
  c.eval[1] = script;
  return c;
}

void RedisClient::Eval(const std::string& script, const std::string& sha1,
                       const std::vector<std::string_view>& keys,
                       const std::vector<std::string_view>& args, Callback cb) {
  EvalCalls calls = MakeEvalCalls(script, sha1, keys, args);
  // On NOSCRIPT (a restarted or flushed server) the same call is made with EVAL, which also
  // caches the script for the next EVALSHA.
  std::vector<std::string_view> evalsha(calls.evalsha.begin(), calls.evalsha.end());
  Command(evalsha, [this, eval = std::move(calls.eval), cb = std::move(cb)](const RedisReply& r) {
    if (r.is_error() && StartsWith(r.str, "NOSCRIPT") && state_ == State::kReady) {
      Command(std::vector<std::string_view>(eval.begin(), eval.end()), cb);
      return;
    }
    cb(r);
  });
}

void RedisClient::ArmDeadline() {
  if (pending_.empty()) {
    loop_->CancelTimer(&timer_);
    return;
  }
  loop_->ArmTimer(&timer_, std::max<int64_t>(1, pending_.front().deadline_ms - loop_->now_ms()));
}

void RedisClient::OnTimer() {
  switch (state_) {
    case State::kConnecting:
    case State::kHandshaking:
      Fail("connect timed out");
      return;
    case State::kBackoff:
      Connect();
      return;
    case State::kReady:
      if (!pending_.empty() && loop_->now_ms() >= pending_.front().deadline_ms) {
        // A late reply would be matched to the wrong command: the link is reset.
        Fail("reply timed out");
        return;
      }
      ArmDeadline();
      return;
    default:
      return;
  }
}

void RedisClient::OnIo(uint32_t events) {
  if (state_ == State::kConnecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0 || (events & EPOLLERR)) {
      Fail(err != 0 ? strerror(err) : "connect failed");
      return;
    }
    if (opt_.tls != nullptr) {
      std::string name =
          opt_.tls_verify_name.empty() ? opt_.address.IpString() : opt_.tls_verify_name;
      if (!tls_.StartClient(opt_.tls, fd_, opt_.tls_sni, name, opt_.address.ToString())) {
        Fail("TLS: out of memory");
        return;
      }
      state_ = State::kHandshaking;
    } else {
      OnConnected();
      if (state_ != State::kReady) return;
    }
  }
  if (state_ == State::kHandshaking) {
    int r = tls_.Handshake();
    if (r == 0) return;
    if (r < 0) {
      Fail(StrCat("TLS handshake: ", tls_.failure_reason()));
      return;
    }
    OnConnected();
    if (state_ != State::kReady) return;
  }
  if (state_ != State::kReady) return;
  if (events & EPOLLOUT) Flush();
  if (state_ == State::kReady && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
    ReadAvailable();
}

void RedisClient::Flush() {
  while (state_ == State::kReady && out_off_ < out_.size()) {
    ssize_t n = SendOn(tls_, fd_, out_.data() + out_off_, out_.size() - out_off_);
    if (n > 0) {
      out_off_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    Fail(n < 0 ? strerror(errno) : "send failed");
    return;
  }
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  }
}

void RedisClient::ReadAvailable() {
  char buf[16384];
  for (;;) {
    ssize_t n = RecvOn(tls_, fd_, buf, sizeof(buf));
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      Fail("connection closed by the server");
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) break;
    Fail(strerror(errno));
    return;
  }
  size_t off = 0;
  while (state_ == State::kReady && off < in_.size()) {
    RedisReply r;
    size_t used = 0;
    std::string err;
    RespStatus st = ParseResp(std::string_view(in_).substr(off), limits_, &r, &used, &err);
    if (st == RespStatus::kNeedMore) break;
    if (st == RespStatus::kDone && push_ && r.type == RedisReply::Type::kArray &&
        r.elements.size() == 3 && r.elements[0].str == "message") {
      off += used;
      push_(r.elements[1].str, r.elements[2].str);
      continue;
    }
    if (st == RespStatus::kDone && r.type == RedisReply::Type::kArray && !r.elements.empty() &&
        (r.elements[0].str == "subscribe" || r.elements[0].str == "psubscribe")) {
      subscribed_ = true;
      // SUBSCRIBE with N channels is confirmed N times, once per channel; the command's own
      // callback takes the first confirmation and the others are dropped here.
      if (pending_.empty()) {
        off += used;
        continue;
      }
    }
    if (st == RespStatus::kError || pending_.empty()) {
      Fail(st == RespStatus::kError ? StrCat("bad reply: ", err) : "reply without a command");
      return;
    }
    off += used;
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    if (r.is_error() && !p.internal) errors_.fetch_add(1, std::memory_order_relaxed);
    bool readonly = r.is_error() && StartsWith(r.str, "READONLY");
    p.cb(r);  // may send more commands, or fail the link
    // A master demoted to replica (a Sentinel failover): reconnect, which asks for the address.
    if (readonly && state_ == State::kReady) {
      Fail("the server is a read-only replica now");
      return;
    }
  }
  if (state_ == State::kReady) {
    in_.erase(0, off);
    ArmDeadline();
  }
}

void RedisClient::Fail(std::string_view why) {
  if (state_ == State::kClosed) return;
  if (fd_ >= 0) {
    loop_->Remove(fd_);
    tls_.End();
    close(fd_);
    fd_ = -1;
  }
  bool was_up = up_.exchange(false, std::memory_order_relaxed);
  if (was_up || !logged_down_) {
    LogWarn(name_, " ", opt_.address.ToString(), " unavailable: ", why,
            " (retrying; local fallbacks in use)");
    logged_down_ = true;
  }
  errors_.fetch_add(1, std::memory_order_relaxed);
  reconnects_.fetch_add(1, std::memory_order_relaxed);
  bool was_ready = state_ == State::kReady;
  state_ = State::kBackoff;
  subscribed_ = false;
  backoff_ms_ =
      backoff_ms_ == 0 ? opt_.reconnect_min_ms : std::min(backoff_ms_ * 2, opt_.reconnect_max_ms);
  loop_->ArmTimer(&timer_, backoff_ms_);
  std::deque<Pending> failed;
  failed.swap(pending_);
  out_.clear();
  out_off_ = 0;
  in_.clear();
  RedisReply err = RedisReply::Error(StrCat("redis unavailable: ", why));
  for (auto& p : failed) p.cb(err);
  if (was_ready && on_down_) on_down_();
}

void RedisClient::Close() {
  if (state_ == State::kClosed) return;
  loop_->CancelTimer(&timer_);
  loop_->CancelTimer(&recheck_timer_);
  if (fd_ >= 0) {
    loop_->Remove(fd_);
    loop_->Forget(this);
    tls_.End();
    close(fd_);
    fd_ = -1;
  }
  state_ = State::kClosed;
  up_.store(false, std::memory_order_relaxed);
  std::deque<Pending> failed;
  failed.swap(pending_);
  RedisReply err = RedisReply::Error("client closed");
  for (auto& p : failed) p.cb(err);
}

}  // namespace bulwark
