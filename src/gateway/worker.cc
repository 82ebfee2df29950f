#include "gateway/worker.h"

#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/log.h"
#include "core/strings.h"
#include "gateway/h2.h"
#include "gateway/proxy.h"

namespace bulwark::gateway {

// A listening socket registered with this worker's loop (level-triggered: accept until EAGAIN).
class Worker::Listener : public IoHandler {
 public:
  Listener(Worker* w, int fd, int index) : worker_(w), fd_(fd), index_(index) {}
  // A reload or a drain (posted tasks, run inside a batch of events) frees listeners whose
  // accept events may still be waiting later in the same batch.
  ~Listener() override { worker_->loop_.Forget(this); }
  void OnIo(uint32_t) override { worker_->Accept(fd_, index_); }
  int fd() const { return fd_; }
  void set_index(int i) { index_ = i; }

 private:
  Worker* worker_;
  int fd_;
  int index_;
};

Worker::Worker(int index, WorkerShared shared) : index_(index), shared_(shared) {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
    seed = static_cast<uint64_t>(WallMicros()) ^ index;
  rng_ = seed | 1;
  log_buf_.reserve(128 * 1024);
  server_counters_.reset(new ServerCounters[kMaxServers]);
  idle_.resize(kMaxServers);
  current_servers_.assign(kMaxServers, nullptr);
  current_configs_.assign(kMaxServers, nullptr);
  current_tls_.assign(kMaxServers, nullptr);
  accept_timer_.set_callback([this] { ResumeAccepting(); });
  unrouted_endpoint_ = shared_.endpoints->Intern("unrouted");
}

Worker::~Worker() {
  Stop();
  Join();
}

absl::Status Worker::Start(std::shared_ptr<const Snapshot> snap) {
  absl::Status s = loop_.Init();
  if (!s.ok()) return s;
  const RedisConfig& rc = snap->config->redis;
  if (rc.enabled) {
    // Created before the thread starts; from then on only the worker's thread touches it.
    redis_ = std::make_unique<RedisLink>(&loop_, rc.servers, ToRedisOptions(rc, rc.timeout_ms),
                                         shared_.redis_lookup, shared_.redis_master,
                                         StrCat("redis (worker ", index_, ")"));
    redis_->Start();
  }
  ApplySnapshot(std::move(snap));
  loop_.SetBatchHook([this] { FlushLog(); });
  thread_ = std::thread([this] {
    loop_.Run();
    FlushLog();
    finished_.store(true);
  });
  return absl::OkStatus();
}

void Worker::PostSnapshot(std::shared_ptr<const Snapshot> snap) {
  loop_.Post([this, snap = std::move(snap)]() mutable { ApplySnapshot(std::move(snap)); });
}

void Worker::PostDrain() {
  loop_.Post([this] { BeginDrain(); });
}

void Worker::Stop() { loop_.Stop(); }

void Worker::Join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::ApplySnapshot(std::shared_ptr<const Snapshot> snap) {
  auto view = std::make_unique<WorkerView>();
  view->snap = snap;
  for (size_t u = 0; u < snap->upstreams.size(); ++u) {
    const UpstreamRuntime& ur = snap->upstreams[u];
    std::vector<ServerState*> states;
    for (const auto& s : ur.servers) states.push_back(s.get());
    view->balancers.push_back(
        std::make_unique<Balancer>(*ur.cfg, states, ur.tables, rng_ + u * 7919));
  }
  if (!draining_) {
    // Keep sockets whose fd is still in the snapshot, add the new ones, drop the rest.
    std::vector<std::pair<int, int>> wanted;  // fd, listener index
    for (size_t i = 0; i < snap->listen.size(); ++i)
      wanted.emplace_back(snap->listen[i]->fds[index_], static_cast<int>(i));
    for (auto it = listeners_.begin(); it != listeners_.end();) {
      auto w = std::find_if(wanted.begin(), wanted.end(),
                            [&](const auto& p) { return p.first == (*it)->fd(); });
      if (w == wanted.end()) {
        loop_.Remove((*it)->fd());
        it = listeners_.erase(it);
      } else {
        (*it)->set_index(w->second);
        wanted.erase(w);
        ++it;
      }
    }
    for (const auto& [fd, idx] : wanted) {
      listeners_.push_back(std::make_unique<Listener>(this, fd, idx));
      // While accepting is paused, ResumeAccepting registers it with the others.
      if (!accept_paused_) RegisterListener(listeners_.back().get());
    }
  }
  // Servers that left the config, or whose name now stands for another address: close their
  // idle connections now. (In-flight ones finish and are then closed rather than pooled:
  // PutIdle checks current_servers_ and current_configs_.)
  std::vector<const ServerState*> next(kMaxServers, nullptr);
  std::vector<const ServerConfig*> next_configs(kMaxServers, nullptr);
  std::vector<const TlsClient*> next_tls(kMaxServers, nullptr);
  for (const auto& ur : snap->upstreams) {
    for (size_t i = 0; i < ur.servers.size(); ++i) {
      next[ur.servers[i]->id()] = ur.servers[i].get();
      next_configs[ur.servers[i]->id()] = &ur.cfg->servers[i];
      next_tls[ur.servers[i]->id()] = ur.cfg->tls.enabled ? ur.cfg->tls.client.get() : nullptr;
    }
  }
  for (uint32_t id = 0; id < kMaxServers; ++id) {
    if (current_servers_[id] == next[id] && current_tls_[id] == next_tls[id] &&
        (next[id] == nullptr ||
         SameAddress(current_configs_[id]->address, next_configs[id]->address)))
      continue;
    auto& list = idle_[id];
    while (!list.empty()) {
      UpstreamConn* c = list.back();
      list.pop_back();
      c->Close();
    }
  }
  current_servers_.swap(next);
  current_configs_.swap(next_configs);
  current_tls_.swap(next_tls);

  WorkerView* old = current_;
  current_ = view.get();
  views_.push_back(std::move(view));
  for (auto& c : clients_) {
    if (!c->open_) continue;
    // Open connections follow their listener to its new index, or end if it left the config:
    // their requests must not read another listener's routes, headers or access rules.
    if (int li = c->listener_index(); li >= 0) {
      int index = -1;
      for (size_t i = 0; i < snap->listen.size(); ++i) {
        if (snap->listen[i]->fds[index_] == c->listen_fd()) index = static_cast<int>(i);
      }
      if (index != li) c->Relisten(index);
    }
    // HTTP/2 connections whose settings changed say goodbye gracefully (GOAWAY: their streams
    // finish, the client reconnects and meets the new settings), as nginx's old workers do on a
    // reload.
    if (old == nullptr || !c->open_ || !c->speaks_h2()) continue;
    const GatewayConfig& before = *old->snap->config;
    const GatewayConfig& after = *snap->config;
    int li = c->listener_index();
    bool same = before.http.http2 == after.http.http2 &&
                before.http.limits.max_header_bytes == after.http.limits.max_header_bytes &&
                li >= 0 && after.listeners[li].http2;
    if (!same) c->Drain();
  }
  if (old != nullptr && old->refs == 0) ReleaseView(old);
}

WorkerView* Worker::AcquireView() {
  ++current_->refs;
  return current_;
}

void Worker::ReleaseView(WorkerView* v) {
  if (v->refs > 0) --v->refs;
  if (v->refs == 0 && v != current_) {
    std::erase_if(views_, [v](const std::unique_ptr<WorkerView>& p) { return p.get() == v; });
  }
}

int Worker::max_connections() const {
  int configured = current_ != nullptr ? current_->snap->config->http.max_connections : 0;
  return configured > 0 ? configured : shared_.auto_max_connections;
}

void Worker::LimitAccepting(observe::ShardValue& counter, std::string_view why) {
  if (accept_paused_) return;
  counter.Add(1);
  if (loop_.now_ms() - last_limit_log_ms_ >= 10000) {
    last_limit_log_ms_ = loop_.now_ms();
    LogWarn("worker ", index_, ": ", why, "; new connections wait in the listen queue");
  }
  PauseAccepting(100);
}

void Worker::MakeRoomForUpstream() {
  if (shared_.descriptors == nullptr || shared_.descriptors->Has(1)) return;
  for (auto& list : idle_) {
    if (list.empty()) continue;
    UpstreamConn* c = list.back();
    list.pop_back();
    c->Close();
    return;
  }
}

void Worker::Accept(int lfd, int listener_index) {
  for (int i = 0; i < 64 && !draining_; ++i) {
    // HAProxy maxconn: at the cap, stop accepting (the kernel queues new connections) rather
    // than accept and close them.
    if (live_clients_ >= max_connections()) {
      LimitAccepting(stats_.limited_max_connections,
                     StrCat("max_connections (", max_connections(), ") reached"));
      return;
    }
    // A client may need an upstream connection too: room for two.
    if (shared_.descriptors != nullptr && !shared_.descriptors->Has(2)) {
      LimitAccepting(stats_.limited_descriptors,
                     "the gateway's share of the open files limit is in use (the rest is "
                     "reserved for admin, pg, the vault and logs)");
      return;
    }
    SocketAddress peer;
    peer.len = sizeof(peer.storage);
    int fd = accept4(lfd, reinterpret_cast<sockaddr*>(&peer.storage), &peer.len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == ECONNABORTED) return;
      // Out of descriptors (or memory): the connection stays in the kernel's queue. Counted
      // always, logged at most once a second so a flood cannot fill the log.
      stats_.accept_errors.Add(1);
      if (loop_.now_ms() - last_accept_error_log_ms_ >= 1000) {
        last_accept_error_log_ms_ = loop_.now_ms();
        LogError("accept: ", strerror(errno),
                 errno == EMFILE || errno == ENFILE ? " (raise the open files limit)" : "");
      }
      // The listeners are level-triggered: left armed they would wake this loop at once, again
      // and again, until a descriptor frees. Pause them briefly instead (nginx does the same).
      PauseAccepting(100);
      return;
    }
    SetNoDelay(fd);
    CountDescriptor(1);
    DownstreamConn* c;
    if (!free_clients_.empty()) {
      c = free_clients_.back();
      free_clients_.pop_back();
    } else {
      clients_.push_back(std::make_unique<DownstreamConn>(this));
      c = clients_.back().get();
    }
    ++live_clients_;
    stats_.accepted.Add(1);
    c->Open(fd, peer, lfd, listener_index);
  }
}

