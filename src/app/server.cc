#include "app/server.h"

#include <dirent.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "admin/dashboard.h"
#include "app/state.h"
#include "cache/glob.h"
#include "core/log.h"
#include "core/strings.h"
#include "core/units.h"
#include "http/parser.h"

namespace bulwark {

class Server::SignalHandler : public IoHandler {
 public:
  explicit SignalHandler(Server* s) : s_(s) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  }
  ~SignalHandler() override {
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }
  void OnIo(uint32_t) override {
    signalfd_siginfo si;
    while (read(fd_, &si, sizeof(si)) == sizeof(si)) {
      if (si.ssi_signo == SIGHUP) {
        LogInfo("SIGHUP: reloading configuration");
        s_->Reload();
      } else {
        LogInfo(si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", ": draining and shutting down");
        s_->BeginDrain();
      }
    }
  }

 private:
  Server* s_;
  int fd_ = -1;
};

void Server::BlockSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

Server::Server(std::unique_ptr<Config> cfg, ConfigSource source)
    : cfg_(std::move(cfg)), source_(std::move(source)) {}

Server::~Server() {
  observer_.reset();
  pg_.reset();
  for (auto& w : workers_) w->Stop();
  for (auto& w : workers_) w->Join();
  workers_.clear();
  health_.reset();
  admin_.reset();
}


// Descriptors, as HAProxy works out maxconn from `ulimit -n`: the soft open files limit is
// raised to the hard one (systemd's soft 1024 is far below what a proxy needs), the reserve and
// what the process already holds are set aside, and the gateway gets the rest. Each client may
// need an upstream connection, so the per-worker default max_connections is half the gateway's
// share, split between the workers.
void Server::SetDescriptorBudget(int workers, gateway::WorkerShared* shared) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  int64_t limit = rl.rlim_cur == RLIM_INFINITY ? int64_t{1} << 20 : static_cast<int64_t>(rl.rlim_cur);
  int64_t held = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) held += e->d_name[0] != '.';
    closedir(d);
  }
  int64_t reserve = cfg_->reserved_descriptors;
  if (reserve == 0) reserve = 256 + (cfg_->pg->enabled ? 2 * int64_t{cfg_->pg->max_client_conn} : 0);
  descriptors_.limit = std::max<int64_t>(limit - reserve - held, 4 * workers);
  shared->descriptors = &descriptors_;
  shared->auto_max_connections =
      static_cast<int>(std::clamp<int64_t>(descriptors_.limit / 2 / workers, 1, 1 << 20));
  auto_max_connections_ = shared->auto_max_connections;
  int configured = cfg_->gateway->http.max_connections;
  if (limit - reserve - held < 64) {
    LogWarn("the open files limit (", limit, ") leaves the gateway ", limit - reserve - held,
            " descriptors after the reserve of ", reserve, "; raise it (LimitNOFILE= in systemd)");
  } else if (configured > 0 && int64_t{configured} * workers * 2 > descriptors_.limit) {
    // nginx's "worker_connections exceed open file resource limit" warning.
    LogWarn("http.max_connections ", configured, " x ", workers, " workers x 2 exceeds the ",
            descriptors_.limit, " descriptors the gateway may use (open files limit ", limit,
            ", reserve ", reserve, "); connections beyond that wait in the listen queue");
  }
  LogInfo("descriptors: open files limit ", limit, ", reserved ", reserve, ", gateway ",
          descriptors_.limit, ", max_connections per worker ",
          configured > 0 ? configured : shared->auto_max_connections);
}

absl::Status Server::Start() {
  start_wall_s_ = WallMicros() / 1000000;
  SetLogLevel(cfg_->log_level == "debug"   ? LogLevel::kDebug
              : cfg_->log_level == "warn"  ? LogLevel::kWarn
              : cfg_->log_level == "error" ? LogLevel::kError
                                           : LogLevel::kInfo);
  SetLogJson(cfg_->log_format == "json");
  if (!cfg_->log_file.path.empty() || !cfg_->error_log.empty()) {
    std::unique_ptr<LogFile> main, errors;
    if (!cfg_->log_file.path.empty()) {
      auto f = LogFile::Open(cfg_->log_file);
      if (!f.ok()) return f.status();
      main = std::move(*f);
    }
    if (!cfg_->error_log.empty()) {
      LogFileConfig e = cfg_->log_file;
      e.path = cfg_->error_log;
      auto f = LogFile::Open(e);
      if (!f.ok()) return f.status();
      errors = std::move(*f);
    }
    SetLogFiles(std::move(main), std::move(errors));
  }
  absl::Status s = loop_.Init();
  if (!s.ok()) return s;
  if (cfg_->gateway->access_log.enabled) {
    auto al = gateway::AccessLog::Open(cfg_->gateway->access_log);
    if (!al.ok()) return al.status();
    access_log_ = std::move(*al);
  }
  int n = cfg_->EffectiveWorkers();
  auto snap = gateway::Snapshot::Build(cfg_->gateway, n, nullptr, &servers_, &zones_, &endpoints_,
                                       ++generation_, &cache_zones_);
  if (!snap.ok()) return snap.status();
  snapshot_ = *snap;
  bans_ = std::make_unique<gateway::BanTable>(cfg_->gateway->bans.max_entries);
  {
    uint64_t id[2] = {};
    if (getrandom(id, sizeof(id), 0) != sizeof(id)) id[0] = WallMicros();
    instance_id_ = StrCat(id[0] ^ id[1]);
  }
  gateway::WorkerShared shared{&endpoints_, access_log_.get(), bans_.get(), instance_id_, ""};
  SetDescriptorBudget(n, &shared);
  {
    unsigned char key[32];
    if (getrandom(key, sizeof(key), 0) != sizeof(key)) {
      for (auto& c : key) c = static_cast<unsigned char>(WallMicros());
    }
    shared.sticky_secret.assign(reinterpret_cast<char*>(key), sizeof(key));
  }
  for (int i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<gateway::Worker>(i, shared));
    s = workers_.back()->Start(snapshot_);
    if (!s.ok()) return s;
  }
  health_ = std::make_unique<gateway::HealthChecker>(&loop_);
  health_->Update(*snapshot_);
  if (cfg_->cluster.enabled()) {
    EtcdLeaseOptions o;
    o.endpoints = cfg_->cluster.etcd_endpoints;
    o.key = cfg_->cluster.etcd_key_prefix + "/leader";
    o.ttl_ms = cfg_->cluster.lease_ttl_ms;
    o.name = cfg_->cluster.name;
    if (o.name.empty()) {
      char host[256] = {};
      gethostname(host, sizeof(host) - 1);
      o.name = StrCat(host, "/", cfg_->admin.listen);
    }
    lease_ = std::make_unique<EtcdLease>(o);
    lease_->Start();
  }
  if (cfg_->pg->enabled) {
    pg_ = std::make_unique<pg::Proxy>(cfg_->pg);
    pg_->set_lease(lease_.get());
    s = pg_->Start();
    if (!s.ok()) return s;
  }
  if (cfg_->vault->enabled) {
    std::function<bool()> leader;
    if (lease_) leader = [l = lease_.get()] { return l->leader(); };
    for (const std::string& note : cfg_->vault->notes) LogWarn("vault: ", note);
    vault_ = std::make_unique<vault::Scheduler>(cfg_->vault, leader);
    s = vault_->Start();
    if (!s.ok()) return s;
  }
  if (cfg_->admin.enabled) {
    // The token and the audit log live in the state directory (0700, whoever made it).
    std::string state = StateDir(*cfg_);
    s = PrepareStateDir(state);
    if (!s.ok()) return s;
    auto token = LoadOrCreateAdminToken(*cfg_, state);
    if (!token.ok()) return token.status();
    if (token->generated) {
      LogInfo("admin API token generated in ", token->path,
              " (send it as Authorization: Bearer <token>; the CLI reads it from there)");
    } else if (!token->path.empty()) {
      LogInfo("admin API token: ", token->path, " (", token->id, ")");
    }
    LogFileConfig audit_cfg = cfg_->admin.audit_log;
    if (audit_cfg.path.empty()) audit_cfg.path = state + "/audit.log";
    auto audit = security::AuditLog::Open(audit_cfg);
    if (!audit.ok()) return audit.status();
    audit_ = std::move(*audit);
    admin_token_ = *token;
    admin::AdminOptions o;
    o.token = token->token;
    o.token_id = token->id;
    o.server_names = cfg_->admin.server_names;
    o.protect_metrics = cfg_->admin.protect_metrics;
    o.audit = audit_.get();
    admin_ = std::make_unique<admin::AdminServer>(&loop_, std::move(o));
    s = admin_->Listen(cfg_->admin.address);
    if (!s.ok()) return s;
    RegisterAdminRoutes();
  }
  RegisterCollectors();
  {
    // bulwark's own samples are labelled with the admin address (what Prometheus would call
    // this target), or the host name without an admin listener.
    std::string instance = "localhost";
    if (admin_) {
      instance = StrCat(cfg_->admin.address.IpString(), ":", admin_->port());
    } else {
      char host[256] = {};
      if (gethostname(host, sizeof(host) - 1) == 0) instance = host;
    }
    observer_ = std::make_unique<observe::Observer>(&loop_, &registry_, instance);
    observer_->Apply(cfg_->observe);
    if (admin_) RegisterObserveRoutes();
    observer_->Start();
  }
  if (cfg_->gateway->redis.enabled) StartBanSync();
  signals_ = std::make_unique<SignalHandler>(this);
  if (signals_->fd() >= 0) {
    s = loop_.Add(signals_->fd(), EPOLLIN, signals_.get());
    if (!s.ok()) return s;
  }
  // Once a second: rotate the access log when it is full; watch a drain.
  tick_.set_callback([this] {
    if (access_log_ != nullptr) access_log_->MaybeRotate();
    if (audit_ != nullptr) audit_->file()->MaybeRotate();
    MaybeRotateLogFiles();
    if (draining_) {
      bool all = pg_ == nullptr || pg_->finished();
      for (auto& w : workers_) all &= w->finished();
      if (all || loop_.now_ms() >= drain_deadline_ms_) {
        if (!all) LogWarn("drain timeout reached; closing the remaining connections");
        loop_.Stop();
        return;
      }
      loop_.ArmTimer(&tick_, 50);
      return;
    }
    loop_.ArmTimer(&tick_, 1000);
  });
  loop_.ArmTimer(&tick_, 1000);
  for (size_t i = 0; i < cfg_->gateway->listeners.size(); ++i) {
    const auto& l = cfg_->gateway->listeners[i];
    LogInfo("listening on ", l.listen_text, " (", l.name, ") with ", n, " workers");
  }
  if (pg_) {
    LogInfo("PostgreSQL proxy on ", cfg_->pg->listen.IpString(), ":", pg_->port(), " (",
            pg::PoolModeName(cfg_->pg->pool_mode), " pooling, ", cfg_->pg->databases.size(),
            cfg_->pg->databases.size() == 1 ? " database)" : " databases)");
  }
  if (admin_) LogInfo("admin API on ", cfg_->admin.address.IpString(), ":", admin_->port());
  return absl::OkStatus();
}

