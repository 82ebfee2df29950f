// The proxy thread: listener, pools, routing, the janitor, status and metrics.
#include "pg/proxy.h"

#include <errno.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>

#include "core/log.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "pg/protocol.h"
#include "pg/proxy_internal.h"

namespace bulwark::pg {
namespace {

// Which gauge of its pool a server connection is counted in.
std::atomic<int64_t>* GaugeFor(PoolStats* st, ServerConn::State s) {
  switch (s) {
    case ServerConn::State::kConnecting:
    case ServerConn::State::kLogin:
      return &st->connecting;
    case ServerConn::State::kIdle:
      return &st->idle;
    case ServerConn::State::kActive:
      return &st->active;
    case ServerConn::State::kReset:
      return &st->used;
    default:
      return nullptr;
  }
}

// What a pool group was built from: its user, its database and the pool-wide defaults. A
// sharded database never matches (its shard map is not compared), so a reload rebuilds it.
std::string GroupSignature(const PgConfig& cfg, const DatabaseConfig& db, const UserConfig& u) {
  if (db.sharding) return "";
  auto mode = [](const std::optional<PoolMode>& m) { return m ? PoolModeName(*m) : "-"; };
  std::string sig = StrCat(
      u.name, "\x1f", u.password, "\x1f", mode(u.pool_mode), "\x1f", u.pool_size, "\x1f",
      u.max_user_connections, "\x1f", db.name, "\x1f", db.dbname, "\x1f", db.user, "\x1f",
      db.password, "\x1f", mode(db.pool_mode), "\x1f", db.pool_size, "\x1f", db.min_pool_size,
      "\x1f", db.reserve_pool, "\x1f", db.max_db_connections, "\x1f", PoolModeName(cfg.pool_mode),
      "\x1f", cfg.default_pool_size, "\x1f", cfg.min_pool_size, "\x1f", cfg.reserve_pool_size,
      "\x1f", cfg.max_db_connections, "\x1f", cfg.max_user_connections);
  for (const ServerConfig& s : db.servers) StrAppend(&sig, "\x1f", s.Name(), "=", RoleName(s.role));
  return sig;
}

void MoveGauge(ServerConn* s, ServerConn::State to) {
  if (auto* g = GaugeFor(s->pool->stats, s->state)) g->fetch_sub(1, std::memory_order_relaxed);
  s->state = to;
  if (auto* g = GaugeFor(s->pool->stats, to)) g->fetch_add(1, std::memory_order_relaxed);
}

// A cancel request on its way to a server: connect, write 16 bytes, close (as PostgreSQL's
// own clients do; the server answers nothing).
class CancelConn final : public IoHandler {
 public:
  CancelConn(ProxyImpl* p, const ServerConfig& server, int32_t pid, int32_t key) : proxy_(p) {
    AppendCancelRequest(&msg_, pid, key);
    if (!server.unix_path.empty()) {
      fd_ = -1;  // cancels to unix sockets go through a blocking connect: tiny and local
      int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::strncpy(sa.sun_path, server.unix_path.c_str(), sizeof(sa.sun_path) - 1);
      if (s >= 0 && connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
        (void)!send(s, msg_.data(), msg_.size(), MSG_NOSIGNAL);
      }
      if (s >= 0) close(s);
      return;
    }
    if (!server.resolved) return;
    auto r = ConnectTcp(server.address);
    if (!r.ok()) return;
    fd_ = *r;
    if (!proxy_->loop.Add(fd_, EPOLLOUT | EPOLLET, this).ok()) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~CancelConn() override {
    if (fd_ >= 0) close(fd_);
  }
  bool active() const { return fd_ >= 0; }
  void OnIo(uint32_t) override {
    if (fd_ < 0) return;
    (void)!send(fd_, msg_.data(), msg_.size(), MSG_NOSIGNAL);
    proxy_->loop.Remove(fd_);
    close(fd_);
    fd_ = -1;
    proxy_->loop.Forget(this);
    CancelConn* self = this;
    proxy_->loop.Defer([self] { delete self; });
  }

 private:
  ProxyImpl* proxy_;
  int fd_ = -1;
  std::string msg_;
};

}  // namespace

class ProxyImpl::Listener final : public IoHandler {
 public:
  explicit Listener(ProxyImpl* p) : proxy_(p) {}
  void OnIo(uint32_t) override { proxy_->Accept(); }