void Worker::PauseAccepting(int64_t ms) {
  if (accept_paused_ || draining_) return;
  accept_paused_ = true;
  for (auto& l : listeners_) loop_.Remove(l->fd());
  loop_.ArmTimer(&accept_timer_, ms);
}

void Worker::ResumeAccepting() {
  if (!accept_paused_) return;
  accept_paused_ = false;
  if (draining_) return;
  for (auto& l : listeners_) RegisterListener(l.get());
}

void Worker::RegisterListener(Listener* l) {
  absl::Status s = loop_.Add(l->fd(), EPOLLIN, l);
  if (!s.ok()) LogError("worker ", index_, ": ", s.message());
}

UpstreamConn* Worker::TakeIdle(uint32_t server_id) {
  auto& list = idle_[server_id];
  while (!list.empty()) {
    UpstreamConn* c = list.back();
    list.pop_back();
    if (c->state_ == UpstreamConn::State::kIdle && c->fd_ >= 0) {
      loop_.CancelTimer(&c->timer_);
      c->state_ = UpstreamConn::State::kActive;
      return c;
    }
  }
  return nullptr;
}

bool Worker::PutIdle(UpstreamConn* c, int keepalive_limit) {
  if (draining_ || keepalive_limit <= 0 || c->server_ == nullptr) return false;
  if (current_servers_[c->server_->id()] != c->server_) return false;  // its server left the config
  if (!SameAddress(current_configs_[c->server_->id()]->address, c->address_)) return false;
  if (current_tls_[c->server_->id()] != c->tls_client_.get()) return false;  // TLS settings changed
  auto& list = idle_[c->server_->id()];
  if (static_cast<int>(list.size()) >= keepalive_limit) return false;
  list.push_back(c);
  return true;
}

