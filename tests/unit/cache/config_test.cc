#include "cache/config.h"

#include <gtest/gtest.h>

#include <string>

namespace bulwark::cache {
namespace {

EnvLookup RedisPasswordEnv() {
  return [](std::string_view name) -> std::optional<std::string> {
    if (name == "REDIS_PASSWORD") return "s3cret";
    return std::nullopt;
  };
}

std::string Errors(const CacheConfigLoad& l) {
  std::string all;
  for (const auto& e : l.errors) all += e + "\n";
  return all;
}

TEST(CacheConfig, TheAlkaidSysFileLoadsAsItIs) {
  auto load = LoadCacheConfigFile(
      std::string(BULWARK_SOURCE_DIR) + "/../shared/fixtures/seeds/000-cache.yml",
      RedisPasswordEnv());
  ASSERT_TRUE(load.ok()) << Errors(load);
  const CacheConfig& c = load.config;
  ASSERT_EQ(c.namespaces.size(), 4u);
  const NamespaceConfig& user = c.namespaces.at("user");
  EXPECT_EQ(user.ttl_ms, 3600 * 1000);
  EXPECT_EQ(user.l1.max_entries, 1000);
  EXPECT_EQ(user.l1.policy, EvictionPolicy::kLru);
  EXPECT_EQ(c.namespaces.at("application").l1.policy, EvictionPolicy::kLfu);
  EXPECT_EQ(c.namespaces.at("dynamic").l1.policy, EvictionPolicy::kTtl);
  EXPECT_EQ(c.namespaces.at("dynamic").ttl_ms, 300 * 1000);
  EXPECT_TRUE(c.redis.enabled);
  EXPECT_EQ(c.redis.servers.mode, RedisServers::Mode::kCluster);
  ASSERT_EQ(c.redis.servers.nodes.size(), 3u);
  EXPECT_EQ(c.redis.servers.nodes[1].host, "redis-2.alkaidsys.com");
  EXPECT_EQ(c.redis.servers.nodes[1].port, 6379);
  EXPECT_EQ(c.redis.password, "s3cret");
  EXPECT_TRUE(c.warmup.enabled);
  EXPECT_EQ(c.warmup.namespaces, (std::vector<std::string>{"user", "application", "plugin"}));
  EXPECT_TRUE(c.penetration.enabled);
  EXPECT_DOUBLE_EQ(c.penetration.false_positive_rate, 0.01);
  EXPECT_EQ(c.penetration.capacity, 1000000u);
  EXPECT_TRUE(c.avalanche.random_expiry);
  EXPECT_TRUE(c.avalanche.lock_request);
  EXPECT_EQ(c.avalanche.lock_timeout_ms, 10000);  // a bare number is milliseconds here
  EXPECT_TRUE(c.breakdown.single_flight);
  EXPECT_EQ(c.breakdown.max_concurrent, 100);
}

TEST(CacheConfig, TheAlkaidSysFileNeedsItsPasswordVariable) {
  auto load = LoadCacheConfigFile(
      std::string(BULWARK_SOURCE_DIR) + "/../shared/fixtures/seeds/000-cache.yml",
      [](std::string_view) { return std::nullopt; });
  ASSERT_FALSE(load.ok());
  EXPECT_NE(Errors(load).find("000-cache.yml:"), std::string::npos);
  EXPECT_NE(Errors(load).find("REDIS_PASSWORD"), std::string::npos);
}

TEST(CacheConfig, EventsSentinelWarmupAndWriteStrategies) {
  auto load = LoadCacheConfigText(R"(
cache_strategies:
  user:
    ttl: 10m
    max_size: 5000
    max_memory: 64M
    write_strategy: write-behind
    write_behind: {interval: 500ms, batch: 50, queue: 1000}
    stale_while_revalidate: 30s
    negative_ttl: 1m
redis:
  sentinel:
    master_name: mymaster
    nodes: ["127.0.0.1:26379", {host: 127.0.0.2, port: 26380}]
warmup:
  strategies: [user]
  keys: ["user:1", "user:2"]
  schedule: "*/10 * * * *"
invalidation:
  events:
    user.updated: ["user:{userId}:*", "user_profile:{userId}"]
    organization.updated:
      strategy: lazy
      delay: 5s
      patterns: ["org:{orgId}:*"]
    session.expired:
      - {pattern: "session:{sessionId}", strategy: time-based, ttl: 1h}
)",
                                  "t.yml", RedisPasswordEnv());
  ASSERT_TRUE(load.ok()) << Errors(load);
  const CacheConfig& c = load.config;
  const NamespaceConfig& user = c.namespaces.at("user");
  EXPECT_EQ(user.ttl_ms, 600000);
  EXPECT_EQ(user.l1.policy, EvictionPolicy::kWTinyLfu);  // the default
  EXPECT_EQ(user.l1.max_bytes, 64 << 20);
  EXPECT_EQ(user.write, WriteStrategy::kWriteBehind);
  EXPECT_EQ(user.write_behind_interval_ms, 500);
  EXPECT_EQ(user.write_behind_batch, 50);
  EXPECT_EQ(user.stale_while_revalidate_ms, 30000);
  EXPECT_EQ(c.redis.servers.mode, RedisServers::Mode::kSentinel);
  EXPECT_EQ(c.redis.servers.sentinel_master, "mymaster");
  ASSERT_EQ(c.redis.servers.nodes.size(), 2u);
  EXPECT_EQ(c.redis.servers.nodes[1].port, 26380);
  ASSERT_TRUE(c.warmup.schedule.has_value());
  EXPECT_EQ(c.warmup.keys.size(), 2u);
  ASSERT_EQ(c.events.at("user.updated").size(), 2u);
  EXPECT_EQ(c.events.at("user.updated")[0].mode, InvalidationMode::kImmediate);
  EXPECT_EQ(c.events.at("organization.updated")[0].mode, InvalidationMode::kLazy);
  EXPECT_EQ(c.events.at("organization.updated")[0].delay_ms, 5000);
  EXPECT_EQ(c.events.at("session.expired")[0].mode, InvalidationMode::kTimeBased);
  EXPECT_EQ(c.events.at("session.expired")[0].ttl_ms, 3600000);
}

TEST(CacheConfig, ErrorsNameTheLineAndTheProblem) {
  auto load = LoadCacheConfigText(R"(
cache_strategies:
  user:
    ttl: 3600
    max_size: 1000
    eviction_policy: MRU
    max_sise: 3
redis:
  cluster:
    enabled: true
    nodes: []
warmup:
  strategies: [usr]
  schedule: "0 25 * * *"
cache_penetration:
  false_positive_rate: 2
invalidation:
  events:
    user.updated: ["user:{userId:*"]
    session.expired: [{pattern: "session:{id}", strategy: time-based}]
)",
                                  "bad.yml", RedisPasswordEnv());
  std::string e = Errors(load);
  EXPECT_NE(e.find("bad.yml:6:"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown eviction policy \"MRU\""), std::string::npos) << e;
  EXPECT_NE(e.find("max_sise"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean \"max_size\""), std::string::npos) << e;
  EXPECT_NE(e.find("enabled but lists no nodes"), std::string::npos) << e;
  EXPECT_NE(e.find("strategy \"usr\" is not in cache_strategies (did you mean \"user\"?)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("cron field 2 (hour): 25 is outside 0-23"), std::string::npos) << e;
  EXPECT_NE(e.find("false_positive_rate: expected a number"), std::string::npos) << e;
  EXPECT_NE(e.find("has a '{' without '}'"), std::string::npos) << e;
  EXPECT_NE(e.find("a time-based invalidation needs a ttl"), std::string::npos) << e;
}

TEST(ExpandPattern, FillsAndEscapesPlaceholders) {
  EXPECT_EQ(*ExpandPattern("user:{userId}:*", {{"userId", "7"}}), "user:7:*");
  EXPECT_EQ(*ExpandPattern("plain", {}), "plain");
  // An id cannot widen the pattern.
  EXPECT_EQ(*ExpandPattern("user:{userId}:*", {{"userId", "*"}}), "user:\\*:*");
  auto missing = ExpandPattern("user:{userId}:*", {{"orgId", "1"}});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("no \"userId\""), std::string::npos);
  EXPECT_FALSE(ExpandPattern("user:{userId}:*", {{"userId", ""}}).ok());
}

}  // namespace
}  // namespace bulwark::cache