int Server::Run() {
  loop_.Run();
  for (auto& w : workers_) w->Stop();
  for (auto& w : workers_) w->Join();
  if (pg_) {
    pg_->Stop();
    pg_->Join();
  }
  if (vault_) vault_->Stop();  // waits for a running backup to finish
  if (lease_) lease_->Stop();  // gives the lease back: another instance leads at once
  LogInfo("stopped");
  FinishLogFiles();
  return 0;
}

void Server::Shutdown() {
  loop_.Post([this] { BeginDrain(); });
}

void Server::BeginDrain() {
  if (draining_) return;
  draining_ = true;
  drain_deadline_ms_ = loop_.now_ms() + cfg_->drain_timeout_ms;
  for (auto& w : workers_) w->PostDrain();
  if (pg_) pg_->Drain();
  loop_.ArmTimer(&tick_, 10);
}

std::vector<std::string> Server::Reload() {
  ConfigLoad load = source_();
  if (!load.errors.empty()) {
    reloads_failed_.Add(1);
    LogError("reload refused; the running configuration stays:\n", Join(load.errors, "\n"));
    return load.errors;
  }
  std::unique_ptr<Config> next = std::move(load.config);
  std::vector<std::string> warnings;
  if (next->EffectiveWorkers() != cfg_->EffectiveWorkers())
    warnings.push_back("workers: takes effect after a restart");
  if (next->admin.listen != cfg_->admin.listen || next->admin.token != cfg_->admin.token ||
      next->admin.server_names != cfg_->admin.server_names ||
      next->admin.protect_metrics != cfg_->admin.protect_metrics ||
      next->admin.audit_log.path != cfg_->admin.audit_log.path || next->state_dir != cfg_->state_dir) {
    warnings.push_back("admin: takes effect after a restart");
  }
  if (!(next->gateway->redis == cfg_->gateway->redis)) {
    warnings.push_back("redis: takes effect after a restart");
  }
  if (next->cluster.etcd_endpoints != cfg_->cluster.etcd_endpoints ||
      next->cluster.name != cfg_->cluster.name ||
      next->cluster.etcd_key_prefix != cfg_->cluster.etcd_key_prefix ||
      next->cluster.lease_ttl_ms != cfg_->cluster.lease_ttl_ms) {
    warnings.push_back("cluster: takes effect after a restart");
    next->cluster = cfg_->cluster;
  }
  if (next->pg->enabled != cfg_->pg->enabled ||
      (next->pg->enabled && next->pg->listen_text != cfg_->pg->listen_text) ||
      next->pg->client_tls_sslmode != cfg_->pg->client_tls_sslmode) {
    warnings.push_back("pg.enabled/listen/client_tls: take effect after a restart");
    next->pg->enabled = cfg_->pg->enabled;
    next->pg->listen_text = cfg_->pg->listen_text;
    next->pg->listen = cfg_->pg->listen;
    next->pg->client_tls_sslmode = cfg_->pg->client_tls_sslmode;
    next->pg->client_tls = cfg_->pg->client_tls;
  }
  if (next->gateway->access_log.path != cfg_->gateway->access_log.path ||
      next->gateway->access_log.enabled != cfg_->gateway->access_log.enabled) {
    warnings.push_back("access_log.path/enabled: takes effect after a restart");
  }
  // Keep what needs a restart as it is, so the running state and the reported config agree.
  next->workers = cfg_->workers;
  next->admin = cfg_->admin;
  next->gateway->access_log = cfg_->gateway->access_log;
  next->gateway->redis = cfg_->gateway->redis;
  auto snap = gateway::Snapshot::Build(next->gateway, cfg_->EffectiveWorkers(), snapshot_.get(),
                                       &servers_, &zones_, &endpoints_, generation_ + 1,
                                       &cache_zones_);
  if (!snap.ok()) {
    reloads_failed_.Add(1);
    std::string err = StrCat(next->path, ": ", snap.status().message());
    LogError("reload refused; the running configuration stays: ", err);
    return {err};
  }
  ++generation_;
  snapshot_ = *snap;
  cfg_ = std::move(next);
  for (auto& w : workers_) w->PostSnapshot(snapshot_);
  health_->Update(*snapshot_);
  servers_.Prune();
  zones_.Prune();
  cache_zones_.Prune();
  bans_->set_max_entries(cfg_->gateway->bans.max_entries);
  if (pg_) pg_->Reload(cfg_->pg);
  if (vault_) vault_->Update(cfg_->vault);
  if (observer_) {
    observer_->Apply(cfg_->observe);
    if (cfg_->observe->enabled) {
      observer_->Start();
    } else {
      observer_->Stop();
    }
  }
  reloads_ok_.Add(1);
  for (const auto& w : warnings) LogWarn("reload: ", w);
  LogInfo("configuration reloaded (generation ", generation_, ")");
  return {};
}

namespace {
// Every shared ban with its remaining time, in one round trip: {value, pttl, value, pttl, ...}.
const char kLoadBansScript[] = R"lua(
local out = {}
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    local v = redis.call('GET', k)
    local t = redis.call('PTTL', k)
    if v and t > 0 then
      table.insert(out, v)
      table.insert(out, t)
    end
  end
until cursor == '0'
return out
)lua";
}  // namespace

