#include "admin/admin_server.h"

#include <openssl/crypto.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/strings.h"
#include "http/parser.h"

namespace bulwark::admin {

AdminResponse Json(int status, const std::string& body) {
  return AdminResponse{status, "application/json", body, ""};
}
AdminResponse Text(int status, std::string body) {
  return AdminResponse{status, "text/plain; charset=utf-8", std::move(body), ""};
}

class AdminServer::Acceptor : public IoHandler {
 public:
  explicit Acceptor(AdminServer* s) : s_(s) {}
  void OnIo(uint32_t) override { s_->OnAccept(); }

 private:
  AdminServer* s_;
};

// One admin connection: read a request (head plus a bounded body), answer, close.
class AdminServer::Conn : public IoHandler {
 public:
  Conn(AdminServer* s, int fd, std::string peer, uint64_t id)
      : s_(s), fd_(fd), peer_(std::move(peer)), id_(id) {
    timer_.set_callback([this] { Done(); });
  }
  ~Conn() override {
    if (fd_ >= 0) {
      s_->loop_->Remove(fd_);
      close(fd_);
    }
  }
  void Start() {
    if (!s_->loop_->Add(fd_, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, this).ok()) {
      Done();
      return;
    }
    s_->loop_->ArmTimer(&timer_, 10000);
  }
  bool done() const { return done_; }
  uint64_t id() const { return id_; }
  // An async handler took the request: wait for its answer up to `ms`.
  void AwaitAnswer(int64_t ms) {
    waiting_ = true;
    s_->loop_->ArmTimer(&timer_, ms);
  }
  void Answer(const AdminResponse& r) {
    if (done_ || responded_) return;
    waiting_ = false;
    Respond(r);
  }

  void OnIo(uint32_t events) override {
    if (done_) return;
    if (!responded_ && !waiting_ && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) ReadRequest();
    if (responded_ && !done_) Flush();
  }

 private:
  static constexpr size_t kMaxRequest = 1024 * 1024;

  void ReadRequest() {
    char buf[16384];
    for (;;) {
      ssize_t n = read(fd_, buf, sizeof(buf));
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
        if (in_.size() > kMaxRequest) {
          Respond(Text(413, "request too large\n"));
          return;
        }
        continue;
      }
      if (n == 0) {
        if (in_.empty()) Done();
        break;
      }
      if (errno == EINTR) continue;
      break;
    }
    http::RequestHead head;
    http::ParseError err;
    http::Limits limits;
    http::ParseStatus st = http::ParseRequest(in_.data(), in_.size(), limits, &head, &err);
    if (st == http::ParseStatus::kNeedMore) return;
    if (st == http::ParseStatus::kError) {
      Respond(Text(err.status, StrCat(err.reason, "\n")));
      return;
    }
    if (head.body == http::BodyKind::kChunked) {
      Respond(Text(411, "send a Content-Length\n"));
      return;
    }
    size_t need = head.head_len + head.content_length;
    if (in_.size() < need) return;
    AdminRequest req;
    req.method.assign(head.method_str);
    req.path.assign(head.path);
    req.query.assign(head.query);
    req.body = in_.substr(head.head_len, head.content_length);
    Meta meta;
    meta.peer = peer_;
    if (const http::Header* h = head.Find("authorization")) meta.authorization = h->value;
    if (const http::Header* h = head.Find("origin")) meta.origin = h->value;
    meta.host = head.host;
    std::optional<AdminResponse> r = s_->Dispatch(req, meta, id_);
    if (r.has_value()) Respond(*r);
  }

  void Respond(const AdminResponse& r) {
    responded_ = true;
    // No admin answer may be framed by another page (clickjacking) or sniffed into a script.
    out_ = StrCat("HTTP/1.1 ", r.status, " ", http::StatusReason(r.status),
                  "\r\nContent-Type: ", r.content_type, "\r\nContent-Length: ", r.body.size(),
                  "\r\nCache-Control: no-store\r\nX-Frame-Options: DENY\r\n"
                  "X-Content-Type-Options: nosniff\r\n",
                  r.extra_headers, "Connection: close\r\n\r\n", r.body);
    Flush();
  }

