// A hashed timer wheel: O(1) arm and cancel, as every connection re-arms a timeout per request.
#pragma once

#include <cstdint>
#include <functional>

namespace bulwark {

class TimerWheel;

// A Timer is embedded in the object it times out (a connection, a health probe). The callback is
// set once at construction, so arming never allocates. Not thread-safe: owned by one loop.
class Timer {
 public:
  Timer() = default;
  explicit Timer(std::function<void()> cb) : cb_(std::move(cb)) {}
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void set_callback(std::function<void()> cb) { cb_ = std::move(cb); }
  bool armed() const { return wheel_ != nullptr; }
  int64_t expiry_ms() const { return expiry_ms_; }

 private:
  friend class TimerWheel;
  Timer* prev_ = nullptr;
  Timer* next_ = nullptr;
  TimerWheel* wheel_ = nullptr;
  int64_t expiry_ms_ = 0;
  uint32_t slot_ = 0;
  std::function<void()> cb_;
};

// Slots of 1 ms; a timer further away than one revolution stays in its slot and is skipped
// until its round comes. A bitmap of non-empty slots lets the loop sleep until the next one.
class TimerWheel {
 public:
  static constexpr uint32_t kSlots = 4096;

  explicit TimerWheel(int64_t now_ms) : last_ms_(now_ms) {}
  ~TimerWheel();

  // Arms (or re-arms) `t` to fire at now + delay_ms.
  void Arm(Timer* t, int64_t now_ms, int64_t delay_ms);
  void Cancel(Timer* t);
  // Fires every timer whose expiry is <= now_ms. Callbacks may arm and cancel timers.
  void Advance(int64_t now_ms);
  // Milliseconds until the nearest non-empty slot, or -1 when nothing is armed.
  int NextTimeoutMs(int64_t now_ms) const;
  size_t size() const { return count_; }

 private:
  void Link(Timer* t);
  void Unlink(Timer* t);

  Timer* slots_[kSlots] = {};
  uint64_t bitmap_[kSlots / 64] = {};
  int64_t last_ms_;
  size_t count_ = 0;
};

}  // namespace bulwark
