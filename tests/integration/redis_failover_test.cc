// The gateway's Redis through a failover: three Sentinels, a master killed under load, a replica
// promoted. Every instance follows the new master, decisions made while there is none are
// redis_failure's and counted, and no ban an instance accepted is lost — not one made while
// Redis was away, not one the old master took just before it died.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/strings.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

using namespace std::chrono_literals;

std::string SentinelConf(int master) {
  return StrCat("sentinel monitor mymaster 127.0.0.1 ", master,
                " 2\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 5000\n");
}

std::string Config(int port, int admin, int backend, const std::vector<int>& sentinels) {
  std::string nodes;
  for (int s : sentinels) StrAppend(&nodes, nodes.empty() ? "" : ", ", "'127.0.0.1:", s, "'");
  return StrCat(
      "workers: 2\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:", admin,
      "}\nredis:\n  sentinel: {master_name: mymaster, nodes: [", nodes,
      "]}\n  timeout: 200ms\n  connect_timeout: 200ms\n"
      "limit_req_zones:\n  z: {key: 'header:X-User', rate: 50r/s, shared: true, "
      "redis_failure: local}\n"
      "listeners:\n  - listen: 127.0.0.1:",
      port,
      "\n    routes:\n"
      "      - {prefix: /deny, upstream: app, ban: {on: [401], maxretry: 1, bantime: 1h, key: "
      "'header:X-User'}}\n"
      "      - {prefix: /, upstream: app, limit_req: {zone: z, burst: 0, nodelay: true}}\n"
      "upstreams:\n  app: {servers: ['127.0.0.1:",
      backend, "']}\n");
}

std::set<std::string> BannedKeys(int admin) {
  std::set<std::string> out;
  std::string body = HttpGet(admin, "/api/v1/bans").body;
  for (size_t at = 0; (at = body.find("\"key\":\"", at)) != std::string::npos;) {
    at += 7;
    size_t end = body.find('"', at);
    out.insert(body.substr(at, end - at));
  }
  return out;
}

int64_t MetricInt(int admin, const std::string& series) {
  std::string v = Metric(HttpGet(admin, "/metrics").body, series);
  return v.empty() ? -1 : std::stoll(v);
}