 private:
  ProxyImpl* proxy_;
};

ProxyImpl::ProxyImpl(std::shared_ptr<const PgConfig> c) : cfg(std::move(c)) {}

ProxyImpl::~ProxyImpl() {
  for (ClientConn* c : clients) delete c;
  for (ServerConn* s : servers) delete s;
  if (listen_fd >= 0) close(listen_fd);
}

std::string ProxyImpl::RandomBytes(size_t n) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  return s;
}

uint64_t ProxyImpl::Random() {
  // Cancel keys (pid and secret) come from the cryptographic generator, as PostgreSQL's own
  // (pg_strong_random): a linear generator would let one client's key reveal the others'.
  uint64_t v = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof(v));
  return v;
}

bool ProxyImpl::IsRead(std::string_view sql, const PoolGroup* g) {
  Classification c = Classify(sql, g);
  if (c.write) return false;
  // An explicit transaction goes to the primary unless its BEGIN says READ ONLY: its later
  // statements may write, and a replica would refuse them.
  if (c.tx == Classification::Tx::kBegin) return c.tx_read_only;
  return true;
}

void ProxyImpl::SetFunctions(const std::string& database, std::shared_ptr<const FunctionNames> f) {
  functions[database] = f;
  for (auto& [key, g] : groups) {
    if (g->database == database) g->functions = f;
  }
}

absl::Status ProxyImpl::Start() {
  if (auto st = loop.Init(); !st.ok()) return st;
  ApplyConfig(cfg);
  if (cfg->client_tls) {
    auto t = TlsServer::Build(*cfg->client_tls);
    if (!t.ok()) return t.status();
    tls = *t;
  }
  auto fd = ListenTcp(cfg->listen, false);
  if (!fd.ok()) {
    return absl::Status(fd.status().code(),
                        StrCat("pg.listen ", cfg->listen_text, ": ", fd.status().message()));
  }
  listen_fd = *fd;
  port = LocalPort(listen_fd);
  listener_ = std::make_unique<Listener>(this);
  if (auto st = loop.Add(listen_fd, EPOLLIN | EPOLLET, listener_.get()); !st.ok()) return st;
  janitor_.set_callback([this] {
    Janitor();
    loop.ArmTimer(&janitor_, 1000);
  });
  loop.ArmTimer(&janitor_, 1000);
  {
    MutexLock l(&stats_mu);
    checker = std::make_unique<HealthChecker>(cfg, health);
  }
  checker->set_on_change([this] { loop.Post([this] { OnTopologyChange(); }); });
  checker->set_on_functions([this](const std::string& db, std::shared_ptr<const FunctionNames> f) {
    loop.Post([this, db, f] { SetFunctions(db, f); });
  });
  if (lease != nullptr) checker->set_leader([l = lease] { return l->leader(); });
  // Roles and lag are known before the first client is routed.
  checker->Round();
  checker->Start();
  thread = std::thread([this] {
    loop.Run();
    finished.store(true);
  });
  return absl::OkStatus();
}

void ProxyImpl::ApplyConfig(std::shared_ptr<const PgConfig> c) {
  cfg = std::move(c);
  std::map<std::string, ScramVerifier> v;
  for (const UserConfig& u : cfg->users) {
    if (StartsWith(u.password, "SCRAM-SHA-256$")) {
      auto p = ParseScramVerifier(u.password);
      if (p.ok()) v[u.name] = *p;
    } else if (!u.password.empty() && !(StartsWith(u.password, "md5") && u.password.size() == 35)) {
      // Derived once per config with a fresh salt: a client's SCRAM login then costs one HMAC,
      // not 4096 iterations.
      auto old = verifiers.find(u.name);
      if (old != verifiers.end() &&
          MakeScramVerifier(u.password, old->second.salt, old->second.iterations).stored_key ==
              old->second.stored_key) {
        v[u.name] = old->second;
      } else {
        v[u.name] = MakeScramVerifier(u.password, RandomBytes(16), 4096);
      }
    }
  }
  for (const auto& [name, u] : learnt_users) {
    if (v.count(name) || cfg->FindUser(name) != nullptr) continue;
    auto p = ParseScramVerifier(u.password);
    if (p.ok()) v[name] = *p;
  }
  verifiers = std::move(v);
  classify_options = ClassifyOptions();
  if (!cfg->routing.volatile_functions.empty()) {
    classify_options.volatile_functions = cfg->routing.volatile_functions;
  }
  classify_options.read_only_functions = cfg->routing.read_only_functions;
  classify_options.max_bytes = static_cast<size_t>(cfg->routing.classify_max_bytes);
  {
    MutexLock l(&stats_mu);
    for (const auto& [name, db] : cfg->databases) {
      if (!db_stats.count(name)) db_stats[name] = std::make_unique<DatabaseStats>();
      for (const ServerConfig& s : db.servers) {
        if (!health.count(s.Name())) health[s.Name()] = std::make_shared<ServerHealth>();
      }
    }
  }
  if (checker) {
    MutexLock l(&stats_mu);
    checker->Update(cfg, health);
  }
  // A group whose user, database and pool defaults are as they were carries on with its
  // server connections (PgBouncer's RELOAD keeps unchanged pools too); the others are retired:
  // they serve their clients until those leave, and new logins get a new group.
  for (auto it = groups.begin(); it != groups.end();) {
    PoolGroup* g = it->second.get();
    auto dit = cfg->databases.find(g->database);
    const UserConfig* u = FindUserConfig(g->user);
    if (dit != cfg->databases.end() && u != nullptr && !g->signature.empty() &&
        GroupSignature(*cfg, dit->second, *u) == g->signature) {
      // Repointed into the new snapshot; the old one lives until `cfg` is replaced, last.
      for (auto& p : g->pools) {
        for (const ServerConfig& s : dit->second.servers) {
          if (s.Name() == p->server->Name()) p->server = &s;
        }
      }
      g->db = &dit->second;
      g->user_cfg = u;
      g->cfg = cfg;
      ++it;
      continue;
    }
    retired.push_back(std::move(it->second));
    it = groups.erase(it);
  }
  for (auto& g : retired) {
    if (g->retired) continue;
    g->retired = true;
    for (auto& p : g->pools) {
      std::vector<ServerConn*> idle = p->idle;
      for (ServerConn* s : idle) s->Close("configuration reloaded");
    }
  }
}

