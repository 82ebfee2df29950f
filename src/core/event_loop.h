// One epoll loop per thread, with a timer wheel and a cross-thread task queue.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "core/clock.h"
#include "core/mutex.h"
#include "core/timer_wheel.h"

namespace bulwark {

// Something registered with the loop for readiness events. Implementations are connections,
// listeners and the loop's own wakeup fd.
class IoHandler {
 public:
  virtual ~IoHandler() = default;
  virtual void OnIo(uint32_t events) = 0;
};

// An EventLoop is owned by exactly one thread, which calls Run(). Every method except Post()
// and Stop() must be called from that thread. Fds are registered edge-triggered by default.
class EventLoop : private IoHandler {
 public:
  EventLoop();
  ~EventLoop() override;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  absl::Status Init();

  absl::Status Add(int fd, uint32_t events, IoHandler* h);
  void Remove(int fd);
  // Drops the events still waiting for `h` in the batch being dispatched, so a handler freed by
  // an earlier event of the same batch (a client closed from a posted task) is not called.
  // Handlers freed outside their own callbacks call it before they go.
  void Forget(IoHandler* h);

  // Runs until Stop() is called.
  void Run();
  // Thread-safe.
  void Stop();
  // Thread-safe: runs `fn` on the loop's thread. For control messages, not the request path.
  void Post(std::function<void()> fn);
  // Runs `fn` after the current batch of events (same thread): the safe place to free objects
  // that may still have events pending in this batch.
  void Defer(std::function<void()> fn) { deferred_.push_back(std::move(fn)); }

  // Runs once after every batch of events (e.g. to flush buffered log lines with one write).
  void SetBatchHook(std::function<void()> fn) { batch_hook_ = std::move(fn); }

  int64_t now_ms() const { return now_ms_; }
  void UpdateTime() { now_ms_ = MonotonicMs(); }
  void ArmTimer(Timer* t, int64_t delay_ms) { timers_.Arm(t, now_ms_, delay_ms); }
  void CancelTimer(Timer* t) { timers_.Cancel(t); }
  TimerWheel& timers() { return timers_; }
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }

 private:
  void OnIo(uint32_t events) override;  // the wakeup eventfd
  void RunPosted();

  int epfd_ = -1;
  int wakefd_ = -1;
  int64_t now_ms_;
  // The epoll batch being dispatched (for Forget).
  struct epoll_event* batch_ = nullptr;
  int batch_n_ = 0;
  int batch_i_ = 0;
  TimerWheel timers_;
  std::atomic<bool> stop_{false};
  Mutex mu_;
  std::vector<std::function<void()>> posted_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> deferred_;
  std::vector<std::function<void()>> running_;  // the deferred functions being run
  std::function<void()> batch_hook_;
};

}  // namespace bulwark
