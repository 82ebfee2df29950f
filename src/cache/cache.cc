#include "cache/cache.h"

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <list>
#include <random>

#include "cache/bloom_filter.h"
#include "cache/expiry.h"
#include "cache/glob.h"
#include "cache/l2_record.h"
#include "cache/single_flight.h"
#include "core/log.h"
#include "core/mutex.h"
#include "core/redis_client.h"
#include "core/redis_link.h"
#include "core/redis_sentinel.h"
#include "core/strings.h"

namespace bulwark::cache {
namespace {

constexpr char kDefaultNamespace[] = "default";
constexpr int64_t kLockPollMs = 50;

std::string RandomToken() {
  std::random_device rd;
  return StrCat(static_cast<uint64_t>(rd()) << 32 | rd(), "-", getpid());
}

// Compare-and-delete, so a lock is released only by the instance that still holds it.
constexpr char kUnlockScript[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

// The master Sentinel names, for every loop's L2 connection: none until Start has made the
// resolver (clients may be attached before).
std::function<std::optional<SocketAddress>()> SentinelMaster(
    const std::atomic<SentinelResolver*>* sentinel) {
  return [sentinel]() -> std::optional<SocketAddress> {
    SentinelResolver* s = sentinel->load(std::memory_order_acquire);
    return s ? s->master() : std::nullopt;
  };
}

RedisOptions L2Options(const CacheRedisConfig& cfg, int64_t command_timeout_ms) {
  RedisOptions o;
  o.password = cfg.password;
  o.db = cfg.database;
  o.command_timeout_ms = command_timeout_ms;
  return o;
}

}  // namespace

// ---------------------------------------------------------------- namespaces

struct Cache::Namespace {
  NamespaceConfig cfg;
  std::unique_ptr<L1Cache> l1;
  Loader loader;
  Writer writer;
  WarmupSource warmup;
  // Write-behind queue, shared by every loop that writes; flushed on the control loop.
  mutable Mutex mu;
  std::deque<WriteOp> queue ABSL_GUARDED_BY(mu);
  std::vector<WriteOp> given_up ABSL_GUARDED_BY(mu);  // past max_attempts: kept and reported
  bool flushing ABSL_GUARDED_BY(mu) = false;
  int64_t retry_at_ms ABSL_GUARDED_BY(mu) = 0;
  int consecutive_failures ABSL_GUARDED_BY(mu) = 0;
};

// ---------------------------------------------------------------- single flight

// One load per key in the process. The caller that starts it (the leader) runs the loader on
// its loop; the others wait and are answered on their own loops.
struct Waiter {
  EventLoop* loop;
  std::weak_ptr<bool> alive;  // the waiting client still exists (checked on its loop)
  GetCallback cb;
  std::shared_ptr<std::atomic<bool>> answered;
};

// The flights (cache/single_flight.h) and a bound on the loads running at once
// (breakdown.max_concurrent): a load beyond it waits for a slot.
class FlightTable : public SingleFlight<Waiter> {
 public:
  explicit FlightTable(int max_concurrent) : max_concurrent_(max_concurrent) {}

  // True when a load may start now; otherwise `start` runs later (posted to `loop`) when a
  // slot frees.
  bool Acquire(EventLoop* loop, std::function<void()> start) {
    MutexLock lock(&mu_);
    if (running_ < max_concurrent_) {
      ++running_;
      return true;
    }
    queued_.push_back({loop, std::move(start)});
    return false;
  }
  void Release() {
    std::pair<EventLoop*, std::function<void()>> next;
    {
      MutexLock lock(&mu_);
      if (queued_.empty()) {
        --running_;
        return;
      }
      next = std::move(queued_.front());
      queued_.pop_front();  // the slot passes straight to the queued load
    }
    next.first->Post(std::move(next.second));
  }

 private:
  mutable Mutex mu_;
  int max_concurrent_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::pair<EventLoop*, std::function<void()>>> queued_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------- control loop

struct Cache::Control {
  EventLoop* loop = nullptr;
  std::unique_ptr<SentinelResolver> sentinel;
  // Read by every loop's Redis connections when they (re)connect.
  std::atomic<SentinelResolver*> sentinel_ptr{nullptr};
  bool ever_subscribed = false;
  bool warmed_once = false;
  int64_t warmup_slot_s = 0;  // the schedule's last minute armed (Unix seconds)
  std::unique_ptr<RedisClient> subscriber;
  std::unique_ptr<CacheClient> client;  // the control loop's own client (warm-up, flushes)
  Timer flush_timer;
  Timer warmup_timer;
  bool stopped = false;
};

// ---------------------------------------------------------------- client

struct CacheClient::Impl {
  Cache* cache;
  EventLoop* loop;
  std::unique_ptr<RedisLink> redis;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  struct Delayed {
    Timer timer;
    std::list<std::shared_ptr<Delayed>>::iterator self;
  };
  std::list<std::shared_ptr<Delayed>> timers;
  FastRandom random{static_cast<uint64_t>(WallMicros()) ^ reinterpret_cast<uintptr_t>(this)};

  bool L2Usable(const NamespaceConfig& ns) const {
    return ns.l2 && redis != nullptr && redis->connected();
  }
  std::string L2Key(std::string_view key) const {
    return StrCat(cache->config_.redis.key_prefix, "k:", key);
  }
  std::string TagKey(std::string_view tag) const {
    return StrCat(cache->config_.redis.key_prefix, "t:", tag);
  }

  // Runs `fn` on this loop after `ms`; the timer is freed after it fires or is cancelled.
  std::weak_ptr<Delayed> After(int64_t ms, std::function<void()> fn) {
    auto d = std::make_shared<Delayed>();
    timers.push_front(d);
    d->self = timers.begin();
    std::weak_ptr<Delayed> weak = d;
    d->timer.set_callback([this, weak, fn = std::move(fn)] {
      fn();
      loop->Defer([this, weak] { Cancel(weak); });
    });
    loop->ArmTimer(&d->timer, std::max<int64_t>(ms, 1));
    return weak;
  }
  void Cancel(const std::weak_ptr<Delayed>& weak) {
    if (auto d = weak.lock()) {
      loop->CancelTimer(&d->timer);
      timers.erase(d->self);
    }
  }

