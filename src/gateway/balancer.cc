#include "gateway/balancer.h"

#include <algorithm>

#include "core/strings.h"

namespace bulwark::gateway {

uint64_t StableHash(std::string_view s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

std::shared_ptr<const HashTables> HashTables::Build(const UpstreamConfig& cfg) {
  auto t = std::make_shared<HashTables>();
  const auto& servers = cfg.servers;
  if (cfg.hash_algorithm == HashAlgorithm::kRing) {
    for (size_t i = 0; i < servers.size(); ++i) {
      int points = 160 * servers[i].weight;
      for (int p = 0; p < points; ++p) {
        uint32_t h = static_cast<uint32_t>(StableHash(StrCat(servers[i].address_text, "#", p)));
        t->ring.emplace_back(h, static_cast<uint16_t>(i));
      }
    }
    std::sort(t->ring.begin(), t->ring.end());
  } else {
    // Maglev population: each server walks its own permutation (offset, skip) of the table
    // and claims the next free slot, `weight` slots per round.
    const uint32_t m = kMaglevSize;
    size_t n = servers.size();
    std::vector<uint32_t> offset(n), skip(n), next(n, 0);
    for (size_t i = 0; i < n; ++i) {
      offset[i] = static_cast<uint32_t>(StableHash(servers[i].address_text, 0x6d61676c) % m);
      skip[i] =
          static_cast<uint32_t>(StableHash(servers[i].address_text, 0x65762121) % (m - 1)) + 1;
    }
    t->maglev.assign(m, UINT16_MAX);
    uint32_t filled = 0;
    while (filled < m) {
      for (size_t i = 0; i < n && filled < m; ++i) {
        for (int w = 0; w < servers[i].weight && filled < m; ++w) {
          uint32_t c;
          do {
            c = static_cast<uint32_t>((offset[i] + static_cast<uint64_t>(next[i]) * skip[i]) % m);
            ++next[i];
          } while (t->maglev[c] != UINT16_MAX);
          t->maglev[c] = static_cast<uint16_t>(i);
          ++filled;
        }
      }
    }
  }
  return t;
}

Balancer::Balancer(const UpstreamConfig& cfg, const std::vector<ServerState*>& states,
                   std::shared_ptr<const HashTables> tables, uint64_t seed)
    : kind_(cfg.balance),
      hash_algorithm_(cfg.hash_algorithm),
      tables_(std::move(tables)),
      rng_(seed | 1) {
  for (size_t i = 0; i < cfg.servers.size(); ++i) {
    const ServerConfig& s = cfg.servers[i];
    // A host name with no address yet is a server that is down until it resolves.
    Peer p{states[i], s.weight, s.max_fails, s.fail_timeout_ms, s.backup, s.down || !s.resolved};
    p.effective_weight = s.weight;
    p.half_open_requests = cfg.breaker.half_open_requests;
    p.sticky_id = StableHash(s.address_text);
    peers_.push_back(p);
  }
  scratch_.reserve(peers_.size());
  if (cfg.outlier.enabled) panic_threshold_ = cfg.outlier.panic_threshold;
}

uint64_t Balancer::Random() {
  // xorshift64*: per-worker, no locks, good enough for picking servers.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 2685821657736338717ull;
}

bool Balancer::AnyUsable(int64_t now_ms) const {
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (Usable(static_cast<int>(i), now_ms)) return true;
  }
  return false;
}

void Balancer::RecordFailure(int idx) {
  Peer& p = peers_[idx];
  if (p.max_fails > 0) {
    p.effective_weight -= p.weight / p.max_fails;
    if (p.effective_weight < 0) p.effective_weight = 0;
  }
}

int Balancer::Select(int64_t now_ms, std::optional<uint64_t> key_hash, const TriedSet& tried) {
  panic_ = false;
  if (panic_threshold_ > 0) {
    // Envoy's panic threshold: when too few servers are usable, spreading the load over all of
    // them (failing or not) beats crushing the few that are left.
    int usable = 0, total = 0;
    for (int i = 0; i < static_cast<int>(peers_.size()); ++i) {
      if (peers_[i].down || peers_[i].state->drained()) continue;
      ++total;
      usable += Usable(i, now_ms) ? 1 : 0;
    }
    panic_ = total > 0 && usable * 100 < panic_threshold_ * total;
  }
  int idx = Pick(now_ms, key_hash, tried, false);
  if (idx < 0 && kind_ != BalanceKind::kHash) idx = Pick(now_ms, key_hash, tried, true);
  if (idx >= 0) {
    Peer& p = peers_[idx];
    p.state->OnSelected(now_ms, p.max_fails, p.fail_timeout_ms);
  }
  return idx;
}

int Balancer::FindSticky(uint64_t id, int64_t now_ms, const TriedSet& tried) {
  for (int i = 0; i < static_cast<int>(peers_.size()); ++i) {
    if (peers_[i].sticky_id != id) continue;
    if (tried.test(i) || !Usable(i, now_ms)) return -1;
    Peer& p = peers_[i];
    p.state->OnSelected(now_ms, p.max_fails, p.fail_timeout_ms);
    return i;
  }
  return -1;
}

int Balancer::Pick(int64_t now_ms, std::optional<uint64_t> key_hash, const TriedSet& tried,
                   bool backup) {
  switch (kind_) {
    case BalanceKind::kRoundRobin:
      return SelectRoundRobin(now_ms, tried, backup, nullptr);
    case BalanceKind::kLeastConn:
      return SelectLeastConn(now_ms, tried, backup);
    case BalanceKind::kP2C:
      return SelectP2C(now_ms, tried, backup);
    case BalanceKind::kHash:
      if (key_hash.has_value()) return SelectHash(now_ms, *key_hash, tried);
      return SelectRoundRobin(now_ms, tried, backup, nullptr);
  }
  return -1;
}

// nginx's smooth weighted round robin: every eligible peer gains its effective weight, the
// largest current weight wins and pays back the total. Spreads a 5:1:1 split as a,a,b,a,c,a,a.
int Balancer::SelectRoundRobin(int64_t now_ms, const TriedSet& tried, bool backup,
                               const std::vector<int>* among) {
  int best = -1;
  int total = 0;
  auto visit = [&](int i) {
    Peer& p = peers_[i];
    p.current_weight += p.effective_weight;
    total += p.effective_weight;
    if (p.effective_weight < p.weight) ++p.effective_weight;
    if (best < 0 || p.current_weight > peers_[best].current_weight) best = i;
  };
  if (among != nullptr) {
    for (int i : *among) visit(i);
  } else {
    for (int i = 0; i < static_cast<int>(peers_.size()); ++i) {
      if (Eligible(i, now_ms, tried, backup)) visit(i);
    }
  }
  if (best >= 0) peers_[best].current_weight -= total;
  return best;
}

// nginx least_conn: the fewest active connections relative to weight; ties share by weighted
// round robin. Connection counts are shared across workers (as with nginx's `zone`).
int Balancer::SelectLeastConn(int64_t now_ms, const TriedSet& tried, bool backup) {
  int best = -1;
  scratch_.clear();
  for (int i = 0; i < static_cast<int>(peers_.size()); ++i) {
    if (!Eligible(i, now_ms, tried, backup)) continue;
    if (best < 0) {
      best = i;
      scratch_.push_back(i);
      continue;
    }
    int64_t lhs = int64_t{peers_[i].state->active_count()} * peers_[best].weight;
    int64_t rhs = int64_t{peers_[best].state->active_count()} * peers_[i].weight;
    if (lhs < rhs) {
      best = i;
      scratch_.clear();
      scratch_.push_back(i);
    } else if (lhs == rhs) {
      scratch_.push_back(i);
    }
  }
  if (scratch_.size() > 1) return SelectRoundRobin(now_ms, tried, backup, &scratch_);
  return best;
}

// Power of two choices (Mitzenmacher): two random eligible servers, the less loaded wins.
int Balancer::SelectP2C(int64_t now_ms, const TriedSet& tried, bool backup) {
  scratch_.clear();
  for (int i = 0; i < static_cast<int>(peers_.size()); ++i) {
    if (Eligible(i, now_ms, tried, backup)) scratch_.push_back(i);
  }
  if (scratch_.empty()) return -1;
  if (scratch_.size() == 1) return scratch_[0];
  size_t n = scratch_.size();
  size_t ai = Random() % n;
  size_t bi = Random() % (n - 1);
  if (bi >= ai) ++bi;  // a distinct second choice
  int a = scratch_[ai];
  int b = scratch_[bi];
  int64_t la = int64_t{peers_[a].state->active_count()} * peers_[b].weight;
  int64_t lb = int64_t{peers_[b].state->active_count()} * peers_[a].weight;
  return lb < la ? b : a;
}

int Balancer::SelectHash(int64_t now_ms, uint64_t key_hash, const TriedSet& tried) {
  if (hash_algorithm_ == HashAlgorithm::kRing) {
    const auto& ring = tables_->ring;
    if (ring.empty()) return -1;
    uint32_t h = static_cast<uint32_t>(key_hash);
    size_t start = static_cast<size_t>(
        std::lower_bound(ring.begin(), ring.end(), std::make_pair(h, uint16_t{0})) - ring.begin());
    // Walk clockwise to the first usable server: only the dead server's keys move.
    for (size_t k = 0; k < ring.size(); ++k) {
      int idx = ring[(start + k) % ring.size()].second;
      if (Eligible(idx, now_ms, tried, false)) return idx;
    }
    return -1;
  }
  const auto& table = tables_->maglev;
  uint64_t h = key_hash;
  // As nginx's hash balancer: up to 20 rehashes, then plain round robin.
  for (int attempt = 0; attempt < 20; ++attempt) {
    int idx = table[h % HashTables::kMaglevSize];
    if (Eligible(idx, now_ms, tried, false)) return idx;
    h = StableHash(std::string_view(reinterpret_cast<const char*>(&h), sizeof(h)), attempt + 1);
  }
  return SelectRoundRobin(now_ms, tried, false, nullptr);
}

}  // namespace bulwark::gateway
