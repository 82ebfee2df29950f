#include "gateway/health_checker.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/log.h"
#include "core/strings.h"

namespace bulwark::gateway {

class HealthChecker::Probe : public IoHandler {
 public:
  Probe(HealthChecker* owner, std::shared_ptr<ServerState> server, const SocketAddress& address,
        HealthCheckConfig cfg)
      : owner_(owner), server_(std::move(server)), address_(address), cfg_(std::move(cfg)) {
    next_.set_callback([this] { Start(); });
    deadline_.set_callback([this] { Finish(false, 0, "timeout"); });
  }
  // A reload (a posted task, run inside a batch of events) frees probes whose events may
  // still be waiting later in the same batch.
  ~Probe() override {
    Abort();
    owner_->loop_->Forget(this);
  }

  ServerState* server() const { return server_.get(); }
  void set_config(const HealthCheckConfig& c) { cfg_ = c; }
  // A server whose name now stands for another address is checked there at once; its state
  // carries over (as HAProxy keeps a server's state when DNS moves it).
  // The probe's Host header unless the check names one: the server as written.
  void set_default_host(std::string h) { default_host_ = std::move(h); }
  void set_address(const SocketAddress& a) {
    if (SameAddress(a, address_)) return;
    address_ = a;
    Schedule(0);
  }
  void Schedule(int64_t delay_ms) { owner_->loop_->ArmTimer(&next_, delay_ms); }

  // TLS as the upstream's connections use it (HAProxy checks over `ssl` as the server does).
  void set_tls(const UpstreamTlsConfig& tls, TlsPeer peer) {
    tls_client_ = tls.enabled ? tls.client : nullptr;
    peer_ = std::move(peer);
  }

  void OnIo(uint32_t events) override {
    if (fd_ < 0) return;
    if (connecting_) {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        Finish(false, 0, strerror(err));
        return;
      }
      connecting_ = false;
      if (tls_client_ != nullptr) {
        if (!tls_.StartClient(tls_client_, fd_, peer_.sni, peer_.verify_name, peer_.session_key)) {
          Finish(false, 0, "TLS: out of memory");
          return;
        }
        handshaking_ = true;
      } else {
        SendRequest();
        if (fd_ < 0) return;
      }
    }
    if (handshaking_) {
      int r = tls_.Handshake();
      if (r == 0) return;
      if (r < 0) {
        Finish(false, 0, StrCat("TLS handshake: ", tls_.failure_reason()));
        return;
      }
      handshaking_ = false;
      SendRequest();
      if (fd_ < 0) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP) || tls_.active()) {
      for (;;) {
        char buf[512];
        ssize_t n = RecvOn(tls_, fd_, buf, sizeof(buf));
        if (n > 0) {
          if (got_.size() < 64) got_.append(buf, static_cast<size_t>(std::min<ssize_t>(n, 64)));
          int status = StatusFromLine();
          if (status > 0) {
            bool ok = status >= cfg_.expect_min && status <= cfg_.expect_max;
            Finish(ok, status, ok ? "" : StrCat("status ", status));
            return;
          }
          continue;
        }
        if (n == 0) {
          Finish(false, 0, "connection closed before a status line");
          return;
        }
        if (errno == EAGAIN || errno == EINTR) return;
        Finish(false, 0, tls_.active() ? tls_.failure_reason() : strerror(errno));
        return;
      }
    }
  }

 private:
  void SendRequest() {
    const std::string& host = cfg_.host.empty() ? default_host_ : cfg_.host;
    std::string req = StrCat("GET ", cfg_.path, " HTTP/1.1\r\nHost: ", host,
                             "\r\nUser-Agent: bulwark-health-check\r\nConnection: close\r\n\r\n");
    // A probe request is tiny; a short write on a fresh connection is not worth handling.
    ssize_t n = SendOn(tls_, fd_, req.data(), req.size());
    if (n != static_cast<ssize_t>(req.size())) Finish(false, 0, "write failed");
  }

  int StatusFromLine() const {
    if (got_.size() < 12) return 0;
    if (got_.compare(0, 7, "HTTP/1.") != 0 || got_[8] != ' ') return -1;
    int s = 0;
    for (int i = 9; i < 12; ++i) {
      if (got_[i] < '0' || got_[i] > '9') return -1;
      s = s * 10 + (got_[i] - '0');
    }
    return s;
  }

  void Start() {
    Abort();
    got_.clear();
    auto fd = ConnectTcp(address_);
    if (!fd.ok()) {
      Finish(false, 0, ToStd(fd.status().message()));
      return;
    }
    fd_ = *fd;
    connecting_ = true;
    if (!owner_->loop_->Add(fd_, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, this).ok()) {
      Finish(false, 0, "epoll");
      return;
    }
    owner_->loop_->ArmTimer(&deadline_, cfg_.timeout_ms);
  }

  void Abort() {
    owner_->loop_->CancelTimer(&deadline_);
    handshaking_ = false;
    if (fd_ >= 0) {
      owner_->loop_->Remove(fd_);
      tls_.End();
      close(fd_);
      fd_ = -1;
    }
  }

  void Finish(bool ok, int status, std::string_view why) {
    Abort();
    ++owner_->checks_run_;
    bool was_up = server_->active_up();
    server_->RecordCheck(ok, status < 0 ? 0 : status, 0);
    if (was_up != server_->active_up()) {
      if (server_->active_up()) {
        LogInfo("health: ", server_->upstream(), " ", server_->address_text(), " is UP");
      } else {
        LogWarn("health: ", server_->upstream(), " ", server_->address_text(), " is DOWN (", why,
                ")");
      }
    }
    Schedule(cfg_.interval_ms);
  }

  HealthChecker* owner_;
  std::shared_ptr<ServerState> server_;
  SocketAddress address_;
  std::string default_host_;
  HealthCheckConfig cfg_;
  Timer next_;
  Timer deadline_;
  int fd_ = -1;
  bool connecting_ = false;
  bool handshaking_ = false;
  std::shared_ptr<TlsClient> tls_client_;  // null: plain
  TlsPeer peer_;
  TlsStream tls_;
  std::string got_;
};

HealthChecker::HealthChecker(EventLoop* loop) : loop_(loop) {}

HealthChecker::~HealthChecker() { probes_.clear(); }

void HealthChecker::Reload(const Snapshot& snap) {
  std::vector<std::unique_ptr<Probe>> next;
  for (const auto& ur : snap.upstreams) {
    if (!ur.cfg->health_check.enabled) continue;
    for (size_t i = 0; i < ur.servers.size(); ++i) {
      const auto& s = ur.servers[i];
      const ServerConfig& sc = ur.cfg->servers[i];
      if (!sc.resolved) continue;  // nothing to check until its name resolves
      std::unique_ptr<Probe> p;
      for (auto& old : probes_) {
        if (old && old->server() == s.get()) p = std::move(old);
      }
      if (p) {
        p->set_config(ur.cfg->health_check);
        p->set_tls(ur.cfg->tls, TlsPeerFor(ur.cfg->tls, sc));
        p->set_address(sc.address);
      } else {
        p = std::make_unique<Probe>(this, s, sc.address, ur.cfg->health_check);
        p->set_tls(ur.cfg->tls, TlsPeerFor(ur.cfg->tls, sc));
        p->set_default_host(sc.host.empty() ? sc.address_text : StrCat(sc.host, ":", sc.port));
        p->Schedule(0);  // check new servers at once
      }
      next.push_back(std::move(p));
    }
  }
  probes_ = std::move(next);
}

}  // namespace bulwark::gateway