const UserConfig* ProxyImpl::FindUserConfig(const std::string& user) const {
  const UserConfig* u = cfg->FindUser(user);
  if (u == nullptr) {
    auto lit = learnt_users.find(user);
    if (lit != learnt_users.end()) u = &lit->second;
  }
  return u;
}

PoolGroup* ProxyImpl::FindGroup(const std::string& database, const std::string& user,
                                std::string* error) {
  auto dit = cfg->databases.find(database);
  if (dit == cfg->databases.end()) {
    *error = StrCat("no such database: ", database);
    return nullptr;
  }
  const UserConfig* u = FindUserConfig(user);
  if (u == nullptr) {
    *error = StrCat("password authentication failed for user \"", user, "\"");
    return nullptr;
  }
  auto key = std::make_pair(database, user);
  auto it = groups.find(key);
  if (it != groups.end()) return it->second.get();
  const DatabaseConfig& db = dit->second;
  auto g = std::make_unique<PoolGroup>();
  g->database = database;
  g->user = user;
  g->cfg = cfg;
  g->db = &db;
  g->user_cfg = u;
  g->signature = GroupSignature(*cfg, db, *u);
  g->mode = u->pool_mode ? *u->pool_mode : db.pool_mode ? *db.pool_mode : cfg->pool_mode;
  g->pool_size = u->pool_size > 0   ? u->pool_size
                 : db.pool_size > 0 ? db.pool_size
                                    : cfg->default_pool_size;
  g->min_pool_size = db.min_pool_size >= 0 ? db.min_pool_size : cfg->min_pool_size;
  g->reserve = db.reserve_pool >= 0 ? db.reserve_pool : cfg->reserve_pool_size;
  g->max_db = db.max_db_connections > 0 ? db.max_db_connections : cfg->max_db_connections;
  g->max_user = u->max_user_connections > 0 ? u->max_user_connections : cfg->max_user_connections;
  g->server_user = db.user.empty() ? user : db.user;
  g->has_replicas = db.servers.size() > 1;
  if (auto f = functions.find(database); f != functions.end()) g->functions = f->second;
  bool explicit_primary = false;
  for (const auto& s : db.servers) explicit_primary = explicit_primary || s.role == Role::kPrimary;
  MutexLock l(&stats_mu);
  g->stats = db_stats[database].get();
  bool first_auto = true;
  if (db.sharding) {
    g->sharding = &*db.sharding;
    g->shard_options = ShardClassifyOptions(*db.sharding, classify_options);
  }
  std::vector<std::pair<int, std::string>> dbnames;
  if (db.sharding) {
    for (size_t i = 0; i < db.sharding->databases.size(); ++i) {
      dbnames.emplace_back(static_cast<int>(i), db.sharding->databases[i]);
    }
  } else {
    dbnames.emplace_back(-1, db.dbname);
  }
  for (const ServerConfig& s : db.servers) {
    Role role;
    if (s.role == Role::kPrimary) {
      role = Role::kPrimary;
    } else if (s.role == Role::kReplica) {
      role = Role::kReplica;
    } else {
      role = !explicit_primary && first_auto ? Role::kPrimary : Role::kReplica;
      first_auto = false;
    }
    for (const auto& [shard, dbname] : dbnames) {
      auto p = std::make_unique<Pool>();
      p->group = g.get();
      p->server = &s;
      p->dbname = dbname;
      p->shard = shard;
      p->health = health[s.Name()];
      p->config_role = role;
      std::string server_label = shard < 0 ? s.Name() : StrCat(s.Name(), "/", dbname);
      std::string key_text = StrCat(database, "\x1f", user, "\x1f", server_label);
      auto& ps = pool_stats[key_text];
      if (!ps) {
        ps = std::make_unique<PoolStats>();
        ps->database = database;
        ps->user = user;
        ps->server = server_label;
      }
      p->stats = ps.get();
      g->pools.push_back(std::move(p));
    }
  }
  PoolGroup* raw = g.get();
  groups[key] = std::move(g);
  return raw;
}

