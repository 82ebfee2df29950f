#include "cache/l1_cache.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "cache/frequency_sketch.h"
#include "cache/glob.h"
#include "core/mutex.h"
#include "core/strings.h"

namespace bulwark::cache {
namespace {

// What an entry costs besides its key and value: the node, its index slot and heap slot.
constexpr int64_t kEntryOverhead = 128;
// Caffeine admits a candidate that lost on frequency once in 128 times when it is at least
// this warm, so an attacker who floods the sketch cannot pin the victims forever.
constexpr int kAdmitHashDosThreshold = 6;
// Expired entries dropped per write, so a burst of writes cleans up as it goes.
constexpr int kSweepPerWrite = 4;
// Nodes kept for reuse per shard, so a full cache replaces entries without allocating nodes.
constexpr size_t kNodePool = 64;

enum Segment : uint8_t { kNone, kWindow, kProbation, kProtected, kLfu };

struct LfuBucket;

struct Node {
  std::string key;
  uint64_t hash = 0;
  std::shared_ptr<const std::string> value;
  bool negative = false;
  Segment segment = kNone;
  int64_t fresh_until = 0;
  int64_t stale_until = 0;  // the removal deadline: max(fresh_until, stale period end)
  int64_t load_ms = 0;
  int64_t charge = 0;
  Node* prev = nullptr;
  Node* next = nullptr;
  size_t heap_index = 0;
  LfuBucket* bucket = nullptr;
  std::vector<std::string> tags;
};

// An intrusive doubly linked list in access order: front = least recent.
struct List {
  Node* front = nullptr;
  Node* back = nullptr;
  int64_t count = 0;
  int64_t bytes = 0;

  void PushBack(Node* n) {
    n->prev = back;
    n->next = nullptr;
    if (back) {
      back->next = n;
    } else {
      front = n;
    }
    back = n;
    ++count;
    bytes += n->charge;
  }
  void Remove(Node* n) {
    (n->prev ? n->prev->next : front) = n->next;
    (n->next ? n->next->prev : back) = n->prev;
    n->prev = n->next = nullptr;
    --count;
    bytes -= n->charge;
  }
  void MoveToBack(Node* n) {
    if (back == n) return;
    Remove(n);
    PushBack(n);
  }
  bool empty() const { return front == nullptr; }
};

struct LfuBucket {
  uint64_t freq = 0;
  List list;
  LfuBucket* prev = nullptr;
  LfuBucket* next = nullptr;
};

bool Over(int64_t count, int64_t bytes, int64_t max_count, int64_t max_bytes) {
  return (max_count > 0 && count > max_count) || (max_bytes > 0 && bytes > max_bytes);
}

int64_t Share(int64_t total, double fraction) {
  if (total <= 0) return 0;
  return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(total) * fraction));
}

}  // namespace

// Cache-line aligned so two shards never share a line (false sharing between workers).
struct alignas(64) L1Cache::Shard {
  Shard(const L1Options& o, int64_t max_entries_in, int64_t max_bytes_in)
      : policy(o.policy),
        max_entries(max_entries_in),
        max_bytes(max_bytes_in),
        sketch(static_cast<uint64_t>(
            max_entries_in > 0 ? max_entries_in
                               : std::clamp<int64_t>(max_bytes_in / 1024, 64, int64_t{1} << 22))) {
    window_entries = Share(max_entries, o.window_fraction);
    window_bytes = Share(max_bytes, o.window_fraction);
    main_entries = max_entries > 0 ? std::max<int64_t>(1, max_entries - window_entries) : 0;
    main_bytes = max_bytes > 0 ? std::max<int64_t>(1, max_bytes - window_bytes) : 0;
    protected_entries = Share(main_entries, o.protected_fraction);
    protected_bytes = Share(main_bytes, o.protected_fraction);
  }

  mutable SpinLock mu;
  const EvictionPolicy policy;
  const int64_t max_entries;
  const int64_t max_bytes;
  int64_t window_entries, window_bytes, main_entries, main_bytes;
  int64_t protected_entries, protected_bytes;

