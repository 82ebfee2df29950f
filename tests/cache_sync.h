// Test helpers for the asynchronous cache API: an event loop on its own thread, and blocking
// wrappers that run one call on it and wait for the callback.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <thread>

#include "cache/cache.h"
#include "core/event_loop.h"

namespace bulwark::cache {

// An event loop on its own thread; Run() executes a function there and waits for it.
class LoopThread {
 public:
  LoopThread() {
    EXPECT_TRUE(loop_.Init().ok());
    thread_ = std::thread([this] { loop_.Run(); });
  }
  ~LoopThread() {
    loop_.Stop();
    thread_.join();
  }
  EventLoop* loop() { return &loop_; }
  template <typename F>
  void Run(F fn) {
    std::promise<void> done;
    loop_.Post([&] {
      loop_.UpdateTime();
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }

 private:
  EventLoop loop_;
  std::thread thread_;
};

// Runs an async cache call on `lt` and waits for its callback.
inline GetResult GetSync(LoopThread& lt, CacheClient* c, const std::string& key) {
  // Shared, so a callback that comes after the wait gave up still has its promise.
  auto p = std::make_shared<std::promise<GetResult>>();
  lt.Run([&] { c->Get(key, [p](const GetResult& r) { p->set_value(r); }); });
  auto f = p->get_future();
  if (f.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "no answer for " << key;
    return {};
  }
  return f.get();
}

inline absl::Status DoneSync(LoopThread& lt, std::function<void(DoneCallback)> call) {
  auto p = std::make_shared<std::promise<absl::Status>>();
  lt.Run([&] { call([p](absl::Status s) { p->set_value(s); }); });
  auto f = p->get_future();
  if (f.wait_for(std::chrono::seconds(20)) != std::future_status::ready)
    return absl::DeadlineExceededError("hung");
  return f.get();
}

inline std::string Value(const GetResult& r) {
  return r.value ? *r.value : "<" + r.status.ToString() + ">";
}

}  // namespace bulwark::cache