  int64_t EffectiveTtl(const NamespaceConfig& ns, int64_t ttl_ms) {
    int64_t ttl = ttl_ms > 0 ? ttl_ms : ns.ttl_ms;
    const AvalancheConfig& a = cache->config_.avalanche;
    if (a.random_expiry) ttl = JitteredTtl(ttl, a.jitter, random.Uniform());
    return ttl;
  }

  // Stores a value (or a negative entry) in L1, with the L1 lifetime cap.
  void StoreL1(Cache::Namespace& ns, const std::string& key, std::shared_ptr<const std::string> v,
               bool negative, int64_t fresh_ms, int64_t load_ms,
               const std::vector<std::string>& tags) {
    int64_t now = loop->now_ms();
    if (ns.cfg.l1_ttl_ms > 0) fresh_ms = std::min(fresh_ms, ns.cfg.l1_ttl_ms);
    PutOptions o;
    o.fresh_until_ms = now + fresh_ms;
    int64_t stale =
        negative ? 0 : std::max(ns.cfg.stale_while_revalidate_ms, ns.cfg.stale_if_error_ms);
    o.stale_until_ms = o.fresh_until_ms + stale;
    o.negative = negative;
    o.load_ms = load_ms;
    o.tags = tags;
    ns.l1->Put(key, std::move(v), o, now);
  }

  void StoreL2(Cache::Namespace& ns, const std::string& key, std::string_view value, bool negative,
               int64_t fresh_ms, const std::vector<std::string>& tags) {
    if (!L2Usable(ns.cfg)) {
      if (ns.cfg.l2 && cache->l2_configured()) cache->counters_.l2_skipped.fetch_add(1);
      return;
    }
    int64_t stale =
        negative ? 0 : std::max(ns.cfg.stale_while_revalidate_ms, ns.cfg.stale_if_error_ms);
    std::string px = StrCat(fresh_ms + stale);
    std::string k = L2Key(key);
    L2Record rec;
    rec.negative = negative;
    rec.fresh_until_ms = WallMs() + fresh_ms;
    rec.stale_until_ms = rec.fresh_until_ms + stale;
    rec.tags.assign(tags.begin(), tags.end());
    rec.payload = value;
    std::string v = EncodeL2Record(rec);
    Cache* c = cache;
    redis->Command({"SET", k, v, "PX", px}, [c](const RedisReply& r) {
      if (r.is_error()) c->counters_.l2_errors.fetch_add(1);
    });
    for (const std::string& t : tags) AddToL2TagSet(*redis, TagKey(t), k, fresh_ms + stale);
  }

  void Publish(std::string_view op, std::string_view arg) {
    cache->counters_.invalidations_sent.fetch_add(1);
    if (redis == nullptr || !redis->connected()) return;
    std::string msg = StrCat(cache->instance_id_, " ", op, " ", arg);
    redis->Command({"PUBLISH", cache->config_.redis.channel, msg}, [](const RedisReply&) {});
  }

  // Answers every waiter of a finished flight on its own loop.
  void Complete(const std::string& key, const GetResult& result) {
    std::vector<Waiter> waiters = cache->flights_->Finish(key);
    for (Waiter& w : waiters) {
      auto answered = w.answered;
      if (answered->exchange(true)) continue;  // already timed out
      if (w.loop == loop) {
        if (!w.alive.expired()) w.cb(result);
        continue;
      }
      w.loop->Post([w = std::move(w), result] {
        if (!w.alive.expired()) w.cb(result);
      });
    }
  }

  void Get(const std::string& key, GetCallback cb) {
    Cache::Namespace& ns = cache->NamespaceOf(key);
    CacheCounters& n = cache->counters_;
    int64_t now = loop->now_ms();
    // Penetration defence: a key the Bloom filter never saw does not exist.
    if (cache->bloom_ && cache->bloom_ready() && !cache->bloom_->MayContain(key)) {
      n.bloom_rejections.fetch_add(1);
      GetResult r;
      r.status = absl::NotFoundError(StrCat("\"", key, "\" is not a known key"));
      r.source = Source::kBloom;
      cb(r);
      return;
    }
    Lookup l = ns.l1->Get(key, now);
    std::shared_ptr<const std::string> stale_value;
    if (l.hit()) {
      bool in_swr =
          l.state == Freshness::kStale && now < l.fresh_until_ms + ns.cfg.stale_while_revalidate_ms;
      if (l.state == Freshness::kFresh || in_swr) {
        n.l1_hits.fetch_add(1);
        GetResult r;
        r.source = Source::kL1;
        if (l.negative) {
          n.negative_hits.fetch_add(1);
          r.status = absl::NotFoundError(StrCat("\"", key, "\" does not exist"));
        } else {
          r.value = l.value;
          r.stale = l.state == Freshness::kStale;
          if (r.stale) n.l1_stale_served.fetch_add(1);
        }
        // Stale-while-revalidate, and XFetch's early refresh of fresh entries.
        bool refresh = r.stale;
        if (!refresh && ns.loader && ns.cfg.early_refresh_beta > 0 && l.load_ms > 0 &&
            XFetchShouldRefresh(now, l.fresh_until_ms, l.load_ms, ns.cfg.early_refresh_beta,
                                1.0 - random.Uniform())) {
          refresh = true;
          n.early_refreshes.fetch_add(1);
        }
        cb(r);
        if (refresh && ns.loader) Refresh(ns, key);
        return;
      }
      stale_value = l.value;  // only for stale-if-error now
    }
    n.l1_misses.fetch_add(1);
    // Every caller waits at most lock_timeout, whoever loads (a loader must call back, but a
    // caller never hangs on one that does not). Whichever comes first answers; the answer
    // cancels the timeout on this loop.
    auto answered = std::make_shared<std::atomic<bool>>(false);
    auto user_cb = std::make_shared<GetCallback>(std::move(cb));
    auto timeout = std::make_shared<std::weak_ptr<Delayed>>();
    GetCallback wcb = [this, user_cb, timeout](const GetResult& r) {
      Cancel(*timeout);
      (*user_cb)(r);
    };
    *timeout = After(cache->config_.avalanche.lock_timeout_ms, [this, key, answered, user_cb] {
      if (answered->exchange(true)) return;
      cache->counters_.lock_timeouts.fetch_add(1);
      GetResult r;
      r.status = absl::DeadlineExceededError(StrCat("timed out after ",
                                                    cache->config_.avalanche.lock_timeout_ms,
                                                    "ms waiting for the load of \"", key, "\""));
      (*user_cb)(r);
    });
    Waiter w{loop, alive, wcb, answered};
    if (!cache->config_.breakdown.single_flight) {
      // Without single flight every caller loads on its own (the AlkaidSYS cache.yml's "off"
      // switch).
      Lead(ns, key, std::move(stale_value), [answered, wcb](const GetResult& r) {
        if (!answered->exchange(true)) wcb(r);
      });
      return;
    }
    if (!cache->flights_->Join(key, std::move(w))) {
      n.coalesced.fetch_add(1);  // another caller is loading this key: wait for it
      return;
    }
    Lead(ns, key, std::move(stale_value), nullptr);
  }