TEST(RedisFailover, SentinelPromotionLosesNoBanAndEveryInstanceFollows) {
  RedisServer master;
  RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(master.port())});
  RedisServer s1({}, SentinelConf(master.port()));
  RedisServer s2({}, SentinelConf(master.port()));
  RedisServer s3({}, SentinelConf(master.port()));
  // The replica in sync, and the Sentinels aware of it and of each other (they can elect one
  // of them and promote it).
  ASSERT_TRUE(WaitFor(
      [&] {
        return RedisCli(replica.port(), {"INFO", "replication"}).find("master_link_status:up") !=
               std::string::npos;
      },
      10000));
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const RedisServer* s : {&s1, &s2, &s3}) {
          if (RedisCli(s->port(), {"SENTINEL", "CKQUORUM", "mymaster"}).rfind("OK 3", 0) != 0)
            return false;
          if (RedisCli(s->port(), {"SENTINEL", "REPLICAS", "mymaster"}).empty()) return false;
        }
        return true;
      },
      30000))
      << RedisCli(s1.port(), {"SENTINEL", "CKQUORUM", "mymaster"});

  Backend backend([](const Backend::Request& r) {
    return r.target.rfind("/deny", 0) == 0 ? Backend::Reply(401, "no") : Backend::Reply(200, "ok");
  });
  const std::vector<int> sentinels = {s1.port(), s2.port(), s3.port()};
  int p[2] = {FreePort(), FreePort()}, a[2] = {FreePort(), FreePort()};
  Bulwark b0(Config(p[0], a[0], backend.port(), sentinels));
  Bulwark b1(Config(p[1], a[1], backend.port(), sentinels));
  ASSERT_TRUE(b0.Ready(p[0], a[0])) << b0.log();
  ASSERT_TRUE(b1.Ready(p[1], a[1])) << b1.log();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(WaitFor([&] { return MetricInt(a[i], "bulwark_redis_up") == 1; }, 10000))
        << (i == 0 ? b0.log() : b1.log());
  }

  // Load: clients limited through Redis on both instances; bans by hand (the admin API) and by
  // rule (a 401 on /deny bans the user at once) on both, all the time.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> bans;  // every ban an instance accepted
  std::atomic<int> answered{0}, limited{0}, failed{0};
  std::string failure;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int port = p[t % 2];
      auto c = std::make_unique<Client>(port);
      for (int n = 0; !stop; ++n) {
        Response r = c->Get("/", StrCat("X-User: u", t, "-", n % 20, "\r\n"));
        if (r.status == 200) {
          ++answered;
        } else if (r.status == 429) {
          ++limited;
        } else {
          ++failed;
          std::lock_guard<std::mutex> l(mu);
          failure = StrCat(r.status, " ", r.error);
        }
        if (r.status == 0 || r.closed) c = std::make_unique<Client>(port);
      }
    });
  }
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; !stop; ++n) {
        std::string admin_key = StrCat("adm-", i, "-", n);
        Response r = HttpPost(a[i], "/api/v1/bans",
                              StrCat(R"({"key": ")", admin_key, R"(", "duration": "1h"})"));
        if (r.status == 200) {
          std::lock_guard<std::mutex> l(mu);
          bans.push_back(admin_key);
        }
        std::string rule_key = StrCat("rule-", i, "-", n);
        if (HttpGet(p[i], "/deny", StrCat("X-User: ", rule_key, "\r\n")).status == 401) {
          std::lock_guard<std::mutex> l(mu);
          bans.push_back(rule_key);
        }
        std::this_thread::sleep_for(20ms);
      }
    });
  }

  std::this_thread::sleep_for(1500ms);
  int64_t fallbacks_before =
      MetricInt(a[0], "bulwark_ratelimit_redis_fallbacks_total{zone=\"z\"}") +
      MetricInt(a[1], "bulwark_ratelimit_redis_fallbacks_total{zone=\"z\"}");
  EXPECT_EQ(fallbacks_before, 0);
  int answered_at_kill = answered + limited;
  master.Kill();
  auto killed = std::chrono::steady_clock::now();
  // Sentinel sees the master down after a second, agrees, elects a leader and promotes.
  ASSERT_TRUE(
      WaitFor([&] { return RedisCli(replica.port(), {"ROLE"}).rfind("master", 0) == 0; }, 60000))
      << RedisCli(s1.port(), {"SENTINEL", "MASTER", "mymaster"});
  double gap_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  int answered_in_gap = answered + limited - answered_at_kill;
  // Every worker and the control links reconnect to the new master (Sentinel answers it within
  // a second).
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(WaitFor([&] { return MetricInt(a[i], "bulwark_redis_up") == 1; }, 15000))
        << (i == 0 ? b0.log() : b1.log());
  }
  std::this_thread::sleep_for(1000ms);  // load and bans go on against the new master
  stop = true;
  for (auto& t : threads) t.join();

  std::cout << "failover: promoted " << gap_s << " s after the kill; " << answered_in_gap
            << " requests answered in the gap; " << bans.size() << " bans made\n";
  EXPECT_EQ(failed.load(), 0) << failure;
  EXPECT_GT(answered_in_gap, 0);
  // Decisions without Redis were redis_failure's (local), and counted.
  int64_t fallbacks = MetricInt(a[0], "bulwark_ratelimit_redis_fallbacks_total{zone=\"z\"}") +
                      MetricInt(a[1], "bulwark_ratelimit_redis_fallbacks_total{zone=\"z\"}");
  EXPECT_GT(fallbacks, 0);
  for (int i = 0; i < 2; ++i) {
    EXPECT_GE(MetricInt(a[i], "bulwark_redis_master_changes_total"), 2) << i;
  }

  // No ban lost: each one in the new master and in both instances' tables.
  ASSERT_FALSE(bans.empty());
  std::string missing;
  bool all = WaitFor(
      [&] {
        missing.clear();
        std::set<std::string> held[2] = {BannedKeys(a[0]), BannedKeys(a[1])};
        // One question to Redis for all of them: the keys it does not hold.
        std::vector<std::string> ask = {
            "EVAL",
            "local m = {} for _, k in ipairs(KEYS) do "
            "if redis.call('EXISTS', k) == 0 then table.insert(m, k) end end return m",
            std::to_string(bans.size())};
        for (const std::string& k : bans) {
          ask.push_back("bulwark:ban:" + k);
          for (int i = 0; i < 2; ++i) {
            if (!held[i].count(k)) StrAppend(&missing, " instance", i, ":", k);
          }
        }
        std::string not_in_redis = RedisCli(replica.port(), ask);
        if (!not_in_redis.empty()) StrAppend(&missing, " redis:", not_in_redis);
        return missing.empty();
      },
      15000);
  EXPECT_TRUE(all) << "missing:" << missing << "\n"
                   << b0.log() << "\n--- instance 1:\n"
                   << b1.log();

  // Every instance writes to the new master: its limits and its bans land there.
  auto on_new_master = [&](const std::string& key) {
    return WaitFor([&] { return RedisCli(replica.port(), {"EXISTS", key}) == "1"; }, 5000);
  };
  for (int i = 0; i < 2; ++i) {
    std::string user = StrCat("after-", i);
    EXPECT_EQ(HttpGet(p[i], "/", StrCat("X-User: ", user, "\r\n")).status, 200);
    EXPECT_TRUE(on_new_master("bulwark:lr:z:" + user)) << i;
    EXPECT_EQ(HttpGet(p[i], "/deny", StrCat("X-User: ban-", user, "\r\n")).status, 401);
    EXPECT_TRUE(on_new_master("bulwark:ban:ban-" + user)) << i;
  }
}