  absl::flat_hash_map<std::string_view, std::unique_ptr<Node>> index ABSL_GUARDED_BY(mu);
  List window ABSL_GUARDED_BY(mu);  // W-TinyLFU window; the whole order for LRU
  List probation ABSL_GUARDED_BY(mu);
  List protected_ ABSL_GUARDED_BY(mu);
  LfuBucket* lfu_head ABSL_GUARDED_BY(mu) = nullptr;
  std::vector<std::unique_ptr<LfuBucket>> bucket_store ABSL_GUARDED_BY(mu);
  std::vector<LfuBucket*> free_buckets ABSL_GUARDED_BY(mu);
  std::vector<Node*> heap ABSL_GUARDED_BY(mu);  // min-heap on stale_until
  absl::flat_hash_map<std::string, absl::flat_hash_set<Node*>> tag_index ABSL_GUARDED_BY(mu);
  FrequencySketch sketch ABSL_GUARDED_BY(mu);
  std::vector<std::unique_ptr<Node>> node_pool ABSL_GUARDED_BY(mu);
  int64_t bytes ABSL_GUARDED_BY(mu) = 0;
  uint64_t rng ABSL_GUARDED_BY(mu) = 0x2545F4914F6CDD1Dull;
  L1Stats stats ABSL_GUARDED_BY(mu);