  void GetMany(const std::vector<std::string>& keys,
               std::function<void(std::vector<GetResult>)> cb) {
    if (keys.empty()) {
      cb({});
      return;
    }
    auto results = std::make_shared<std::vector<GetResult>>(keys.size());
    auto remaining = std::make_shared<size_t>(keys.size());
    auto done = std::make_shared<std::function<void(std::vector<GetResult>)>>(std::move(cb));
    auto finish = [results, remaining, done](size_t i, const GetResult& r) {
      (*results)[i] = r;
      if (--*remaining == 0) (*done)(std::move(*results));
    };
    int64_t now = loop->now_ms();
    std::vector<size_t> batch;  // indexes that go to Redis together
    std::vector<size_t> slow;   // indexes that take the single-key path
    for (size_t i = 0; i < keys.size(); ++i) {
      Cache::Namespace& ns = cache->NamespaceOf(keys[i]);
      Lookup l = ns.l1->Peek(keys[i], now);
      if (l.state == Freshness::kFresh) {
        slow.push_back(i);  // a fresh hit: Get answers it at once (and counts the access)
      } else if (L2Usable(ns.cfg) &&
                 !(cache->bloom_ && cache->bloom_ready() && !cache->bloom_->MayContain(keys[i]))) {
        batch.push_back(i);
      } else {
        slow.push_back(i);
      }
    }
    for (size_t i : slow) {
      Get(keys[i], [finish, i](const GetResult& r) { finish(i, r); });
    }
    if (batch.empty()) return;
    std::vector<std::string> l2keys;
    l2keys.reserve(batch.size());
    for (size_t i : batch) l2keys.push_back(L2Key(keys[i]));
    std::vector<std::string_view> args = {"MGET"};
    for (const std::string& k : l2keys) args.push_back(k);
    uint64_t epoch = cache->invalidation_epoch_.load(std::memory_order_acquire);
    std::weak_ptr<bool> a = alive;
    redis->Command(args, [this, a, keys, batch, finish, epoch](const RedisReply& r) {
      if (a.expired()) return;
      bool ok = r.type == RedisReply::Type::kArray && r.elements.size() == batch.size();
      if (!ok && r.is_error()) cache->counters_.l2_errors.fetch_add(1);
      for (size_t j = 0; j < batch.size(); ++j) {
        size_t i = batch[j];
        const std::string& key = keys[i];
        if (ok) {
          Cache::Namespace& ns = cache->NamespaceOf(key);
          cache->counters_.l1_misses.fetch_add(1);
          auto one = [finish, i](const GetResult& res) { finish(i, res); };
          if (FromL2(ns, key, r.elements[j], one, epoch)) continue;
        }
        // Not in Redis (or Redis failed): the single-key path, with its single flight.
        Get(key, [finish, i](const GetResult& res) { finish(i, res); });
      }
    });
  }

  // The leader's path: L2, then (under the concurrency bound) the loader.
  void Lead(Cache::Namespace& ns, const std::string& key,
            std::shared_ptr<const std::string> stale_value, GetCallback solo) {
    auto finish = [this, key, solo](const GetResult& r) {
      if (solo) {
        solo(r);
      } else {
        Complete(key, r);
      }
    };
    if (!L2Usable(ns.cfg)) {
      if (ns.cfg.l2 && cache->l2_configured()) cache->counters_.l2_skipped.fetch_add(1);
      Load(ns, key, std::move(stale_value), finish);
      return;
    }
    std::string k = L2Key(key);
    std::weak_ptr<bool> a = alive;
    uint64_t epoch = cache->invalidation_epoch_.load(std::memory_order_acquire);
    redis->Command({"GET", k},
                   [this, a, &ns, key, stale_value, finish, epoch](const RedisReply& r) {
                     if (a.expired()) return;
                     if (FromL2(ns, key, r, finish, epoch)) return;
                     Load(ns, key, stale_value, finish);
                   });
  }

  // Handles an L2 reply; true when it answered the request.
  bool FromL2(Cache::Namespace& ns, const std::string& key, const RedisReply& r,
              const std::function<void(const GetResult&)>& finish, uint64_t epoch) {
    CacheCounters& n = cache->counters_;
    if (r.is_error()) {
      n.l2_errors.fetch_add(1);
      return false;
    }
    L2Record rec;
    if (r.type != RedisReply::Type::kString || !DecodeL2Record(r.str, &rec)) {
      n.l2_misses.fetch_add(1);
      return false;
    }
    bool negative = rec.negative;
    int64_t fresh_ms = rec.fresh_until_ms - WallMs();
    if (fresh_ms <= 0) {  // only stale in L2: reload, but keep it for stale-if-error
      n.l2_misses.fetch_add(1);
      return false;
    }
    n.l2_hits.fetch_add(1);
    GetResult res;
    res.source = Source::kL2;
    std::shared_ptr<const std::string> v;
    if (negative) {
      res.status = absl::NotFoundError(StrCat("\"", key, "\" does not exist"));
      n.negative_hits.fetch_add(1);
    } else {
      v = std::make_shared<const std::string>(rec.payload);
      res.value = v;
    }
    // An invalidation that arrived while this GET was in flight may concern this very value:
    // serve it, but do not keep it in L1.
    if (cache->invalidation_epoch_.load(std::memory_order_acquire) == epoch) {
      StoreL1(ns, key, v, negative, fresh_ms, 0,
              std::vector<std::string>(rec.tags.begin(), rec.tags.end()));
    }
    finish(res);
    return true;
  }