void Server::StartBanSync() {
  const gateway::RedisConfig& rc = cfg_->gateway->redis;
  RedisOptions o;
  o.address = rc.address;
  o.password = rc.password;
  o.db = rc.db;
  o.connect_timeout_ms = rc.connect_timeout_ms;
  o.command_timeout_ms = std::max<int64_t>(rc.timeout_ms, 2000);  // loading may take a moment
  redis_cmd_ = std::make_unique<RedisClient>(&loop_, o, "redis (control)");
  redis_sub_ = std::make_unique<RedisClient>(&loop_, o, "redis (ban subscriber)");
  redis_sub_->SetPushHandler([this](std::string_view channel, std::string_view payload) {
    if (channel == gateway::HttpCacheChannel(cfg_->gateway->redis.key_prefix)) {
      OnCachePurgeMessage(payload);
    } else {
      OnBanMessage(payload, -1);
    }
  });
  redis_sub_->SetOnReady([this] {
    redis_sub_->Command({"SUBSCRIBE", gateway::BanChannel(cfg_->gateway->redis.key_prefix),
                         gateway::HttpCacheChannel(cfg_->gateway->redis.key_prefix)},
                        [](const RedisReply&) {});
    LoadSharedBans();  // what was banned while this instance was away
  });
  // Purges announced while the subscription was down are lost: zones with a shared level drop
  // their in-memory copies (they refill from Redis).
  redis_sub_->SetOnDown([this] {
    for (const auto& z : snapshot_->cache_zones) {
      if (z->config().redis) z->ForEachL1([](cache::L1Cache& l) { return l.Clear(); });
    }
  });
  redis_cmd_->SetOnReady([this] { LoadSharedBans(); });
  redis_cmd_->Start();
  redis_sub_->Start();
}

size_t Server::PurgeLocal(const std::string& zone, const std::string& op, const std::string& arg) {
  size_t purged = 0;
  for (const auto& z : snapshot_->cache_zones) {
    if (!zone.empty() && z->config().name != zone) continue;
    size_t n = 0;
    n = z->ForEachL1([&](cache::L1Cache& l) -> size_t {
      if (op == "key") return l.Erase(arg) ? 1 : 0;
      if (op == "prefix") return l.ErasePrefix(arg);
      if (op == "tag") return l.EraseTag(arg);
      if (op == "pattern") return l.ErasePattern(arg);
      if (op == "all") return l.Clear();
      return 0;
    });
    z->purged.fetch_add(n, std::memory_order_relaxed);
    purged += n;
  }
  return purged;
}

void Server::PurgeShared(const std::string& zone, const std::string& op, const std::string& arg) {
  if (redis_cmd_ == nullptr || !redis_cmd_->connected()) return;
  const std::string& prefix = cfg_->gateway->redis.key_prefix;
  // The other instances hear of the purge only once Redis no longer holds the entries, or they
  // could copy them straight back from Redis.
  std::string msg =
      nlohmann::json{{"from", instance_id_}, {"zone", zone}, {"op", op}, {"arg", arg}}.dump();
  auto pending = std::make_shared<int>(1);
  auto publish = [this, pending, msg, channel = gateway::HttpCacheChannel(prefix)] {
    if (--*pending > 0 || redis_cmd_ == nullptr) return;
    redis_cmd_->Command({"PUBLISH", channel, msg}, [](const RedisReply&) {});
  };
  for (const auto& z : snapshot_->cache_zones) {
    if ((!zone.empty() && z->config().name != zone) || !z->config().redis) continue;
    const std::string& name = z->config().name;
    std::string kp = cache::GlobEscape(gateway::HttpCacheRedisKey(prefix, name, ""));
    gateway::HttpCacheZone* zp = z.get();
    ++*pending;
    if (op == "key") {
      redis_cmd_->Command({"DEL", gateway::HttpCacheRedisKey(prefix, name, arg)},
                          [zp, publish](const RedisReply& r) {
                            if (r.type == RedisReply::Type::kInteger)
                              zp->l2_purged.fetch_add(static_cast<uint64_t>(r.integer));
                            publish();
                          });
    } else if (op == "tag") {
      std::string tk = gateway::HttpCacheRedisTagKey(prefix, name, arg);
      redis_cmd_->Command({"SMEMBERS", tk}, [this, tk, zp, publish](const RedisReply& r) {
        if (r.type != RedisReply::Type::kArray || redis_cmd_ == nullptr) {
          publish();
          return;
        }
        std::vector<std::string_view> del = {"DEL", tk};
        for (const RedisReply& e : r.elements) del.push_back(e.str);
        redis_cmd_->Command(del, [zp, publish](const RedisReply& d) {
          if (d.type == RedisReply::Type::kInteger && d.integer > 0)
            zp->l2_purged.fetch_add(static_cast<uint64_t>(d.integer - 1));
          publish();
        });
      });
    } else if (op == "prefix") {
      ScanDelete(kp + cache::GlobEscape(arg) + "*", "0", publish);
    } else if (op == "pattern") {
      ScanDelete(kp + arg, "0", publish);
    } else {
      ScanDelete(kp + "*", "0", publish);
    }
  }
  publish();
}

void Server::ScanDelete(std::string match, std::string cursor, std::function<void()> done) {
  if (redis_cmd_ == nullptr || !redis_cmd_->connected()) {
    done();
    return;
  }
  redis_cmd_->Command({"SCAN", cursor, "MATCH", match, "COUNT", "1000"},
                      [this, match, done](const RedisReply& r) {
                        if (r.type != RedisReply::Type::kArray || r.elements.size() != 2) {
                          done();
                          return;
                        }
                        if (!r.elements[1].elements.empty() && redis_cmd_ != nullptr) {
                          std::vector<std::string_view> del = {"DEL"};
                          for (const RedisReply& e : r.elements[1].elements) del.push_back(e.str);
                          redis_cmd_->Command(del, [](const RedisReply&) {});
                        }
                        if (r.elements[0].str != "0") {
                          ScanDelete(match, r.elements[0].str, done);
                        } else {
                          done();  // the DELs before it are answered first (one connection)
                        }
                      });
}

void Server::OnCachePurgeMessage(std::string_view payload) {
  auto j = nlohmann::json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return;
  if (j.value("from", std::string()) == instance_id_) return;  // applied when it was made
  PurgeLocal(j.value("zone", std::string()), j.value("op", std::string()),
             j.value("arg", std::string()));
}

void Server::LoadSharedBans() {
  if (redis_cmd_ == nullptr || !redis_cmd_->connected()) return;
  static const std::string sha = RedisClient::ScriptSha1(kLoadBansScript);
  std::string pattern = gateway::BanRedisKey(cfg_->gateway->redis.key_prefix, "*");
  redis_cmd_->Eval(kLoadBansScript, sha, {}, {pattern}, [this](const RedisReply& r) {
    if (r.type != RedisReply::Type::kArray) return;
    for (size_t i = 0; i + 1 < r.elements.size(); i += 2)
      OnBanMessage(r.elements[i].str, r.elements[i + 1].integer);
  });
}

void Server::OnBanMessage(std::string_view payload, int64_t ttl_ms) {
  auto j = nlohmann::json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return;
  std::string from = j.value("from", std::string());
  std::string op = j.value("op", std::string());
  std::string key = j.value("key", std::string());
  if (key.empty()) return;
  if (op == "lift") {
    if (from != instance_id_ && bans_->Lift(key))
      LogWarn("security event: ban on ", key, " lifted by another instance");
    return;
  }
  if (op != "ban") return;
  int64_t ms = ttl_ms > 0 ? ttl_ms : j.value("ms", int64_t{0});
  if (ms <= 0) return;
  if (from == instance_id_ && ttl_ms < 0) return;  // our own announcement
  std::string rule = j.value("rule", std::string("shared"));
  std::string reason = j.value("reason", std::string());
  if (bans_->Ban(key, rule, reason, MonotonicMs(), ms, /*remote=*/true)) {
    LogWarn("security event: banned ", key, " for ", FormatDurationMs(ms), " (shared: ", rule, ": ",
            reason, ")");
  }
}

void Server::PublishBan(std::string_view op, const std::string& key, std::string_view reason,
                        int64_t ms) {
  if (redis_cmd_ == nullptr || !redis_cmd_->connected()) return;
  const std::string& prefix = cfg_->gateway->redis.key_prefix;
  std::string msg = gateway::BanMessage(op, key, "admin", reason, ms, instance_id_);
  std::string rkey = gateway::BanRedisKey(prefix, key);
  if (op == "ban") {
    redis_cmd_->Command({"SET", rkey, msg, "PX", StrCat(ms)}, [](const RedisReply&) {});
  } else {
    redis_cmd_->Command({"DEL", rkey}, [](const RedisReply&) {});
  }
  redis_cmd_->Command({"PUBLISH", gateway::BanChannel(prefix), msg}, [](const RedisReply&) {});
}