Role ProxyImpl::EffectiveRole(const Pool* p) const {
  int r = p->health->role.load(std::memory_order_relaxed);
  if (r == 1) return Role::kPrimary;
  if (r == 2) return Role::kReplica;
  return p->config_role;
}

Pool* ProxyImpl::ChoosePool(PoolGroup* g, bool read, int shard) {
  if (g->sharding != nullptr && shard < 0) shard = 0;  // logins and welcome: any shard
  // The first primary that is up; when none is, the first one anyway (its clients wait for
  // it, or for a failover to move them).
  Pool* primary = nullptr;
  for (auto& p : g->pools) {
    if (p->shard != shard) continue;
    if (p->health->demoted.load(std::memory_order_relaxed)) continue;
    if (EffectiveRole(p.get()) != Role::kPrimary) continue;
    if (p->health->up.load(std::memory_order_relaxed)) {
      primary = p.get();
      break;
    }
    if (primary == nullptr) primary = p.get();
  }
  if (read && g->has_replicas && g->cfg->routing.read_write_split) {
    const RoutingConfig& rc = g->cfg->routing;
    int64_t now = loop.now_ms();
    size_t n = g->pools.size();
    for (size_t i = 0; i < n; ++i) {
      Pool* p = g->pools[(g->rr + i) % n].get();
      if (p->shard != shard || EffectiveRole(p) != Role::kReplica) continue;
      const ServerHealth& h = *p->health;
      if (!h.up.load(std::memory_order_relaxed) || h.demoted.load(std::memory_order_relaxed)) {
        continue;
      }
      if (h.banned_until_ms.load(std::memory_order_relaxed) > now) continue;
      if (h.lag_bytes.load(std::memory_order_relaxed) > rc.max_lag_bytes) continue;
      if (h.lag_ms.load(std::memory_order_relaxed) > rc.max_lag_ms) continue;
      // A replica we cannot log in to right now is no better than the primary.
      if (p->last_failure_ms >= 0 && p->total == 0) continue;
      g->rr = static_cast<int>((g->rr + i + 1) % n);
      return p;
    }
  }
  return primary;
}

void ProxyImpl::Accept() {
  while (true) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int fd =
        accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        LogWarn("pg: accept: ", std::strerror(errno));
      }
      return;
    }
    SetNoDelay(fd);
    SocketAddress peer;
    std::memcpy(&peer.storage, &ss, sizeof(ss));
    peer.len = len;
    auto* c = new ClientConn(this, fd, peer);
    clients.insert(c);
    clients_open.fetch_add(1, std::memory_order_relaxed);
    if (!loop.Add(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, c).ok()) {
      c->Close("epoll");
      continue;
    }
    if (draining) {
      c->Fatal("57P01", "bulwark is shutting down");
      continue;
    }
    if (clients_open.load(std::memory_order_relaxed) > cfg->max_client_conn) {
      clients_refused.Add(1);
      c->Fatal("53300", "no more connections allowed (max_client_conn)");
      continue;
    }
    clients_accepted.Add(1);
    loop.ArmTimer(&c->timer, cfg->client_login_timeout_ms);
  }
}

void ProxyImpl::Cancel(int32_t pid, int32_t key) {
  cancels.Add(1);
  auto it = by_cancel_key.find((uint64_t(uint32_t(pid)) << 32) | uint32_t(key));
  if (it == by_cancel_key.end()) return;  // unknown keys are ignored, as PostgreSQL does
  ServerConn* s = it->second->server;
  if (s == nullptr) return;  // nothing running
  auto* cc = new CancelConn(this, *s->pool->server, s->backend_pid, s->backend_key);
  if (!cc->active()) delete cc;
}

