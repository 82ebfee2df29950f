#include "core/timer_wheel.h"

#include <algorithm>
#include <cassert>

namespace bulwark {

Timer::~Timer() {
  if (wheel_ != nullptr) wheel_->Cancel(this);
}

TimerWheel::~TimerWheel() {
  for (auto& head : slots_) {
    while (head != nullptr) Unlink(head);
  }
}

void TimerWheel::Link(Timer* t) {
  uint32_t s = static_cast<uint32_t>(t->expiry_ms_) % kSlots;
  t->slot_ = s;
  t->prev_ = nullptr;
  t->next_ = slots_[s];
  if (slots_[s] != nullptr) slots_[s]->prev_ = t;
  slots_[s] = t;
  bitmap_[s / 64] |= uint64_t{1} << (s % 64);
  t->wheel_ = this;
  ++count_;
}

void TimerWheel::Unlink(Timer* t) {
  assert(t->wheel_ == this);
  if (t->prev_ != nullptr) {
    t->prev_->next_ = t->next_;
  } else {
    slots_[t->slot_] = t->next_;
    if (t->next_ == nullptr) bitmap_[t->slot_ / 64] &= ~(uint64_t{1} << (t->slot_ % 64));
  }
  if (t->next_ != nullptr) t->next_->prev_ = t->prev_;
  t->prev_ = t->next_ = nullptr;
  t->wheel_ = nullptr;
  --count_;
}

void TimerWheel::Arm(Timer* t, int64_t now_ms, int64_t delay_ms) {
  if (t->wheel_ != nullptr) Unlink(t);
  // A timer is never due before the wheel's cursor, or Advance would skip its slot.
  t->expiry_ms_ = std::max(now_ms + std::max<int64_t>(delay_ms, 0), last_ms_ + 1);
  Link(t);
}

void TimerWheel::Cancel(Timer* t) {
  if (t->wheel_ == this) Unlink(t);
}

void TimerWheel::Advance(int64_t now_ms) {
  if (now_ms <= last_ms_) return;
  int64_t from = last_ms_ + 1;
  int64_t span = std::min<int64_t>(now_ms - last_ms_, kSlots);
  last_ms_ = now_ms;
  for (int64_t i = 0; i < span; ++i) {
    uint32_t s = static_cast<uint32_t>(from + i) % kSlots;
    if (slots_[s] == nullptr) continue;
    // Detach the slot so callbacks that re-arm into this slot are not seen twice.
    Timer* list = slots_[s];
    slots_[s] = nullptr;
    bitmap_[s / 64] &= ~(uint64_t{1} << (s % 64));
    while (list != nullptr) {
      Timer* t = list;
      list = t->next_;
      if (list != nullptr) list->prev_ = nullptr;
      t->prev_ = t->next_ = nullptr;
      t->wheel_ = nullptr;
      --count_;
      if (t->expiry_ms_ <= now_ms) {
        if (t->cb_) t->cb_();
      } else {
        Link(t);  // a later round
      }
    }
  }
}

int TimerWheel::NextTimeoutMs(int64_t now_ms) const {
  if (count_ == 0) return -1;
  // Scan the bitmap from the cursor for the first non-empty slot.
  uint32_t start = static_cast<uint32_t>(last_ms_ + 1) % kSlots;
  for (uint32_t step = 0; step < kSlots;) {
    uint32_t s = (start + step) % kSlots;
    uint64_t word = bitmap_[s / 64] >> (s % 64);
    if (word != 0) {
      uint32_t dist = step + static_cast<uint32_t>(__builtin_ctzll(word));
      int64_t due = last_ms_ + 1 + dist;
      return static_cast<int>(std::max<int64_t>(due - now_ms, 0));
    }
    step += 64 - (s % 64);
  }
  return static_cast<int>(kSlots);
}

}  // namespace bulwark