bool Server::Ready(std::string* why) {
  if (draining_) {
    *why = "draining";
    return false;
  }
  int64_t now = MonotonicMs();
  for (int ui : snapshot_->routed_upstreams) {
    const auto& ur = snapshot_->upstreams[ui];
    bool any = false;
    for (size_t i = 0; i < ur.servers.size(); ++i) {
      const auto& sc = ur.cfg->servers[i];
      if (!sc.down && ur.servers[i]->Usable(now, sc.max_fails, sc.fail_timeout_ms) &&
          ur.servers[i]->ResilienceAllows(now, INT32_MAX))
        any = true;
    }
    if (!any) {
      *why = StrCat("upstream ", ur.cfg->name, " has no healthy server");
      return false;
    }
  }
  return true;
}

std::string Server::UpstreamsJson() {
  nlohmann::json out = nlohmann::json::array();
  int64_t now = MonotonicMs();
  for (const auto& ur : snapshot_->upstreams) {
    nlohmann::json u;
    u["name"] = ur.cfg->name;
    nlohmann::json servers = nlohmann::json::array();
    for (size_t i = 0; i < ur.servers.size(); ++i) {
      const auto& s = *ur.servers[i];
      const auto& sc = ur.cfg->servers[i];
      uint64_t requests = 0, failures = 0;
      for (const auto& w : workers_) {
        requests += w->server_counters(s.id()).requests.Get();
        failures += w->server_counters(s.id()).failures.Get();
      }
      nlohmann::json j;
      j["address"] = s.address_text();
      j["state"] = sc.down ? "down" : s.StateName(now, sc.max_fails, sc.fail_timeout_ms);
      j["health_score"] = sc.down ? 0 : s.Score(now, sc.max_fails, sc.fail_timeout_ms);
      j["active_connections"] = s.active_count();
      j["fails"] = s.fails();
      j["weight"] = sc.weight;
      j["backup"] = sc.backup;
      j["drained"] = s.drained();
      j["requests"] = requests;
      j["failures"] = failures;
      if (s.has_active_check()) {
        j["check"] = {{"health", s.check_health()},
                      {"max", s.check_health_max()},
                      {"last_status", s.last_check_status()},
                      {"failed_total", s.checks_failed()}};
      }
      servers.push_back(std::move(j));
    }
    u["servers"] = std::move(servers);
    out.push_back(std::move(u));
  }
  return nlohmann::json{{"generation", generation_}, {"upstreams", out}}.dump();
}

namespace {
// A query-string parameter, decoded (+ and %XX); nullopt when absent.
std::optional<std::string> QueryParam(const std::string& query, std::string_view name) {
  for (const std::string& kv : Split(query, '&', true)) {
    size_t eq = kv.find('=');
    std::string k = kv.substr(0, eq);
    if (k != name) continue;
    std::string v = eq == std::string::npos ? "" : kv.substr(eq + 1), out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '+') {
        out.push_back(' ');
      } else if (v[i] == '%' && i + 2 < v.size()) {
        out.push_back(static_cast<char>(std::strtol(v.substr(i + 1, 2).c_str(), nullptr, 16)));
        i += 2;
      } else {
        out.push_back(v[i]);
      }
    }
    return out;
  }
  return std::nullopt;
}
}  // namespace

