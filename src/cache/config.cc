#include "cache/config.h"

#include <cstdlib>

#include "cache/glob.h"
#include "core/strings.h"
#include "core/units.h"

namespace bulwark::cache {
namespace {

bool ReadDouble(ConfigContext& ctx, MapReader& r, std::string_view key, double* out, double lo,
                double hi) {
  YAML::Node n = r.Get(key);
  if (!n.IsDefined()) return true;
  std::string s;
  if (!ReadScalar(ctx, n, StrCat(r.what(), ".", key), &s)) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !(v >= lo && v <= hi)) {
    ctx.Error(n.Mark(), StrCat(r.what(), ".", key, ": expected a number from ", lo, " to ", hi,
                               ", got \"", s, "\""));
    return false;
  }
  *out = v;
  return true;
}

// The AlkaidSYS cache.yml writes `lock_timeout: 10000` meaning milliseconds; a unit suffix is also
// accepted.
bool ReadMillis(ConfigContext& ctx, MapReader& r, std::string_view key, int64_t* ms) {
  YAML::Node n = r.Get(key);
  if (!n.IsDefined()) return true;
  std::string s;
  if (!ReadScalar(ctx, n, StrCat(r.what(), ".", key), &s)) return false;
  int64_t v = 0;
  if (ParseInt(s, &v) && v >= 0) {
    *ms = v;
    return true;
  }
  auto d = ParseDurationMs(s);
  if (!d.ok()) {
    ctx.Error(n.Mark(), StrCat(r.what(), ".", key, ": ", d.status().message()));
    return false;
  }
  *ms = *d;
  return true;
}

void ParseWarmup(ConfigContext& ctx, const YAML::Node& n, std::string what, WarmupConfig* out) {
  MapReader r(ctx, n, std::move(what));
  if (!r.valid()) return;
  out->enabled = true;
  r.Bool("enabled", &out->enabled);
  r.StringList("strategies", &out->namespaces);
  std::vector<std::string> more;
  r.StringList("namespaces", &more);
  out->namespaces.insert(out->namespaces.end(), more.begin(), more.end());
  r.StringList("keys", &out->keys);
  r.Bool("on_start", &out->on_start);
  if (YAML::Node s = r.Get("schedule"); s.IsDefined()) {
    std::string text;
    if (ReadScalar(ctx, s, StrCat(r.what(), ".schedule"), &text)) {
      auto cron = CronSchedule::Parse(text);
      if (cron.ok()) {
        out->schedule = *cron;
      } else {
        ctx.Error(s.Mark(), StrCat(r.what(), ".schedule: ", cron.status().message()));
      }
    }
  }
  r.Finish();
}

void ParseRedis(ConfigContext& ctx, const YAML::Node& n, CacheConfig* out) {
  MapReader r(ctx, n, "redis");
  if (!r.valid()) return;
  CacheRedisConfig& redis = out->redis;
  redis.enabled = true;
  r.Bool("enabled", &redis.enabled);
  ParseRedisServers(ctx, r, &redis.servers, &redis.password, &redis.database);
  r.String("password", &redis.password);
  r.Int("database", &redis.database, 0, 15);
  r.String("key_prefix", &redis.key_prefix);
  r.String("channel", &redis.channel);
  r.Duration("command_timeout", &redis.command_timeout_ms);
  if (YAML::Node w = r.Get("warmup"); w.IsDefined()) {
    ParseWarmup(ctx, w, "redis.warmup", &out->warmup);
  }
  if (redis.enabled && redis.servers.nodes.empty()) {
    ctx.Error(n.Mark(), "redis: enabled but no address, cluster nodes or sentinel given");
  }
  r.Finish();
}

void ParseNamespace(ConfigContext& ctx, const std::string& name, const YAML::Node& n,
                    NamespaceConfig* ns) {
  std::string what = StrCat("cache_strategies.", name);
  MapReader r(ctx, n, what);
  if (!r.valid()) return;
  ns->name = name;
  r.Duration("ttl", &ns->ttl_ms);
  if (ns->ttl_ms <= 0) ctx.Error(n.Mark(), StrCat(what, ".ttl: must be positive"));
  r.Int("max_size", &ns->l1.max_entries, 0, int64_t{1} << 40);
  r.Size("max_memory", &ns->l1.max_bytes);
  if (ns->l1.max_entries == 0 && ns->l1.max_bytes == 0) {
    ctx.Error(n.Mark(), StrCat(what, ": max_size and max_memory are both 0 (unbounded)"));
  }
  if (YAML::Node p = r.Get("eviction_policy"); p.IsDefined()) {
    std::string text;
    if (ReadScalar(ctx, p, StrCat(what, ".eviction_policy"), &text)) {
      auto policy = ParseEvictionPolicy(text);
      if (policy.ok()) {
        ns->l1.policy = *policy;
      } else {
        ctx.Error(p.Mark(), StrCat(what, ".eviction_policy: ", policy.status().message()));
      }
    }
  }
  r.Int("shards", &ns->l1.shards, 1, 256);
  r.Duration("l1_ttl", &ns->l1_ttl_ms);
  r.Bool("l2", &ns->l2);
  r.Duration("negative_ttl", &ns->negative_ttl_ms);
  r.Duration("stale_while_revalidate", &ns->stale_while_revalidate_ms);
  r.Duration("stale_if_error", &ns->stale_if_error_ms);
  ReadDouble(ctx, r, "early_refresh_beta", &ns->early_refresh_beta, 0, 100);
  std::string write;
  if (r.Enum("write_strategy", {"cache-aside", "write-through", "write-behind"}, &write)) {
    if (write == "write-through") ns->write = WriteStrategy::kWriteThrough;
    if (write == "write-behind") ns->write = WriteStrategy::kWriteBehind;
  }
  if (YAML::Node wb = r.Get("write_behind"); wb.IsDefined()) {
    MapReader wr(ctx, wb, StrCat(what, ".write_behind"));
    if (wr.valid()) {
      wr.Duration("interval", &ns->write_behind_interval_ms);
      wr.Int("batch", &ns->write_behind_batch, 1, 100000);
      wr.Int("queue", &ns->write_behind_queue, 1, 10000000);
      wr.Int("max_attempts", &ns->write_behind_max_attempts, 0, 1000000);
      wr.Finish();
    }
  }
  r.Finish();
}

bool ValidPlaceholders(const std::string& pattern, std::string* why) {
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '}') {
      *why = "has a '}' without '{'";
      return false;
    }
    if (pattern[i] != '{') continue;
    size_t close = pattern.find('}', i);
    if (close == std::string::npos) {
      *why = "has a '{' without '}'";
      return false;
    }
    if (close == i + 1) {
      *why = "has an empty {} placeholder";
      return false;
    }
    for (size_t j = i + 1; j < close; ++j) {
      char c = pattern[j];
      if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
        *why = StrCat("placeholder {", pattern.substr(i + 1, close - i - 1),
                      "} may use letters, digits, _ . - only");
        return false;
      }
    }
    i = close;
  }
  return true;
}

