// The multi-level cache without Redis: L1, loaders and every defence, on real event loops.
#include "cache/cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "core/event_loop.h"
#include "tests/cache_sync.h"

namespace bulwark::cache {
namespace {

using namespace std::chrono_literals;

CacheConfig BaseConfig() {
  CacheConfig c;
  NamespaceConfig user;
  user.name = "user";
  user.ttl_ms = 60000;
  user.l1.max_entries = 1000;
  c.namespaces["user"] = user;
  return c;
}

struct Fixture {
  explicit Fixture(CacheConfig cfg) {
    auto c = Cache::Create(std::move(cfg));
    EXPECT_TRUE(c.ok()) << c.status();
    cache = std::move(*c);
  }
  ~Fixture() {
    lt.Run([&] {
      client.reset();
      client2.reset();
      cache->Stop();
    });
    lt2.Run([&] { client2.reset(); });
  }
  void Start() {
    lt.Run([&] {
      cache->Start(lt.loop());
      client = cache->Attach(lt.loop());
    });
    lt2.Run([&] { client2 = cache->Attach(lt2.loop()); });
  }
  LoopThread lt, lt2;
  std::unique_ptr<Cache> cache;
  std::unique_ptr<CacheClient> client, client2;
};

TEST(Cache, WithoutALoaderAMissIsNotFound) {
  Fixture f(BaseConfig());
  f.Start();
  GetResult r = GetSync(f.lt, f.client.get(), "user:1");
  EXPECT_TRUE(absl::IsNotFound(r.status)) << r.status;
  EXPECT_EQ(r.source, Source::kNone);
  ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) { f.client->Set("user:1", "ann", {}, d); }).ok());
  r = GetSync(f.lt, f.client.get(), "user:1");
  EXPECT_EQ(Value(r), "ann");
  EXPECT_EQ(r.source, Source::kL1);
  // The other loop shares the L1.
  EXPECT_EQ(Value(GetSync(f.lt2, f.client2.get(), "user:1")), "ann");
  ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) { f.client->Delete("user:1", d); }).ok());
  EXPECT_TRUE(absl::IsNotFound(GetSync(f.lt, f.client.get(), "user:1").status));
}

TEST(Cache, ReadThroughLoadsOnceAndThenHits) {
  Fixture f(BaseConfig());
  std::atomic<int> loads{0};
  f.cache->SetLoader("user", [&](const std::string& key, LoadDone done) {
    loads.fetch_add(1);
    done(Loaded{key + "-value", {}, 0});
  });
  f.Start();
  GetResult r = GetSync(f.lt, f.client.get(), "user:7");
  EXPECT_EQ(Value(r), "user:7-value");
  EXPECT_EQ(r.source, Source::kLoader);
  r = GetSync(f.lt2, f.client2.get(), "user:7");
  EXPECT_EQ(r.source, Source::kL1);
  EXPECT_EQ(loads.load(), 1);
  // Keys of unknown namespaces live in "default", which has no loader.
  EXPECT_TRUE(absl::IsNotFound(GetSync(f.lt, f.client.get(), "thing:1").status));
}

