#include "gateway/gateway.h"

#include <dirent.h>
#include <sys/random.h>
#include <sys/resource.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "cache/glob.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/strings.h"
#include "core/units.h"

namespace bulwark::gateway {

Gateway::Gateway(EventLoop* loop, std::shared_ptr<const GatewayConfig> cfg, int workers,
                 int64_t reserved_descriptors, Resolver* resolver)
    : loop_(loop),
      names_(resolver, loop, "gateway", [this] { OnNamesChanged(); }),
      cfg_(std::move(cfg)),
      worker_count_(workers),
      reserved_descriptors_(reserved_descriptors),
      resolver_(resolver) {}

Gateway::~Gateway() {
  Stop();
  Join();
  workers_.clear();
  health_.reset();
}

absl::Status Gateway::Start(uint64_t generation) {
  if (cfg_->access_log.enabled) {
    auto al = AccessLog::Open(cfg_->access_log);
    if (!al.ok()) return al.status();
    access_log_ = std::move(*al);
  }
  WatchNames(*cfg_);
  auto snap = BuildSnapshot(cfg_, generation);
  if (!snap.ok()) return snap.status();
  snapshot_ = *snap;
  bans_ = std::make_unique<BanTable>(cfg_->bans.max_entries);
  {
    uint64_t id[2] = {};
    if (getrandom(id, sizeof(id), 0) != sizeof(id)) id[0] = WallMicros();
    instance_id_ = StrCat(id[0] ^ id[1]);
  }
  WorkerShared shared;
  shared.endpoints = &endpoints_;
  shared.access_log = access_log_.get();
  shared.bans = bans_.get();
  shared.instance_id = instance_id_;
  SetDescriptorBudget(&shared);
  if (cfg_->redis.enabled) StartRedisDiscovery(&shared);
  {
    unsigned char key[32];
    if (getrandom(key, sizeof(key), 0) != sizeof(key)) {
      for (auto& c : key) c = static_cast<unsigned char>(WallMicros());
    }
    shared.sticky_secret.assign(reinterpret_cast<char*>(key), sizeof(key));
  }
  for (int i = 0; i < worker_count_; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, shared));
    absl::Status s = workers_.back()->Start(snapshot_);
    if (!s.ok()) return s;
  }
  health_ = std::make_unique<HealthChecker>(loop_);
  health_->Reload(*snapshot_);
  if (cfg_->redis.enabled) StartRedisSync();
  for (const auto& l : cfg_->listeners) {
    LogInfo("listening on ", l.listen_text, " (", l.name, ") with ", worker_count_, " workers");
  }
  return absl::OkStatus();
}