  int64_t entries() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return static_cast<int64_t>(index.size());
  }
  bool TotalOver() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return Over(entries(), bytes, max_entries, max_bytes);
  }
  uint64_t Random() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  }

  // ---- the expiry heap
  bool HeapLess(size_t a, size_t b) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return heap[a]->stale_until < heap[b]->stale_until;
  }
  void HeapSwap(size_t a, size_t b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::swap(heap[a], heap[b]);
    heap[a]->heap_index = a;
    heap[b]->heap_index = b;
  }
  void HeapUp(size_t i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    while (i > 0) {
      size_t parent = (i - 1) / 2;
      if (!HeapLess(i, parent)) break;
      HeapSwap(i, parent);
      i = parent;
    }
  }
  void HeapDown(size_t i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (;;) {
      size_t l = 2 * i + 1;
      size_t r = l + 1;
      size_t m = i;
      if (l < heap.size() && HeapLess(l, m)) m = l;
      if (r < heap.size() && HeapLess(r, m)) m = r;
      if (m == i) return;
      HeapSwap(i, m);
      i = m;
    }
  }
  void HeapPush(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    n->heap_index = heap.size();
    heap.push_back(n);
    HeapUp(n->heap_index);
  }
  void HeapRemove(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    size_t i = n->heap_index;
    HeapSwap(i, heap.size() - 1);
    heap.pop_back();
    if (i < heap.size()) {
      HeapDown(i);
      HeapUp(i);
    }
  }
  void HeapFix(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    HeapDown(n->heap_index);
    HeapUp(n->heap_index);
  }

  // ---- LFU buckets
  LfuBucket* NewBucket(uint64_t freq, LfuBucket* after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    LfuBucket* b;
    if (!free_buckets.empty()) {
      b = free_buckets.back();
      free_buckets.pop_back();
    } else {
      bucket_store.push_back(std::make_unique<LfuBucket>());
      b = bucket_store.back().get();
    }
    b->freq = freq;
    b->list = List{};
    b->prev = after;
    b->next = after ? after->next : lfu_head;
    if (b->next) b->next->prev = b;
    (after ? after->next : lfu_head) = b;
    return b;
  }
  void DropBucketIfEmpty(LfuBucket* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (!b->list.empty()) return;
    (b->prev ? b->prev->next : lfu_head) = b->next;
    if (b->next) b->next->prev = b->prev;
    free_buckets.push_back(b);
  }
  void LfuInsert(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    LfuBucket* b = lfu_head && lfu_head->freq == 1 ? lfu_head : NewBucket(1, nullptr);
    b->list.PushBack(n);
    n->bucket = b;
    n->segment = kLfu;
  }
  void LfuTouch(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    LfuBucket* b = n->bucket;
    LfuBucket* nb = b->next;
    if (!nb || nb->freq != b->freq + 1) nb = NewBucket(b->freq + 1, b);
    b->list.Remove(n);
    nb->list.PushBack(n);
    n->bucket = nb;
    DropBucketIfEmpty(b);
  }

  // ---- policy
  List* ListOf(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    switch (n->segment) {
      case kWindow:
        return &window;
      case kProbation:
        return &probation;
      case kProtected:
        return &protected_;
      case kLfu:
        return &n->bucket->list;
      case kNone:
        break;
    }
    return nullptr;
  }
  void Unlink(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (List* l = ListOf(n)) l->Remove(n);
    if (n->segment == kLfu) DropBucketIfEmpty(n->bucket);
    n->segment = kNone;
    n->bucket = nullptr;
  }

  void OnAccess(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    switch (policy) {
      case EvictionPolicy::kLru:
        window.MoveToBack(n);
        break;
      case EvictionPolicy::kLfu:
        LfuTouch(n);
        break;
      case EvictionPolicy::kTtl:
        break;
      case EvictionPolicy::kWTinyLfu:
        sketch.Increment(n->hash);
        if (n->segment == kWindow) {
          window.MoveToBack(n);
        } else if (n->segment == kProtected) {
          protected_.MoveToBack(n);
        } else if (n->segment == kProbation) {
          // A second hit in the main space earns protection; the protected segment's least
          // recent entry goes back on probation when it overflows.
          probation.Remove(n);
          protected_.PushBack(n);
          n->segment = kProtected;
          while (Over(protected_.count, protected_.bytes, protected_entries, protected_bytes) &&
                 protected_.front != n) {
            Node* d = protected_.front;
            protected_.Remove(d);
            probation.PushBack(d);
            d->segment = kProbation;
          }
        }
        break;
    }
  }

  // Removes `n` completely; `n` may be in no list (a W-TinyLFU candidate).
  void Drop(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Unlink(n);
    HeapRemove(n);
    for (const std::string& t : n->tags) {
      auto it = tag_index.find(t);
      if (it == tag_index.end()) continue;
      it->second.erase(n);
      if (it->second.empty()) tag_index.erase(it);
    }
    bytes -= n->charge;
    auto it = index.find(std::string_view(n->key));
    std::unique_ptr<Node> owned = std::move(it->second);
    index.erase(it);
    owned->value.reset();
    owned->tags.clear();
    if (node_pool.size() < kNodePool) node_pool.push_back(std::move(owned));
  }

  bool Admit(Node* candidate, Node* victim) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    int cf = sketch.Estimate(candidate->hash);
    int vf = sketch.Estimate(victim->hash);
    if (cf > vf) return true;
    if (cf <= kAdmitHashDosThreshold) return false;
    return (Random() & 127) == 0;
  }

  // Moves a candidate leaving the window into probation, evicting main-space victims that it
  // beats on frequency; returns false when the candidate itself lost and was evicted.
  bool AdmitToMain(Node* cand) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    int64_t main_count = probation.count + protected_.count;
    int64_t main_b = probation.bytes + protected_.bytes;
    while (Over(main_count + 1, main_b + cand->charge, main_entries, main_bytes)) {
      Node* victim = probation.front ? probation.front : protected_.front;
      if (!victim) break;
      if (!Admit(cand, victim)) {
        ++stats.rejected;  // not admitted: the main space keeps what it had
        Drop(cand);
        return false;
      }
      main_count -= 1;
      main_b -= victim->charge;
      ++stats.evictions;
      Drop(victim);
    }
    probation.PushBack(cand);
    cand->segment = kProbation;
    return true;
  }

  // The entry to evict when the cache is over its bounds (outside W-TinyLFU's admission).
  Node* Victim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    switch (policy) {
      case EvictionPolicy::kLru:
        return window.front;
      case EvictionPolicy::kLfu:
        return lfu_head ? lfu_head->list.front : nullptr;
      case EvictionPolicy::kTtl:
        return heap.empty() ? nullptr : heap.front();
      case EvictionPolicy::kWTinyLfu:
        if (probation.front) return probation.front;
        if (protected_.front) return protected_.front;
        return window.front;
    }
    return nullptr;
  }

  // Places a new node and evicts what the policy says; returns false if `n` itself went.
  bool Insert(Node* n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    switch (policy) {
      case EvictionPolicy::kLru:
        window.PushBack(n);
        n->segment = kWindow;
        break;
      case EvictionPolicy::kLfu:
        // Classic LFU makes room before the newcomer arrives, or it would always be the victim.
        while (TotalOver() && lfu_head) {
          ++stats.evictions;
          Drop(lfu_head->list.front);
        }
        LfuInsert(n);
        break;
      case EvictionPolicy::kTtl:
        break;
      case EvictionPolicy::kWTinyLfu: {
        sketch.Increment(n->hash);
        window.PushBack(n);
        n->segment = kWindow;
        bool kept = true;
        while (Over(window.count, window.bytes, window_entries, window_bytes) && window.front) {
          Node* cand = window.front;
          window.Remove(cand);
          cand->segment = kNone;
          bool is_new = cand == n;
          if (!AdmitToMain(cand) && is_new) kept = false;
        }
        if (!kept) return false;
        break;
      }
    }
    while (TotalOver()) {
      Node* v = Victim();
      if (!v) break;
      bool self = v == n;
      ++(self ? stats.rejected : stats.evictions);
      Drop(v);
      if (self) return false;
    }
    return true;
  }

  void Sweep(int64_t now, size_t budget) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    while (budget-- > 0 && !heap.empty() && heap.front()->stale_until <= now) {
      ++stats.expirations;
      Drop(heap.front());
    }
  }

  void Fill(const Node& n, int64_t now, Lookup* out) const {
    out->state = now < n.fresh_until ? Freshness::kFresh : Freshness::kStale;
    out->value = n.value;
    out->negative = n.negative;
    out->fresh_until_ms = n.fresh_until;
    out->stale_until_ms = n.stale_until;
    out->load_ms = n.load_ms;
  }

  template <typename Pred>
  size_t EraseIf(Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::vector<Node*> doomed;
    for (auto& [k, n] : index) {
      if (pred(*n)) doomed.push_back(n.get());
    }
    for (Node* n : doomed) Drop(n);
    stats.invalidations += doomed.size();
    return doomed.size();
  }
};

