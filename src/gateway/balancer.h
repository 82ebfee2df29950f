// Load-balancing policies over one upstream's servers.
#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "gateway/config.h"
#include "gateway/health.h"

namespace bulwark::gateway {

constexpr size_t kMaxServersPerUpstream = 1024;
using TriedSet = std::bitset<kMaxServersPerUpstream>;

// A stable 64-bit hash (FNV-1a folded through a murmur3 finaliser). Stable across processes and
// versions, so several bulwark instances map a key to the same server.
uint64_t StableHash(std::string_view s, uint64_t seed = 0);

// The immutable lookup tables of consistent hashing, built once per config and shared by workers.
struct HashTables {
  // Ring hash: 160 points per unit of weight (the ketama convention nginx also uses).
  std::vector<std::pair<uint32_t, uint16_t>> ring;
  // Maglev (Eisenbud et al., NSDI 2016): a permutation table of prime size.
  static constexpr uint32_t kMaglevSize = 65537;
  std::vector<uint16_t> maglev;

  static std::shared_ptr<const HashTables> Build(const UpstreamConfig& cfg);
};

// A Balancer picks a server for each attempt of a request. One per worker per upstream:
// round-robin state is per worker (as nginx keeps it without a shared zone); health, drain and
// connection counts come from the shared ServerStates. Not thread-safe.
class Balancer {
 public:
  struct Peer {
    ServerState* state;
    int weight;
    int max_fails;
    int64_t fail_timeout_ms;
    bool backup;
    bool down;
    int half_open_requests = 1;  // breaker probes allowed at once
    uint64_t sticky_id = 0;      // StableHash of the address: what sticky cookies name
    int current_weight = 0;      // nginx smooth weighted round robin
    int effective_weight = 0;    // lowered on failures, recovers by one per selection
  };

  Balancer(const UpstreamConfig& cfg, const std::vector<ServerState*>& states,
           std::shared_ptr<const HashTables> tables, uint64_t seed);

  // Returns the index of the chosen server, or -1 when no server is usable. `key_hash` is the
  // hash of the request's affinity key (hash balancing only; nullopt falls back to round robin).
  // Backup servers are used only when no primary server is usable.
  int Select(int64_t now_ms, std::optional<uint64_t> key_hash, const TriedSet& tried);
  // nginx lowers a failed peer's effective weight by weight/max_fails.
  void RecordFailure(int idx);

  size_t size() const { return peers_.size(); }
  Peer& peer(int i) { return peers_[i]; }
  const Peer& peer(int i) const { return peers_[i]; }
  bool Usable(int i, int64_t now_ms) const {
    const Peer& p = peers_[i];
    if (p.down || p.state->drained()) return false;
    if (panic_) return true;
    return p.state->Usable(now_ms, p.max_fails, p.fail_timeout_ms) &&
           p.state->ResilienceAllows(now_ms, p.half_open_requests);
  }
  // True while the last Select ran in Envoy's panic mode.
  bool panicked() const { return panic_; }
  // The server a sticky cookie or session names, if it is usable and not yet tried; else -1.
  int FindSticky(uint64_t id, int64_t now_ms, const TriedSet& tried);
  // True when at least one server (primary or backup) is usable.
  bool AnyUsable(int64_t now_ms) const;

 private:
  bool Eligible(int i, int64_t now_ms, const TriedSet& tried, bool backup) const {
    return peers_[i].backup == backup && !tried.test(i) && Usable(i, now_ms);
  }
  int SelectRoundRobin(int64_t now_ms, const TriedSet& tried, bool backup,
                       const std::vector<int>* among);
  int SelectLeastConn(int64_t now_ms, const TriedSet& tried, bool backup);
  int SelectP2C(int64_t now_ms, const TriedSet& tried, bool backup);
  int SelectHash(int64_t now_ms, uint64_t key_hash, const TriedSet& tried);
  int Pick(int64_t now_ms, std::optional<uint64_t> key_hash, const TriedSet& tried, bool backup);
  uint64_t Random();

  BalanceKind kind_;
  HashAlgorithm hash_algorithm_;
  std::vector<Peer> peers_;
  std::shared_ptr<const HashTables> tables_;
  uint64_t rng_;
  std::vector<int> scratch_;  // reused, sized once
  int panic_threshold_ = 0;   // percent; 0 = never panic (nginx behaviour)
  bool panic_ = false;
};

}  // namespace bulwark::gateway
