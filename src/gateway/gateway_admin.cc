// The gateway's admin API: upstreams and their servers, bans, HTTP cache zones and purges,
// rate-limit zones.
#include <nlohmann/json.hpp>

#include "cache/config.h"
#include "core/log.h"
#include "core/strings.h"
#include "core/units.h"
#include "gateway/gateway.h"

namespace bulwark::gateway {

std::string Gateway::UpstreamsJson() const {
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
      if (!sc.host.empty()) {
        // The name's current address (HAProxy's `show servers state` srv_addr).
        j["host"] = sc.host;
        j["ip"] = sc.resolved ? sc.address.IpString() : "";
      }
      j["state"] = std::string(ServerStateName(sc, s, now));
      j["health_score"] = ServerScore(sc, s, now);
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
  return nlohmann::json{{"generation", snapshot_->generation}, {"upstreams", out}}.dump();
}

void Gateway::RegisterAdminRoutes(admin::AdminServer& admin) {
  using admin::AdminRequest;
  admin.Route("GET", "/api/v1/upstreams",
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
  admin.Route("POST", "/api/v1/upstreams/{name}/servers/{addr}/drain",
              [set_drain](const AdminRequest& r) { return set_drain(r, true); });
  admin.Route("POST", "/api/v1/upstreams/{name}/servers/{addr}/enable",
              [set_drain](const AdminRequest& r) { return set_drain(r, false); });
  admin.Route("GET", "/api/v1/bans", [this](const AdminRequest&) {
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
  admin.Route("POST", "/api/v1/bans", [this](const AdminRequest& r) {
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
  admin.Route("DELETE", "/api/v1/bans/{key}", [this](const AdminRequest& r) {
    int64_t expires_at = 0;
    bool lifted = bans_->Lift(r.params[0], &expires_at);
    // Other instances may hold the ban even if this one does not.
    PublishBan("lift", r.params[0], "", std::max<int64_t>(0, expires_at - MonotonicMs()));
    if (!lifted) return admin::Json(404, nlohmann::json{{"error", "no such ban"}}.dump());
    LogWarn("security event: ban on ", r.params[0], " lifted by an operator");
    return admin::Json(200, nlohmann::json{{"lifted", r.params[0]}}.dump());
  });
  admin.Route("GET", "/api/v1/cache", [this](const AdminRequest&) {
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
  admin.Route("POST", "/api/v1/cache/purge", [this](const AdminRequest& r) {
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
  admin.Route("GET", "/api/v1/limits", [this](const AdminRequest&) {
    nlohmann::json zones = nlohmann::json::array();
    for (size_t i = 0; i < snapshot_->zones.size(); ++i) {
      const auto& z = *snapshot_->zones[i];
      auto counts = z.Counts();
      nlohmann::json c;
      for (int k = 0; k < kLimitResults; ++k)
        c[LimitResultName(static_cast<LimitResult>(k))] = counts[k];
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
}

}  // namespace bulwark::gateway