absl::Status Gateway::Reload(std::shared_ptr<const GatewayConfig> cfg, uint64_t generation) {
  WatchNames(*cfg);
  auto snap = BuildSnapshot(cfg, generation);
  if (!snap.ok()) {
    WatchNames(*cfg_);  // back to the running config's names
    return snap.status();
  }
  cfg_ = std::move(cfg);
  Apply(*snap);
  bans_->set_max_entries(cfg_->bans.max_entries);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Snapshot>> Gateway::BuildSnapshot(
    std::shared_ptr<const GatewayConfig> cfg, uint64_t generation) {
  return Snapshot::Build(std::move(cfg), worker_count_, snapshot_.get(), &servers_, &zones_,
                         &endpoints_, generation, &cache_zones_, &names_.table());
}

void Gateway::Apply(std::shared_ptr<const Snapshot> snap) {
  snapshot_ = std::move(snap);
  for (auto& w : workers_) w->PostSnapshot(snapshot_);
  health_->Reload(*snapshot_);
  servers_.Prune();
  zones_.Prune();
  cache_zones_.Prune();
}

void Gateway::WatchNames(const GatewayConfig& cfg) { names_.Set(DistinctNames(NamedServers(cfg))); }

void Gateway::OnNamesChanged() {
  if (snapshot_ == nullptr) return;
  auto snap = BuildSnapshot(cfg_, snapshot_->generation);
  if (!snap.ok()) {
    LogError("gateway: cannot apply new server addresses: ", snap.status().message());
    return;
  }
  Apply(*snap);
}

std::vector<std::string> Gateway::KeepRestartSettings(const GatewayConfig& running,
                                                      GatewayConfig* next) {
  std::vector<std::string> warnings;
  if (!(next->redis == running.redis)) warnings.push_back("redis: takes effect after a restart");
  if (next->access_log.path != running.access_log.path ||
      next->access_log.enabled != running.access_log.enabled) {
    warnings.push_back("access_log.path/enabled: takes effect after a restart");
  }
  next->access_log = running.access_log;
  next->redis = running.redis;
  return warnings;
}

void Gateway::Drain() {
  for (auto& w : workers_) w->PostDrain();
}

void Gateway::Stop() {
  for (auto& w : workers_) w->Stop();
}

void Gateway::Join() {
  for (auto& w : workers_) w->Join();
}

bool Gateway::finished() const {
  for (const auto& w : workers_) {
    if (!w->finished()) return false;
  }
  return true;
}

void Gateway::ReopenLogs() {
  if (access_log_ == nullptr) return;
  if (absl::Status s = access_log_->Reopen(); !s.ok())
    LogError("gateway: access log: ", s.message());
}

void Gateway::Tick() {
  if (access_log_ != nullptr) access_log_->MaybeRotate();
  // Bans a worker could not write (Redis away, a failed write) are written now.
  if (bans_ != nullptr && redis_cmd_ != nullptr && redis_cmd_->connected() && bans_->TakeResync())
    ResyncBans();
}

// Descriptors, as HAProxy works out maxconn from `ulimit -n`: the soft open files limit is
// raised to the hard one (systemd's soft 1024 is far below what a proxy needs), the reserve and
// what the process already holds are set aside, and the gateway gets the rest. Each client may
// need an upstream connection, so the per-worker default max_connections is half the gateway's
// share, split between the workers.
void Gateway::SetDescriptorBudget(WorkerShared* shared) {
  const int workers = worker_count_;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  int64_t limit =
      rl.rlim_cur == RLIM_INFINITY ? int64_t{1} << 20 : static_cast<int64_t>(rl.rlim_cur);
  int64_t held = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) held += e->d_name[0] != '.';
    closedir(d);
  }
  const int64_t reserve = reserved_descriptors_;
  descriptors_.limit = std::max<int64_t>(limit - reserve - held, 4 * workers);
  shared->descriptors = &descriptors_;
  shared->auto_max_connections =
      static_cast<int>(std::clamp<int64_t>(descriptors_.limit / 2 / workers, 1, 1 << 20));
  auto_max_connections_ = shared->auto_max_connections;
  int configured = cfg_->http.max_connections;
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

namespace {
// Every shared ban (and lift) with its remaining time, in one round trip: {value, pttl, ...}.
// In a cluster it runs on each master, over the keys that master holds.
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

// This instance's ban, written again (after a failover, or once Redis is back): unless Redis
// holds a lift made after the ban, or a ban of the same key that lasts at least as long.
// Announced when written. KEYS[1] ban key; ARGV: message, remaining ms, banned at (Unix ms),
// channel.
const char kResyncBanScript[] = R"lua(
local v = redis.call('GET', KEYS[1])
if v then
  local ok, cur = pcall(cjson.decode, v)
  if ok and type(cur) == 'table' then
    if cur.op == 'lift' and tonumber(cur.at or 0) >= tonumber(ARGV[3]) then return 0 end
    if cur.op == 'ban' and redis.call('PTTL', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
)lua";

// A lift: kept in Redis as long as the ban would have lasted (the longer of Redis's and this
// instance's view), so an instance that missed the announcement learns it when it reconnects and
// a ban written again after a failover does not come back. KEYS[1] ban key; ARGV: message, this
// instance's remaining ms (0: none), channel.
const char kLiftBanScript[] = R"lua(
local ms = tonumber(ARGV[2])
local t = redis.call('PTTL', KEYS[1])
if t > ms then ms = t end
if ms > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ms) end
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
)lua";