  void Load(Cache::Namespace& ns, const std::string& key,
            std::shared_ptr<const std::string> stale_value,
            std::function<void(const GetResult&)> finish) {
    if (!ns.loader) {
      GetResult r;
      r.status = absl::NotFoundError(StrCat("\"", key, "\" is not cached"));
      finish(r);
      return;
    }
    std::weak_ptr<bool> a = alive;
    auto start = [this, a, &ns, key, stale_value, finish] {
      if (a.expired()) {
        cache->flights_->Release();
        return;
      }
      if (cache->config_.avalanche.lock_request && L2Usable(ns.cfg)) {
        LockedLoad(ns, key, stale_value, finish, loop->now_ms());
      } else {
        RunLoader(ns, key, stale_value, finish, "");
      }
    };
    if (cache->flights_->Acquire(loop, start)) start();
  }

  // The AlkaidSYS "lock_request": one instance loads (SET NX on a lock key), the others poll L2
  // until the value appears or lock_timeout passes, then load themselves.
  void LockedLoad(Cache::Namespace& ns, const std::string& key,
                  std::shared_ptr<const std::string> stale_value,
                  std::function<void(const GetResult&)> finish, int64_t started) {
    std::string lock_key = StrCat(cache->config_.redis.key_prefix, "l:", key);
    std::string token = RandomToken();
    std::string px = StrCat(cache->config_.avalanche.lock_timeout_ms);
    std::weak_ptr<bool> a = alive;
    redis->Command({"SET", lock_key, token, "NX", "PX", px}, [=, this, &ns](const RedisReply& r) {
      if (a.expired()) {
        cache->flights_->Release();
        return;
      }
      if (r.type == RedisReply::Type::kStatus || r.is_error()) {
        // Acquired (or Redis failed: load anyway rather than fail the caller).
        RunLoader(ns, key, stale_value, finish, r.is_error() ? "" : token);
        return;
      }
      Poll(ns, key, stale_value, finish, started);
    });
  }

  void Poll(Cache::Namespace& ns, const std::string& key,
            std::shared_ptr<const std::string> stale_value,
            std::function<void(const GetResult&)> finish, int64_t started) {
    std::weak_ptr<bool> a = alive;
    After(kLockPollMs, [=, this, &ns] {
      if (a.expired()) {
        cache->flights_->Release();
        return;
      }
      if (!L2Usable(ns.cfg) ||
          loop->now_ms() - started >= cache->config_.avalanche.lock_timeout_ms) {
        RunLoader(ns, key, stale_value, finish, "");
        return;
      }
      uint64_t epoch = cache->invalidation_epoch_.load(std::memory_order_acquire);
      redis->Command({"GET", L2Key(key)}, [=, this, &ns](const RedisReply& r) {
        if (a.expired()) {
          cache->flights_->Release();
          return;
        }
        auto release_then = [this, finish](const GetResult& res) {
          cache->flights_->Release();
          finish(res);
        };
        if (r.type == RedisReply::Type::kString && FromL2(ns, key, r, release_then, epoch)) return;
        Poll(ns, key, stale_value, finish, started);
      });
    });
  }

  void RunLoader(Cache::Namespace& ns, const std::string& key,
                 std::shared_ptr<const std::string> stale_value,
                 std::function<void(const GetResult&)> finish, std::string lock_token) {
    cache->counters_.loads.fetch_add(1);
    int64_t started = MonotonicMs();
    std::weak_ptr<bool> a = alive;
    auto once = std::make_shared<bool>(false);
    ns.loader(key, [=, this, &ns](Loaded loaded) {
      if (*once) return;  // a loader that calls back twice is ignored the second time
      *once = true;
      cache->flights_->Release();
      if (a.expired()) return;
      int64_t load_ms = MonotonicMs() - started;
      GetResult r;
      r.source = Source::kLoader;
      if (loaded.value.ok()) {
        int64_t ttl = EffectiveTtl(ns.cfg, loaded.ttl_ms);
        auto v = std::make_shared<const std::string>(std::move(*loaded.value));
        StoreL1(ns, key, v, false, ttl, load_ms, loaded.tags);
        StoreL2(ns, key, *v, false, ttl, loaded.tags);
        if (cache->bloom_) cache->bloom_->Add(key);
        r.value = std::move(v);
      } else if (absl::IsNotFound(loaded.value.status())) {
        cache->counters_.load_not_found.fetch_add(1);
        if (ns.cfg.negative_ttl_ms > 0) {
          StoreL1(ns, key, nullptr, true, ns.cfg.negative_ttl_ms, load_ms, {});
          StoreL2(ns, key, "", true, ns.cfg.negative_ttl_ms, {});
        }
        r.status = loaded.value.status();
      } else {
        cache->counters_.load_errors.fetch_add(1);
        if (stale_value) {
          // Stale-if-error: the old value beats an error.
          cache->counters_.l1_stale_served.fetch_add(1);
          r.value = stale_value;
          r.stale = true;
          r.source = Source::kL1;
        } else {
          r.status = absl::UnavailableError(
              StrCat("loading \"", key, "\" failed: ", loaded.value.status().message()));
        }
      }
      if (!lock_token.empty() && redis && redis->connected()) {
        std::string lock_key = StrCat(cache->config_.redis.key_prefix, "l:", key);
        static const std::string sha = RedisClient::ScriptSha1(kUnlockScript);
        redis->Eval(kUnlockScript, sha, {lock_key}, {lock_token}, [](const RedisReply&) {});
      }
      finish(r);
    });
  }

  // Background refresh for stale-while-revalidate and early refresh: one at a time per key.
  void Refresh(Cache::Namespace& ns, const std::string& key) {
    if (!cache->flights_->StartIfIdle(key)) return;
    Load(ns, key, nullptr, [this, key](const GetResult& r) { Complete(key, r); });
  }