TEST(Cache, SingleFlightAcrossLoopsLoadsOnce) {
  Fixture f(BaseConfig());
  std::atomic<int> loads{0};
  // The loader answers 100 ms later on the caller's loop, so every other caller joins it.
  std::vector<std::function<void()>> pending;
  f.cache->SetLoader("user", [&](const std::string& key, LoadDone done) {
    loads.fetch_add(1);
    std::thread([&f, key, done] {
      std::this_thread::sleep_for(100ms);
      f.lt.loop()->Post([key, done] { done(Loaded{"v:" + key, {}, 0}); });
    }).detach();
  });
  f.Start();
  std::atomic<int> answers{0}, right{0};
  std::promise<void> all;
  auto cb = [&](const GetResult& r) {
    if (r.value && *r.value == "v:user:hot") right.fetch_add(1);
    if (answers.fetch_add(1) + 1 == 100) all.set_value();
  };
  f.lt.Run([&] {
    for (int i = 0; i < 50; ++i) f.client->Get("user:hot", cb);
  });
  f.lt2.Run([&] {
    for (int i = 0; i < 50; ++i) f.client2->Get("user:hot", cb);
  });
  ASSERT_EQ(all.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(right.load(), 100);
  EXPECT_EQ(f.cache->counters().coalesced.load(), 99u);
}

TEST(Cache, NotFoundIsCachedAsNegative) {
  CacheConfig cfg = BaseConfig();
  cfg.namespaces["user"].negative_ttl_ms = 200;
  Fixture f(cfg);
  std::atomic<int> loads{0};
  f.cache->SetLoader("user", [&](const std::string&, LoadDone done) {
    loads.fetch_add(1);
    done(Loaded{absl::NotFoundError("no such user"), {}, 0});
  });
  f.Start();
  EXPECT_TRUE(absl::IsNotFound(GetSync(f.lt, f.client.get(), "user:404").status));
  GetResult r = GetSync(f.lt, f.client.get(), "user:404");
  EXPECT_TRUE(absl::IsNotFound(r.status));
  EXPECT_EQ(r.source, Source::kL1);
  EXPECT_EQ(loads.load(), 1);
  EXPECT_EQ(f.cache->counters().negative_hits.load(), 1u);
  std::this_thread::sleep_for(250ms);
  GetSync(f.lt, f.client.get(), "user:404");
  EXPECT_EQ(loads.load(), 2);
}

TEST(Cache, StaleWhileRevalidateAndStaleIfError) {
  CacheConfig cfg = BaseConfig();
  // Windows wide enough that a loaded machine oversleeping by most of a second still lands in
  // the one each step means to test.
  cfg.namespaces["user"].ttl_ms = 100;
  cfg.namespaces["user"].stale_while_revalidate_ms = 1000;
  cfg.namespaces["user"].stale_if_error_ms = 30000;
  cfg.namespaces["user"].early_refresh_beta = 0;
  Fixture f(cfg);
  std::atomic<int> version{0};
  std::atomic<bool> fail{false};
  f.cache->SetLoader("user", [&](const std::string&, LoadDone done) {
    if (fail.load()) {
      done(Loaded{absl::UnavailableError("database down"), {}, 0});
      return;
    }
    done(Loaded{"v" + std::to_string(version.fetch_add(1) + 1), {}, 0});
  });
  f.Start();
  EXPECT_EQ(Value(GetSync(f.lt, f.client.get(), "user:1")), "v1");
  std::this_thread::sleep_for(150ms);
  // Expired but within stale-while-revalidate: the old value at once, a refresh behind it.
  GetResult r = GetSync(f.lt, f.client.get(), "user:1");
  EXPECT_EQ(Value(r), "v1");
  EXPECT_TRUE(r.stale);
  r = GetSync(f.lt, f.client.get(), "user:1");
  EXPECT_EQ(Value(r), "v2");
  EXPECT_FALSE(r.stale);
  // Past the revalidation window the loader is asked; when it fails the stale copy is served.
  fail = true;
  std::this_thread::sleep_for(1200ms);
  r = GetSync(f.lt, f.client.get(), "user:1");
  EXPECT_EQ(Value(r), "v2");
  EXPECT_TRUE(r.stale);
  // Without anything stale, a failed load is an error.
  r = GetSync(f.lt, f.client.get(), "user:2");
  EXPECT_TRUE(absl::IsUnavailable(r.status)) << r.status;
  EXPECT_EQ(f.cache->counters().load_errors.load(), 2u);
}

TEST(Cache, ACallerWaitsNoLongerThanLockTimeout) {
  CacheConfig cfg = BaseConfig();
  cfg.avalanche.lock_timeout_ms = 200;
  Fixture f(cfg);
  LoadDone parked;
  f.cache->SetLoader("user", [&](const std::string&, LoadDone done) { parked = done; });
  f.Start();
  auto t0 = std::chrono::steady_clock::now();
  GetResult r = GetSync(f.lt, f.client.get(), "user:slow");
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status)) << r.status;
  EXPECT_GE(waited, 190ms);
  EXPECT_LT(waited, 2s);
  EXPECT_EQ(f.cache->counters().lock_timeouts.load(), 1u);
  // The late answer still fills the cache for the next caller.
  f.lt.Run([&] { parked(Loaded{"late", {}, 0}); });
  EXPECT_EQ(Value(GetSync(f.lt, f.client.get(), "user:slow")), "late");
}

