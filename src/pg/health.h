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

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pg/config.h"
#include "pg/proxy.h"

namespace bulwark::pg {

// "16/B374D848" -> 0x16B374D848; nullopt-like -1 for text that is not an LSN.
int64_t ParseLsn(std::string_view text);

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

 private:
  struct Target;
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::shared_ptr<const PgConfig> cfg_;
  std::map<std::string, std::shared_ptr<ServerHealth>> health_;
  std::map<std::string, std::unique_ptr<Target>> targets_;  // thread only
  std::thread thread_;
};

}  // namespace bulwark::pg