void Worker::RemoveIdle(UpstreamConn* c) {
  if (c->server_ == nullptr) return;
  // Idle connections only exist for servers of the current snapshot (see ApplySnapshot), so
  // server_ is alive here.
  auto& list = idle_[c->server_->id()];
  auto it = std::find(list.begin(), list.end(), c);
  if (it != list.end()) list.erase(it);
}

UpstreamConn* Worker::NewUpstream() {
  if (!free_upstreams_.empty()) {
    UpstreamConn* c = free_upstreams_.back();
    free_upstreams_.pop_back();
    return c;
  }
  upstreams_.push_back(std::make_unique<UpstreamConn>(this));
  return upstreams_.back().get();
}

// Freed connection objects go back to the pool only after the current event batch: the batch may
// still hold events for the old fd that point at the object.
void Worker::FreeUpstream(UpstreamConn* c) {
  loop_.Defer([this, c] { free_upstreams_.push_back(c); });
}

H2Stream* Worker::TakeH2Stream() {
  if (!free_h2_streams_.empty()) {
    H2Stream* s = free_h2_streams_.back();
    free_h2_streams_.pop_back();
    return s;
  }
  h2_streams_.push_back(std::make_unique<H2Stream>(this));
  return h2_streams_.back().get();
}

void Worker::FreeClient(DownstreamConn* c) {
  --live_clients_;
  loop_.Defer([this, c] { free_clients_.push_back(c); });
  if (draining_) {
    CheckDrained();
  } else if (accept_paused_ && live_clients_ < max_connections()) {
    ResumeAccepting();  // a place is free: take the next queued connection now
  }
}