  void Flush() {
    while (off_ < out_.size()) {
      ssize_t n = write(fd_, out_.data() + off_, out_.size() - off_);
      if (n > 0) {
        off_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      break;
    }
    Done();
  }

  void Done() {
    if (done_) return;
    done_ = true;
    s_->loop_->CancelTimer(&timer_);
    if (fd_ >= 0) {
      shutdown(fd_, SHUT_WR);
      s_->loop_->Remove(fd_);
      close(fd_);
      fd_ = -1;
    }
    AdminServer* s = s_;
    s_->loop_->Defer([s, this] {
      std::erase_if(s->conns_, [this](const std::unique_ptr<Conn>& c) { return c.get() == this; });
    });
  }

  AdminServer* s_;
  int fd_;
  std::string peer_;
  uint64_t id_;
  bool waiting_ = false;  // an async handler has the request
  std::string in_;
  std::string out_;
  size_t off_ = 0;
  bool responded_ = false;
  bool done_ = false;
  Timer timer_;
};

AdminServer::AdminServer(EventLoop* loop, AdminOptions options)
    : loop_(loop), options_(std::move(options)) {}

AdminServer::~AdminServer() { Close(); }

void AdminServer::Close() {
  conns_.clear();
  loop_->CancelTimer(&accept_timer_);
  if (fd_ >= 0) {
    loop_->Remove(fd_);
    close(fd_);
    fd_ = -1;
  }
}

absl::Status AdminServer::Listen(const SocketAddress& addr) {
  auto fd = ListenTcp(addr, /*reuse_port=*/false, 128);
  if (!fd.ok()) return fd.status();
  fd_ = *fd;
  port_ = LocalPort(fd_);
  acceptor_ = std::make_unique<Acceptor>(this);
  return loop_->Add(fd_, EPOLLIN, acceptor_.get());
}

void AdminServer::OnAccept() {
  for (int i = 0; i < 64; ++i) {
    SocketAddress peer;
    peer.len = sizeof(peer.storage);
    int fd = accept4(fd_, reinterpret_cast<sockaddr*>(&peer.storage), &peer.len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == ECONNABORTED) return;
      if (loop_->now_ms() - last_accept_error_log_ms_ >= 1000) {
        last_accept_error_log_ms_ = loop_->now_ms();
        LogError("admin accept: ", strerror(errno),
                 errno == EMFILE || errno == ENFILE ? " (raise the open files limit)" : "");
      }
      PauseAccepting();
      return;
    }
    // The admin port is not for load: a flood is refused, and it cannot take more than a
    // quarter of the default descriptor reserve (reserved_descriptors) from the pg proxy and
    // the vault.
    if (conns_.size() >= kMaxConnections) {
      close(fd);
      continue;
    }
    conns_.push_back(std::make_unique<Conn>(this, fd, peer.ToString(), next_conn_id_++));
    conns_.back()->Start();
  }
}

void AdminServer::PauseAccepting() {
  if (accept_paused_ || fd_ < 0) return;
  accept_paused_ = true;
  loop_->Remove(fd_);
  accept_timer_.set_callback([this] {
    accept_paused_ = false;
    if (fd_ >= 0 && loop_->Add(fd_, EPOLLIN, acceptor_.get()).ok()) OnAccept();
  });
  loop_->ArmTimer(&accept_timer_, 100);
}

void AdminServer::Route(std::string method, std::string pattern, Handler h) {
  Entry e;
  e.method = std::move(method);
  e.segments = Split(pattern, '/', true);
  e.handler = std::move(h);
  routes_.push_back(std::move(e));
}

void AdminServer::Absent(std::string prefix, std::string error) {
  absent_.emplace_back(std::move(prefix), nlohmann::json{{"error", std::move(error)}}.dump());
}

void AdminServer::RouteAsync(std::string method, std::string pattern, AsyncHandler h,
                             std::function<int64_t()> timeout_ms) {
  Entry e;
  e.method = std::move(method);
  e.segments = Split(pattern, '/', true);
  e.async = std::move(h);
  e.timeout_ms = std::move(timeout_ms);
  routes_.push_back(std::move(e));
}

void AdminServer::RespondTo(uint64_t conn_id, AdminResponse r) {
  for (auto& c : conns_) {
    if (c->id() == conn_id) {
      c->Answer(r);
      return;
    }
  }
  // The client went away (or timed out) before the answer: nothing to send it to.
}

const AdminServer::Entry* AdminServer::Find(const std::string& method, const std::string& path,
                                            std::vector<std::string>* params,
                                            bool* path_exists) const {
  std::vector<std::string> segs = Split(path, '/', true);
  *path_exists = false;
  for (const auto& e : routes_) {
    if (e.segments.size() != segs.size()) continue;
    std::vector<std::string> p;
    bool ok = true;
    for (size_t i = 0; i < segs.size() && ok; ++i) {
      const std::string& pat = e.segments[i];
      if (pat.size() > 2 && pat.front() == '{' && pat.back() == '}') {
        p.push_back(segs[i]);
      } else {
        ok = pat == segs[i];
      }
    }
    if (!ok) continue;
    *path_exists = true;
    if (e.method != method) continue;
    *params = std::move(p);
    return &e;
  }
  return nullptr;
}