void ProxyImpl::Acquire(Pool* p, PoolUser* c) {
  int64_t now = loop.now_ms();
  while (!p->idle.empty()) {
    ServerConn* s = p->idle.back();
    p->idle.pop_back();
    if (now - s->created_ms >= p->group->cfg->server_lifetime_ms) {
      s->Close("server_lifetime");
      continue;
    }
    MoveGauge(s, ServerConn::State::kActive);
    c->wanted = nullptr;
    c->Attach(s);
    return;
  }
  if (p->waiting.empty()) p->wait_since_ms = now;
  p->waiting.push_back(c);
  MaybeConnect(p);
}

int ProxyImpl::DatabaseConnections(const std::string& database) const {
  int n = 0;
  for (const auto& [k, g] : groups) {
    if (g->database != database) continue;
    for (const auto& p : g->pools) n += p->total;
  }
  for (const auto& g : retired) {
    if (g->database != database) continue;
    for (const auto& p : g->pools) n += p->total;
  }
  return n;
}

void ProxyImpl::MaybeConnect(Pool* p) {
  if (p == nullptr) return;
  PoolGroup* g = p->group;
  int64_t now = loop.now_ms();
  if (p->last_failure_ms >= 0 && now - p->last_failure_ms < g->cfg->server_login_retry_ms) return;
  size_t want = p->waiting.size();
  if (!g->welcome_ready && !g->login_waiters.empty() && want == 0) want = 1;
  int limit = g->pool_size;
  if (!p->waiting.empty() && g->reserve > 0 &&
      now - p->wait_since_ms >= g->cfg->reserve_pool_timeout_ms) {
    limit += g->reserve;
  }
  while (static_cast<size_t>(p->connecting) < want && p->total < limit) {
    if (g->max_db > 0 && DatabaseConnections(g->database) >= g->max_db) return;
    if (g->max_user > 0) {
      int n = 0;
      for (const auto& q : g->pools) n += q->total;
      if (n >= g->max_user) return;
    }
    NewServer(p);
    if (p->last_failure_ms >= 0) return;  // failed at once
  }
}

ServerConn* ProxyImpl::NewServer(Pool* p) {
  auto* s = new ServerConn(this, p);
  servers.insert(s);
  p->total++;
  p->connecting++;
  p->stats->connects.Add(1);
  s->state = ServerConn::State::kConnecting;
  p->stats->connecting.fetch_add(1, std::memory_order_relaxed);
  s->Connect();
  return s;
}

void ProxyImpl::ServerReady(ServerConn* s) {
  Pool* p = s->pool;
  PoolGroup* g = p->group;
  if (s->counted_connecting) {
    s->counted_connecting = false;
    p->connecting--;
  }
  MoveGauge(s, ServerConn::State::kIdle);
  if (!g->welcome_ready) {
    g->welcome = s->params;
    g->welcome_ready = true;
    std::vector<ClientConn*> waiters;
    waiters.swap(g->login_waiters);
    for (ClientConn* c : waiters) {
      if (c->state == ClientConn::State::kWelcome) c->WelcomeReady();
    }
  }
  Release(s);
}

void ProxyImpl::Release(ServerConn* s) {
  Pool* p = s->pool;
  PoolGroup* g = p->group;
  int64_t now = loop.now_ms();
  s->client = nullptr;
  s->internal = nullptr;
  s->last_used_ms = now;
  if (s->tx_status != 'I' || !s->at_sync) {
    s->Close("returned in a transaction");
    return;
  }
  if (now - s->created_ms >= g->cfg->server_lifetime_ms) {
    s->Close("server_lifetime");
    return;
  }
  if (g->retired && g->clients == 0) {
    s->Close("configuration reloaded");
    return;
  }
  while (!p->waiting.empty()) {
    PoolUser* u = p->waiting.front();
    p->waiting.pop_front();
    if (!u->Waiting()) continue;
    if (!p->waiting.empty()) p->wait_since_ms = p->waiting.front()->wait_start_ms;
    MoveGauge(s, ServerConn::State::kActive);
    u->wanted = nullptr;
    u->Attach(s);
    return;
  }
  MoveGauge(s, ServerConn::State::kIdle);
  p->idle.push_back(s);
}