absl::StatusOr<EvictionPolicy> ParseEvictionPolicy(std::string_view name) {
  std::string n = AsciiLower(name);
  if (n == "w-tinylfu" || n == "wtinylfu" || n == "tinylfu" || n == "w_tinylfu") {
    return EvictionPolicy::kWTinyLfu;
  }
  if (n == "lru") return EvictionPolicy::kLru;
  if (n == "lfu") return EvictionPolicy::kLfu;
  if (n == "ttl") return EvictionPolicy::kTtl;
  return absl::InvalidArgumentError(
      StrCat("unknown eviction policy \"", name, "\" (expected W-TinyLFU, LRU, LFU or TTL)"));
}

const char* EvictionPolicyName(EvictionPolicy policy) {
  switch (policy) {
    case EvictionPolicy::kWTinyLfu:
      return "w-tinylfu";
    case EvictionPolicy::kLru:
      return "lru";
    case EvictionPolicy::kLfu:
      return "lfu";
    case EvictionPolicy::kTtl:
      return "ttl";
  }
  return "?";
}

uint64_t HashKey(std::string_view key) {
  // libstdc++'s string hash (Murmur-derived) through a SplitMix64 finalizer, so that the high
  // bits used for shard selection are as good as the low ones.
  uint64_t x = std::hash<std::string_view>{}(key);
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

L1Cache::L1Cache(L1Options options) : options_(options) {
  // Each shard runs the policy on its share, so a shard must be large enough for the policy to
  // mean something: small caches get fewer shards (one below 128 entries).
  int shards = 1;
  while (shards < options_.shards) shards <<= 1;
  if (options_.max_entries > 0) {
    while (shards > 1 && options_.max_entries / shards < 64) shards >>= 1;
  }
  shard_bits_ = 0;
  while ((1 << shard_bits_) < shards) ++shard_bits_;
  options_.shards = shards;
  auto ceil_div = [](int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; };
  for (int i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<Shard>(options_, ceil_div(options_.max_entries, shards),
                                              ceil_div(options_.max_bytes, shards)));
  }
}

L1Cache::~L1Cache() = default;