void Worker::CloseIdleClients() {
  for (auto& c : clients_) {
    if (c->open_) c->Drain();
  }
}

void Worker::BeginDrain() {
  if (draining_) return;
  draining_ = true;
  for (auto& l : listeners_) loop_.Remove(l->fd());
  listeners_.clear();
  CloseIdleClients();
  CheckDrained();
}

void Worker::CheckDrained() {
  if (live_clients_ > 0) return;
  for (auto& list : idle_) {
    while (!list.empty()) {
      UpstreamConn* c = list.back();
      list.pop_back();
      c->Close();
    }
  }
  loop_.Stop();
}

void Worker::FlushLog() {
  if (log_buf_.empty()) return;
  if (shared_.access_log != nullptr) shared_.access_log->Write(log_buf_);
  log_buf_.clear();
}

uint64_t Worker::Random() {
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 2685821657736338717ull;
}

void Worker::RandomHex(char* out, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i += 16) {
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    uint64_t v = rng_ * 2685821657736338717ull;
    for (size_t j = 0; j < 16 && i + j < n; ++j) {
      out[i + j] = kHex[v & 15];
      v >>= 4;
    }
  }
}

void Worker::AppendLogTime(std::string* out) {
  int64_t us = WallMicros();
  int64_t sec = us / 1000000;
  if (sec != log_time_sec_) {
    log_time_sec_ = sec;
    log_time_prefix_.clear();
    AppendRfc3339(&log_time_prefix_, sec * 1000000);
    log_time_prefix_.resize(log_time_prefix_.size() - 5);  // drop ".000Z"
  }
  out->append(log_time_prefix_);
  char buf[8];
  int n = snprintf(buf, sizeof(buf), ".%03dZ", static_cast<int>((us / 1000) % 1000));
  out->append(buf, n);
}

const std::string& Worker::http_date() {
  int64_t sec = WallMicros() / 1000000;
  if (sec != date_sec_) {
    date_sec_ = sec;
    time_t t = static_cast<time_t>(sec);
    tm g;
    gmtime_r(&t, &g);
    char buf[64];
    size_t n = strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &g);
    date_.assign(buf, n);
  }
  return date_;
}

}  // namespace bulwark::gateway