// Names of the Redis servers, as the workers look them up before each connection attempt: from
// the resolver's last answer, never waiting on DNS (a name without an answer yet is an attempt
// that fails into the usual backoff).
RedisLookup ResolverLookup(std::shared_ptr<HostPins> pins) {
  if (pins == nullptr) return SystemRedisLookup();
  return [pins](const std::string& host, int port) -> std::optional<SocketAddress> {
    if (std::optional<IpAddress> ip = IpAddress::Parse(host))
      return MakeSocketAddress(*ip, static_cast<uint16_t>(port));
    absl::StatusOr<std::vector<IpAddress>> a = pins->Addresses(host, /*wait=*/false);
    if (!a.ok() || a->empty()) return std::nullopt;
    return MakeSocketAddress(a->front(), static_cast<uint16_t>(port));
  };
}
}  // namespace

void Gateway::StartRedisDiscovery(WorkerShared* shared) {
  const RedisConfig& rc = cfg_->redis;
  if (resolver_ != nullptr) {
    redis_names_ = std::make_shared<HostPins>(resolver_);
    // Names are looked up now, waiting, so the first connections find them (as upstream
    // servers' names are at start).
    for (const RedisEndpoint& e : rc.servers.nodes) {
      if (IpAddress::Parse(e.host)) continue;
      absl::StatusOr<std::vector<IpAddress>> a = redis_names_->Addresses(e.host, /*wait=*/true);
      if (!a.ok()) LogWarn("redis: ", e.host, ": ", a.status().message());
    }
  }
  redis_lookup_ = ResolverLookup(redis_names_);
  if (rc.servers.mode == RedisServers::Mode::kSentinel) {
    // Sentinels take the same TLS as the servers (Sentinel's tls-port); not the password, which
    // is the data servers'.
    RedisOptions so = ToRedisOptions(rc, 500);
    so.username.clear();
    so.password.clear();
    sentinel_ = std::make_unique<SentinelResolver>(loop_, rc.servers.nodes,
                                                   rc.servers.sentinel_master, redis_lookup_, so);
    sentinel_->Start();
    redis_master_ = sentinel_->MasterSource();
  }
  shared->redis_lookup = redis_lookup_;
  shared->redis_master = redis_master_;
}

void Gateway::StartRedisSync() {
  const RedisConfig& rc = cfg_->redis;
  // Loading the bans in force may take a moment: a longer command timeout than the workers'.
  RedisOptions o = ToRedisOptions(rc, std::max<int64_t>(rc.timeout_ms, 2000));
  redis_cmd_ = std::make_unique<RedisLink>(loop_, rc.servers, o, redis_lookup_, redis_master_,
                                           "redis (control)");
  redis_sub_ = std::make_unique<RedisClient>(
      loop_, OneConnectionOptions(rc.servers, o, redis_lookup_, redis_master_),
      "redis (ban subscriber)");
  redis_sub_->SetPushHandler([this](std::string_view channel, std::string_view payload) {
    if (channel == HttpCacheChannel(cfg_->redis.key_prefix)) {
      OnCachePurgeMessage(payload);
    } else {
      OnBanMessage(payload, -1);
    }
  });
  // Purges announced while the subscription was down are lost: zones with a shared level drop
  // their in-memory copies (they refill from Redis).
  auto drop_shared_copies = [this] {
    for (const auto& z : snapshot_->cache_zones) {
      if (z->config().redis) z->ForEachL1([](cache::L1Cache& l) { return l.Clear(); });
    }
  };
  redis_sub_->SetOnReady([this, drop_shared_copies] {
    redis_sub_->Command(
        {"SUBSCRIBE", BanChannel(cfg_->redis.key_prefix), HttpCacheChannel(cfg_->redis.key_prefix)},
        [this, drop_shared_copies](const RedisReply& r) {
          if (r.is_error()) return;
          // Only once subscribed: a ban announced before this moment was written to Redis before
          // it was announced, so the load finds it; one announced after is heard. Loading
          // earlier (on another connection) could miss one in between. The same for purges:
          // copies taken from Redis before the subscription are dropped again.
          LoadSharedBans();
          drop_shared_copies();
        });
  });
  redis_sub_->SetOnDown(drop_shared_copies);
  // After every (re)connection, which is also how a failover is followed: the bans in force are
  // read, and this instance's own are written again — a ban the old master acknowledged but never
  // passed to its replica is not lost with it, nor one imposed while Redis was away.
  redis_cmd_->SetOnReady([this] {
    LoadSharedBans();
    ResyncBans();
  });
  redis_cmd_->Start();
  redis_sub_->Start();
}