TEST(Cache, LoadsRunAtMostMaxConcurrentAtOnce) {
  CacheConfig cfg = BaseConfig();
  cfg.breakdown.max_concurrent = 2;
  Fixture f(cfg);
  std::atomic<int> running{0}, peak{0}, loads{0};
  f.cache->SetLoader("user", [&](const std::string& key, LoadDone done) {
    int now = running.fetch_add(1) + 1;
    peak.store(std::max(peak.load(), now));
    loads.fetch_add(1);
    std::thread([&f, &running, key, done] {
      std::this_thread::sleep_for(50ms);
      f.lt.loop()->Post([&running, key, done] {
        running.fetch_sub(1);
        done(Loaded{key, {}, 0});
      });
    }).detach();
  });
  f.Start();
  std::atomic<int> answers{0};
  std::promise<void> all;
  f.lt.Run([&] {
    for (int i = 0; i < 6; ++i) {
      f.client->Get("user:" + std::to_string(i), [&](const GetResult& r) {
        EXPECT_TRUE(r.status.ok());
        if (answers.fetch_add(1) + 1 == 6) all.set_value();
      });
    }
  });
  ASSERT_EQ(all.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_EQ(loads.load(), 6);
  EXPECT_EQ(peak.load(), 2);
}

TEST(Cache, WarmupRunsOnItsCronSchedule) {
  CacheConfig cfg = BaseConfig();
  cfg.warmup.enabled = true;
  cfg.warmup.namespaces = {"user"};
  cfg.warmup.on_start = false;
  auto schedule = CronSchedule::Parse("* * * * *");
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  cfg.warmup.schedule = *schedule;
  Fixture f(cfg);
  // A wall clock 300 ms before a minute starts, running 1% slow: the timer (armed by it) fires
  // a few milliseconds before the minute by this clock, as timers and clocks drift in life —
  // which must not make the minute run twice.
  auto start = std::chrono::steady_clock::now();
  int64_t base = (int64_t{1800000000000} / 60000 + 1) * 60000 - 300;
  f.cache->SetWallClock([start, base] {
    return base + std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                          .count() *
                      99 / 100;
  });
  std::atomic<int> runs{0};
  f.cache->SetWarmupSource("user", [&runs](auto done) {
    int n = runs.fetch_add(1) + 1;
    done(std::vector<std::pair<std::string, std::string>>{{"user:1", "warm-" + std::to_string(n)}});
  });
  f.Start();
  EXPECT_EQ(f.cache->counters().warmups.load(), 0u);  // not on start
  for (int i = 0; i < 200 && f.cache->counters().warmups.load() == 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  auto fired_after = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(f.cache->counters().warmups.load(), 1u);
  EXPECT_GE(fired_after, 250ms);   // at the minute, not at once...
  EXPECT_LT(fired_after, 1500ms);  // ...and not a whole second late
  GetResult r = GetSync(f.lt, f.client.get(), "user:1");
  EXPECT_EQ(Value(r), "warm-1");
  EXPECT_EQ(r.source, Source::kL1);
  // The next run is a minute away.
  std::this_thread::sleep_for(700ms);
  EXPECT_EQ(runs.load(), 1);
}

TEST(Cache, BloomFilterAnswersForUnknownKeysAfterWarmup) {
  CacheConfig cfg = BaseConfig();
  cfg.penetration.enabled = true;
  cfg.penetration.capacity = 1000;
  cfg.warmup.enabled = true;
  cfg.warmup.namespaces = {"user"};
  Fixture f(cfg);
  std::atomic<int> loads{0};
  f.cache->SetLoader("user", [&](const std::string& key, LoadDone done) {
    loads.fetch_add(1);
    done(Loaded{"loaded", {}, 0});
  });
  f.cache->SetWarmupSource("user", [](auto done) {
    std::vector<std::pair<std::string, std::string>> entries;
    for (int i = 0; i < 100; ++i) entries.emplace_back("user:" + std::to_string(i), "warm");
    done(entries);
  });
  f.Start();
  for (int i = 0; i < 100 && !f.cache->bloom_ready(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(f.cache->bloom_ready());
  EXPECT_EQ(f.cache->counters().warmup_entries.load(), 100u);
  GetResult r = GetSync(f.lt, f.client.get(), "user:5");
  EXPECT_EQ(Value(r), "warm");
  EXPECT_EQ(r.source, Source::kL1);
  int rejected = 0;
  for (int i = 1000; i < 1100; ++i) {
    r = GetSync(f.lt, f.client.get(), "user:" + std::to_string(i));
    rejected += r.source == Source::kBloom;
  }
  EXPECT_GE(rejected, 95);  // the configured 1% false-positive rate lets a few through
  EXPECT_LE(loads.load(), 5);
  // A key written through the cache becomes known.
  ASSERT_TRUE(
      DoneSync(f.lt, [&](DoneCallback d) { f.client->Set("user:5000", "new", {}, d); }).ok());
  f.lt.Run([&] { f.cache->L1StatsByNamespace(); });
  ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) { f.client->Delete("user:5000", d); }).ok());
  r = GetSync(f.lt, f.client.get(), "user:5000");
  EXPECT_EQ(Value(r), "loaded");
}

TEST(Cache, RandomExpirySpreadsTtls) {
  CacheConfig cfg = BaseConfig();
  cfg.namespaces["user"].ttl_ms = 100000;
  cfg.avalanche.random_expiry = true;
  cfg.avalanche.jitter = 0.2;
  Fixture f(cfg);
  f.Start();
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) {
                  f.client->Set("user:" + std::to_string(i), "x", {}, d);
                }).ok());
  }
  // Each key's freshness ends somewhere in [now + 80 s, now + 100 s], not all at one instant.
  int64_t lo = INT64_MAX, hi = 0;
  f.lt.Run([&] {
    int64_t now = f.lt.loop()->now_ms();
    for (int i = 0; i < 200; ++i) {
      Lookup l = f.cache->PeekL1("user:" + std::to_string(i), now);
      ASSERT_TRUE(l.hit());
      lo = std::min(lo, l.fresh_until_ms - now);
      hi = std::max(hi, l.fresh_until_ms - now);
    }
  });
  EXPECT_GE(lo, 79000);
  EXPECT_LE(hi, 100000);
  EXPECT_GT(hi - lo, 15000);
}

