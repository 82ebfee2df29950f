// Runs the plans' schedules under `bulwark serve`, on one thread of its own (a backup is a long
// blocking pipeline; nothing else waits for it). With `cluster.etcd` only the lease holder runs
// them. As Vixie cron, a run missed while bulwark was down (or busy with another backup) is not
// made up later: the next run is the schedule's next time after now.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
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
  void Update(std::shared_ptr<const VaultConfig> cfg);
  // Queues a run of `plan` now (any instance: an operator asked). False for an unknown plan.
  bool RunNow(const std::string& plan);
  // Queues drill `name` (vault.drills); it runs on the same thread, one job at a time.
  bool RunDrill(const std::string& name);

  // Runs every plan due at `now_ms` and the queued manual runs; returns how many ran. The
  // thread calls it; tests call it with their own clock instead of Start().
  int Tick(int64_t now_ms);
  absl::Status OpenForTest() { return Open(); }

  void CollectMetrics(std::string* out);
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
    uint64_t ok = 0, failed = 0;
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

  std::function<bool()> leader_;
  std::mutex mu_;  // everything below (a backup runs outside it)
  std::shared_ptr<const VaultConfig> cfg_;
  std::unique_ptr<Catalog> catalog_;
  std::map<std::string, PlanStats> stats_;
  std::map<std::string, DrillStats> drills_;
  std::deque<std::pair<std::string, std::string>> manual_;  // kind (backup, drill), name
  std::condition_variable cv_;
  bool stop_ = false;
  std::mutex run_mu_;  // one backup at a time; holds the catalog for writers
  std::thread thread_;
};

}  // namespace bulwark::vault