void Gateway::ResyncBans() {
  if (redis_cmd_ == nullptr || !redis_cmd_->connected()) {
    bans_->RequestResync();
    return;
  }
  static const std::string sha = RedisClient::ScriptSha1(kResyncBanScript);
  const std::string& prefix = cfg_->redis.key_prefix;
  int64_t now = MonotonicMs();
  int64_t wall_ms = WallMicros() / 1000;
  std::string channel = BanChannel(prefix);
  for (const BanInfo& b : bans_->List(now)) {
    if (b.remote) continue;  // its own instance writes it
    int64_t left = b.expires_at_ms - now;
    if (left <= 0) continue;
    int64_t at = wall_ms - (now - b.banned_at_ms);
    std::string msg = BanMessage("ban", b.key, b.rule, b.reason, left, instance_id_, at);
    std::string rkey = BanRedisKey(prefix, b.key);
    std::string ms = StrCat(left), at_text = StrCat(at);
    redis_cmd_->Eval(kResyncBanScript, sha, {rkey}, {msg, ms, at_text, channel},
                     [this](const RedisReply& r) {
                       if (r.is_error()) {
                         bans_->RequestResync();
                       } else if (r.type == RedisReply::Type::kInteger && r.integer == 1) {
                         bans_resynced_.fetch_add(1, std::memory_order_relaxed);
                       }
                     });
  }
}