TEST(Cache, TagsPatternsPrefixesAndEvents) {
  CacheConfig cfg = BaseConfig();
  cfg.events["user.updated"] = {{"user:{userId}:*", InvalidationMode::kImmediate, 0, 0},
                                {"user_profile:{userId}", InvalidationMode::kImmediate, 0, 0}};
  cfg.events["org.updated"] = {{"org:{orgId}:*", InvalidationMode::kLazy, 150, 0}};
  cfg.events["session.expired"] = {{"session:{id}", InvalidationMode::kTimeBased, 0, 100}};
  Fixture f(cfg);
  f.Start();
  auto set = [&](const std::string& k, std::vector<std::string> tags = {}) {
    SetOptions o;
    o.tags = std::move(tags);
    ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) { f.client->Set(k, "v", o, d); }).ok());
  };
  auto has = [&](const std::string& k) { return GetSync(f.lt, f.client.get(), k).status.ok(); };
  set("user:7:profile");
  set("user:7:perms");
  set("user:8:profile");
  set("user_profile:7");
  set("org:1:tree");
  set("session:abc");
  set("product:1", {"catalog"});
  set("product:2", {"catalog", "sale"});
  set("product:3");

  ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) {
                f.client->Emit("user.updated", {{"userId", "7"}}, d);
              }).ok());
  EXPECT_FALSE(has("user:7:profile"));
  EXPECT_FALSE(has("user:7:perms"));
  EXPECT_FALSE(has("user_profile:7"));
  EXPECT_TRUE(has("user:8:profile"));

  // A missing parameter is an error and changes nothing.
  absl::Status st = DoneSync(f.lt, [&](DoneCallback d) { f.client->Emit("user.updated", {}, d); });
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_TRUE(has("user:8:profile"));
  EXPECT_TRUE(absl::IsNotFound(
      DoneSync(f.lt, [&](DoneCallback d) { f.client->Emit("no.such.event", {}, d); })));

  // Lazy: still there right after, gone after the delay.
  ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) {
                f.client->Emit("org.updated", {{"orgId", "1"}}, d);
              }).ok());
  EXPECT_TRUE(has("org:1:tree"));
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(has("org:1:tree"));

  // Time-based: the key now expires 100 ms from the event.
  ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) {
                f.client->Emit("session.expired", {{"id", "abc"}}, d);
              }).ok());
  EXPECT_TRUE(has("session:abc"));
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(has("session:abc"));

  ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) { f.client->InvalidateTag("sale", d); }).ok());
  EXPECT_TRUE(has("product:1"));
  EXPECT_FALSE(has("product:2"));
  ASSERT_TRUE(
      DoneSync(f.lt, [&](DoneCallback d) { f.client->InvalidatePrefix("product:", d); }).ok());
  EXPECT_FALSE(has("product:1"));
  EXPECT_FALSE(has("product:3"));
  ASSERT_TRUE(
      DoneSync(f.lt, [&](DoneCallback d) { f.client->InvalidatePattern("user:?:*", d); }).ok());
  EXPECT_FALSE(has("user:8:profile"));
}