void ProxyImpl::ServerGone(ServerConn* s, ServerConn::State was, const std::string& login_error) {
  Pool* p = s->pool;
  PoolGroup* g = p->group;
  auto it = std::find(p->idle.begin(), p->idle.end(), s);
  if (it != p->idle.end()) p->idle.erase(it);
  p->total--;
  if (s->counted_connecting) {
    s->counted_connecting = false;
    p->connecting--;
  }
  if (auto* gauge = GaugeFor(p->stats, was)) gauge->fetch_sub(1, std::memory_order_relaxed);
  servers.erase(s);
  loop.Forget(s);
  loop.Defer([s] { delete s; });
  if (!login_error.empty() && !g->welcome_ready && p->connecting == 0 &&
      !g->login_waiters.empty()) {
    // Clients logging in wait for the pool's parameters; with no server to give them, they
    // get the reason instead of a hang (PgBouncer sends its own "server login failed").
    std::vector<ClientConn*> waiters;
    waiters.swap(g->login_waiters);
    for (ClientConn* c : waiters) {
      c->WelcomeFailed(StrCat("bulwark could not log in to ", login_error));
    }
  }
  if (!draining || p->waiting.size() > 0) MaybeConnect(p);
}

void ProxyImpl::ClientGone(ClientConn* c) {
  if (c->group != nullptr) {
    PoolGroup* g = c->group;
    g->clients--;
    g->stats->clients.fetch_sub(1, std::memory_order_relaxed);
    if (c->wanted != nullptr) {
      auto& w = c->wanted->waiting;
      auto it = std::find(w.begin(), w.end(), static_cast<PoolUser*>(c));
      if (it != w.end()) w.erase(it);
      g->stats->clients_waiting.fetch_sub(1, std::memory_order_relaxed);
      c->wanted = nullptr;
    }
    if (c->job != nullptr) {
      c->job->client = nullptr;  // its parts finish and give their servers back
      c->job = nullptr;
    }
  }
  if (c->auth_query != nullptr) {
    c->auth_query->client = nullptr;
    c->auth_query = nullptr;
  }
  if (c->group != nullptr) {
    PoolGroup* g = c->group;
    auto lw = std::find(g->login_waiters.begin(), g->login_waiters.end(), c);
    if (lw != g->login_waiters.end()) g->login_waiters.erase(lw);
    if (c->server != nullptr) {
      ServerConn* s = c->server;
      c->server = nullptr;
      s->client = nullptr;
      bool clean = s->at_sync && s->tx_status == 'I' && c->expects.empty() && c->pass_left == 0 &&
                   s->pass_left == 0;
      const std::string& reset = g->cfg->server_reset_query;
      bool want_reset =
          !reset.empty() && (g->mode == PoolMode::kSession || g->cfg->server_reset_query_always);
      if (!clean) {
        s->Close("the client left in the middle of a transaction");
      } else if (want_reset) {
        MoveGauge(s, ServerConn::State::kReset);
        AppendQuery(&s->out.buf, reset);
        s->at_sync = false;
        s->prepared.clear();  // DISCARD ALL drops them
        s->prepared_order.clear();
        s->Flush();
      } else {
        Release(s);
      }
    }
  }
  if (c->key_pid != 0) {
    by_cancel_key.erase((uint64_t(uint32_t(c->key_pid)) << 32) | uint32_t(c->key_secret));
  }
  loop.CancelTimer(&c->timer);
  if (c->fd >= 0) loop.Remove(c->fd);
  clients.erase(c);
  clients_open.fetch_sub(1, std::memory_order_relaxed);
  loop.Forget(c);
  loop.Defer([c] { delete c; });
  CheckDrained();
}