void ParseRule(ConfigContext& ctx, const YAML::Node& n, const std::string& what,
               InvalidationMode default_mode, int64_t default_delay, int64_t default_ttl,
               std::vector<InvalidationRule>* out) {
  InvalidationRule rule;
  rule.mode = default_mode;
  rule.delay_ms = default_delay;
  rule.ttl_ms = default_ttl;
  YAML::Mark mark = n.Mark();
  if (n.IsScalar()) {
    if (!ReadScalar(ctx, n, what, &rule.pattern)) return;
  } else {
    MapReader r(ctx, n, what);
    if (!r.valid()) return;
    r.Require("pattern");
    r.String("pattern", &rule.pattern);
    std::string mode;
    if (r.Enum("strategy", {"immediate", "lazy", "time-based"}, &mode) && !mode.empty()) {
      rule.mode = mode == "lazy"         ? InvalidationMode::kLazy
                  : mode == "time-based" ? InvalidationMode::kTimeBased
                                         : InvalidationMode::kImmediate;
    }
    r.Duration("delay", &rule.delay_ms);
    r.Duration("ttl", &rule.ttl_ms);
    r.Finish();
  }
  std::string why;
  if (rule.pattern.empty()) {
    ctx.Error(mark, StrCat(what, ": empty pattern"));
    return;
  }
  if (!ValidPlaceholders(rule.pattern, &why)) {
    ctx.Error(mark, StrCat(what, ": pattern \"", rule.pattern, "\" ", why));
    return;
  }
  if (rule.mode == InvalidationMode::kTimeBased && rule.ttl_ms <= 0) {
    ctx.Error(mark, StrCat(what, ": a time-based invalidation needs a ttl"));
    return;
  }
  out->push_back(std::move(rule));
}