bool AdminServer::HostAllowed(std::string_view host) const {
  // HTTP/1.0 without Host: nothing for a rebinding attack to use (browsers always send one).
  if (host.empty()) return true;
  std::string_view name = host;
  if (name.front() == '[') {
    size_t end = name.find(']');
    if (end == std::string_view::npos) return false;
    return IpAddress::Parse(name.substr(1, end - 1)).has_value();
  }
  name = name.substr(0, name.rfind(':'));
  // An IP literal cannot be rebound: only a name can point at one address now, another later.
  if (IpAddress::Parse(name).has_value()) return true;
  if (EqualsIgnoreCase(name, "localhost") || EndsWithIgnoreCase(name, ".localhost")) return true;
  for (const std::string& n : options_.server_names) {
    if (EqualsIgnoreCase(n, name)) return true;
  }
  return false;
}

std::optional<AdminResponse> AdminServer::Decide(const AdminRequest& req, const Meta& meta,
                                                 uint64_t conn_id, bool* token_ok) {
  std::string want = StrCat("Bearer ", options_.token);
  *token_ok = !options_.token.empty() && meta.authorization.size() == want.size() &&
              CRYPTO_memcmp(meta.authorization.data(), want.data(), want.size()) == 0;
  if (!HostAllowed(meta.host)) {
    return Json(
        403,
        R"({"error":"Host not allowed: use an IP address, localhost or a name in admin.server_names"})");
  }
  // A page on another origin may not use the API even with a token it somehow holds; same-origin
  // requests (the dashboard's) carry an Origin equal to their Host.
  if (!meta.origin.empty() && !EqualsIgnoreCase(meta.origin, StrCat("http://", meta.host)) &&
      !EqualsIgnoreCase(meta.origin, StrCat("https://", meta.host))) {
    return Json(403, R"({"error":"cross-origin request refused"})");
  }
  // The dashboard page holds no data (its script asks the API with the token), so it is served
  // without one, like the health checks and, unless protect_metrics, the metrics.
  bool open = req.path == "/health" || req.path == "/ready" || req.path == "/" ||
              req.path == "/dashboard" || (req.path == "/metrics" && !options_.protect_metrics);
  if (!open && !*token_ok) return Json(401, R"({"error":"missing or wrong bearer token"})");
  std::vector<std::string> params;
  bool path_exists = false;
  const Entry* e = Find(req.method, req.path, &params, &path_exists);
  if (e == nullptr) {
    if (path_exists) return Json(405, R"({"error":"method not allowed"})");
    for (const auto& [prefix, error] : absent_) {
      if (req.path.starts_with(prefix) &&
          (req.path.size() == prefix.size() || req.path[prefix.size()] == '/')) {
        return Json(404, error);
      }
    }
    return Json(404, R"({"error":"not found"})");
  }
  AdminRequest r = req;
  r.params = std::move(params);
  if (!e->async) return e->handler(r);
  for (auto& c : conns_) {
    if (c->id() == conn_id) c->AwaitAnswer(e->timeout_ms());
  }
  e->async(r, [this, conn_id](AdminResponse resp) { RespondTo(conn_id, std::move(resp)); });
  return std::nullopt;
}

std::optional<AdminResponse> AdminServer::Dispatch(const AdminRequest& req, const Meta& meta,
                                                   uint64_t conn_id) {
  bool token_ok = false;
  std::optional<AdminResponse> resp = Decide(req, meta, conn_id, &token_ok);
  bool mutation = req.method != "GET" && req.method != "HEAD";
  // Alerts posted by Prometheus (or any sender) are data, counted by the alerting metrics.
  bool alerts = req.method == "POST" && req.path == "/api/v2/alerts";
  if (mutation && !alerts && options_.audit != nullptr) {
    std::string action = StrCat(req.method, " ", req.path);
    if (!req.query.empty()) StrAppend(&action, "?", req.query);
    // Async routes are reads (queries); a mutation always has its answer here.
    options_.audit->Record(security::AuditEvent{meta.peer, token_ok ? options_.token_id : "",
                                                action, req.body, resp ? resp->status : 0});
  }
  return resp;
}

std::optional<std::string> QueryParam(std::string_view query, std::string_view name) {
  for (const std::string& kv : Split(query, '&', true)) {
    size_t eq = kv.find('=');
    if (kv.substr(0, eq) != name) continue;
    std::string_view v =
        eq == std::string::npos ? std::string_view() : std::string_view(kv).substr(eq + 1);
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '+') {
        out.push_back(' ');
      } else if (v[i] == '%' && i + 2 < v.size()) {
        out.push_back(
            static_cast<char>(std::strtol(std::string(v.substr(i + 1, 2)).c_str(), nullptr, 16)));
        i += 2;
      } else {
        out.push_back(v[i]);
      }
    }
    return out;
  }
  return std::nullopt;
}

}  // namespace bulwark::admin
