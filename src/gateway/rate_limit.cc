#include "gateway/rate_limit.h"

#include <algorithm>
#include <cassert>
#include <functional>

namespace bulwark::gateway {

const char* LimitResultName(LimitResult r) {
  switch (r) {
    case LimitResult::kPassed:
      return "passed";
    case LimitResult::kDelayed:
      return "delayed";
    case LimitResult::kRejected:
      return "rejected";
    case LimitResult::kDelayedDryRun:
      return "delayed_dry_run";
    case LimitResult::kRejectedDryRun:
      return "rejected_dry_run";
  }
  return "passed";
}

LimitZone::LimitZone(std::string name, std::string key_text, int64_t rate_milli, int64_t size_bytes)
    : name_(std::move(name)),
      key_text_(std::move(key_text)),
      size_bytes_(size_bytes),
      rate_(rate_milli),
      per_shard_(std::max<size_t>(8, static_cast<size_t>(size_bytes / kBytesPerKey / kShards))),
      shards_(new Shard[kShards]) {
  // Reserved once so nodes never move: the index holds views of their keys.
  for (int i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    shards_[i].nodes.reserve(per_shard_);
  }
}

LimitZone::~LimitZone() = default;

LimitZone::Shard& LimitZone::ShardFor(std::string_view key) {
  return shards_[std::hash<std::string_view>()(key) % kShards];
}

void LimitZone::Count(LimitResult r) {
  Shard& s = shards_[0];
  MutexLock lock(&s.mu);
  ++s.counts[static_cast<int>(r)];
}

size_t LimitZone::Keys() const {
  size_t n = 0;
  for (int i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    n += shards_[i].index.size();
  }
  return n;
}

std::array<uint64_t, kLimitResults> LimitZone::Counts() const {
  std::array<uint64_t, kLimitResults> out = {};
  for (int i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    for (int r = 0; r < kLimitResults; ++r) out[r] += shards_[i].counts[r];
  }
  return out;
}

uint64_t LimitZone::Evictions() const {
  uint64_t n = 0;
  for (int i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    n += shards_[i].evictions;
  }
  return n;
}

void LimitZone::Unlink(Shard& s, uint32_t i) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  Node& n = s.nodes[i];
  if (n.prev != kNil)
    s.nodes[n.prev].next = n.next;
  else
    s.head = n.next;
  if (n.next != kNil)
    s.nodes[n.next].prev = n.prev;
  else
    s.tail = n.prev;
  n.prev = n.next = kNil;
}

void LimitZone::Touch(Shard& s, uint32_t i) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (s.head == i) return;
  Unlink(s, i);
  Node& n = s.nodes[i];
  n.next = s.head;
  if (s.head != kNil) s.nodes[s.head].prev = i;
  s.head = i;
  if (s.tail == kNil) s.tail = i;
}

void LimitZone::Remove(Shard& s, uint32_t i) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  Unlink(s, i);
  s.index.erase(std::string_view(s.nodes[i].key));
  s.free.push_back(i);
}

void LimitZone::Expire(Shard& s, int64_t now_ms) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  int64_t rate = rate_milli();
  // As nginx: look at no more than two of the least recently used keys, and stop at the first
  // one that is still in use.
  for (int n = 0; n < 2 && s.tail != kNil; ++n) {
    Node& t = s.nodes[s.tail];
    if (t.last_ms != kNever) {
      int64_t ms = now_ms - t.last_ms;
      if (ms < 0) ms = -ms;
      if (ms < 60000) break;
      if (t.excess - rate * ms / 1000 > 0) break;
    }
    Remove(s, s.tail);
  }
  if (s.index.size() >= per_shard_ && s.tail != kNil) {
    Remove(s, s.tail);
    ++s.evictions;
  }
}

