// Active HTTP health checks, run on the control thread's loop.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/event_loop.h"
#include "gateway/snapshot.h"

namespace bulwark::gateway {

// The HealthChecker probes every server of every upstream that has `health_check:` with an HTTP
// GET each interval and feeds the result to the server's rise/fall counter. Probes survive a
// reload that keeps the server. Control thread only.
class HealthChecker {
 public:
  explicit HealthChecker(EventLoop* loop);
  ~HealthChecker();
  void Reload(const Snapshot& snap);
  size_t probe_count() const { return probes_.size(); }
  uint64_t checks_run() const { return checks_run_; }

 private:
  class Probe;
  EventLoop* loop_;
  std::vector<std::unique_ptr<Probe>> probes_;
  uint64_t checks_run_ = 0;
};

}  // namespace bulwark::gateway