TEST(Cache, WriteThroughStoresOnlyWhatTheStoreAccepted) {
  CacheConfig cfg = BaseConfig();
  cfg.namespaces["user"].write = WriteStrategy::kWriteThrough;
  Fixture f(cfg);
  std::map<std::string, std::string> db;
  std::atomic<bool> fail{false};
  f.cache->SetWriter("user", [&](const std::vector<WriteOp>& batch, auto done) {
    if (fail.load()) {
      done(absl::UnavailableError("db down"));
      return;
    }
    for (const auto& op : batch) db[op.key] = *op.value;
    done(absl::OkStatus());
  });
  f.Start();
  ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) { f.client->Set("user:1", "a", {}, d); }).ok());
  EXPECT_EQ(db["user:1"], "a");
  EXPECT_EQ(Value(GetSync(f.lt, f.client.get(), "user:1")), "a");
  fail = true;
  absl::Status st = DoneSync(f.lt, [&](DoneCallback d) { f.client->Set("user:1", "b", {}, d); });
  EXPECT_TRUE(absl::IsUnavailable(st));
  EXPECT_EQ(Value(GetSync(f.lt, f.client.get(), "user:1")), "a");  // unchanged
}

TEST(Cache, WriteBehindBatchesRetriesAndNeverDrops) {
  CacheConfig cfg = BaseConfig();
  NamespaceConfig& ns = cfg.namespaces["user"];
  ns.write = WriteStrategy::kWriteBehind;
  ns.write_behind_interval_ms = 20;
  ns.write_behind_batch = 10;
  ns.write_behind_queue = 50;
  Fixture f(cfg);
  std::mutex mu;
  std::vector<std::string> written;
  std::vector<size_t> batch_sizes;
  std::atomic<int> failures_left{2};
  f.cache->SetWriter("user", [&](const std::vector<WriteOp>& batch, auto done) {
    if (failures_left.fetch_sub(1) > 0) {
      done(absl::UnavailableError("db down"));
      return;
    }
    std::lock_guard<std::mutex> l(mu);
    batch_sizes.push_back(batch.size());
    for (const auto& op : batch) written.push_back(op.key + "=" + *op.value);
    done(absl::OkStatus());
  });
  f.Start();
  for (int i = 0; i < 25; ++i) {
    ASSERT_TRUE(DoneSync(f.lt, [&](DoneCallback d) {
                  f.client->Set("user:" + std::to_string(i), "v" + std::to_string(i), {}, d);
                }).ok());
  }
  // Served from the cache at once, before the store has it.
  EXPECT_EQ(Value(GetSync(f.lt, f.client.get(), "user:3")), "v3");
  for (int i = 0; i < 300 && f.cache->write_behind_pending() > 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(f.cache->write_behind_pending(), 0u);
  std::lock_guard<std::mutex> l(mu);
  ASSERT_EQ(written.size(), 25u);
  for (int i = 0; i < 25; ++i)
    EXPECT_EQ(written[i], "user:" + std::to_string(i) + "=v" + std::to_string(i));
  for (size_t s : batch_sizes) EXPECT_LE(s, 10u);
  EXPECT_EQ(f.cache->counters().write_behind_failures.load(), 2u);
  EXPECT_EQ(f.cache->counters().write_behind_written.load(), 25u);
}

TEST(Cache, AFullWriteBehindQueueRefusesInsteadOfDropping) {
  CacheConfig cfg = BaseConfig();
  NamespaceConfig& ns = cfg.namespaces["user"];
  ns.write = WriteStrategy::kWriteBehind;
  ns.write_behind_interval_ms = 100000;  // never flushes during the test
  ns.write_behind_queue = 3;
  Fixture f(cfg);
  f.cache->SetWriter("user",
                     [](const std::vector<WriteOp>&, auto done) { done(absl::OkStatus()); });
  f.Start();
  std::this_thread::sleep_for(20ms);  // let the first (immediate) flush pass
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(DoneSync(f.lt, [&](DoneCallback d) {
                  f.client->Set("user:" + std::to_string(i), "v", {}, d);
                }).ok());
  }
  absl::Status st = DoneSync(f.lt, [&](DoneCallback d) { f.client->Set("user:9", "v", {}, d); });
  EXPECT_TRUE(absl::IsResourceExhausted(st)) << st;
  EXPECT_TRUE(absl::IsNotFound(GetSync(f.lt, f.client.get(), "user:9").status));
  EXPECT_EQ(f.cache->write_behind_pending(), 3u);
  EXPECT_EQ(f.cache->counters().write_behind_rejected.load(), 1u);
}