L1Cache::Shard& L1Cache::ShardFor(uint64_t hash) const {
  return *shards_[shard_bits_ == 0 ? 0 : hash >> (64 - shard_bits_)];
}

Lookup L1Cache::Get(std::string_view key, int64_t now_ms) {
  uint64_t h = HashKey(key);
  Shard& s = ShardFor(h);
  Lookup out;
  SpinLockHolder lock(&s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) {
    ++s.stats.misses;
    return out;
  }
  Node* n = it->second.get();
  if (n->stale_until <= now_ms) {
    ++s.stats.expirations;
    ++s.stats.misses;
    s.Drop(n);
    return out;
  }
  s.Fill(*n, now_ms, &out);
  ++(out.state == Freshness::kFresh ? s.stats.hits : s.stats.stale_hits);
  s.OnAccess(n);
  return out;
}

Lookup L1Cache::Peek(std::string_view key, int64_t now_ms) const {
  Shard& s = ShardFor(HashKey(key));
  Lookup out;
  SpinLockHolder lock(&s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end() || it->second->stale_until <= now_ms) return out;
  s.Fill(*it->second, now_ms, &out);
  return out;
}

PutResult L1Cache::Put(std::string_view key, std::shared_ptr<const std::string> value,
                       const PutOptions& options, int64_t now_ms) {
  uint64_t h = HashKey(key);
  Shard& s = ShardFor(h);
  int64_t charge = kEntryOverhead + static_cast<int64_t>(key.size()) +
                   (options.negative || !value ? 0 : static_cast<int64_t>(value->size()));
  for (const std::string& t : options.tags) charge += static_cast<int64_t>(t.size()) + 16;
  int64_t stale_until = std::max(options.fresh_until_ms, options.stale_until_ms);

  SpinLockHolder lock(&s.mu);
  ++s.stats.puts;
  s.Sweep(now_ms, kSweepPerWrite);
  auto it = s.index.find(key);
  Node* n = it == s.index.end() ? nullptr : it->second.get();
  // A value that could never fit, or one already expired, replaces the old one by removing it:
  // a refused write must not leave the previous value to be served.
  if ((s.max_bytes > 0 && charge > s.max_bytes) || stale_until <= now_ms) {
    if (n) {
      ++s.stats.invalidations;
      s.Drop(n);
    }
    ++s.stats.rejected;
    return PutResult::kRejected;
  }
  if (n) {
    // Replace in place: the entry keeps its segment and counts as accessed.
    if (List* l = s.ListOf(n)) l->bytes += charge - n->charge;
    s.bytes += charge - n->charge;
    n->charge = charge;
    n->value = options.negative ? nullptr : std::move(value);
    n->negative = options.negative;
    n->fresh_until = options.fresh_until_ms;
    n->stale_until = stale_until;
    n->load_ms = options.load_ms;
    for (const std::string& t : n->tags) {
      auto ti = s.tag_index.find(t);
      if (ti == s.tag_index.end()) continue;
      ti->second.erase(n);
      if (ti->second.empty()) s.tag_index.erase(ti);
    }
    n->tags = options.tags;
    for (const std::string& t : n->tags) s.tag_index[t].insert(n);
    s.HeapFix(n);
    s.OnAccess(n);
    while (s.TotalOver()) {
      Node* v = s.Victim();
      if (!v) break;
      ++s.stats.evictions;
      bool self = v == n;
      s.Drop(v);
      if (self) {
        ++s.stats.rejected;
        return PutResult::kRejected;
      }
    }
    return PutResult::kStored;
  }

  std::unique_ptr<Node> owned;
  if (!s.node_pool.empty()) {
    owned = std::move(s.node_pool.back());
    s.node_pool.pop_back();
  } else {
    owned = std::make_unique<Node>();
  }
  n = owned.get();
  n->key.assign(key.data(), key.size());
  n->hash = h;
  n->value = options.negative ? nullptr : std::move(value);
  n->negative = options.negative;
  n->segment = kNone;
  n->fresh_until = options.fresh_until_ms;
  n->stale_until = stale_until;
  n->load_ms = options.load_ms;
  n->charge = charge;
  n->prev = n->next = nullptr;
  n->bucket = nullptr;
  n->tags = options.tags;
  s.index.emplace(std::string_view(n->key), std::move(owned));
  s.bytes += charge;
  s.HeapPush(n);
  for (const std::string& t : n->tags) s.tag_index[t].insert(n);
  return s.Insert(n) ? PutResult::kStored : PutResult::kRejected;  // Insert counts a refusal
}