// The same `redis:` keys as the cache library's, with a Redis Cluster: limits decided in the
// slot's master, bans on every master and loaded from all of them, cache purges walking every
// master.
TEST(RedisFailover, GatewaySharesLimitsBansAndCacheThroughACluster) {
  RedisClusterServers cluster(3);
  ASSERT_TRUE(cluster.ok()) << cluster.log();
  Backend backend([](const Backend::Request& r) {
    return Backend::Reply(200, "v:" + r.target, "Cache-Control: max-age=60\r\n");
  });
  auto config = [&](int port, int admin) {
    return StrCat("workers: 2\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:", admin,
                  "}\nredis:\n  cluster: {enabled: true, nodes: ['127.0.0.1:", FreePort(),
                  "', '127.0.0.1:", cluster.port(1), "']}\n  timeout: 500ms\n",
                  "limit_req_zones:\n  z: {key: 'header:X-User', rate: 1r/m, shared: true}\n"
                  "cache_zones:\n  main: {max_size: 16m, redis: true}\n"
                  "listeners:\n  - listen: 127.0.0.1:",
                  port,
                  "\n    routes:\n      - {prefix: /c/, upstream: app, cache: main}\n"
                  "      - {prefix: /, upstream: app, limit_req: {zone: z, burst: 0, nodelay: "
                  "true}}\nupstreams:\n  app: {servers: ['127.0.0.1:",
                  backend.port(), "']}\n");
  };
  int p1 = FreePort(), a1 = FreePort(), p2 = FreePort(), a2 = FreePort();
  Bulwark b1(config(p1, a1)), b2(config(p2, a2));
  ASSERT_TRUE(b1.Ready(p1, a1)) << b1.log();
  ASSERT_TRUE(b2.Ready(p2, a2)) << b2.log();
  for (int a : {a1, a2}) {
    ASSERT_TRUE(WaitFor([&] { return MetricInt(a, "bulwark_redis_up") == 1; }, 10000)) << b1.log();
  }
  // One limit across both instances, for users whose keys live on different masters.
  for (int u = 0; u < 6; ++u) {
    std::string h = StrCat("X-User: user-", u, "\r\n");
    EXPECT_EQ(HttpGet(p1, "/", h).status, 200) << u;
    EXPECT_EQ(HttpGet(p2, "/", h).status, 429) << u;
  }
  EXPECT_EQ(MetricInt(a1, "bulwark_ratelimit_redis_fallbacks_total{zone=\"z\"}"), 0);
  EXPECT_EQ(MetricInt(a2, "bulwark_ratelimit_redis_fallbacks_total{zone=\"z\"}"), 0);

  // Bans: announced to the other instance, stored on the masters that own their keys, and loaded
  // from every master by an instance that starts later.
  std::set<std::string> keys;
  for (int i = 0; i < 20; ++i) {
    std::string k = StrCat("198.51.100.", i);
    ASSERT_EQ(
        HttpPost(a1, "/api/v1/bans", StrCat(R"({"key": ")", k, R"(", "duration": "1h"})")).status,
        200);
    keys.insert(k);
  }
  EXPECT_TRUE(WaitFor([&] { return BannedKeys(a2) == keys; }, 5000));
  int stored = 0;
  for (const std::string& k : keys) {
    stored += RedisCli(cluster.port(0), {"-c", "EXISTS", "bulwark:ban:" + k}) == "1";
  }
  EXPECT_EQ(stored, 20);
  int masters_with_bans = 0;
  for (size_t n = 0; n < cluster.size(); ++n) {
    masters_with_bans += RedisCli(cluster.port(n), {"--scan", "--pattern", "bulwark:ban:*"}) != "";
  }
  EXPECT_GE(masters_with_bans, 2);  // 20 keys over 3 masters: the load must walk them all
  int p3 = FreePort(), a3 = FreePort();
  Bulwark b3(config(p3, a3));
  ASSERT_TRUE(b3.Ready(p3, a3)) << b3.log();
  EXPECT_TRUE(WaitFor([&] { return BannedKeys(a3) == keys; }, 10000))
      << BannedKeys(a3).size() << " of 20\n"
      << b3.log();

  // The HTTP cache: what one instance stored the other finds; a purge empties every master.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(HttpGet(p1, StrCat("/c/", i)).status, 200);
  auto cached = [&] {
    int n = 0;
    for (size_t m = 0; m < cluster.size(); ++m) {
      std::string out = RedisCli(cluster.port(m), {"--scan", "--pattern", "bulwark:hc:main:*"});
      n += out.empty() ? 0 : static_cast<int>(std::count(out.begin(), out.end(), '\n')) + 1;
    }
    return n;
  };
  ASSERT_TRUE(WaitFor([&] { return cached() == 10; }, 5000)) << cached();
  Response hit = HttpGet(p2, "/c/3");
  EXPECT_EQ(hit.headers["x-cache"], "HIT");
  Response purge = HttpPost(a1, "/api/v1/cache/purge", R"({"all": true})");
  EXPECT_EQ(purge.status, 200) << purge.body;
  EXPECT_TRUE(WaitFor([&] { return cached() == 0; }, 5000)) << cached() << b1.log();
  EXPECT_TRUE(WaitFor([&] { return HttpGet(p2, "/c/3").headers["x-cache"] == "MISS"; }, 5000));
}

}  // namespace
}  // namespace bulwark::testing
