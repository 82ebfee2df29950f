#include "gateway/health.h"

#include <algorithm>

#include "gateway/config.h"

namespace bulwark::gateway {

bool RiseFall::Record(bool success) {
  bool was_up = up();
  if (success) {
    if (health_ < max()) {
      ++health_;
      if (health_ >= rise_) health_ = max();
    }
  } else if (health_ > 0) {
    --health_;
    if (health_ < rise_) health_ = 0;
  }
  return was_up != up();
}

bool ServerState::PassiveAvailable(int64_t now_ms, int max_fails, int64_t fail_timeout_ms) const {
  if (max_fails == 0) return true;
  if (fails_.load(std::memory_order_relaxed) < max_fails) return true;
  return now_ms - checked_ms_.load(std::memory_order_relaxed) > fail_timeout_ms;
}

void ServerState::OnSelected(int64_t now_ms, int max_fails, int64_t fail_timeout_ms) {
  if (max_fails == 0 || fails_.load(std::memory_order_relaxed) == 0) return;
  if (now_ms - checked_ms_.load(std::memory_order_relaxed) > fail_timeout_ms) {
    checked_ms_.store(now_ms, std::memory_order_relaxed);
  }
}

void ServerState::OnFailure(int64_t now_ms) {
  MutexLock lock(&mu_);
  fails_.fetch_add(1, std::memory_order_relaxed);
  accessed_ms_.store(now_ms, std::memory_order_relaxed);
  checked_ms_.store(now_ms, std::memory_order_relaxed);
}

void ServerState::OnSuccess() {
  if (fails_.load(std::memory_order_relaxed) == 0) return;  // the common case takes no lock
  MutexLock lock(&mu_);
  if (accessed_ms_.load(std::memory_order_relaxed) < checked_ms_.load(std::memory_order_relaxed)) {
    fails_.store(0, std::memory_order_relaxed);
  }
}

void ServerState::SetActiveCheck(bool enabled, int rise, int fall) {
  MutexLock lock(&mu_);
  bool had = has_check_.load(std::memory_order_relaxed);
  if (enabled && (!had || rise_fall_.rise() != rise || rise_fall_.fall() != fall)) {
    rise_fall_ = RiseFall(rise, fall);
    check_health_.store(rise_fall_.health(), std::memory_order_relaxed);
    check_max_.store(rise_fall_.max(), std::memory_order_relaxed);
    if (!had) active_up_.store(true, std::memory_order_relaxed);
  }
  if (!enabled) active_up_.store(true, std::memory_order_relaxed);
  has_check_.store(enabled, std::memory_order_relaxed);
}

void ServerState::RecordCheck(bool success, int status, int64_t) {
  MutexLock lock(&mu_);
  rise_fall_.Record(success);
  if (!success) checks_failed_.fetch_add(1, std::memory_order_relaxed);
  last_status_.store(status, std::memory_order_relaxed);
  check_health_.store(rise_fall_.health(), std::memory_order_relaxed);
  active_up_.store(rise_fall_.up(), std::memory_order_relaxed);
}

ServerState::BreakerState ServerState::breaker_state(int64_t now_ms) const {
  int64_t open_until = open_until_.load(std::memory_order_relaxed);
  if (open_until == 0) return BreakerState::kClosed;
  return now_ms < open_until ? BreakerState::kOpen : BreakerState::kHalfOpen;
}

bool ServerState::ClaimProbe(int64_t now_ms) {
  int64_t open_until = open_until_.load(std::memory_order_relaxed);
  if (open_until == 0 || now_ms < open_until) return false;
  half_open_inflight_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

namespace {
// Ejection lock: deciding whether one more server may be ejected reads the whole upstream, and
// ejections are rare, so one lock for all of them keeps max_ejection_percent exact.
Mutex g_ejection_mu;
}  // namespace

void ServerState::OpenBreakerLocked(int64_t now_ms, const BreakerConfig& breaker) {
  // APISIX api-breaker: the break lasts open_time, doubled at each re-open, capped.
  ++open_count_;
  int64_t ms = breaker.open_time_ms;
  for (int i = 1; i < open_count_ && ms < breaker.max_open_time_ms; ++i) ms *= 2;
  ms = std::min(ms, breaker.max_open_time_ms);
  open_until_.store(now_ms + ms, std::memory_order_relaxed);
  consecutive_failures_.store(0, std::memory_order_relaxed);
  half_open_successes_ = 0;
  breaker_opens_.fetch_add(1, std::memory_order_relaxed);
}

int ServerState::RecordOutcome(bool breaker_failure, bool outlier_failure, bool probe,
                               int64_t now_ms, const BreakerConfig& breaker,
                               const OutlierConfig& outlier,
                               const std::vector<std::shared_ptr<ServerState>>& peers) {
  if (probe) half_open_inflight_.fetch_sub(1, std::memory_order_relaxed);
  int change = kNoChange;
  // The common case, a success with nothing to reset, takes no lock.
  if (!breaker_failure && !outlier_failure && !probe &&
      open_until_.load(std::memory_order_relaxed) == 0) {
    if (breaker.enabled && consecutive_failures_.load(std::memory_order_relaxed) != 0)
      consecutive_failures_.store(0, std::memory_order_relaxed);
    if (outlier.enabled && consecutive_5xx_.load(std::memory_order_relaxed) != 0)
      consecutive_5xx_.store(0, std::memory_order_relaxed);
    return change;
  }
  if (breaker.enabled) {
    MutexLock lock(&mu_);
    int64_t open_until = open_until_.load(std::memory_order_relaxed);
    bool half_open = open_until != 0 && now_ms >= open_until;
    if (breaker_failure) {
      if (half_open) {
        OpenBreakerLocked(now_ms, breaker);
        change |= kOpened;
      } else if (open_until == 0) {
        if (consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1 >= breaker.failures) {
          OpenBreakerLocked(now_ms, breaker);
          change |= kOpened;
        }
      }
      // (A failure of a request that started before the breaker opened changes nothing.)
    } else if (half_open) {
      if (++half_open_successes_ >= breaker.successes) {
        open_until_.store(0, std::memory_order_relaxed);
        open_count_ = 0;
        half_open_successes_ = 0;
        consecutive_failures_.store(0, std::memory_order_relaxed);
        change |= kClosed;
      }
    } else if (open_until == 0) {
      consecutive_failures_.store(0, std::memory_order_relaxed);
    }
  }
  if (outlier.enabled) {
    if (!outlier_failure) {
      consecutive_5xx_.store(0, std::memory_order_relaxed);
    } else if (consecutive_5xx_.fetch_add(1, std::memory_order_relaxed) + 1 >=
                   outlier.consecutive_5xx &&
               !ejected(now_ms)) {
      MutexLock ej(&g_ejection_mu);
      int ejected_now = 0;
      for (const auto& p : peers) ejected_now += p->ejected(now_ms) ? 1 : 0;
      // Envoy: at most max_ejection_percent of the upstream is ejected, but one server may
      // always be.
      size_t total = std::max<size_t>(1, peers.size());
      bool allowed =
          ejected_now == 0 || static_cast<size_t>(ejected_now + 1) * 100 <=
                                  static_cast<size_t>(outlier.max_ejection_percent) * total;
      if (allowed) {
        MutexLock lock(&mu_);
        // The multiplier grows with each ejection and shrinks by one for every interval the
        // server has stayed in since its last ejection ended (Envoy's behaviour).
        int64_t last_end = ejected_until_.load(std::memory_order_relaxed);
        if (last_end != 0 && now_ms > last_end) {
          int64_t healthy_intervals = (now_ms - last_end) / outlier.interval_ms;
          ejection_multiplier_ =
              static_cast<int>(std::max<int64_t>(0, ejection_multiplier_ - healthy_intervals));
        }
        ++ejection_multiplier_;
        int64_t ms =
            std::min(outlier.base_ejection_time_ms * ejection_multiplier_,
                     std::max(outlier.base_ejection_time_ms, outlier.max_ejection_time_ms));
        ejected_until_.store(now_ms + ms, std::memory_order_relaxed);
        ejections_.fetch_add(1, std::memory_order_relaxed);
        consecutive_5xx_.store(0, std::memory_order_relaxed);
        change |= kEjected;
      }
    }
  }
  return change;
}

int ServerState::Score(int64_t now_ms, int max_fails, int64_t fail_timeout_ms) const {
  if (!Usable(now_ms, max_fails, fail_timeout_ms)) return 0;
  double active = 1.0;
  if (has_check_.load(std::memory_order_relaxed)) {
    int m = check_max_.load(std::memory_order_relaxed);
    active = m > 0 ? static_cast<double>(check_health_.load(std::memory_order_relaxed)) / m : 1.0;
  }
  double passive = 1.0;
  if (max_fails > 0) passive = 1.0 - std::min(1.0, static_cast<double>(fails()) / max_fails);
  // A server let through for its post-fail_timeout probe is usable but has no headroom left;
  // keep it above zero so "usable" and "score > 0" agree.
  int s = static_cast<int>(100.0 * active * passive + 0.5);
  return std::max(s, 1);
}

const char* ServerState::StateName(int64_t now_ms, int max_fails, int64_t fail_timeout_ms) const {
  if (drained()) return "drained";
  if (!active_up()) return "down";
  if (!PassiveAvailable(now_ms, max_fails, fail_timeout_ms)) return "failed";
  if (breaker_state(now_ms) == BreakerState::kOpen) return "open";
  if (ejected(now_ms)) return "ejected";
  return "up";
}

}  // namespace bulwark::gateway