bool L1Cache::Erase(std::string_view key) {
  Shard& s = ShardFor(HashKey(key));
  SpinLockHolder lock(&s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) return false;
  ++s.stats.invalidations;
  s.Drop(it->second.get());
  return true;
}

size_t L1Cache::EraseTag(std::string_view tag) {
  size_t removed = 0;
  for (auto& sp : shards_) {
    Shard& s = *sp;
    SpinLockHolder lock(&s.mu);
    auto it = s.tag_index.find(std::string(tag));
    if (it == s.tag_index.end()) continue;
    std::vector<Node*> doomed(it->second.begin(), it->second.end());
    for (Node* n : doomed) s.Drop(n);
    s.stats.invalidations += doomed.size();
    removed += doomed.size();
  }
  return removed;
}

size_t L1Cache::ErasePrefix(std::string_view prefix) {
  size_t removed = 0;
  for (auto& sp : shards_) {
    SpinLockHolder lock(&sp->mu);
    removed += sp->EraseIf([&](const Node& n) { return StartsWith(n.key, prefix); });
  }
  return removed;
}

size_t L1Cache::ErasePattern(std::string_view glob) {
  std::string_view literal = GlobLiteralPrefix(glob);
  size_t removed = 0;
  for (auto& sp : shards_) {
    SpinLockHolder lock(&sp->mu);
    removed += sp->EraseIf(
        [&](const Node& n) { return StartsWith(n.key, literal) && GlobMatch(glob, n.key); });
  }
  return removed;
}

size_t L1Cache::Clear() {
  size_t removed = 0;
  for (auto& sp : shards_) {
    SpinLockHolder lock(&sp->mu);
    removed += sp->EraseIf([](const Node&) { return true; });
  }
  return removed;
}

size_t L1Cache::ExpirePattern(std::string_view glob, int64_t ttl_ms, int64_t now_ms) {
  std::string_view literal = GlobLiteralPrefix(glob);
  size_t changed = 0;
  for (auto& sp : shards_) {
    Shard& s = *sp;
    SpinLockHolder lock(&s.mu);
    for (auto& [k, n] : s.index) {
      if (!StartsWith(n->key, literal) || !GlobMatch(glob, n->key)) continue;
      // Redis EXPIRE semantics: the key lives exactly `ttl` from now, with no stale period.
      n->fresh_until = now_ms + ttl_ms;
      n->stale_until = now_ms + ttl_ms;
      s.HeapFix(n.get());
      ++changed;
    }
  }
  return changed;
}

size_t L1Cache::ExpireNow(int64_t now_ms, size_t budget) {
  size_t removed = 0;
  for (auto& sp : shards_) {
    SpinLockHolder lock(&sp->mu);
    uint64_t before = sp->stats.expirations;
    sp->Sweep(now_ms, budget);
    removed += sp->stats.expirations - before;
  }
  return removed;
}

std::vector<std::string> L1Cache::Keys() const {
  std::vector<std::string> keys;
  for (auto& sp : shards_) {
    SpinLockHolder lock(&sp->mu);
    for (auto& [k, n] : sp->index) keys.emplace_back(k);
  }
  return keys;
}

L1Stats& L1Stats::operator+=(const L1Stats& o) {
  entries += o.entries;
  bytes += o.bytes;
  hits += o.hits;
  stale_hits += o.stale_hits;
  misses += o.misses;
  puts += o.puts;
  rejected += o.rejected;
  evictions += o.evictions;
  expirations += o.expirations;
  invalidations += o.invalidations;
  return *this;
}

L1Stats L1Cache::Stats() const {
  L1Stats total;
  for (auto& sp : shards_) {
    SpinLockHolder lock(&sp->mu);
    L1Stats s = sp->stats;
    s.entries = sp->index.size();
    s.bytes = static_cast<uint64_t>(sp->bytes);
    total += s;
  }
  return total;
}

}  // namespace bulwark::cache
