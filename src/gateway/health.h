// Health of one upstream server, shared by every worker and kept across reloads.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/mutex.h"
#include "core/net.h"

namespace bulwark::gateway {

struct BreakerConfig;
struct OutlierConfig;

// The HAProxy rise/fall counter, exactly as HAProxy keeps it: `health` runs from 0 to
// rise+fall-1 and the server is up while health >= rise. A server starts at health == rise: up,
// but one failed check takes it down. When up, a success jumps to the top; a failure steps down
// and, once below rise, drops to 0 (down). When down, a success steps up and reaching rise jumps
// to the top; a failure drops back to 0. So `fall` consecutive failures take a healthy server
// down and `rise` consecutive successes bring a down one back.
class RiseFall {
 public:
  RiseFall(int rise, int fall) : rise_(rise), fall_(fall), health_(rise) {}
  // Returns true if the up/down state changed.
  bool Record(bool success);
  bool up() const { return health_ >= rise_; }
  int health() const { return health_; }
  int max() const { return rise_ + fall_ - 1; }
  int rise() const { return rise_; }
  int fall() const { return fall_; }

 private:
  int rise_, fall_, health_;
};

// A ServerState is one server of one upstream: its label (the address as written, or a host
// name's slot; the address itself is in each snapshot), nginx-style passive failure
// accounting, the active-check verdict, the admin drain flag and the live connection count.
// Created by the ServerRegistry; shared by all workers (every field is atomic or guarded); the
// control thread writes the active-check fields.
class ServerState {
 public:
  ServerState(uint32_t id, std::string upstream, std::string address_text)
      : id_(id), upstream_(std::move(upstream)), address_text_(std::move(address_text)) {}

  uint32_t id() const { return id_; }
  const std::string& upstream() const { return upstream_; }
  const std::string& address_text() const { return address_text_; }

  // --- nginx max_fails / fail_timeout (ngx_http_upstream_round_robin.c semantics) ---
  // A server with fails >= max_fails is skipped until fail_timeout has passed since the last
  // "check"; then one request is let through (selection moves `checked` to now). A success resets
  // fails only if it came after that check (accessed < checked), so failures inside one
  // fail_timeout window accumulate.
  bool PassiveAvailable(int64_t now_ms, int max_fails, int64_t fail_timeout_ms) const;
  void OnSelected(int64_t now_ms, int max_fails, int64_t fail_timeout_ms);
  void OnFailure(int64_t now_ms);
  void OnSuccess();
  int fails() const { return fails_.load(std::memory_order_relaxed); }

  // --- active checks (written by the health checker) ---
  void SetActiveCheck(bool enabled, int rise, int fall);
  void RecordCheck(bool success, int status, int64_t wall_ms);
  bool active_up() const { return active_up_.load(std::memory_order_relaxed); }
  bool has_active_check() const { return has_check_.load(std::memory_order_relaxed); }
  int check_health() const { return check_health_.load(std::memory_order_relaxed); }
  int check_health_max() const { return check_max_.load(std::memory_order_relaxed); }
  int last_check_status() const { return last_status_.load(std::memory_order_relaxed); }
  uint64_t checks_failed() const { return checks_failed_.load(std::memory_order_relaxed); }

  // --- admin ---
  void SetDrained(bool d) { drained_.store(d, std::memory_order_relaxed); }
  bool drained() const { return drained_.load(std::memory_order_relaxed); }

  // --- live load (for least_conn and p2c) ---
  std::atomic<int>& active() { return active_; }
  int active_count() const { return active_.load(std::memory_order_relaxed); }

  // --- circuit breaker and outlier ejection (see BreakerConfig, OutlierConfig) ---
  enum class BreakerState { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
  BreakerState breaker_state(int64_t now_ms) const;
  // False while the breaker is open, or half-open with every probe slot taken, or the server is
  // ejected.
  bool ResilienceAllows(int64_t now_ms, int half_open_requests) const {
    int64_t open_until = open_until_.load(std::memory_order_relaxed);
    if (open_until != 0) {
      if (now_ms < open_until) return false;
      if (half_open_inflight_.load(std::memory_order_relaxed) >= half_open_requests) return false;
    }
    return now_ms >= ejected_until_.load(std::memory_order_relaxed);
  }
  // Called when an attempt starts on this server; true when it is a half-open probe (its
  // outcome must then be recorded with probe = true).
  bool ClaimProbe(int64_t now_ms);
  // Records an attempt's outcome for the breaker and outlier detection, each with its own idea
  // of failure (the breaker's statuses; Envoy's 5xx). `peers` are the upstream's servers (for
  // max_ejection_percent). Returns what changed, for the log.
  enum Change { kNoChange = 0, kOpened = 1, kClosed = 2, kEjected = 4 };
  int RecordOutcome(bool breaker_failure, bool outlier_failure, bool probe, int64_t now_ms,
                    const BreakerConfig& breaker, const OutlierConfig& outlier,
                    const std::vector<std::shared_ptr<ServerState>>& peers);
  bool ejected(int64_t now_ms) const {
    return now_ms < ejected_until_.load(std::memory_order_relaxed);
  }
  int64_t open_until_ms() const { return open_until_.load(std::memory_order_relaxed); }
  int64_t ejected_until_ms() const { return ejected_until_.load(std::memory_order_relaxed); }
  uint64_t breaker_opens() const { return breaker_opens_.load(std::memory_order_relaxed); }
  uint64_t ejections() const { return ejections_.load(std::memory_order_relaxed); }

  // Usable for new requests right now (not drained, active check up, passive not tripped).
  bool Usable(int64_t now_ms, int max_fails, int64_t fail_timeout_ms) const {
    return !drained() && active_up() && PassiveAvailable(now_ms, max_fails, fail_timeout_ms);
  }
  // 0..100: 0 when unusable; otherwise the active-check health fraction times the passive
  // headroom (1 - fails/max_fails). See docs/configuration.md.
  int Score(int64_t now_ms, int max_fails, int64_t fail_timeout_ms) const;
  // "up", "down" (active check), "failed" (passive), "drained".
  const char* StateName(int64_t now_ms, int max_fails, int64_t fail_timeout_ms) const;

 private:
  void OpenBreakerLocked(int64_t now_ms, const BreakerConfig& breaker)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint32_t id_;
  const std::string upstream_;
  const std::string address_text_;

  Mutex mu_;  // serialises passive updates; never taken while a server is healthy
  std::atomic<int> fails_{0};
  std::atomic<int64_t> accessed_ms_{0};
  std::atomic<int64_t> checked_ms_{0};

  std::atomic<bool> has_check_{false};
  std::atomic<bool> active_up_{true};
  std::atomic<int> check_health_{0};
  std::atomic<int> check_max_{0};
  std::atomic<int> last_status_{0};
  std::atomic<uint64_t> checks_failed_{0};
  RiseFall rise_fall_ ABSL_GUARDED_BY(mu_){2, 3};

  std::atomic<bool> drained_{false};
  std::atomic<int> active_{0};

  // Breaker: open_until_ is 0 while closed; once it has passed the breaker is half-open.
  std::atomic<int64_t> open_until_{0};
  std::atomic<int> half_open_inflight_{0};
  std::atomic<int> consecutive_failures_{0};  // breaker, while closed
  int open_count_ ABSL_GUARDED_BY(mu_) = 0;   // re-opens since the breaker last closed
  int half_open_successes_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> breaker_opens_{0};
  // Outlier detection.
  std::atomic<int64_t> ejected_until_{0};
  std::atomic<int> consecutive_5xx_{0};
  int ejection_multiplier_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> ejections_{0};
};

}  // namespace bulwark::gateway