uint32_t LimitZone::Lookup(Shard& s, std::string_view key, int64_t now_ms, int64_t burst,
                           bool account, int64_t* excess,
                           bool* busy) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  *busy = false;
  auto it = s.index.find(key);
  if (it != s.index.end()) {
    uint32_t i = it->second;
    Touch(s, i);
    Node& n = s.nodes[i];
    int64_t ms = 0;
    int64_t e = Charge(n, now_ms, &ms);
    *excess = e;
    if (e > burst) {
      *busy = true;
      return i;
    }
    if (account) {
      n.excess = e;
      if (ms != 0) n.last_ms = now_ms;
    }
    return i;
  }
  *excess = 0;
  Expire(s, now_ms);
  uint32_t i;
  if (!s.free.empty()) {
    i = s.free.back();
    s.free.pop_back();
  } else {
    i = static_cast<uint32_t>(s.nodes.size());
    assert(s.nodes.size() < s.nodes.capacity());
    s.nodes.emplace_back();
  }
  Node& n = s.nodes[i];
  n.key.assign(key.data(), key.size());
  n.excess = 0;
  n.last_ms = account ? now_ms : kNever;
  n.prev = n.next = kNil;
  s.index.emplace(std::string_view(n.key), i);
  Touch(s, i);
  return i;
}

int64_t LimitZone::Charge(const Node& n, int64_t now_ms, int64_t* ms_out) const {
  if (n.last_ms == kNever) {
    // A key first seen by an earlier zone of a rejected or not yet accounted request. nginx
    // stamps it with time 0, so the elapsed time is the whole uptime and everything has
    // drained: it counts as zero.
    *ms_out = 1;
    return 0;
  }
  int64_t ms = now_ms - n.last_ms;
  // nginx's guard against clocks stepping back: a small step counts as no time, a large one
  // (over a minute) as one millisecond.
  if (ms < -60000) {
    ms = 1;
  } else if (ms < 0) {
    ms = 0;
  }
  *ms_out = ms;
  int64_t e = n.excess - rate_milli() * ms / 1000 + 1000;
  return e < 0 ? 0 : e;
}

int64_t LimitZone::Account(Shard& s, uint32_t i, int64_t now_ms) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  Node& n = s.nodes[i];
  int64_t ms = 0;
  int64_t e = Charge(n, now_ms, &ms);
  if (ms != 0) n.last_ms = now_ms;
  n.excess = e;
  return e;
}

