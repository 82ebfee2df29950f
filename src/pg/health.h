// Health checks of the PostgreSQL servers, on a thread of their own with libpq (blocking calls
// never touch the proxy's loop): each round asks every server whether it is in recovery, where
// its WAL is, and how old its last replayed transaction is; from that it publishes role, lag in
// bytes and in seconds, latency, and up/down after `fails` consecutive failures (and a ban).
//
// Lag follows what operators compute from pg_stat_replication: bytes are the primary's current
// LSN minus the replica's replay LSN; seconds are now() - pg_last_xact_replay_timestamp() while
// the replica has received WAL it has not replayed, and 0 once it has replayed all it received
// (an idle primary must not make a caught-up replica look late).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/mutex.h"
#include "pg/classify.h"
#include "pg/config.h"
#include "pg/proxy.h"

namespace bulwark::pg {

// The query that lists a database's read-only functions (names whose every overload is
// immutable or stable).
const char* ReadOnlyFunctionsQuery();

// "16/B374D848" -> 0x16B374D848; -1 for text that is not an LSN.
int64_t ParseLsn(std::string_view text);

// A libpq connection string with `host` and `port` replaced (other keys kept, values quoted as
// libpq reads them).
std::string ReplaceHostPort(std::string_view conninfo, const std::string& host,
                            const std::string& port);

// One automatic failover, for logs, the admin API and the drill reports.
struct FailoverEvent {
  std::string database, old_primary, new_primary;
  int64_t wall_ms = 0;                 // when it started (Unix ms)
  int64_t detect_ms = 0;               // first failed check -> failover decided
  int64_t promote_ms = 0;              // pg_promote() until the new primary accepts writes
  int64_t total_ms = 0;                // first failed check -> done
  std::vector<std::string> repointed;  // replicas now following the new primary
  std::string error;                   // why it did not complete ("" when it did)
  bool refused = false;                // not attempted: no replica close enough, or no fence
  bool fenced = false;                 // fence_command succeeded
};

class HealthChecker {
 public:
  // `health` holds one entry per server address (the proxy's), shared.
  HealthChecker(std::shared_ptr<const PgConfig> cfg,
                std::map<std::string, std::shared_ptr<ServerHealth>> health);
  ~HealthChecker();
  void Start();
  void Stop();
  // Thread-safe: the next round uses `cfg` (and the entries in `health`).
  void Update(std::shared_ptr<const PgConfig> cfg,
              std::map<std::string, std::shared_ptr<ServerHealth>> health);
  // Runs one round now (tests and the thread).
  void Round();
  // Called (on the checker's thread) after a failover changed the topology.
  void set_on_change(std::function<void()> f) { on_change_ = std::move(f); }
  // Called (on the checker's thread) with a database's read-only functions: names whose every
  // overload in its pg_proc is immutable or stable, asked of its primary once a minute.
  using FunctionsCallback =
      std::function<void(const std::string& database, std::shared_ptr<const FunctionNames>)>;
  void set_on_functions(FunctionsCallback f) { on_functions_ = std::move(f); }
  // Failover decisions only while `leader` says so (the etcd lease holder).
  void set_leader(std::function<bool()> leader) { leader_ = std::move(leader); }
  std::vector<FailoverEvent> Events();
  // Failovers by result since start (the events list keeps only the last 100).
  uint64_t failovers(int result) const { return results_[result].load(); }
  enum FailoverResult { kOk = 0, kFailed = 1, kRefused = 2 };

 private:
  struct Target;
  void Run();
  void MaybeFailover(const PgConfig& cfg,
                     const std::map<std::string, std::shared_ptr<ServerHealth>>& health);
  Target* TargetFor(const std::string& name);
  // Counts a failover by its result and keeps it among the last 100 events.
  void Record(const FailoverEvent& ev, FailoverResult result);
  void LoadFunctions(const PgConfig& cfg,
                     const std::map<std::string, std::shared_ptr<ServerHealth>>& health);

  Mutex mu_;
  CondVar cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<const PgConfig> cfg_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<ServerHealth>> health_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<Target>> targets_;  // thread only
  std::thread thread_;
  std::function<void()> on_change_;
  std::function<bool()> leader_;
  FunctionsCallback on_functions_;
  std::map<std::string, int64_t> functions_loaded_ms_;  // thread only
  std::vector<FailoverEvent> events_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> results_[3] = {};
  std::map<std::string, std::string> refused_;  // database -> why (thread only; logged once)
};

}  // namespace bulwark::pg