  void Set(const std::string& key, std::string value, SetOptions options, DoneCallback done) {
    Cache::Namespace& ns = cache->NamespaceOf(key);
    cache->counters_.sets.fetch_add(1);
    if (ns.cfg.write != WriteStrategy::kCacheAside && !ns.writer) {
      done(absl::FailedPreconditionError(StrCat("namespace \"", ns.cfg.name, "\" is ",
                                                WriteStrategyName(ns.cfg.write),
                                                " but has no writer")));
      return;
    }
    switch (ns.cfg.write) {
      case WriteStrategy::kCacheAside:
        Store(ns, key, std::move(value), options);
        done(absl::OkStatus());
        return;
      case WriteStrategy::kWriteThrough: {
        std::weak_ptr<bool> a = alive;
        std::vector<WriteOp> batch{{key, value, 0}};
        ns.writer(batch, [=, this, &ns, value = std::move(value)](absl::Status st) mutable {
          if (a.expired()) return;
          if (!st.ok()) {
            // The store keeps its old value; so must the cache.
            done(st);
            return;
          }
          Store(ns, key, std::move(value), options);
          done(absl::OkStatus());
        });
        return;
      }
      case WriteStrategy::kWriteBehind: {
        {
          MutexLock lock(&ns.mu);
          if (static_cast<int>(ns.queue.size()) >= ns.cfg.write_behind_queue) {
            cache->counters_.write_behind_rejected.fetch_add(1);
            done(absl::ResourceExhaustedError(StrCat("write-behind queue of \"", ns.cfg.name,
                                                     "\" is full (", ns.cfg.write_behind_queue,
                                                     " writes waiting)")));
            return;
          }
          ns.queue.push_back({key, value, 0});
        }
        cache->counters_.write_behind_queued.fetch_add(1);
        Store(ns, key, std::move(value), options);
        done(absl::OkStatus());
        return;
      }
    }
  }

  void Store(Cache::Namespace& ns, const std::string& key, std::string value,
             const SetOptions& options) {
    int64_t ttl = EffectiveTtl(ns.cfg, options.ttl_ms);
    auto v = std::make_shared<const std::string>(std::move(value));
    cache->invalidation_epoch_.fetch_add(1, std::memory_order_acq_rel);
    StoreL1(ns, key, v, false, ttl, 0, options.tags);
    StoreL2(ns, key, *v, false, ttl, options.tags);
    if (cache->bloom_) cache->bloom_->Add(key);
    Publish("key", key);
  }

  void Delete(const std::string& key, DoneCallback done) {
    cache->counters_.deletes.fetch_add(1);
    cache->invalidation_epoch_.fetch_add(1, std::memory_order_acq_rel);
    cache->NamespaceOf(key).l1->Erase(key);
    Publish("key", key);
    if (redis == nullptr || !redis->connected()) {
      done(absl::OkStatus());
      return;
    }
    redis->Command({"DEL", L2Key(key)}, [done](const RedisReply& r) {
      done(r.is_error() ? absl::UnavailableError(r.str) : absl::OkStatus());
    });
  }

  void InvalidateTag(const std::string& tag, DoneCallback done) {
    cache->ApplyInvalidation(StrCat("- tag ", tag));
    Publish("tag", tag);
    if (redis == nullptr || !redis->connected()) {
      done(absl::OkStatus());
      return;
    }
    std::string tk = TagKey(tag);
    std::weak_ptr<bool> a = alive;
    redis->Command({"SMEMBERS", tk}, [=, this](const RedisReply& r) {
      if (a.expired()) return;
      if (r.is_error()) {
        done(absl::UnavailableError(r.str));
        return;
      }
      std::vector<std::string_view> del = {"DEL", tk};
      for (const RedisReply& e : r.elements) del.push_back(e.str);
      redis->Command(del, [done](const RedisReply& d) {
        done(d.is_error() ? absl::UnavailableError(d.str) : absl::OkStatus());
      });
    });
  }

  // Walks L2 with SCAN (never KEYS, which blocks Redis) and applies `op` to each batch.
  // SCANs every node in turn (one server, or each master of a cluster).
  void ScanL2(const std::string& glob, std::function<void(const std::vector<std::string>&)> op,
              DoneCallback done) {
    if (redis == nullptr || !redis->connected()) {
      done(absl::OkStatus());
      return;
    }
    ScanNode(std::make_shared<std::vector<RedisClient*>>(redis->Masters()), 0,
             StrCat(GlobEscape(cache->config_.redis.key_prefix), "k:", glob), std::move(op),
             std::move(done), "0");
  }

  void ScanNode(std::shared_ptr<std::vector<RedisClient*>> nodes, size_t i, std::string match,
                std::function<void(const std::vector<std::string>&)> op, DoneCallback done,
                std::string cursor) {
    if (i == nodes->size()) {
      done(absl::OkStatus());
      return;
    }
    std::weak_ptr<bool> a = alive;
    (*nodes)[i]->Command(
        {"SCAN", cursor, "MATCH", match, "COUNT", "1000"}, [=, this](const RedisReply& r) {
          if (a.expired()) return;
          if (r.is_error() || r.elements.size() != 2) {
            done(absl::UnavailableError(r.is_error() ? r.str : "bad SCAN reply"));
            return;
          }
          std::vector<std::string> keys;
          for (const RedisReply& e : r.elements[1].elements) keys.push_back(e.str);
          if (!keys.empty()) op(keys);
          bool last = r.elements[0].str == "0";
          ScanNode(nodes, last ? i + 1 : i, match, op, done, last ? "0" : r.elements[0].str);
        });
  }

  void InvalidatePattern(const std::string& glob, DoneCallback done) {
    cache->ApplyInvalidation(StrCat("- pattern ", glob));
    Publish("pattern", glob);
    ScanL2(
        glob,
        [this](const std::vector<std::string>& keys) {
          std::vector<std::string_view> del = {"DEL"};
          for (const auto& k : keys) del.push_back(k);
          redis->Command(del, [](const RedisReply&) {});
        },
        std::move(done));
  }