void ProxyImpl::Janitor() {
  int64_t now = loop.now_ms();
  auto sweep = [&](PoolGroup* g) {
    const PgConfig& c = *g->cfg;
    for (auto& p : g->pools) {
      std::vector<ServerConn*> idle = p->idle;
      for (ServerConn* s : idle) {
        bool old = now - s->created_ms >= c.server_lifetime_ms;
        bool unused = c.server_idle_timeout_ms > 0 &&
                      now - s->last_used_ms >= c.server_idle_timeout_ms &&
                      p->total > g->min_pool_size;
        if (old || unused || (g->retired && g->clients == 0)) {
          s->Close(old ? "server_lifetime" : "server_idle_timeout");
        }
      }
      std::vector<PoolUser*> expired;
      for (PoolUser* w : p->waiting) {
        if (w->Waiting() && c.query_wait_timeout_ms > 0 &&
            now - w->wait_start_ms >= c.query_wait_timeout_ms) {
          expired.push_back(w);
        }
      }
      for (PoolUser* w : expired) {
        g->stats->wait_timeouts.Add(1);
        w->WaitTimedOut(StrCat("query_wait_timeout: no connection to server ", p->server->Name(),
                               " within ", c.query_wait_timeout_ms, " ms",
                               p->last_error.empty() ? "" : " (last error: ", p->last_error,
                               p->last_error.empty() ? "" : ")"));
      }
      if (!g->retired && !draining && g->min_pool_size > 0 && p->total < g->min_pool_size &&
          (p->last_failure_ms < 0 || now - p->last_failure_ms >= c.server_login_retry_ms) &&
          EffectiveRole(p.get()) == Role::kPrimary) {
        NewServer(p.get());
      }
      MaybeConnect(p.get());
    }
  };
  for (auto& [k, g] : groups) sweep(g.get());
  for (auto& g : retired) sweep(g.get());
  retired.erase(std::remove_if(retired.begin(), retired.end(),
                               [](const std::unique_ptr<PoolGroup>& g) {
                                 if (g->clients > 0) return false;
                                 for (const auto& p : g->pools) {
                                   if (p->total > 0) return false;
                                 }
                                 return true;
                               }),
                retired.end());
  const PgConfig& c = *cfg;
  std::vector<std::pair<ClientConn*, std::string>> idle_out;
  for (ClientConn* cl : clients) {
    if (cl->state == ClientConn::State::kIdle && c.client_idle_timeout_ms > 0 &&
        now - cl->idle_since_ms >= c.client_idle_timeout_ms) {
      idle_out.emplace_back(cl, "client_idle_timeout");
    } else if (cl->state == ClientConn::State::kLinked && c.idle_transaction_timeout_ms > 0 &&
               cl->server != nullptr && cl->server->tx_status != 'I' && cl->expects.empty() &&
               now - cl->idle_since_ms >= c.idle_transaction_timeout_ms) {
      idle_out.emplace_back(cl, "idle_transaction_timeout");
    }
  }
  for (auto& [cl, why] : idle_out) cl->Fatal("08P01", why);
}

// After a failover: clients queued on a server that no longer takes their transactions move
// to the pool that does, and idle connections to the old primary are closed.
void ProxyImpl::OnTopologyChange() {
  auto move = [&](PoolGroup* g) {
    for (auto& p : g->pools) {
      bool gone = p->health->demoted.load() || !p->health->up.load();
      if (!gone) continue;
      std::vector<ServerConn*> idle = p->idle;
      for (ServerConn* s : idle) s->Close("server demoted or down");
      std::deque<PoolUser*> waiting;
      waiting.swap(p->waiting);
      for (PoolUser* u : waiting) {
        if (!u->Waiting()) continue;
        Pool* np = ChoosePool(g, u->read_next, u->shard_next);
        if (np == nullptr || np == p.get()) {
          p->waiting.push_back(u);
          continue;
        }
        u->wanted = np;
        Acquire(np, u);
      }
    }
  };
  for (auto& [k, g] : groups) move(g.get());
  for (auto& g : retired) move(g.get());
}

void ProxyImpl::Drain() {
  if (draining) return;
  draining = true;
  if (listen_fd >= 0) {
    loop.Remove(listen_fd);
    close(listen_fd);
    listen_fd = -1;
  }
  std::vector<ClientConn*> idle;
  for (ClientConn* c : clients) {
    bool tx = c->group != nullptr && c->group->mode == PoolMode::kTransaction;
    if (c->state != ClientConn::State::kLinked && c->state != ClientConn::State::kScatter &&
        (tx || c->state != ClientConn::State::kIdle)) {
      idle.push_back(c);
    }
  }
  for (ClientConn* c : idle) c->Fatal("57P01", "bulwark is shutting down");
  CheckDrained();
}

void ProxyImpl::CheckDrained() {
  if (draining && clients.empty()) loop.Stop();
}

