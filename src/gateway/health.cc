#include "gateway/health.h"

#include <algorithm>

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
  return "up";
}

}  // namespace bulwark::gateway
