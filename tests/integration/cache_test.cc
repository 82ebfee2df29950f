// The multi-level cache library against a real Redis: two instances sharing L2, invalidations
// crossing instances, Redis killed under load, Sentinel failover, Redis Cluster (slot routing,
// resharding), the cross-instance load lock.
#include "cache/cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/redis_cluster.h"
#include "tests/cache_sync.h"
#include "tests/integration/harness.h"

namespace bulwark::cache {
namespace {

using namespace std::chrono_literals;
using testing::RedisCli;
using testing::RedisServer;

CacheConfig RedisConfig(int port) {
  CacheConfig c;
  NamespaceConfig user;
  user.name = "user";
  user.ttl_ms = 60000;
  user.l1.max_entries = 10000;
  c.namespaces["user"] = user;
  c.redis.enabled = true;
  c.redis.servers.nodes = {{"127.0.0.1", port, ""}};
  c.redis.command_timeout_ms = 500;
  c.events["user.updated"] = {{"user:{userId}*", InvalidationMode::kImmediate, 0, 0}};
  return c;
}

// One "bulwark instance": a Cache with its control loop and a client on a second loop.
struct Instance {
  explicit Instance(const CacheConfig& cfg) {
    auto c = Cache::Create(cfg);
    EXPECT_TRUE(c.ok()) << c.status();
    cache = std::move(*c);
    cache->SetLoader("user", [this](const std::string& key, LoadDone done) {
      loads.fetch_add(1);
      done(Loaded{"loaded:" + key, {}, 0});
    });
  }
  void Start() {
    control.Run([&] { cache->Start(control.loop()); });
    worker.Run([&] { client = cache->Attach(worker.loop()); });
  }
  ~Instance() {
    worker.Run([&] { client.reset(); });
    control.Run([&] { cache->Stop(); });
  }
  bool WaitReady(int timeout_ms = 5000) {
    for (int waited = 0; waited < timeout_ms; waited += 10) {
      bool up = false;
      worker.Run([&] { up = client->l2_up(); });
      if (up && cache->subscriber_up()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  GetResult Get(const std::string& key) { return GetSync(worker, client.get(), key); }
  absl::Status Set(const std::string& key, const std::string& value, SetOptions o = {}) {
    return DoneSync(worker, [&](DoneCallback d) { client->Set(key, value, o, d); });
  }
  bool InL1(const std::string& key) {
    bool hit = false;
    worker.Run([&] { hit = cache->PeekL1(key, worker.loop()->now_ms()).hit(); });
    return hit;
  }
  // Waits until this instance has received `n` invalidations from others.
  bool WaitReceived(uint64_t n) {
    for (int i = 0; i < 300; ++i) {
      if (cache->counters().invalidations_received.load() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  // Waits for another instance's invalidation to reach this one.
  bool WaitGoneFromL1(const std::string& key) {
    for (int i = 0; i < 300; ++i) {
      if (!InL1(key)) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  LoopThread control, worker;
  std::unique_ptr<Cache> cache;
  std::unique_ptr<CacheClient> client;
  std::atomic<int> loads{0};
};

TEST(CacheRedis, TwoInstancesShareL2) {
  RedisServer redis;
  Instance a(RedisConfig(redis.port())), b(RedisConfig(redis.port()));
  a.Start();
  b.Start();
  ASSERT_TRUE(a.WaitReady());
  ASSERT_TRUE(b.WaitReady());
  GetResult r = a.Get("user:1");
  EXPECT_EQ(Value(r), "loaded:user:1");
  EXPECT_EQ(r.source, Source::kLoader);
  r = b.Get("user:1");
  EXPECT_EQ(Value(r), "loaded:user:1");
  EXPECT_EQ(r.source, Source::kL2);
  EXPECT_EQ(b.loads.load(), 0);
  EXPECT_EQ(b.Get("user:1").source, Source::kL1);
  EXPECT_EQ(b.cache->counters().l2_hits.load(), 1u);
  // Several keys from Redis in one MGET.
  ASSERT_TRUE(a.Set("user:10", "ten").ok());
  ASSERT_TRUE(a.Set("user:11", "eleven").ok());
  ASSERT_TRUE(b.WaitReceived(2));
  std::promise<std::vector<GetResult>> many;
  b.worker.Run([&] {
    b.client->GetMany({"user:10", "user:11", "user:12"},
                      [&many](std::vector<GetResult> r) { many.set_value(std::move(r)); });
  });
  std::vector<GetResult> got = many.get_future().get();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(Value(got[0]), "ten");
  EXPECT_EQ(got[0].source, Source::kL2);
  EXPECT_EQ(Value(got[1]), "eleven");
  EXPECT_EQ(got[1].source, Source::kL2);
  EXPECT_EQ(Value(got[2]), "loaded:user:12");
  EXPECT_NE(RedisCli(redis.port(), {"INFO", "commandstats"}).find("cmdstat_mget:calls=1,"),
            std::string::npos);
  // The value in Redis carries its TTL.
  int64_t pttl = std::stoll(RedisCli(redis.port(), {"PTTL", "bulwark:cache:k:user:1"}));
  EXPECT_GT(pttl, 50000);
  EXPECT_LE(pttl, 60000);
}

TEST(CacheRedis, InvalidationsCrossInstances) {
  RedisServer redis;
  Instance a(RedisConfig(redis.port())), b(RedisConfig(redis.port()));
  a.Start();
  b.Start();
  ASSERT_TRUE(a.WaitReady());
  ASSERT_TRUE(b.WaitReady());

  // A write on A evicts B's L1 copy; B then reads the new value from L2.
  ASSERT_TRUE(a.Set("user:1", "v1").ok());
  // (A read racing with an invalidation is served but not kept in L1, so let A's publish land.)
  ASSERT_TRUE(b.WaitReceived(1));
  EXPECT_EQ(Value(b.Get("user:1")), "v1");
  EXPECT_TRUE(b.InL1("user:1"));
  ASSERT_TRUE(a.Set("user:1", "v2").ok());
  ASSERT_TRUE(b.WaitGoneFromL1("user:1"));
  GetResult r = b.Get("user:1");
  EXPECT_EQ(Value(r), "v2");
  EXPECT_EQ(r.source, Source::kL2);

  // Tags: A invalidates a tag; B's L1 copy and the L2 copy both go.
  SetOptions tagged;
  tagged.tags = {"team-7"};
  ASSERT_TRUE(a.Set("user:2", "t", tagged).ok());
  ASSERT_TRUE(b.WaitReceived(3));
  EXPECT_EQ(Value(b.Get("user:2")), "t");
  EXPECT_TRUE(b.InL1("user:2"));
  ASSERT_TRUE(
      DoneSync(a.worker, [&](DoneCallback d) { a.client->InvalidateTag("team-7", d); }).ok());
  ASSERT_TRUE(b.WaitGoneFromL1("user:2"));
  EXPECT_EQ(RedisCli(redis.port(), {"EXISTS", "bulwark:cache:k:user:2"}), "0");
  EXPECT_EQ(b.Get("user:2").source, Source::kLoader);

  // A business event on A clears the pattern everywhere.
  ASSERT_TRUE(a.Set("user:30:profile", "p").ok());
  ASSERT_TRUE(a.Set("user:31:profile", "q").ok());
  ASSERT_TRUE(b.WaitReceived(6));
  EXPECT_EQ(Value(b.Get("user:30:profile")), "p");
  EXPECT_EQ(Value(b.Get("user:31:profile")), "q");
  ASSERT_TRUE(DoneSync(a.worker, [&](DoneCallback d) {
                a.client->Emit("user.updated", {{"userId", "30"}}, d);
              }).ok());
  ASSERT_TRUE(b.WaitGoneFromL1("user:30:profile"));
  EXPECT_TRUE(b.InL1("user:31:profile"));
  EXPECT_EQ(RedisCli(redis.port(), {"EXISTS", "bulwark:cache:k:user:30:profile"}), "0");
  EXPECT_EQ(RedisCli(redis.port(), {"EXISTS", "bulwark:cache:k:user:31:profile"}), "1");
  EXPECT_GT(b.cache->counters().invalidations_received.load(), 3u);
}

TEST(CacheRedis, RedisKilledUnderLoadCausesNoClientErrors) {
  RedisServer redis;
  CacheConfig cfg = RedisConfig(redis.port());
  cfg.namespaces["user"].ttl_ms = 200;  // keep going back to L2 and the loader
  Instance a(cfg), b(cfg);
  a.Start();
  b.Start();
  ASSERT_TRUE(a.WaitReady());
  ASSERT_TRUE(b.WaitReady());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, errors{0};
  auto hammer = [&](Instance& in) {
    for (int i = 0; !stop.load(); ++i) {
      GetResult r = in.Get("user:" + std::to_string(i % 50));
      (r.status.ok() ? ok : errors).fetch_add(1);
    }
  };
  std::thread ta(hammer, std::ref(a)), tb(hammer, std::ref(b));
  std::this_thread::sleep_for(500ms);
  redis.Kill();
  std::this_thread::sleep_for(1500ms);
  uint64_t skipped_while_down =
      a.cache->counters().l2_skipped.load() + a.cache->counters().l2_errors.load();
  redis.Start();  // same port
  ASSERT_TRUE(a.WaitReady(10000));
  ASSERT_TRUE(b.WaitReady(10000));
  std::this_thread::sleep_for(500ms);
  stop = true;
  ta.join();
  tb.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(ok.load(), 1000);
  EXPECT_GT(skipped_while_down, 0u);
  // The subscription was lost: L1 was flushed (it may have missed invalidations).
  EXPECT_GE(a.cache->counters().l1_flushes.load(), 1u);
  // And L2 works again by itself: a value set on A is read by B from Redis.
  ASSERT_TRUE(a.Set("user:after", "back").ok());
  // A cache-aside Set answers once L1 has the value; its Redis write follows on A's connection.
  // B reads after it has landed (a loaded machine once let B's GET overtake it).
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return RedisCli(redis.port(), {"EXISTS", "bulwark:cache:k:user:after"}) == "1";
      },
      10000));
  GetResult r = b.Get("user:after");
  EXPECT_EQ(Value(r), "back");
  EXPECT_EQ(r.source, Source::kL2);
}

TEST(CacheRedis, OneLoadAcrossInstancesWithTheLockRequest) {
  RedisServer redis;
  CacheConfig cfg = RedisConfig(redis.port());
  cfg.avalanche.lock_request = true;
  cfg.avalanche.lock_timeout_ms = 5000;
  std::atomic<int> loads{0};
  auto slow_loader = [&loads](Instance& in) {
    in.cache->SetLoader("user", [&loads, &in](const std::string& key, LoadDone done) {
      loads.fetch_add(1);
      std::thread([&in, key, done] {
        std::this_thread::sleep_for(300ms);
        in.worker.loop()->Post([key, done] { done(Loaded{"slow:" + key, {}, 0}); });
      }).detach();
    });
  };
  Instance a(cfg), b(cfg);
  slow_loader(a);
  slow_loader(b);
  a.Start();
  b.Start();
  ASSERT_TRUE(a.WaitReady());
  ASSERT_TRUE(b.WaitReady());
  GetResult ra, rb;
  std::thread t1([&] { ra = a.Get("user:big"); });
  std::this_thread::sleep_for(20ms);
  std::thread t2([&] { rb = b.Get("user:big"); });
  t1.join();
  t2.join();
  EXPECT_EQ(Value(ra), "slow:user:big");
  EXPECT_EQ(Value(rb), "slow:user:big");
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(rb.source, Source::kL2);
}

// Redis Cluster as L2: keys spread over the masters by slot, multi-slot MGET and SCAN-based
// invalidation work, and a slot migrated under the cache (ASK while it moves, MOVED once it has)
// is followed without a miss.
TEST(CacheRedis, ClusterRoutesBySlotAndFollowsAMigratingSlot) {
  testing::RedisClusterServers cluster(3);
  ASSERT_TRUE(cluster.ok()) << cluster.log();
  auto config = [&] {
    CacheConfig c = RedisConfig(0);
    c.redis.servers.mode = RedisServers::Mode::kCluster;
    // An unreachable seed first: discovery moves on to the next one.
    c.redis.servers.nodes = {{"127.0.0.1", testing::FreePort(), ""},
                             {"127.0.0.1", cluster.port(1), ""},
                             {"127.0.0.1", cluster.port(2), ""}};
    return c;
  };
  auto dbsize = [&](size_t i) { return std::stoi(RedisCli(cluster.port(i), {"DBSIZE"})); };
  Instance a(config()), b(config());
  a.Start();
  b.Start();
  ASSERT_TRUE(a.WaitReady());
  ASSERT_TRUE(b.WaitReady());
  // Our slot function agrees with the cluster's.
  for (const char* k : {"bulwark:cache:k:user:1", "x", "{user1000}.following"}) {
    EXPECT_EQ(RedisClusterClient::KeySlot(k),
              std::stoi(RedisCli(cluster.port(0), {"CLUSTER", "KEYSLOT", k})))
        << k;
  }
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(a.Set("user:" + std::to_string(i), "v" + std::to_string(i)).ok());
  }
  ASSERT_TRUE(b.WaitReceived(30));
  int total = 0;
  for (size_t i = 0; i < cluster.size(); ++i) {
    EXPECT_GT(dbsize(i), 0) << "node " << i << " got no keys";
    total += dbsize(i);
  }
  EXPECT_EQ(total, 30);
  // One GetMany over keys in many slots: split per slot, answered in order.
  std::vector<std::string> keys;
  for (int i = 0; i < 30; ++i) keys.push_back("user:" + std::to_string(i));
  std::promise<std::vector<GetResult>> many;
  b.worker.Run([&] {
    b.client->GetMany(keys, [&many](std::vector<GetResult> r) { many.set_value(std::move(r)); });
  });
  std::vector<GetResult> got = many.get_future().get();
  ASSERT_EQ(got.size(), 30u);
  for (int i = 0; i < 30; ++i) {
    EXPECT_EQ(Value(got[i]), "v" + std::to_string(i)) << i;
    EXPECT_EQ(got[i].source, Source::kL2) << i;
  }
  EXPECT_EQ(b.loads.load(), 0);
  // A pattern invalidation SCANs every master.
  ASSERT_TRUE(
      DoneSync(a.worker, [&](DoneCallback d) { a.client->InvalidatePattern("user:1*", d); }).ok());
  total = 0;
  for (size_t i = 0; i < cluster.size(); ++i) total += dbsize(i);
  EXPECT_EQ(total, 19);  // user:1 and user:10..19 are gone

  // Move the slot of user:25 to another master, the way redis-cli --cluster reshard does.
  const std::string l2key = "bulwark:cache:k:user:25";
  std::string slot = RedisCli(cluster.port(0), {"CLUSTER", "KEYSLOT", l2key});
  size_t from = 0;
  for (size_t i = 0; i < cluster.size(); ++i) {
    if (RedisCli(cluster.port(i), {"CLUSTER", "COUNTKEYSINSLOT", slot}) == "1") from = i;
  }
  size_t to = (from + 1) % cluster.size();
  std::string from_id = RedisCli(cluster.port(from), {"CLUSTER", "MYID"});
  std::string to_id = RedisCli(cluster.port(to), {"CLUSTER", "MYID"});
  EXPECT_EQ(RedisCli(cluster.port(to), {"CLUSTER", "SETSLOT", slot, "IMPORTING", from_id}), "OK");
  EXPECT_EQ(RedisCli(cluster.port(from), {"CLUSTER", "SETSLOT", slot, "MIGRATING", to_id}), "OK");
  EXPECT_EQ(RedisCli(cluster.port(from), {"MIGRATE", "127.0.0.1", std::to_string(cluster.port(to)),
                                          l2key, "0", "5000"}),
            "OK");
  // Mid-migration the old owner answers ASK: a fresh instance (empty L1) still finds the value.
  {
    Instance c(config());
    c.Start();
    ASSERT_TRUE(c.WaitReady());
    GetResult r = c.Get("user:25");
    EXPECT_EQ(Value(r), "v25");
    EXPECT_EQ(r.source, Source::kL2);
    EXPECT_NE(RedisCli(cluster.port(to), {"INFO", "commandstats"}).find("cmdstat_asking:calls="),
              std::string::npos);
  }
  for (size_t i = 0; i < cluster.size(); ++i) {
    EXPECT_EQ(RedisCli(cluster.port(i), {"CLUSTER", "SETSLOT", slot, "NODE", to_id}), "OK");
  }
  // Now the old owner answers MOVED: a's slot map is out of date, the write lands anyway.
  ASSERT_TRUE(a.Set("user:25", "moved").ok());
  EXPECT_NE(RedisCli(cluster.port(to), {"GET", l2key}).find("moved"), std::string::npos);
  EXPECT_EQ(RedisCli(cluster.port(from), {"CLUSTER", "COUNTKEYSINSLOT", slot}), "0");
  ASSERT_TRUE(b.WaitReceived(32));  // 30 sets, the pattern, this set
  GetResult r = b.Get("user:25");
  EXPECT_EQ(Value(r), "moved");
  EXPECT_EQ(r.source, Source::kL2);
  EXPECT_EQ(b.loads.load(), 0);
}

TEST(CacheRedis, SentinelFailoverMovesTheCacheToTheNewMaster) {
  RedisServer master;
  RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(master.port())});
  RedisServer sentinel({}, "sentinel monitor mymaster 127.0.0.1 " + std::to_string(master.port()) +
                               " 1\nsentinel down-after-milliseconds mymaster 1000\n"
                               "sentinel failover-timeout mymaster 5000\n");
  // Wait until the replica is in sync, so Sentinel can promote it.
  for (int i = 0; i < 100; ++i) {
    if (RedisCli(replica.port(), {"INFO", "replication"}).find("master_link_status:up") !=
        std::string::npos)
      break;
    std::this_thread::sleep_for(100ms);
  }
  CacheConfig cfg = RedisConfig(0);
  cfg.redis.servers.mode = RedisServers::Mode::kSentinel;
  cfg.redis.servers.sentinel_master = "mymaster";
  cfg.redis.servers.nodes = {{"127.0.0.1", testing::FreePort(), ""},
                             {"127.0.0.1", sentinel.port(), ""}};
  Instance a(cfg);
  a.Start();
  ASSERT_TRUE(a.WaitReady(10000));
  ASSERT_TRUE(a.Set("user:1", "before").ok());
  EXPECT_EQ(RedisCli(master.port(), {"GET", "bulwark:cache:k:user:1"}).size() > 6, true);

  // Sentinel needs to have seen the replica before it can fail over.
  std::string out;
  for (int i = 0; i < 100; ++i) {
    out = RedisCli(sentinel.port(), {"SENTINEL", "FAILOVER", "mymaster"});
    if (out == "OK") break;
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_EQ(out, "OK");
  // Writes end up on the promoted replica.
  bool moved = false;
  for (int i = 0; i < 200 && !moved; ++i) {
    (void)a.Set("user:2", "after");
    moved = RedisCli(replica.port(), {"ROLE"}).rfind("master", 0) == 0 &&
            RedisCli(replica.port(), {"EXISTS", "bulwark:cache:k:user:2"}) == "1";
    if (!moved) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(moved) << RedisCli(sentinel.port(),
                                 {"SENTINEL", "get-master-addr-by-name", "mymaster"});
  EXPECT_TRUE(a.WaitReady(10000));
  GetResult r = a.Get("user:1");
  EXPECT_TRUE(r.status.ok());
}

}  // namespace
}  // namespace bulwark::cache