std::string ProxyImpl::StatusJson() {
  using nlohmann::json;
  json out;
  out["listen"] = cfg->listen_text;
  out["pool_mode"] = PoolModeName(cfg->pool_mode);
  json pools = json::array();
  auto add = [&](const PoolGroup& g) {
    for (const auto& p : g.pools) {
      json j;
      j["database"] = g.database;
      j["user"] = g.user;
      j["server"] = p->server->Name();
      j["dbname"] = p->dbname;
      j["role"] = RoleName(EffectiveRole(p.get()));
      j["pool_mode"] = PoolModeName(g.mode);
      j["pool_size"] = g.pool_size;
      j["active"] = p->stats->active.load();
      j["idle"] = p->idle.size();
      j["connecting"] = p->connecting;
      j["used"] = p->stats->used.load();
      j["total"] = p->total;
      j["waiting_clients"] = p->waiting.size();
      j["retired"] = g.retired;
      if (!p->last_error.empty()) j["last_error"] = p->last_error;
      pools.push_back(std::move(j));
    }
  };
  for (const auto& [k, g] : groups) add(*g);
  for (const auto& g : retired) add(*g);
  out["pools"] = std::move(pools);
  json clients_j = json::array();
  int64_t now = loop.now_ms();
  for (ClientConn* c : clients) {
    static const char* kStates[] = {"startup", "tls",     "auth_query", "auth",    "login",
                                    "idle",    "waiting", "active",     "scatter", "closed"};
    json j;
    j["address"] = c->peer.ToString();
    j["user"] = c->user;
    j["database"] = c->database;
    j["state"] = kStates[static_cast<int>(c->state)];
    j["tls"] = c->tls_stream.active();
    j["connected_s"] = (now - c->connected_ms) / 1000;
    if (c->server != nullptr) j["server"] = c->server->pool->server->Name();
    j["prepared_statements"] = c->prepared.size();
    clients_j.push_back(std::move(j));
  }
  out["clients"] = std::move(clients_j);
  json servers_j = json::array();
  {
    MutexLock l(&stats_mu);
    for (const auto& [name, h] : health) {
      json j;
      j["address"] = name;
      int r = h->role.load();
      j["role"] = r == 1 ? "primary" : r == 2 ? "replica" : "unknown";
      j["up"] = h->up.load();
      j["lag_bytes"] = h->lag_bytes.load();
      j["lag_ms"] = h->lag_ms.load();
      j["latency_ms"] = static_cast<double>(h->latency_us.load()) / 1000.0;
      j["checks"] = h->checks.load();
      j["check_failures"] = h->failures.load();
      j["demoted"] = h->demoted.load();
      servers_j.push_back(std::move(j));
    }
  }
  out["servers"] = std::move(servers_j);
  json failovers = json::array();
  if (checker) {
    for (const FailoverEvent& e : checker->Events()) {
      json j;
      j["database"] = e.database;
      j["old_primary"] = e.old_primary;
      j["new_primary"] = e.new_primary;
      j["time_ms"] = e.wall_ms;
      j["detect_ms"] = e.detect_ms;
      j["promote_ms"] = e.promote_ms;
      j["total_ms"] = e.total_ms;
      j["repointed"] = e.repointed;
      j["fenced"] = e.fenced;
      if (e.refused) j["refused"] = true;
      if (!e.error.empty()) j["error"] = e.error;
      failovers.push_back(std::move(j));
    }
  }
  out["failovers"] = std::move(failovers);
  return out.dump();
}

// ------------------------------------------------------------------------------ Proxy

Proxy::Proxy(std::shared_ptr<const PgConfig> cfg) : impl_(std::make_unique<ProxyImpl>(cfg)) {}

Proxy::~Proxy() {
  Stop();
  Join();
  if (impl_->checker) impl_->checker->Stop();
}

absl::Status Proxy::Start() { return impl_->Start(); }

void Proxy::set_lease(const EtcdLease* lease) { impl_->lease = lease; }

void Proxy::Reload(std::shared_ptr<const PgConfig> cfg) {
  ProxyImpl* p = impl_.get();
  p->loop.Post([p, cfg] { p->ApplyConfig(cfg); });
}

void Proxy::Drain() {
  ProxyImpl* p = impl_.get();
  p->loop.Post([p] { p->Drain(); });
}

void Proxy::Stop() { impl_->loop.Stop(); }

void Proxy::Join() {
  if (impl_->thread.joinable()) impl_->thread.join();
  if (impl_->checker) impl_->checker->Stop();
}

bool Proxy::finished() const { return impl_->finished.load(); }

int Proxy::port() const { return impl_->port; }

bool Proxy::Readd(const std::string& server) {
  MutexLock l(&impl_->stats_mu);
  auto it = impl_->health.find(server);
  if (it == impl_->health.end()) return false;
  if (it->second->demoted.exchange(false))
    LogWarn("pg: server ", server, " re-added by an operator");
  return true;
}

std::string Proxy::StatusJson() {
  if (impl_->finished.load()) return "{}";
  auto promise = std::make_shared<std::promise<std::string>>();
  auto future = promise->get_future();
  ProxyImpl* p = impl_.get();
  p->loop.Post([p, promise] { promise->set_value(p->StatusJson()); });
  if (future.wait_for(std::chrono::seconds(1)) != std::future_status::ready) {
    return R"({"error":"the proxy thread did not answer within a second"})";
  }
  return future.get();
}

}  // namespace bulwark::pg