void Server::RegisterAdminRoutes() {
  using admin::AdminRequest;
  using admin::AdminResponse;
  admin_->Route("GET", "/health", [](const AdminRequest&) { return admin::Text(200, "ok\n"); });
  for (const char* path : {"/", "/dashboard"}) {
    admin_->Route("GET", path, [](const AdminRequest&) {
      admin::AdminResponse r;
      r.content_type = "text/html; charset=utf-8";
      r.body = std::string(admin::DashboardHtml());
      r.extra_headers = StrCat("Content-Security-Policy: ", admin::DashboardCsp(), "\r\n");
      return r;
    });
  }
  admin_->Route("GET", "/ready", [this](const AdminRequest&) {
    std::string why;
    if (Ready(&why)) return admin::Text(200, "ready\n");
    return admin::Text(503, StrCat("not ready: ", why, "\n"));
  });
  if (cfg_->metrics_enabled) {
    admin_->Route("GET", "/metrics", [this](const AdminRequest&) {
      return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8", registry_.Render(), ""};
    });
  }
  admin_->Route("GET", "/api/v1/pg", [this](const AdminRequest&) {
    if (!pg_) return admin::Json(404, R"({"error":"no pg: block in the configuration"})");
    return admin::Json(200, pg_->StatusJson());
  });
  admin_->Route("GET", "/api/v1/cluster", [this](const AdminRequest&) {
    nlohmann::json j;
    j["etcd"] = lease_ != nullptr;
    if (lease_) {
      j["name"] = lease_->options().name;
      j["key"] = lease_->options().key;
      j["leader"] = lease_->leader();
      j["holder"] = lease_->holder();
    }
    return admin::Json(200, j.dump());
  });
  // Every vault route answers the same when there is no vault: block.
  auto no_vault = [] {
    return admin::Json(404, R"({"error":"no vault: block in the configuration"})");
  };
  admin_->Route("GET", "/api/v1/backups", [this, no_vault](const AdminRequest& r) {
    if (!vault_) return no_vault();
    return admin::Json(200, vault_->ListJson(QueryParam(r.query, "plan").value_or("")));
  });
  admin_->Route("POST", "/api/v1/backups/run", [this, no_vault](const AdminRequest& r) {
    if (!vault_) return no_vault();
    auto plan = QueryParam(r.query, "plan");
    if (!plan || !vault_->RunNow(*plan)) {
      return admin::Json(400, R"({"error":"?plan= names no plan under vault.plans"})");
    }
    return admin::Json(202, nlohmann::json{{"queued", *plan}}.dump());
  });
  admin_->Route("GET", "/api/v1/backups/{id}", [this, no_vault](const AdminRequest& r) {
    if (!vault_) return no_vault();
    int64_t id = 0;
    std::string j = absl::SimpleAtoi(r.params[0], &id) ? vault_->GetJson(id) : "";
    if (j.empty()) return admin::Json(404, R"({"error":"no such backup in the catalog"})");
    return admin::Json(200, j);
  });
  admin_->Route("GET", "/api/v1/drills", [this, no_vault](const AdminRequest& r) {
    if (!vault_) return no_vault();
    return admin::Json(200,
                       vault_->ReportsJson("drill", QueryParam(r.query, "drill").value_or("")));
  });
  admin_->Route("POST", "/api/v1/drills/run", [this, no_vault](const AdminRequest& r) {
    if (!vault_) return no_vault();
    auto drill = QueryParam(r.query, "drill");
    if (!drill || !vault_->RunDrill(*drill)) {
      return admin::Json(400, R"({"error":"?drill= names no drill under vault.drills"})");
    }
    return admin::Json(202, nlohmann::json{{"queued", *drill}}.dump());
  });
  admin_->Route("GET", "/api/v1/restores", [this, no_vault](const AdminRequest&) {
    if (!vault_) return no_vault();
    return admin::Json(200, vault_->ReportsJson("restore", ""));
  });
  admin_->Route("GET", "/api/v1/recovery", [this, no_vault](const AdminRequest& r) {
    if (!vault_) return no_vault();
    return admin::Json(200, vault_->ReportsJson("plan", QueryParam(r.query, "plan").value_or("")));
  });
  admin_->Route("POST", "/api/v1/pg/readd", [this](const AdminRequest& r) {
    if (!pg_) return admin::Json(404, R"({"error":"no pg: block in the configuration"})");
    auto server = QueryParam(r.query, "server");
    if (!server || !pg_->Readd(*server)) {
      return admin::Json(404, R"({"error":"no such server; use ?server=<address as configured>"})");
    }
    return admin::Json(200, R"({"readded":true})");
  });
  admin_->Route("GET", "/api/v1/upstreams",
                [this](const AdminRequest&) { return admin::Json(200, UpstreamsJson()); });
  auto set_drain = [this](const AdminRequest& r, bool drained) {
    for (const auto& ur : snapshot_->upstreams) {
      if (ur.cfg->name != r.params[0]) continue;
      for (const auto& s : ur.servers) {
        if (s->address_text() == r.params[1]) {
          s->SetDrained(drained);
          LogInfo("admin: ", drained ? "drained " : "enabled ", ur.cfg->name, " ",
                  s->address_text());
          nlohmann::json j{
              {"upstream", ur.cfg->name}, {"server", s->address_text()}, {"drained", drained}};
          return admin::Json(200, j.dump());
        }
      }
      return admin::Json(404, nlohmann::json{{"error", "no such server in upstream"}}.dump());
    }
    return admin::Json(404, nlohmann::json{{"error", "no such upstream"}}.dump());
  };
  admin_->Route("POST", "/api/v1/upstreams/{name}/servers/{addr}/drain",
                [set_drain](const AdminRequest& r) { return set_drain(r, true); });
  admin_->Route("POST", "/api/v1/upstreams/{name}/servers/{addr}/enable",
                [set_drain](const AdminRequest& r) { return set_drain(r, false); });
  admin_->Route("GET", "/api/v1/bans", [this](const AdminRequest&) {
    int64_t now = MonotonicMs();
    int64_t wall_ms = WallMicros() / 1000;
    nlohmann::json list = nlohmann::json::array();
    for (const auto& b : bans_->List(now)) {
      list.push_back({{"key", b.key},
                      {"rule", b.rule},
                      {"reason", b.reason},
                      {"banned_at_unix_ms", wall_ms - (now - b.banned_at_ms)},
                      {"expires_at_unix_ms", wall_ms + (b.expires_at_ms - now)},
                      {"remaining_seconds", (b.expires_at_ms - now + 999) / 1000}});
    }
    return admin::Json(200, nlohmann::json{{"bans", list}}.dump());
  });
  admin_->Route("POST", "/api/v1/bans", [this](const AdminRequest& r) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("key") || !j["key"].is_string() ||
        j["key"].get<std::string>().empty()) {
      return admin::Json(400, nlohmann::json{{"error",
                                              "expected {\"key\": \"1.2.3.4\", "
                                              "\"duration\": \"1h\"}"}}
                                  .dump());
    }
    int64_t ms = 3600 * 1000;
    if (j.contains("duration")) {
      auto d = j["duration"].is_string() ? ParseDurationMs(j["duration"].get<std::string>())
                                         : absl::StatusOr<int64_t>(absl::InvalidArgumentError(
                                               "duration must be a string such as \"30m\""));
      if (!d.ok() || *d <= 0)
        return admin::Json(400,
                           nlohmann::json{{"error", "duration: expected e.g. \"30m\""}}.dump());
      ms = *d;
    }
    std::string key = j["key"].get<std::string>();
    std::string reason = j.value("reason", std::string("banned by an operator"));
    bans_->Ban(key, "admin", reason, MonotonicMs(), ms);
    PublishBan("ban", key, reason, ms);
    LogWarn("security event: banned ", key, " for ", FormatDurationMs(ms), " (admin: ", reason,
            ")");
    return admin::Json(200, nlohmann::json{{"banned", key}, {"seconds", ms / 1000}}.dump());
  });
  admin_->Route("DELETE", "/api/v1/bans/{key}", [this](const AdminRequest& r) {
    bool lifted = bans_->Lift(r.params[0]);
    // Other instances may hold the ban even if this one does not.
    PublishBan("lift", r.params[0], "", 0);
    if (!lifted) return admin::Json(404, nlohmann::json{{"error", "no such ban"}}.dump());
    LogWarn("security event: ban on ", r.params[0], " lifted by an operator");
    return admin::Json(200, nlohmann::json{{"lifted", r.params[0]}}.dump());
  });
  admin_->Route("GET", "/api/v1/cache", [this](const AdminRequest&) {
    nlohmann::json zones = nlohmann::json::array();
    for (const auto& z : snapshot_->cache_zones) {
      auto st = z->Stats();
      zones.push_back({{"zone", z->config().name},
                       {"policy", cache::EvictionPolicyName(z->config().policy)},
                       {"max_bytes", z->config().max_bytes},
                       {"entries", st.entries},
                       {"bytes", st.bytes},
                       {"hits", z->hits.load()},
                       {"misses", z->misses.load()},
                       {"stale", z->stale.load()},
                       {"coalesced", z->coalesced.load()},
                       {"stored", z->stored.load()},
                       {"evictions", st.evictions + st.rejected}});
    }
    return admin::Json(200, nlohmann::json{{"zones", zones}}.dump());
  });
  // Purge: {"zone": "main" (default: every zone), and one of "key", "prefix", "tag",
  // "pattern" (a Redis glob), or "all": true}.
  admin_->Route("POST", "/api/v1/cache/purge", [this](const AdminRequest& r) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    auto bad = [] {
      return admin::Json(400, nlohmann::json{{"error",
                                              "expected {\"key\"|\"prefix\"|\"tag\"|\"pattern\": "
                                              "\"...\"} or {\"all\": true}, and optionally "
                                              "\"zone\""}}
                                  .dump());
    };
    if (j.is_discarded() || !j.is_object()) return bad();
    std::string zone = j.value("zone", std::string());
    int given = 0;
    for (const char* k : {"key", "prefix", "tag", "pattern"}) {
      if (j.contains(k)) {
        if (!j[k].is_string() || j[k].get<std::string>().empty()) return bad();
        ++given;
      }
    }
    bool all = j.value("all", false);
    if (given + (all ? 1 : 0) != 1) return bad();
    std::string op = all ? "all" : "";
    std::string arg;
    for (const char* k : {"key", "prefix", "tag", "pattern"}) {
      if (j.contains(k)) {
        op = k;
        arg = j[k].get<std::string>();
      }
    }
    bool found = zone.empty();
    for (const auto& z : snapshot_->cache_zones) found |= z->config().name == zone;
    if (!found) return admin::Json(404, nlohmann::json{{"error", "no such cache zone"}}.dump());
    size_t purged = PurgeLocal(zone, op, arg);
    PurgeShared(zone, op, arg);
    LogInfo("cache purge: ", r.body, " removed ", purged, " entries here");
    return admin::Json(200, nlohmann::json{{"purged", purged}}.dump());
  });
  admin_->Route("GET", "/api/v1/limits", [this](const AdminRequest&) {
    nlohmann::json zones = nlohmann::json::array();
    for (size_t i = 0; i < snapshot_->zones.size(); ++i) {
      const auto& z = *snapshot_->zones[i];
      auto counts = z.Counts();
      nlohmann::json c;
      for (int k = 0; k < gateway::kLimitResults; ++k)
        c[gateway::LimitResultName(static_cast<gateway::LimitResult>(k))] = counts[k];
      zones.push_back({{"zone", z.name()},
                       {"key", z.key_text()},
                       {"rate_per_second", static_cast<double>(z.rate_milli()) / 1000.0},
                       {"keys", z.Keys()},
                       {"capacity", z.capacity()},
                       {"evictions", z.Evictions()},
                       {"requests", c}});
    }
    return admin::Json(200, nlohmann::json{{"zones", zones}}.dump());
  });
  admin_->Route("POST", "/api/v1/reload", [this](const AdminRequest&) {
    std::vector<std::string> errors = Reload();
    if (!errors.empty())
      return admin::Json(400, nlohmann::json{{"reloaded", false}, {"errors", errors}}.dump());
    return admin::Json(200, nlohmann::json{{"reloaded", true}, {"generation", generation_}}.dump());
  });
}

void Server::RegisterObserveRoutes() {
  using admin::AdminRequest;
  // Prometheus's and Alertmanager's own API paths, so their tools and dashboards work here.
  admin_->Route("GET", "/api/v1/rules",
                [this](const AdminRequest&) { return admin::Json(200, observer_->RulesJson()); });
  // Queries run on query threads (observe/query_service.h): this thread, which also runs health
  // checks and the rest of the admin API, only hands them over and writes the answer.
  auto submit = [this](bool range) {
    return [this, range](const AdminRequest& r, admin::Responder respond) {
      observe::QueryRequest q;
      q.range = range;
      q.query = QueryParam(r.query, "query").value_or("");
      q.time = QueryParam(r.query, "time").value_or("");
      q.start = QueryParam(r.query, "start").value_or("");
      q.end = QueryParam(r.query, "end").value_or("");
      q.step = QueryParam(r.query, "step").value_or("");
      observer_->SubmitQuery(std::move(q), [respond](observe::QueryAnswer a) {
        respond(admin::Json(a.status, a.body));
      });
    };
  };
  auto query_wait = [this] { return observer_->query_timeout_ms() + 5000; };
  admin_->RouteAsync("GET", "/api/v1/query", submit(false), query_wait);
  admin_->RouteAsync("GET", "/api/v1/query_range", submit(true), query_wait);
  admin_->Route("GET", "/api/v1/observe/status",
                [this](const AdminRequest&) { return admin::Json(200, observer_->StatusJson()); });
  admin_->Route("GET", "/api/v2/alerts", [this](const AdminRequest&) {
    return admin::Json(200, observer_->AlertsV2Json());
  });
  admin_->Route("POST", "/api/v2/alerts", [this](const AdminRequest& r) {
    std::string error = observer_->PostAlerts(r.body);
    if (!error.empty()) return admin::Json(400, nlohmann::json(error).dump());
    return admin::Json(200, "");
  });
  admin_->Route("GET", "/api/v2/silences", [this](const AdminRequest&) {
    return admin::Json(200, observer_->SilencesJson());
  });
  admin_->Route("POST", "/api/v2/silences", [this](const AdminRequest& r) {
    std::string error;
    std::string id = observer_->PostSilence(r.body, &error);
    if (!error.empty()) return admin::Json(400, nlohmann::json(error).dump());
    return admin::Json(200, nlohmann::json{{"silenceID", id}}.dump());
  });
  admin_->Route("DELETE", "/api/v2/silence/{id}", [this](const AdminRequest& r) {
    if (!observer_->ExpireSilence(r.params[0])) {
      return admin::Json(
          404,
          nlohmann::json(StrCat("silence ", r.params[0], " not found or already expired")).dump());
    }
    return admin::Json(200, "");
  });
}