TEST(Cache, EarlyRefreshKeepsHotKeysFresh) {
  CacheConfig cfg = BaseConfig();
  cfg.namespaces["user"].ttl_ms = 300;
  cfg.namespaces["user"].early_refresh_beta = 1.0;
  Fixture f(cfg);
  std::atomic<int> loads{0};
  f.cache->SetLoader("user", [&](const std::string&, LoadDone done) {
    loads.fetch_add(1);
    std::this_thread::sleep_for(30ms);  // an expensive load: XFetch refreshes it early
    done(Loaded{"v", {}, 0});
  });
  f.Start();
  int misses = 0;
  auto deadline = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < deadline) {
    GetResult r = GetSync(f.lt, f.client.get(), "user:hot");
    if (r.source == Source::kLoader) ++misses;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GT(f.cache->counters().early_refreshes.load(), 0u);
  // The value expired several times over, but readers almost never waited for a load.
  EXPECT_GE(loads.load(), 4);
  EXPECT_LE(misses, 2);
}

TEST(Cache, GetManyAnswersInOrder) {
  Fixture f(BaseConfig());
  std::atomic<int> loads{0};
  f.cache->SetLoader("user", [&](const std::string& key, LoadDone done) {
    loads.fetch_add(1);
    if (key == "user:404") {
      done(Loaded{absl::NotFoundError("no"), {}, 0});
      return;
    }
    done(Loaded{"L" + key, {}, 0});
  });
  f.Start();
  ASSERT_TRUE(
      DoneSync(f.lt, [&](DoneCallback d) { f.client->Set("user:2", "cached", {}, d); }).ok());
  std::promise<std::vector<GetResult>> p;
  f.lt.Run([&] {
    f.client->GetMany({"user:1", "user:2", "user:404", "user:1"},
                      [&p](std::vector<GetResult> r) { p.set_value(std::move(r)); });
  });
  auto fut = p.get_future();
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
  std::vector<GetResult> r = fut.get();
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(Value(r[0]), "Luser:1");
  EXPECT_EQ(Value(r[1]), "cached");
  EXPECT_EQ(r[1].source, Source::kL1);
  EXPECT_TRUE(absl::IsNotFound(r[2].status));
  EXPECT_EQ(Value(r[3]), "Luser:1");
  EXPECT_EQ(loads.load(), 2);  // user:1 once (single flight), user:404 once
}

}  // namespace
}  // namespace bulwark::cache