void ParseInvalidation(ConfigContext& ctx, const YAML::Node& n, CacheConfig* out) {
  MapReader r(ctx, n, "invalidation");
  if (!r.valid()) return;
  YAML::Node events = r.Get("events");
  r.Finish();
  ForEachNamed(ctx, events, "invalidation.events", "expected a mapping of event name to patterns",
               [&](const std::string& name, const YAML::Node& body) {
                 std::string what = StrCat("invalidation.events.", name);
                 std::vector<InvalidationRule>& rules = out->events[name];
                 if (body.IsSequence()) {
                   for (size_t i = 0; i < body.size(); ++i) {
                     ParseRule(ctx, body[i], StrCat(what, "[", i, "]"),
                               InvalidationMode::kImmediate, 5000, 0, &rules);
                   }
                 } else if (body.IsMap()) {
                   // {strategy, delay, ttl, patterns: [...]}: one setting for all of the event's
                   // patterns.
                   MapReader er(ctx, body, what);
                   InvalidationMode mode = InvalidationMode::kImmediate;
                   std::string m;
                   if (er.Enum("strategy", {"immediate", "lazy", "time-based"}, &m) && !m.empty()) {
                     mode = m == "lazy"         ? InvalidationMode::kLazy
                            : m == "time-based" ? InvalidationMode::kTimeBased
                                                : InvalidationMode::kImmediate;
                   }
                   int64_t delay = 5000, ttl = 0;
                   er.Duration("delay", &delay);
                   er.Duration("ttl", &ttl);
                   er.Require("patterns");
                   YAML::Node patterns = er.Get("patterns");
                   er.Finish();
                   if (patterns.IsSequence()) {
                     for (size_t i = 0; i < patterns.size(); ++i) {
                       ParseRule(ctx, patterns[i], StrCat(what, ".patterns[", i, "]"), mode, delay,
                                 ttl, &rules);
                     }
                   } else if (patterns.IsDefined()) {
                     ctx.Error(patterns.Mark(), StrCat(what, ".patterns: expected a list"));
                   }
                 } else {
                   ParseRule(ctx, body, what, InvalidationMode::kImmediate, 5000, 0, &rules);
                 }
               });
}

}  // namespace

const char* WriteStrategyName(WriteStrategy s) {
  switch (s) {
    case WriteStrategy::kCacheAside:
      return "cache-aside";
    case WriteStrategy::kWriteThrough:
      return "write-through";
    case WriteStrategy::kWriteBehind:
      return "write-behind";
  }
  return "?";
}