size_t Gateway::PurgeLocal(const std::string& zone, const std::string& op, const std::string& arg) {
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

void Gateway::PurgeShared(const std::string& zone, const std::string& op, const std::string& arg) {
  if (redis_cmd_ == nullptr || !redis_cmd_->connected()) return;
  const std::string& prefix = cfg_->redis.key_prefix;
  // The other instances hear of the purge only once Redis no longer holds the entries, or they
  // could copy them straight back from Redis.
  std::string msg =
      nlohmann::json{{"from", instance_id_}, {"zone", zone}, {"op", op}, {"arg", arg}}.dump();
  auto pending = std::make_shared<int>(1);
  auto publish = [this, pending, msg, channel = HttpCacheChannel(prefix)] {
    if (--*pending > 0 || redis_cmd_ == nullptr) return;
    redis_cmd_->Command({"PUBLISH", channel, msg}, [](const RedisReply&) {});
  };
  for (const auto& z : snapshot_->cache_zones) {
    if ((!zone.empty() && z->config().name != zone) || !z->config().redis) continue;
    const std::string& name = z->config().name;
    std::string kp = cache::GlobEscape(HttpCacheRedisKey(prefix, name, ""));
    HttpCacheZone* zp = z.get();
    ++*pending;
    if (op == "key") {
      redis_cmd_->Command({"DEL", HttpCacheRedisKey(prefix, name, arg)},
                          [zp, publish](const RedisReply& r) {
                            if (r.type == RedisReply::Type::kInteger)
                              zp->l2_purged.fetch_add(static_cast<uint64_t>(r.integer));
                            publish();
                          });
    } else if (op == "tag") {
      std::string tk = HttpCacheRedisTagKey(prefix, name, arg);
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

void Gateway::ScanDelete(std::string match, std::string cursor, std::function<void()> done) {
  if (redis_cmd_ == nullptr || !redis_cmd_->connected()) {
    done();
    return;
  }
  // SCAN walks one node: every master of a cluster in turn, each with its own cursor.
  auto masters = std::make_shared<std::vector<RedisClient*>>(redis_cmd_->Masters());
  ScanDeleteNode(std::move(masters), 0, std::move(match), std::move(cursor), std::move(done));
}

void Gateway::ScanDeleteNode(std::shared_ptr<std::vector<RedisClient*>> masters, size_t node,
                             std::string match, std::string cursor, std::function<void()> done) {
  if (node >= masters->size() || redis_cmd_ == nullptr) {
    done();
    return;
  }
  (*masters)[node]->Command(
      {"SCAN", cursor, "MATCH", match, "COUNT", "1000"},
      [this, masters, node, match, done](const RedisReply& r) {
        if (r.type != RedisReply::Type::kArray || r.elements.size() != 2 || redis_cmd_ == nullptr) {
          ScanDeleteNode(masters, node + 1, match, "0", done);
          return;
        }
        bool last = r.elements[0].str == "0";
        size_t next_node = last ? node + 1 : node;
        std::string next_cursor = last ? "0" : r.elements[0].str;
        if (r.elements[1].elements.empty()) {
          ScanDeleteNode(masters, next_node, match, next_cursor, done);
          return;
        }
        // Through the link, which splits a cluster's DEL by slot (one node still refuses a DEL
        // whose keys are in different slots); the scan goes on once they are gone, so `done`
        // (the announcement to the other instances) comes after every delete.
        std::vector<std::string_view> del = {"DEL"};
        for (const RedisReply& e : r.elements[1].elements) del.push_back(e.str);
        redis_cmd_->Command(
            del, [this, masters, next_node, match, next_cursor, done](const RedisReply&) {
              ScanDeleteNode(masters, next_node, match, next_cursor, done);
            });
      });
}

void Gateway::OnCachePurgeMessage(std::string_view payload) {
  auto j = nlohmann::json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return;
  if (j.value("from", std::string()) == instance_id_) return;  // applied when it was made
  PurgeLocal(j.value("zone", std::string()), j.value("op", std::string()),
             j.value("arg", std::string()));
}

void Gateway::LoadSharedBans() {
  if (redis_cmd_ == nullptr || !redis_cmd_->connected()) return;
  static const std::string sha = RedisClient::ScriptSha1(kLoadBansScript);
  std::string pattern = BanRedisKey(cfg_->redis.key_prefix, "*");
  for (RedisClient* c : redis_cmd_->Masters()) {
    c->Eval(kLoadBansScript, sha, {}, {pattern}, [this](const RedisReply& r) {
      if (r.type != RedisReply::Type::kArray) return;
      for (size_t i = 0; i + 1 < r.elements.size(); i += 2)
        OnBanMessage(r.elements[i].str, r.elements[i + 1].integer);
    });
  }
}

void Gateway::OnBanMessage(std::string_view payload, int64_t ttl_ms) {
  auto j = nlohmann::json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return;
  std::string from = j.value("from", std::string());
  std::string op = j.value("op", std::string());
  std::string key = j.value("key", std::string());
  if (key.empty()) return;
  if (op == "lift") {
    // Only bans imposed before the lift: one made here since (while this instance could not hear
    // of the lift) stands.
    int64_t at = j.value("at", int64_t{0});
    int64_t before = at > 0 ? MonotonicMs() - (WallMicros() / 1000 - at) : INT64_MAX;
    if (from != instance_id_ && bans_->Lift(key, nullptr, before))
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

void Gateway::PublishBan(std::string_view op, const std::string& key, std::string_view reason,
                         int64_t ms) {
  if (redis_cmd_ == nullptr) return;
  const std::string& prefix = cfg_->redis.key_prefix;
  std::string msg = BanMessage(op, key, "admin", reason, ms, instance_id_, WallMicros() / 1000);
  if (op == "ban") {
    ShareBan(*redis_cmd_, bans_.get(), prefix, key, msg, ms);
    return;
  }
  // A lift made while Redis is away is known to the other instances only if they were listening,
  // as a lift is not kept here once made.
  if (!redis_cmd_->connected()) return;
  static const std::string sha = RedisClient::ScriptSha1(kLiftBanScript);
  redis_cmd_->Eval(kLiftBanScript, sha, {BanRedisKey(prefix, key)},
                   {msg, StrCat(ms), BanChannel(prefix)}, [](const RedisReply&) {});
}

bool Gateway::Ready(std::string* why) const {
  int64_t now = MonotonicMs();
  for (int ui : snapshot_->routed_upstreams) {
    const auto& ur = snapshot_->upstreams[ui];
    bool any = false;
    for (size_t i = 0; i < ur.servers.size(); ++i) {
      const auto& sc = ur.cfg->servers[i];
      if (ServerTakesRequests(sc, *ur.servers[i], now)) any = true;
    }
    if (!any) {
      *why = StrCat("upstream ", ur.cfg->name, " has no healthy server");
      return false;
    }
  }
  return true;
}

}  // namespace bulwark::gateway