void Server::RegisterCollectors() {
  registry_.AddCollector([this](std::string* out) { CollectGateway(out); });
  registry_.AddCollector([this](std::string* out) {
    if (pg_) pg_->CollectMetrics(out);
    if (vault_) vault_->CollectMetrics(out);
    if (lease_) {
      observe::AppendHeader(out, "bulwark_cluster_leader", "gauge",
                            "1 while this instance holds the etcd lease (and does the work that "
                            "must happen once).");
      StrAppend(out, "bulwark_cluster_leader ", lease_->leader() ? 1 : 0, "\n");
    }
  });
}

void Server::CollectGateway(std::string* out) {
  // name{label="value"} v, and a metric with one unlabelled sample.
  auto sample = [out](std::string_view name, std::string_view label, std::string_view value,
                      auto v) {
    StrAppend(out, name, "{", label, "=\"");
    observe::AppendLabelValue(out, value);
    StrAppend(out, "\"} ", v, "\n");
  };
  auto single = [out](std::string_view name, std::string_view type, std::string_view help, auto v) {
    observe::AppendHeader(out, name, type, help);
    StrAppend(out, name, " ", v, "\n");
  };
  std::vector<const observe::HttpShard*> shards;
  for (const auto& w : workers_) shards.push_back(&w->http_shard());
  std::vector<std::string_view> methods;
  for (int m = 0; m < http::kMethodCount; ++m)
    methods.push_back(http::MethodName(static_cast<http::Method>(m)));
  observe::RenderHttpShards(shards, endpoints_, methods, out);

  int64_t now = MonotonicMs();
  struct Row {
    std::string labels;
    const gateway::ServerState* s;
    const gateway::ServerConfig* sc;
  };
  std::vector<Row> rows;
  for (const auto& ur : snapshot_->upstreams) {
    for (size_t i = 0; i < ur.servers.size(); ++i) {
      std::string l = "upstream=\"";
      observe::AppendLabelValue(&l, ur.cfg->name);
      l.append("\",server=\"");
      observe::AppendLabelValue(&l, ur.servers[i]->address_text());
      l.append("\"");
      rows.push_back({l, ur.servers[i].get(), &ur.cfg->servers[i]});
    }
  }
  auto gauge = [&](const char* name, const char* help, auto value) {
    observe::AppendHeader(out, name, "gauge", help);
    for (const auto& r : rows) StrAppend(out, name, "{", r.labels, "} ", value(r), "\n");
  };
  auto counter = [&](const char* name, const char* help, auto field) {
    observe::AppendHeader(out, name, "counter", help);
    for (const auto& r : rows) {
      uint64_t sum = 0;
      for (const auto& w : workers_) sum += field(w->server_counters(r.s->id()));
      StrAppend(out, name, "{", r.labels, "} ", sum, "\n");
    }
  };
  gauge("bulwark_upstream_up",
        "1 when the server takes new requests (not down, failed or drained).", [&](const Row& r) {
          return !r.sc->down && r.s->Usable(now, r.sc->max_fails, r.sc->fail_timeout_ms) &&
                         r.s->ResilienceAllows(now, INT32_MAX)
                     ? 1
                     : 0;
        });
  observe::AppendHeader(out, "bulwark_upstream_state", "gauge",
                        "The server's state: one series per state, 1 for the current one.");
  for (const auto& r : rows) {
    std::string_view cur =
        r.sc->down ? "down" : r.s->StateName(now, r.sc->max_fails, r.sc->fail_timeout_ms);
    for (const char* st : {"up", "down", "failed", "drained", "open", "ejected"}) {
      StrAppend(out, "bulwark_upstream_state{", r.labels, ",state=\"", st, "\"} ",
                cur == st ? 1 : 0, "\n");
    }
  }
  gauge("bulwark_upstream_health_score",
        "Health score 0-100 (active-check health times passive headroom).", [&](const Row& r) {
          return r.sc->down ? 0 : r.s->Score(now, r.sc->max_fails, r.sc->fail_timeout_ms);
        });
  gauge("bulwark_upstream_active_connections", "Requests in flight to the server.",
        [&](const Row& r) { return r.s->active_count(); });
  gauge("bulwark_upstream_fails", "Current nginx-style failure count (max_fails window).",
        [&](const Row& r) { return r.s->fails(); });
  counter("bulwark_upstream_requests_total", "Attempts sent to the server (retries included).",
          [](const gateway::ServerCounters& c) { return c.requests.Get(); });
  counter("bulwark_upstream_failures_total",
          "Attempts that failed (connect, send, read, timeout, bad response).",
          [](const gateway::ServerCounters& c) { return c.failures.Get(); });
  counter("bulwark_upstream_retries_total",
          "Attempts that were retries of a request another server failed.",
          [](const gateway::ServerCounters& c) { return c.retries.Get(); });
  observe::AppendHeader(out, "bulwark_upstream_circuit_breaker_state", "gauge",
                        "The server's circuit breaker: one series per state, 1 for the current.");
  for (const auto& r : rows) {
    int st = static_cast<int>(r.s->breaker_state(now));
    const char* names[] = {"closed", "open", "half_open"};
    for (int i = 0; i < 3; ++i) {
      StrAppend(out, "bulwark_upstream_circuit_breaker_state{", r.labels, ",state=\"", names[i],
                "\"} ", st == i ? 1 : 0, "\n");
    }
  }
  observe::AppendHeader(out, "bulwark_upstream_circuit_breaker_opens_total", "counter",
                        "Times the server's circuit breaker opened.");
  for (const auto& r : rows)
    StrAppend(out, "bulwark_upstream_circuit_breaker_opens_total{", r.labels, "} ",
              r.s->breaker_opens(), "\n");
  observe::AppendHeader(out, "bulwark_upstream_ejected", "gauge",
                        "1 while outlier detection has ejected the server.");
  for (const auto& r : rows)
    StrAppend(out, "bulwark_upstream_ejected{", r.labels, "} ", r.s->ejected(now) ? 1 : 0, "\n");
  observe::AppendHeader(out, "bulwark_upstream_ejections_total", "counter",
                        "Times outlier detection ejected the server.");
  for (const auto& r : rows)
    StrAppend(out, "bulwark_upstream_ejections_total{", r.labels, "} ", r.s->ejections(), "\n");
  observe::AppendHeader(out, "bulwark_upstream_health_checks_failed_total", "counter",
                        "Active health checks that failed.");
  for (const auto& r : rows)
    StrAppend(out, "bulwark_upstream_health_checks_failed_total{", r.labels, "} ",
              r.s->checks_failed(), "\n");

  auto worker_sum = [&](const char* name, const char* type, const char* help, auto field) {
    observe::AppendHeader(out, name, type, help);
    uint64_t sum = 0;
    for (const auto& w : workers_) sum += field(w->stats());
    StrAppend(out, name, " ", sum, "\n");
  };
  worker_sum("bulwark_connections_accepted_total", "counter", "Client connections accepted.",
             [](const gateway::WorkerStats& s) { return s.accepted.Get(); });
  worker_sum(
      "bulwark_client_connections", "gauge", "Open client connections.",
      [](const gateway::WorkerStats& s) { return static_cast<uint64_t>(s.open_clients.load()); });
  worker_sum(
      "bulwark_upstream_connections", "gauge", "Open upstream connections (active and idle).",
      [](const gateway::WorkerStats& s) { return static_cast<uint64_t>(s.open_upstreams.load()); });
  worker_sum("bulwark_http_parse_errors_total", "counter",
             "Requests refused as malformed (400, 413, 414, 431, 501, 505).",
             [](const gateway::WorkerStats& s) { return s.parse_errors.Get(); });
  worker_sum("bulwark_http_timeouts_total", "counter", "Client or upstream timeouts.",
             [](const gateway::WorkerStats& s) { return s.timeouts.Get(); });
  worker_sum("bulwark_no_live_upstream_total", "counter",
             "Requests answered 503 because no server was usable.",
             [](const gateway::WorkerStats& s) { return s.no_upstream.Get(); });
  worker_sum("bulwark_client_aborts_total", "counter",
             "Requests the client abandoned before the response ended (499).",
             [](const gateway::WorkerStats& s) { return s.client_aborts.Get(); });
  {
    observe::AppendHeader(out, "bulwark_http_connections_limited_total", "counter",
                          "Times a worker stopped accepting: it held http.max_connections "
                          "clients, or the gateway's share of descriptors was in use.");
    uint64_t cap = 0, fds = 0;
    for (const auto& w : workers_) {
      cap += w->stats().limited_max_connections.Get();
      fds += w->stats().limited_descriptors.Get();
    }
    StrAppend(out, "bulwark_http_connections_limited_total{reason=\"max_connections\"} ", cap,
              "\nbulwark_http_connections_limited_total{reason=\"descriptors\"} ", fds, "\n");
  }
  {
    // From the snapshot this thread owns (a worker's own view is its thread's).
    int configured = snapshot_->config->http.max_connections;
    observe::AppendHeader(out, "bulwark_http_max_connections", "gauge",
                          "Client connections one worker holds at most (http.max_connections).");
    StrAppend(out, "bulwark_http_max_connections ",
              configured > 0 ? configured : auto_max_connections_, "\n");
  }
  observe::AppendHeader(out, "bulwark_gateway_descriptors", "gauge",
                        "Descriptors the gateway's client and upstream connections hold.");
  StrAppend(out, "bulwark_gateway_descriptors ", descriptors_.used.load(), "\n");
  observe::AppendHeader(out, "bulwark_gateway_descriptors_limit", "gauge",
                        "Descriptors the gateway may hold: the open files limit less the "
                        "reserve and what the process held at start.");
  StrAppend(out, "bulwark_gateway_descriptors_limit ", descriptors_.limit, "\n");
  worker_sum("bulwark_accept_errors_total", "counter",
             "accept() failures other than EAGAIN (EMFILE, ENFILE, ENOMEM...).",
             [](const gateway::WorkerStats& s) { return s.accept_errors.Get(); });
  if (audit_ != nullptr) {
    observe::AppendHeader(out, "bulwark_admin_audit_events_total", "counter",
                          "Admin API mutations written to the audit log, by result (ok, error, "
                          "denied: no or a wrong token, a refused Host or Origin).");
    for (int r = 0; r < security::AuditLog::kResults; ++r) {
      StrAppend(out, "bulwark_admin_audit_events_total{result=\"", security::AuditLog::ResultName(r),
                "\"} ", audit_->count(r), "\n");
    }
    single("bulwark_admin_audit_log_write_errors_total", "counter",
           "Audit log writes that failed.", audit_->file()->write_errors());
  }
  observe::AppendHeader(out, "bulwark_config_reloads_total", "counter",
                        "Configuration reloads by result.");
  StrAppend(out, "bulwark_config_reloads_total{result=\"success\"} ", reloads_ok_.Get(), "\n");
  StrAppend(out, "bulwark_config_reloads_total{result=\"failure\"} ", reloads_failed_.Get(), "\n");
  single("bulwark_config_generation", "gauge", "Generation of the configuration in use.",
         generation_);
  if (access_log_ != nullptr) {
    single("bulwark_access_log_write_errors_total", "counter", "Access log writes that failed.",
           access_log_->write_errors());
    single("bulwark_access_log_rotations_total", "counter", "Access log rotations.",
           access_log_->rotations());
  }
  worker_sum("bulwark_retry_budget_exhausted_total", "counter",
             "Retries not made because the upstream's retry budget was spent.",
             [](const gateway::WorkerStats& s) { return s.retry_budget_exhausted.Get(); });
  worker_sum("bulwark_retry_backoffs_total", "counter",
             "Retries that waited a jittered backoff first.",
             [](const gateway::WorkerStats& s) { return s.retry_backoffs.Get(); });
  worker_sum("bulwark_upstream_panic_total", "counter",
             "Server choices made in panic mode (too few usable servers: all were used).",
             [](const gateway::WorkerStats& s) { return s.panic_selections.Get(); });
  worker_sum("bulwark_access_denied_total", "counter",
             "Requests refused (403) by an allow/deny list.",
             [](const gateway::WorkerStats& s) { return s.access_denied.Get(); });
  worker_sum("bulwark_http_bad_paths_total", "counter",
             "Requests refused (400) for their path: a malformed or NUL escape, `..` above the "
             "root, or an encoded slash under escaped_slashes: reject.",
             [](const gateway::WorkerStats& s) { return s.bad_paths.Get(); });

  observe::AppendHeader(out, "bulwark_ratelimit_requests_total", "counter",
                        "limit_req decisions by zone and result.");
  for (const auto& z : snapshot_->zones) {
    auto counts = z->Counts();
    for (int k = 0; k < gateway::kLimitResults; ++k) {
      out->append("bulwark_ratelimit_requests_total{zone=\"");
      observe::AppendLabelValue(out, z->name());
      StrAppend(out, "\",result=\"", gateway::LimitResultName(static_cast<gateway::LimitResult>(k)),
                "\"} ", counts[k], "\n");
    }
  }
  observe::AppendHeader(out, "bulwark_ratelimit_keys", "gauge", "Keys a limit_req zone holds.");
  for (const auto& z : snapshot_->zones) {
    sample("bulwark_ratelimit_keys", "zone", z->name(), z->Keys());
  }
  observe::AppendHeader(out, "bulwark_ratelimit_evictions_total", "counter",
                        "Keys dropped because a zone was full (raise its size).");
  for (const auto& z : snapshot_->zones) {
    sample("bulwark_ratelimit_evictions_total", "zone", z->name(), z->Evictions());
  }
  observe::AppendHeader(out, "bulwark_ratelimit_redis_fallbacks_total", "counter",
                        "Shared-zone decisions made without Redis (unreachable or too slow).");
  for (const auto& z : snapshot_->zones) {
    sample("bulwark_ratelimit_redis_fallbacks_total", "zone", z->name(), z->fallbacks());
  }
  if (!snapshot_->conn_zones.empty()) {
    observe::AppendHeader(out, "bulwark_limit_conn_requests_total", "counter",
                          "limit_conn decisions by zone and result.");
    for (const auto& z : snapshot_->conn_zones) {
      for (int k = 0; k < gateway::kConnResults; ++k) {
        auto r = static_cast<gateway::ConnResult>(k);
        out->append("bulwark_limit_conn_requests_total{zone=\"");
        observe::AppendLabelValue(out, z->name());
        StrAppend(out, "\",result=\"", gateway::ConnResultName(r), "\"} ", z->Counted(r), "\n");
      }
    }
    observe::AppendHeader(out, "bulwark_limit_conn_keys", "gauge",
                          "Keys with requests in progress in a limit_conn zone.");
    for (const auto& z : snapshot_->conn_zones) {
      sample("bulwark_limit_conn_keys", "zone", z->name(), z->Keys());
    }
  }
  if (!snapshot_->cache_zones.empty()) {
    // The AlkaidSYS names (cache_hits_total, cache_operations_total) plus bulwark_http_cache_*.
    observe::AppendHeader(out, "cache_hits_total", "counter",
                          "HTTP cache lookups by cache type and result (hit includes stale).");
    uint64_t hit = 0, miss = 0, stored = 0, purged = 0;
    for (const auto& z : snapshot_->cache_zones) {
      hit += z->hits.load() + z->stale.load();
      miss += z->misses.load();
      stored += z->stored.load();
      purged += z->purged.load();
    }
    uint64_t l2_hit = 0, l2_miss = 0, l2_sets = 0, l2_purged = 0;
    bool any_l2 = false;
    for (const auto& z : snapshot_->cache_zones) {
      any_l2 |= z->config().redis;
      l2_hit += z->l2_hits.load();
      l2_miss += z->l2_misses.load();
      l2_sets += z->l2_sets.load();
      l2_purged += z->l2_purged.load();
    }
    StrAppend(out, "cache_hits_total{cache_type=\"memory\",result=\"hit\"} ", hit, "\n");
    StrAppend(out, "cache_hits_total{cache_type=\"memory\",result=\"miss\"} ", miss, "\n");
    if (any_l2) {
      StrAppend(out, "cache_hits_total{cache_type=\"redis\",result=\"hit\"} ", l2_hit, "\n");
      StrAppend(out, "cache_hits_total{cache_type=\"redis\",result=\"miss\"} ", l2_miss, "\n");
    }
    observe::AppendHeader(out, "cache_operations_total", "counter",
                          "HTTP cache operations by cache type and operation.");
    StrAppend(out, "cache_operations_total{cache_type=\"memory\",operation=\"get\"} ", hit + miss,
              "\n");
    StrAppend(out, "cache_operations_total{cache_type=\"memory\",operation=\"set\"} ", stored,
              "\n");
    StrAppend(out, "cache_operations_total{cache_type=\"memory\",operation=\"purge\"} ", purged,
              "\n");
    if (any_l2) {
      StrAppend(out, "cache_operations_total{cache_type=\"redis\",operation=\"get\"} ",
                l2_hit + l2_miss, "\n");
      StrAppend(out, "cache_operations_total{cache_type=\"redis\",operation=\"set\"} ", l2_sets,
                "\n");
      StrAppend(out, "cache_operations_total{cache_type=\"redis\",operation=\"purge\"} ",
                l2_purged, "\n");
    }
    auto zone_counter = [&](const char* name, const char* type, const char* help,
                            auto get) {
      observe::AppendHeader(out, name, type, help);
      for (const auto& z : snapshot_->cache_zones) sample(name, "zone", z->config().name, get(*z));
    };
    zone_counter("bulwark_http_cache_hits_total", "counter", "Fresh responses served from a zone.",
                 [](gateway::HttpCacheZone& z) { return z.hits.load(); });
    zone_counter("bulwark_http_cache_misses_total", "counter",
                 "Cacheable requests that went to the upstream.",
                 [](gateway::HttpCacheZone& z) { return z.misses.load(); });
    zone_counter("bulwark_http_cache_stale_total", "counter",
                 "Stale responses served (stale-while-revalidate, stale-if-error).",
                 [](gateway::HttpCacheZone& z) { return z.stale.load(); });
    zone_counter("bulwark_http_cache_bypass_total", "counter",
                 "Requests on a cached route that the cache did not handle (method, credentials).",
                 [](gateway::HttpCacheZone& z) { return z.bypass.load(); });
    zone_counter("bulwark_http_cache_coalesced_total", "counter",
                 "Misses that waited for another request's fetch of the same key.",
                 [](gateway::HttpCacheZone& z) { return z.coalesced.load(); });
    zone_counter("bulwark_http_cache_lock_timeouts_total", "counter",
                 "Waits for another request's fetch that timed out (lock_timeout).",
                 [](gateway::HttpCacheZone& z) { return z.lock_timeouts.load(); });
    zone_counter("bulwark_http_cache_stored_total", "counter", "Responses stored.",
                 [](gateway::HttpCacheZone& z) { return z.stored.load(); });
    zone_counter("bulwark_http_cache_not_stored_total", "counter",
                 "Responses not stored (Cache-Control, Set-Cookie, status, failures).",
                 [](gateway::HttpCacheZone& z) { return z.not_stored.load(); });
    zone_counter("bulwark_http_cache_too_big_total", "counter",
                 "Responses not stored because they exceed max_object_size.",
                 [](gateway::HttpCacheZone& z) { return z.too_big.load(); });
    zone_counter("bulwark_http_cache_redis_errors_total", "counter",
                 "Failed reads and writes of a zone's Redis level.",
                 [](gateway::HttpCacheZone& z) { return z.l2_errors.load(); });
    zone_counter("bulwark_http_cache_purged_total", "counter",
                 "Entries removed through the purge API.",
                 [](gateway::HttpCacheZone& z) { return z.purged.load(); });
    zone_counter("bulwark_http_cache_entries", "gauge", "Responses a zone holds.",
                 [](gateway::HttpCacheZone& z) { return z.Stats().entries; });
    zone_counter("bulwark_http_cache_bytes", "gauge", "Bytes a zone holds (with overhead).",
                 [](gateway::HttpCacheZone& z) { return z.Stats().bytes; });
    zone_counter("bulwark_http_cache_evictions_total", "counter",
                 "Entries evicted (or not admitted) to stay within the zone's size.",
                 [](gateway::HttpCacheZone& z) {
                   auto st = z.Stats();
                   return st.evictions + st.rejected;
                 });
  }
  if (cfg_->gateway->redis.enabled) {
    bool all_up = true;
    uint64_t errors = 0, reconnects = 0;
    for (const auto& w : workers_) {
      if (w->redis() == nullptr) continue;
      all_up &= w->redis()->up();
      errors += w->redis()->errors();
      reconnects += w->redis()->reconnects();
    }
    single("bulwark_redis_up", "gauge", "1 when every worker's Redis connection is up.",
           all_up ? 1 : 0);
    single("bulwark_redis_errors_total", "counter",
           "Redis commands that failed (errors, timeouts, lost connections).", errors);
    single("bulwark_redis_reconnects_total", "counter",
           "Times a worker's Redis connection was lost and retried.", reconnects);
  }
  bans_->List(now);  // drops expired bans so the gauge is current
  single("bulwark_bans_active", "gauge", "Keys banned now.", bans_->active());
  single("bulwark_bans_received_total", "counter", "Bans other instances shared through Redis.",
         bans_->received());
  single("bulwark_ban_refused_total", "counter", "Requests refused because their key was banned.",
         bans_->refused());
  auto rule_counts = bans_->RuleCounts();
  observe::AppendHeader(out, "bulwark_bans_total", "counter", "Bans imposed, by rule (route).");
  for (const auto& [rule, c] : rule_counts) {
    sample("bulwark_bans_total", "rule", rule, c.first);
  }
  observe::AppendHeader(out, "bulwark_ban_strikes_total", "counter",
                        "Events counted towards a ban (rate-limit rejections, auth failures).");
  for (const auto& [rule, c] : rule_counts) {
    if (rule == "admin") continue;
    sample("bulwark_ban_strikes_total", "rule", rule, c.second);
  }
  observe::AppendHeader(out, "bulwark_tls_handshakes_total", "counter",
                        "TLS handshakes completed, by listener and protocol (reset by a reload).");
  for (const auto& l : snapshot_->config->listeners) {
    if (l.tls.server == nullptr) continue;
    for (const char* proto : {"TLSv1.2", "TLSv1.3"}) {
      out->append("bulwark_tls_handshakes_total{listener=\"");
      observe::AppendLabelValue(out, l.name);
      StrAppend(out, "\",protocol=\"", proto, "\"} ",
                std::string_view(proto) == "TLSv1.2" ? l.tls.server->handshakes_tls12()
                                                     : l.tls.server->handshakes_tls13(),
                "\n");
    }
  }
  observe::AppendHeader(out, "bulwark_tls_handshake_errors_total", "counter",
                        "TLS handshakes that failed or were abandoned, by listener.");
  for (const auto& l : snapshot_->config->listeners) {
    if (l.tls.server == nullptr) continue;
    sample("bulwark_tls_handshake_errors_total", "listener", l.name, l.tls.server->failures());
  }
  observe::AppendHeader(out, "bulwark_tls_sessions_resumed_total", "counter",
                        "TLS handshakes that resumed a session (cache or ticket), by listener.");
  for (const auto& l : snapshot_->config->listeners) {
    if (l.tls.server == nullptr) continue;
    sample("bulwark_tls_sessions_resumed_total", "listener", l.name, l.tls.server->resumed());
  }
  observe::AppendHeader(out, "bulwark_jwt_verified_total", "counter",
                        "Requests whose JWT verified, by provider.");
  for (const auto& p : snapshot_->config->jwt_providers) {
    sample("bulwark_jwt_verified_total", "provider", p.name,
           p.counters->verified.load(std::memory_order_relaxed));
  }
  observe::AppendHeader(out, "bulwark_jwt_rejections_total", "counter",
                        "Requests refused (401) by a JWT check, by provider and reason.");
  for (const auto& p : snapshot_->config->jwt_providers) {
    for (int f = 1; f < security::kJwtFailures; ++f) {
      out->append("bulwark_jwt_rejections_total{provider=\"");
      observe::AppendLabelValue(out, p.name);
      StrAppend(out, "\",reason=\"", security::JwtFailureName(static_cast<security::JwtFailure>(f)),
                "\"} ", p.counters->rejected[f].load(std::memory_order_relaxed), "\n");
    }
  }
  single("bulwark_workers", "gauge", "Worker threads.", workers_.size());
}

}  // namespace bulwark
