// The process's clocks, in one place: monotonic time for intervals, timeouts and deadlines,
// wall time for timestamps people read. Production reads CLOCK_MONOTONIC and CLOCK_REALTIME
// (through the vDSO: no system call); a test installs its own Clock to drive time-based logic
// without sleeping. std::chrono::steady_clock is CLOCK_MONOTONIC on Linux, so its time points
// and MonotonicNs() share an epoch.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>

namespace bulwark {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t MonotonicNs() = 0;
  virtual int64_t WallNs() = 0;
};

namespace internal {
inline std::atomic<Clock*> g_clock{nullptr};

inline int64_t ReadNs(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
}  // namespace internal

// Replaces the process's clocks (null: the system's again). For tests; not thread-safe against
// a clock being deleted while read.
inline void SetClockForTesting(Clock* c) { internal::g_clock.store(c, std::memory_order_release); }

inline int64_t MonotonicNs() {
  Clock* c = internal::g_clock.load(std::memory_order_acquire);
  return c != nullptr ? c->MonotonicNs() : internal::ReadNs(CLOCK_MONOTONIC);
}
inline int64_t MonotonicUs() { return MonotonicNs() / 1000; }
inline int64_t MonotonicMs() { return MonotonicNs() / 1000000; }

inline int64_t WallNs() {
  Clock* c = internal::g_clock.load(std::memory_order_acquire);
  return c != nullptr ? c->WallNs() : internal::ReadNs(CLOCK_REALTIME);
}
inline int64_t WallMicros() { return WallNs() / 1000; }
inline int64_t WallMs() { return WallNs() / 1000000; }

}  // namespace bulwark