  void ExpirePattern(const std::string& glob, int64_t ttl_ms, DoneCallback done) {
    cache->ApplyInvalidation(StrCat("- expire ", ttl_ms, " ", glob));
    Publish("expire", StrCat(ttl_ms, " ", glob));
    std::string px = StrCat(ttl_ms);
    ScanL2(
        glob,
        [this, px](const std::vector<std::string>& keys) {
          for (const auto& k : keys) redis->Command({"PEXPIRE", k, px}, [](const RedisReply&) {});
        },
        std::move(done));
  }
};

// ---------------------------------------------------------------- Cache

Cache::Cache(CacheConfig config) : config_(std::move(config)) {}

Cache::~Cache() { Stop(); }

absl::StatusOr<std::unique_ptr<Cache>> Cache::Create(CacheConfig config) {
  std::unique_ptr<Cache> c(new Cache(std::move(config)));
  if (!c->config_.namespaces.count(kDefaultNamespace)) {
    NamespaceConfig d;
    d.name = kDefaultNamespace;
    c->config_.namespaces[kDefaultNamespace] = d;
  }
  for (auto& [name, nc] : c->config_.namespaces) {
    auto ns = std::make_unique<Namespace>();
    ns->cfg = nc;
    ns->cfg.name = name;
    ns->l1 = std::make_unique<L1Cache>(nc.l1);
    c->namespaces_[name] = std::move(ns);
  }
  if (c->config_.penetration.enabled) {
    c->bloom_ = std::make_unique<BloomFilter>(c->config_.penetration.capacity,
                                              c->config_.penetration.false_positive_rate);
  }
  c->flights_ = std::make_unique<FlightTable>(
      c->config_.breakdown.single_flight ? c->config_.breakdown.max_concurrent : 1 << 30);
  c->instance_id_ = RandomToken();
  c->control_ = std::make_unique<Control>();
  return c;
}

Cache::Namespace& Cache::NamespaceOf(std::string_view key) {
  size_t colon = key.find(':');
  if (colon != std::string_view::npos) {
    auto it = namespaces_.find(key.substr(0, colon));
    if (it != namespaces_.end()) return *it->second;
  }
  return *namespaces_.find(std::string_view(kDefaultNamespace))->second;
}

void Cache::SetLoader(const std::string& ns, Loader loader) {
  auto it = namespaces_.find(ns);
  if (it != namespaces_.end()) it->second->loader = std::move(loader);
}
void Cache::SetWriter(const std::string& ns, Writer writer) {
  auto it = namespaces_.find(ns);
  if (it != namespaces_.end()) it->second->writer = std::move(writer);
}
void Cache::SetWarmupSource(const std::string& ns, WarmupSource source) {
  auto it = namespaces_.find(ns);
  if (it != namespaces_.end()) it->second->warmup = std::move(source);
}

void Cache::AddKnownKey(std::string_view key) {
  if (bloom_) bloom_->Add(key);
}
void Cache::MarkKnownKeysLoaded() { bloom_ready_.store(true, std::memory_order_release); }

Lookup Cache::PeekL1(std::string_view key, int64_t now_ms) {
  return NamespaceOf(key).l1->Peek(key, now_ms);
}

std::map<std::string, L1Stats> Cache::L1StatsByNamespace() const {
  std::map<std::string, L1Stats> out;
  for (const auto& [name, ns] : namespaces_) out[name] = ns->l1->Stats();
  return out;
}

size_t Cache::write_behind_pending() const {
  size_t n = 0;
  for (const auto& [name, ns] : namespaces_) {
    MutexLock lock(&ns->mu);
    n += ns->queue.size() + ns->given_up.size();
  }
  return n;
}

void Cache::FlushL1(const char* why) {
  size_t dropped = 0;
  invalidation_epoch_.fetch_add(1, std::memory_order_acq_rel);
  for (auto& [name, ns] : namespaces_) dropped += ns->l1->Clear();
  counters_.l1_flushes.fetch_add(1);
  LogInfo("cache: L1 flushed (", why, "), ", dropped, " entries dropped");
}

// Messages: "<instance> key <key>", "<instance> tag <tag>", "<instance> pattern <glob>",
// "<instance> expire <ttl_ms> <glob>". Local calls use "-" as the instance.
void Cache::ApplyInvalidation(std::string_view message) {
  size_t sp1 = message.find(' ');
  if (sp1 == std::string_view::npos) return;
  std::string_view origin = message.substr(0, sp1);
  std::string_view rest = message.substr(sp1 + 1);
  size_t sp2 = rest.find(' ');
  if (sp2 == std::string_view::npos) return;
  std::string_view op = rest.substr(0, sp2);
  std::string_view arg = rest.substr(sp2 + 1);
  if (origin != "-") {
    if (origin == instance_id_) return;  // our own, already applied
    counters_.invalidations_received.fetch_add(1);
  }
  invalidation_epoch_.fetch_add(1, std::memory_order_acq_rel);
  if (op == "key") {
    NamespaceOf(arg).l1->Erase(arg);
  } else if (op == "tag") {
    for (auto& [name, ns] : namespaces_) ns->l1->EraseTag(arg);
  } else if (op == "pattern") {
    for (auto& [name, ns] : namespaces_) ns->l1->ErasePattern(arg);
  } else if (op == "expire") {
    size_t sp3 = arg.find(' ');
    int64_t ttl = 0;
    if (sp3 == std::string_view::npos || !ParseInt(arg.substr(0, sp3), &ttl)) return;
    std::string_view glob = arg.substr(sp3 + 1);
    for (auto& [name, ns] : namespaces_) ns->l1->ExpirePattern(glob, ttl, MonotonicMs());
  }
}

std::unique_ptr<CacheClient> Cache::Attach(EventLoop* loop) {
  auto impl = std::make_unique<CacheClient::Impl>();
  impl->cache = this;
  impl->loop = loop;
  if (config_.redis.enabled && !config_.redis.servers.nodes.empty()) {
    impl->redis = std::make_unique<RedisLink>(
        loop, config_.redis.servers, L2Options(config_.redis, config_.redis.command_timeout_ms),
        SystemRedisLookup(), SentinelMaster(&control_->sentinel_ptr),
        config_.redis.servers.mode == RedisServers::Mode::kCluster ? "cache redis cluster"
                                                                   : "cache redis");
    impl->redis->Start();
  }
  return std::unique_ptr<CacheClient>(new CacheClient(std::move(impl)));
}

void Cache::Start(EventLoop* loop) {
  Control& c = *control_;
  c.loop = loop;
  if (config_.redis.enabled && config_.redis.servers.mode == RedisServers::Mode::kSentinel) {
    c.sentinel = std::make_unique<SentinelResolver>(loop, config_.redis.servers.nodes,
                                                    config_.redis.servers.sentinel_master);
    c.sentinel->Start();
    c.sentinel_ptr.store(c.sentinel.get(), std::memory_order_release);
  }
  c.client = Attach(loop);
  if (c.client->impl_->redis) {
    // A second connection for the subscription (a subscribed connection takes no commands).
    RedisOptions o = OneConnectionOptions(config_.redis.servers, L2Options(config_.redis, 1000),
                                          SystemRedisLookup(), SentinelMaster(&c.sentinel_ptr));
    Control* ctl = control_.get();
    c.subscriber = std::make_unique<RedisClient>(loop, o, "cache invalidation subscriber");
    c.subscriber->SetPushHandler([this](std::string_view channel, std::string_view payload) {
      if (channel == config_.redis.channel) ApplyInvalidation(payload);
    });
    c.subscriber->SetOnReady([this, ctl] {
      ctl->subscriber->Command({"SUBSCRIBE", config_.redis.channel}, [this](const RedisReply& r) {
        if (r.is_error()) return;
        subscriber_up_.store(true);
        // Invalidations published while we were not listening are lost: start clean.
        if (control_->ever_subscribed) FlushL1("invalidation channel subscribed again");
        control_->ever_subscribed = true;
      });
    });
    c.subscriber->SetOnDown([this] {
      subscriber_up_.store(false);
      FlushL1("invalidation channel lost");
    });
    c.subscriber->Start();
  }
  // Write-behind flusher.
  bool any_write_behind = false;
  for (auto& [name, ns] : namespaces_) {
    any_write_behind |= ns->cfg.write == WriteStrategy::kWriteBehind;
  }
  if (any_write_behind) {
    c.flush_timer.set_callback([this] {
      FlushWriteBehind();
      int64_t every = INT64_MAX;
      for (auto& [name, ns] : namespaces_) {
        if (ns->cfg.write == WriteStrategy::kWriteBehind) {
          every = std::min(every, ns->cfg.write_behind_interval_ms);
        }
      }
      if (!control_->stopped) control_->loop->ArmTimer(&control_->flush_timer, every);
    });
    loop->ArmTimer(&c.flush_timer, 1);
  }
  // Warm-up.
  if (config_.warmup.enabled) {
    c.warmup_timer.set_callback([this] {
      control_->warmed_once = true;
      RunWarmup();
      ScheduleWarmup();
    });
    if (config_.warmup.on_start) {
      // Warm once Redis is reachable, so L2 is filled too; without it after a second anyway.
      RedisLink* r = c.client->impl_->redis.get();
      if (r != nullptr) {
        r->SetOnReady([this] {
          if (control_->warmed_once || control_->stopped) return;
          control_->loop->ArmTimer(&control_->warmup_timer, 1);
        });
        loop->ArmTimer(&c.warmup_timer, 1000);
      } else {
        loop->ArmTimer(&c.warmup_timer, 1);
      }
    } else {
      ScheduleWarmup();
    }
  }
}

void Cache::ScheduleWarmup() {
  Control& c = *control_;
  if (!config_.warmup.schedule.has_value() || c.stopped) return;
  int64_t now_ms = wall_ms_ ? wall_ms_() : WallMs();
  // In the local time zone, as cron(8) reads a crontab. A timer may fire a hair before its
  // minute by the wall clock; counting from the minute just run (not from "now") keeps that
  // minute from running twice.
  int64_t after = std::max(now_ms / 1000, c.warmup_slot_s);
  int64_t next = config_.warmup.schedule->Next(after, /*utc=*/false);
  if (next < 0) return;
  c.warmup_slot_s = next;
  // To the millisecond: a schedule read at hh:mm:59.6 fires 0.4 s later, not a second later.
  c.loop->ArmTimer(&c.warmup_timer, std::max<int64_t>(1, next * 1000 - now_ms));
}

void Cache::RunWarmup() {
  counters_.warmups.fetch_add(1);
  CacheClient::Impl* impl = control_->client->impl_.get();
  auto pending = std::make_shared<int>(1);
  auto finished = [this, pending] {
    if (--*pending == 0 && bloom_) MarkKnownKeysLoaded();
  };
  for (const std::string& name : config_.warmup.namespaces) {
    auto it = namespaces_.find(name);
    if (it == namespaces_.end() || !it->second->warmup) continue;
    Namespace* ns = it->second.get();
    ++*pending;
    std::weak_ptr<bool> a = impl->alive;
    ns->warmup([this, ns, impl, a, finished](
                   absl::StatusOr<std::vector<std::pair<std::string, std::string>>> entries) {
      if (a.expired()) return;
      if (!entries.ok()) {
        counters_.warmup_errors.fetch_add(1);
        LogWarn("cache: warm-up of \"", ns->cfg.name, "\" failed: ", entries.status().message());
      } else {
        for (auto& [k, v] : *entries) {
          impl->Store(*ns, k, std::move(v), SetOptions{});
          counters_.warmup_entries.fetch_add(1);
        }
      }
      finished();
    });
  }
  for (const std::string& key : config_.warmup.keys) {
    ++*pending;
    impl->Get(key, [this, finished, key](const GetResult& r) {
      if (r.status.ok()) {
        counters_.warmup_entries.fetch_add(1);
      } else if (!absl::IsNotFound(r.status)) {
        counters_.warmup_errors.fetch_add(1);
        LogWarn("cache: warm-up of \"", key, "\" failed: ", r.status.message());
      }
      finished();
    });
  }
  finished();
}

void Cache::FlushWriteBehind() {
  CacheClient::Impl* impl = control_->client->impl_.get();
  int64_t now = control_->loop->now_ms();
  for (auto& [name, nsp] : namespaces_) {
    Namespace* ns = nsp.get();
    if (ns->cfg.write != WriteStrategy::kWriteBehind || !ns->writer) continue;
    std::vector<WriteOp> batch;
    {
      MutexLock lock(&ns->mu);
      if (ns->flushing || ns->queue.empty() || now < ns->retry_at_ms) continue;
      size_t n =
          std::min<size_t>(ns->queue.size(), static_cast<size_t>(ns->cfg.write_behind_batch));
      batch.assign(std::make_move_iterator(ns->queue.begin()),
                   std::make_move_iterator(ns->queue.begin() + static_cast<long>(n)));
      ns->queue.erase(ns->queue.begin(), ns->queue.begin() + static_cast<long>(n));
      ns->flushing = true;
    }
    std::weak_ptr<bool> a = impl->alive;
    auto shared_batch = std::make_shared<std::vector<WriteOp>>(std::move(batch));
    ns->writer(*shared_batch, [this, ns, a, shared_batch](absl::Status st) {
      if (a.expired()) return;
      MutexLock lock(&ns->mu);
      ns->flushing = false;
      if (st.ok()) {
        counters_.write_behind_written.fetch_add(shared_batch->size());
        ns->consecutive_failures = 0;
        ns->retry_at_ms = 0;
        return;
      }
      counters_.write_behind_failures.fetch_add(1);
      ++ns->consecutive_failures;
      // Back off (interval × 2^failures, at most 30 s) and keep the writes, in order, at the
      // front of the queue; a write past max_attempts is set aside and reported, never dropped.
      int64_t backoff = std::min<int64_t>(
          30000, ns->cfg.write_behind_interval_ms << std::min(ns->consecutive_failures, 10));
      ns->retry_at_ms = control_->loop->now_ms() + backoff;
      size_t kept = 0;
      for (auto it = shared_batch->rbegin(); it != shared_batch->rend(); ++it) {
        ++it->attempts;
        if (ns->cfg.write_behind_max_attempts > 0 &&
            it->attempts >= ns->cfg.write_behind_max_attempts) {
          ns->given_up.push_back(*it);
        } else {
          ns->queue.push_front(*it);
          ++kept;
        }
      }
      LogWarn("cache: write-behind of ", shared_batch->size(), " writes in \"", ns->cfg.name,
              "\" failed: ", st.message(), "; ", kept, " kept for retry in ", backoff, "ms",
              ns->given_up.empty() ? "" : StrCat(", ", ns->given_up.size(), " past max_attempts"));
    });
  }
}

void Cache::Stop() {
  if (!control_ || control_->stopped || control_->loop == nullptr) return;
  Control& c = *control_;
  c.stopped = true;
  c.loop->CancelTimer(&c.flush_timer);
  c.loop->CancelTimer(&c.warmup_timer);
  size_t pending = write_behind_pending();
  if (pending > 0) {
    LogWarn("cache: stopping with ", pending, " write-behind writes not yet written");
  }
  c.subscriber.reset();
  c.client.reset();
  c.sentinel.reset();
}

// ---------------------------------------------------------------- CacheClient

CacheClient::CacheClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CacheClient::~CacheClient() {
  for (auto& t : impl_->timers) impl_->loop->CancelTimer(&t->timer);
}

void CacheClient::Get(const std::string& key, GetCallback cb) { impl_->Get(key, std::move(cb)); }
void CacheClient::GetMany(const std::vector<std::string>& keys,
                          std::function<void(std::vector<GetResult>)> cb) {
  impl_->GetMany(keys, std::move(cb));
}
void CacheClient::Set(const std::string& key, std::string value, SetOptions options,
                      DoneCallback done) {
  impl_->Set(key, std::move(value), std::move(options), std::move(done));
}
void CacheClient::Delete(const std::string& key, DoneCallback done) {
  impl_->Delete(key, std::move(done));
}
void CacheClient::InvalidateTag(const std::string& tag, DoneCallback done) {
  impl_->InvalidateTag(tag, std::move(done));
}
void CacheClient::InvalidatePrefix(const std::string& prefix, DoneCallback done) {
  impl_->InvalidatePattern(GlobEscape(prefix) + "*", std::move(done));
}
void CacheClient::InvalidatePattern(const std::string& glob, DoneCallback done) {
  impl_->InvalidatePattern(glob, std::move(done));
}
bool CacheClient::l2_up() const { return impl_->redis && impl_->redis->connected(); }

void CacheClient::Emit(const std::string& event, const std::map<std::string, std::string>& params,
                       DoneCallback done) {
  auto it = impl_->cache->config_.events.find(event);
  if (it == impl_->cache->config_.events.end()) {
    done(absl::NotFoundError(StrCat("no invalidation rules for event \"", event, "\"")));
    return;
  }
  // Expand every pattern first: an event missing a parameter changes nothing.
  std::vector<std::pair<const InvalidationRule*, std::string>> todo;
  for (const InvalidationRule& rule : it->second) {
    auto p = ExpandPattern(rule.pattern, params);
    if (!p.ok()) {
      done(absl::InvalidArgumentError(StrCat("event \"", event, "\": ", p.status().message())));
      return;
    }
    todo.emplace_back(&rule, *p);
  }
  auto remaining = std::make_shared<size_t>(todo.size());
  auto first_error = std::make_shared<absl::Status>();
  auto one_done = [remaining, first_error, done](absl::Status st) {
    if (!st.ok() && first_error->ok()) *first_error = st;
    if (--*remaining == 0) done(*first_error);
  };
  if (todo.empty()) {
    done(absl::OkStatus());
    return;
  }
  Impl* impl = impl_.get();
  for (auto& [rule, pattern] : todo) {
    switch (rule->mode) {
      case InvalidationMode::kImmediate:
        impl->InvalidatePattern(pattern, one_done);
        break;
      case InvalidationMode::kLazy: {
        std::weak_ptr<bool> a = impl->alive;
        impl->After(rule->delay_ms, [impl, a, pattern = pattern] {
          if (a.expired()) return;
          impl->InvalidatePattern(pattern, [](absl::Status) {});
        });
        one_done(absl::OkStatus());  // scheduled
        break;
      }
      case InvalidationMode::kTimeBased:
        impl->ExpirePattern(pattern, rule->ttl_ms, one_done);
        break;
    }
  }
}

}  // namespace bulwark::cache