LimitOutcome LimitDecision::Decide(const LimitRequest* rules, int n, int64_t now_ms,
                                   bool dry_run) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  LimitOutcome out;
  if (n > kMaxRules) n = kMaxRules;
  LimitZone::Shard* shard[kMaxRules] = {};
  LimitZone::Shard* order[kMaxRules];
  int locks = 0;
  for (int i = 0; i < n; ++i) {
    if (rules[i].key.empty() || rules[i].key.size() > 65535) continue;
    shard[i] = &rules[i].zone->ShardFor(rules[i].key);
    order[locks++] = shard[i];
  }
  if (locks == 0) return out;
  out.applied = true;
  // Lock in address order so two routes listing the same zones in different orders cannot
  // deadlock.
  std::sort(order, order + locks);
  locks = static_cast<int>(std::unique(order, order + locks) - order);
  for (int i = 0; i < locks; ++i) order[i]->mu.Lock();

  // The nginx handler: look each rule up in order; all but the last only peek. Stop at the
  // first that is over its burst.
  uint32_t node[kMaxRules];
  bool pending[kMaxRules] = {};
  int64_t excess = 0;
  int last = -1;  // nginx's `limit`: the last rule looked at
  int stop = n;   // nginx's `n` after the loop
  bool busy = false;
  for (int i = 0; i < n; ++i) {
    last = i;
    if (shard[i] == nullptr) continue;
    bool account = i == n - 1;
    node[i] = rules[i].zone->Lookup(*shard[i], rules[i].key, now_ms, rules[i].burst, account,
                                    &excess, &busy);
    if (busy || account) {
      stop = i;
      break;
    }
    pending[i] = true;
  }

  if (busy) {
    out.result = dry_run ? LimitResult::kRejectedDryRun : LimitResult::kRejected;
    out.rule = last;
    out.excess = excess;
    int64_t rate = rules[last].zone->rate_milli();
    // When a request would next fit under the burst, rounded up to whole seconds.
    int64_t wait_ms = (excess - rules[last].burst) * 1000 / rate;
    out.retry_after_s = std::max<int64_t>(1, (wait_ms + 999) / 1000);
    ++shard[last]->counts[static_cast<int>(out.result)];
  } else {
    // nginx ngx_http_limit_req_account: the rule that stopped the loop was already recorded
    // (or none stopped it: every rule only peeked, and the result starts at zero).
    if (stop == n) excess = 0;
    int best = stop < n ? stop : last;
    int64_t max_delay = 0;
    if (excess > rules[best].delay)
      max_delay = (excess - rules[best].delay) * 1000 / rules[best].zone->rate_milli();
    if (stop < n) {
      bool delayed = excess > rules[stop].delay;
      ++shard[stop]->counts[static_cast<int>(
          delayed ? (dry_run ? LimitResult::kDelayedDryRun : LimitResult::kDelayed)
                  : LimitResult::kPassed)];
    }
    int64_t best_excess = excess;
    for (int i = std::min(stop, n) - 1; i >= 0; --i) {
      if (!pending[i]) continue;
      int64_t e = rules[i].zone->Account(*shard[i], node[i], now_ms);
      if (e <= rules[i].delay) {
        ++shard[i]->counts[static_cast<int>(LimitResult::kPassed)];
        continue;
      }
      ++shard[i]->counts[static_cast<int>(dry_run ? LimitResult::kDelayedDryRun
                                                  : LimitResult::kDelayed)];
      int64_t d = (e - rules[i].delay) * 1000 / rules[i].zone->rate_milli();
      if (d > max_delay) {
        max_delay = d;
        best_excess = e;
        best = i;
      }
    }
    out.rule = best;
    out.excess = best_excess;
    if (max_delay > 0) {
      out.result = dry_run ? LimitResult::kDelayedDryRun : LimitResult::kDelayed;
      out.delay_ms = dry_run ? 0 : max_delay;
    }
  }
  for (int i = locks - 1; i >= 0; --i) order[i]->mu.Unlock();
  return out;
}

std::shared_ptr<LimitZone> ZoneRegistry::Get(const LimitZoneConfig& cfg) {
  MutexLock lock(&mu_);
  auto it = zones_.find(cfg.name);
  if (it != zones_.end() && it->second->key_text() == cfg.key.text &&
      it->second->size_bytes() == cfg.size_bytes) {
    it->second->set_rate_milli(cfg.rate_milli);
    return it->second;
  }
  auto z = std::make_shared<LimitZone>(cfg.name, cfg.key.text, cfg.rate_milli, cfg.size_bytes);
  zones_[cfg.name] = z;
  return z;
}

std::shared_ptr<ConnZone> ZoneRegistry::GetConn(const LimitConnZoneConfig& cfg) {
  MutexLock lock(&mu_);
  auto it = conn_zones_.find(cfg.name);
  if (it != conn_zones_.end() && it->second->key_text() == cfg.key.text &&
      it->second->size_bytes() == cfg.size_bytes) {
    return it->second;
  }
  auto z = std::make_shared<ConnZone>(cfg.name, cfg.key.text, cfg.size_bytes);
  conn_zones_[cfg.name] = z;
  return z;
}

void ZoneRegistry::Prune() {
  MutexLock lock(&mu_);
  std::erase_if(zones_, [](const auto& kv) { return kv.second.use_count() == 1; });
  std::erase_if(conn_zones_, [](const auto& kv) { return kv.second.use_count() == 1; });
}

std::vector<std::shared_ptr<LimitZone>> ZoneRegistry::All() const {
  MutexLock lock(&mu_);
  std::vector<std::shared_ptr<LimitZone>> out;
  for (const auto& [k, v] : zones_) out.push_back(v);
  return out;
}

}  // namespace bulwark::gateway
