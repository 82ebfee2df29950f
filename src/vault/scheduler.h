// Runs the plans' schedules under `bulwark serve`. A thread of its own watches the clock; each
// run (a backup, a drill) gets a thread of its own, so a plan whose source hangs holds up only
// itself (until its `timeout`), never another plan's schedule. A plan still running when its
// time comes again is skipped and counted, as cron with `flock -n`. With `cluster.etcd` only
// the lease holder runs schedules. As Vixie cron, a run missed while bulwark was down is not
// made up later: the next run is the schedule's next time after now.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "admin/admin_server.h"
#include "core/mutex.h"
#include "vault/vault.h"

namespace bulwark::vault {

class Scheduler {
 public:
  // `leader`: null, or true while this instance may run schedules.
  Scheduler(std::shared_ptr<const VaultConfig> cfg, std::function<bool()> leader);
  ~Scheduler();

  // Opens the catalog, marks interrupted backups failed, starts the thread.
  absl::Status Start();
  void Stop();
  // New plans, drills and storages for the runs that start from now on.
  void Reload(std::shared_ptr<const VaultConfig> cfg);
  // Queues a run of `plan` now (any instance: an operator asked). False for an unknown plan.
  bool RunNow(const std::string& plan);
  // Queues drill `name` (vault.drills); it runs on the same thread, one job at a time.
  bool RunDrill(const std::string& name);

  // Starts every plan due at `now_ms` and the queued manual runs, each on a thread of its own;
  // returns how many started. The thread calls it; tests call it with their own clock instead
  // of Start(), then WaitIdle().
  int Tick(int64_t now_ms);
  // Waits until no run is in flight.
  void WaitIdle();
  absl::Status OpenForTest() { return Open(); }

  void CollectMetrics(std::string* out);
  // GET /api/v1/backups[/{id}], /drills, /restores, /recovery; POST /backups/run, /drills/run.
  void RegisterAdminRoutes(admin::AdminServer& admin);
  // The catalog, newest first, as JSON (the admin API); `plan` "" for all.
  std::string ListJson(const std::string& plan);
  // One backup with everything the catalog knows (checksums, copies, verification); "" if none.
  std::string GetJson(int64_t id);
  // The newest reports of `kind` (restore, drill, plan) as JSON, each with its detail.
  std::string ReportsJson(const std::string& kind, const std::string& name);

 private:
  struct PlanStats {
    int64_t next_ms = -1;
    int64_t last_success_ms = 0, last_duration_ms = 0, last_raw = 0, last_stored = 0;
    uint64_t ok = 0, failed = 0, skipped = 0;
    bool last_failed = false;
  };
  struct DrillStats {
    int64_t last_ms = 0, rto_ms = -1, rpo_ms = -1;
    bool passed = false;
    uint64_t runs = 0;
  };
  absl::Status Open();
  void Loop();
  void RunOne(const std::string& plan, const std::string& trigger);
  void RunOneDrill(const std::string& name);
  // Starts `fn` on a thread for `key` ("backup:PLAN", "drill:NAME") unless one is in flight;
  // false then.
  bool Launch(const std::string& key, std::function<void()> fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  struct Run {
    std::thread thread;
    bool done = false;
  };

  std::function<bool()> leader_;
  Mutex mu_;  // the state below (a backup runs outside it)
  CondVar cv_;
  std::shared_ptr<const VaultConfig> cfg_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Catalog> catalog_;  // set by Open before any thread; thread-safe itself
  std::map<std::string, PlanStats> stats_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, DrillStats> drills_ ABSL_GUARDED_BY(mu_);
  // kind (backup, drill), name
  std::deque<std::pair<std::string, std::string>> manual_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> cancel_{false};  // stops the runs' programs (process.h ScopedCancel)
  // By key; finished ones joined later.
  std::map<std::string, std::unique_ptr<Run>> runs_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace bulwark::vault