void ParseCacheConfig(ConfigContext& ctx, const YAML::Node& node, CacheConfig* out) {
  MapReader r(ctx, node, "cache");
  if (!r.valid()) return;
  ForEachNamed(ctx, r.Get("cache_strategies"), "cache_strategies",
               "expected a mapping of namespace name to settings",
               [&](const std::string& name, const YAML::Node& body) {
                 ParseNamespace(ctx, name, body, &out->namespaces[name]);
               });
  if (YAML::Node n = r.Get("redis"); n.IsDefined()) ParseRedis(ctx, n, out);
  if (YAML::Node n = r.Get("warmup"); n.IsDefined()) ParseWarmup(ctx, n, "warmup", &out->warmup);
  if (YAML::Node n = r.Get("cache_penetration"); n.IsDefined()) {
    MapReader pr(ctx, n, "cache_penetration");
    if (pr.valid()) {
      out->penetration.enabled = true;
      pr.Bool("enabled", &out->penetration.enabled);
      std::string strategy;
      pr.Enum("strategy", {"bloom_filter"}, &strategy);
      ReadDouble(ctx, pr, "false_positive_rate", &out->penetration.false_positive_rate, 1e-9, 0.5);
      int64_t capacity = static_cast<int64_t>(out->penetration.capacity);
      pr.Int("capacity", &capacity, 1, int64_t{1} << 34);
      out->penetration.capacity = static_cast<uint64_t>(capacity);
      pr.Finish();
    }
  }
  if (YAML::Node n = r.Get("cache_avalanche"); n.IsDefined()) {
    MapReader ar(ctx, n, "cache_avalanche");
    if (ar.valid()) {
      bool enabled = true;
      ar.Bool("enabled", &enabled);
      std::vector<std::string> strategies;
      YAML::Node st = ar.Get("strategy");
      if (st.IsScalar()) {
        strategies.push_back(st.as<std::string>());
      } else if (st.IsDefined()) {
        ar.StringList("strategy", &strategies);
      } else {
        strategies = {"random_expiry", "lock_request"};
      }
      for (const std::string& s : strategies) {
        if (s == "random_expiry") {
          out->avalanche.random_expiry = enabled;
        } else if (s == "lock_request") {
          out->avalanche.lock_request = enabled;
        } else {
          ctx.Error(st.Mark(), StrCat("cache_avalanche.strategy: unknown \"", s,
                                      "\" (expected random_expiry or lock_request)"));
        }
      }
      ReadMillis(ctx, ar, "lock_timeout", &out->avalanche.lock_timeout_ms);
      ReadDouble(ctx, ar, "jitter", &out->avalanche.jitter, 0, 1);
      ar.Finish();
    }
  }
  if (YAML::Node n = r.Get("cache_breakdown"); n.IsDefined()) {
    MapReader br(ctx, n, "cache_breakdown");
    if (br.valid()) {
      bool enabled = true;
      br.Bool("enabled", &enabled);
      std::string strategy;
      br.Enum("strategy", {"single_flight"}, &strategy);
      out->breakdown.single_flight = enabled;
      br.Int("max_concurrent", &out->breakdown.max_concurrent, 1, 1000000);
      br.Finish();
    }
  }
  if (YAML::Node n = r.Get("invalidation"); n.IsDefined()) ParseInvalidation(ctx, n, out);
  r.Finish();

  for (const std::string& ns : out->warmup.namespaces) {
    if (!out->namespaces.count(ns)) {
      std::vector<std::string> names;
      for (const auto& [k, v] : out->namespaces) names.push_back(k);
      std::string hint = Suggest(ns, names);
      ctx.Error(StrCat("warmup: strategy \"", ns, "\" is not in cache_strategies",
                       hint.empty() ? "" : StrCat(" (did you mean \"", hint, "\"?)")));
    }
  }
}

CacheConfigLoad LoadCacheConfigText(const std::string& text, const std::string& name,
                                    const EnvLookup& env) {
  CacheConfigLoad load;
  ConfigContext ctx(name, env);
  if (auto root = LoadYamlText(ctx, text)) ParseCacheConfig(ctx, *root, &load.config);
  load.errors = ctx.errors();
  return load;
}

CacheConfigLoad LoadCacheConfigFile(const std::string& path, const EnvLookup& env) {
  CacheConfigLoad load;
  ConfigContext ctx(path, env);
  if (auto root = LoadYamlFile(ctx, path)) ParseCacheConfig(ctx, *root, &load.config);
  load.errors = ctx.errors();
  return load;
}

absl::StatusOr<std::string> ExpandPattern(const std::string& pattern,
                                          const std::map<std::string, std::string>& params) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '{') {
      out.push_back(pattern[i]);
      continue;
    }
    size_t close = pattern.find('}', i);
    if (close == std::string::npos) return absl::InvalidArgumentError("unbalanced '{'");
    std::string name = pattern.substr(i + 1, close - i - 1);
    auto it = params.find(name);
    if (it == params.end() || it->second.empty()) {
      return absl::InvalidArgumentError(
          StrCat("the event has no \"", name, "\" for pattern \"", pattern, "\""));
    }
    out.append(GlobEscape(it->second));
    i = close;
  }
  return out;
}

}  // namespace bulwark::cache
