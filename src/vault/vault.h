// Backups end to end: a plan's source streamed through the archive into every storage, the
// catalog kept true at each step, verification of stored copies.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "vault/catalog.h"
#include "vault/config.h"
#include "vault/storage.h"

namespace bulwark::vault {

struct RestoreOptions {
  int64_t backup_id = 0;
  // A database name on the plan's server, a directory (files, pg_basebackup), or "" for where
  // the backup came from.
  std::string target;
  bool dry_run = false;
  bool skip_checks = false;  // drills check their own rows, not the plan's tables
};

// What a restore, a drill or a recovery plan did: each step with its duration and outcome.
struct StepLog {
  nlohmann::json steps = nlohmann::json::array();
  // Runs `fn` as step `what`, timed; returns its status.
  absl::Status Run(const std::string& what, const std::function<absl::Status()>& fn);
  void Planned(const std::string& what) { steps.push_back({{"step", what}}); }
};

struct RestoreResult {
  int64_t report_id = 0, backup_id = 0, safety_backup_id = 0;
  std::string plan, source, target;
  std::string status;  // ok | rolled_back | failed | dry_run
  std::string error, rollback_error;
  int64_t started_ms = 0, finished_ms = 0;
  StepLog log;
  nlohmann::json ToJson() const;
};

class Vault {
 public:
  Vault(std::shared_ptr<const VaultConfig> cfg, Catalog* catalog);

  // Makes one backup of `plan`. The returned record says ok or failed (with the reason); an
  // error status means the catalog itself could not be written.
  absl::StatusOr<BackupRecord> Backup(const std::string& plan, const std::string& trigger);
  // The same for a plan that need not be configured (safety and drill backups); `prune`
  // applies the plan's retention afterwards.
  absl::StatusOr<BackupRecord> BackupPlan(const PlanConfig& plan, const std::string& trigger,
                                          bool prune);
  // Restores backup `o.backup_id` (restore.cc): verifies it, takes a safety backup of the
  // target when there is something to lose, restores, runs the plan's checks, and restores
  // the safety backup if the restore or a check fails. A dry run only says what it would do.
  absl::StatusOr<RestoreResult> Restore(const RestoreOptions& o);
  // Runs drill `name` (drill.cc); the report (also kept in the catalog) says passed or failed
  // and why, with the measured RTO and RPO. An error status: the catalog could not be written.
  absl::StatusOr<nlohmann::json> Drill(const std::string& name);
  // Deletes backup `id`'s objects from every storage and marks it deleted.
  absl::Status Delete(int64_t id);
  const VaultConfig& config() const { return *cfg_; }
  Catalog* catalog() const { return catalog_; }
  int64_t now_ms() const { return now_ms_(); }
  // Checks every stored copy of backup `id`: its SHA-256 against the catalog, then a full read
  // (every chunk authenticated, decompressed, the original's size and SHA-256 compared).
  // With `scratch_restore`, a one-database backup is also restored into a scratch database
  // and the plan's checks run there (plan option verify_restore).
  absl::StatusOr<BackupRecord> Verify(int64_t id, bool scratch_restore = true);
  // Writes the original bytes of backup `id` to `out`, read from its first storage; every chunk
  // is checked before it is passed on, and the end is checked against the catalog.
  absl::Status Extract(int64_t id, ByteSink* out);
  // A backup's object copied from its storage into the staging directory (0600) and verified
  // there: the stored SHA-256, every chunk authenticated and decompressed, the original's
  // SHA-256. A restore applies this copy, so a truncated or swapped object fails before the
  // target is touched, and nothing unverified reaches the restore program. Removed on
  // destruction.
  struct Staged {
    std::string path;
    BackupRecord rec;
    Staged() = default;
    Staged(const Staged&) = delete;
    Staged& operator=(const Staged&) = delete;
    ~Staged();
  };
  absl::StatusOr<std::unique_ptr<Staged>> Stage(int64_t id);
  // Writes the original bytes of a staged backup to `out`.
  absl::Status ExtractStaged(const Staged& s, ByteSink* out);
  // Applies the plan's retention (retention.h): deletes the objects of expired backups from
  // every storage and marks them "deleted". Backup() calls it after each success.
  absl::StatusOr<std::vector<int64_t>> Prune(const std::string& plan);
  // What the last Backup() pruned.
  const std::vector<int64_t>& last_pruned() const { return last_pruned_; }
  // Rows left "running" by a process that is gone become "failed"; their partial objects are
  // removed. Returns how many there were.
  absl::StatusOr<int> RecoverInterrupted();

  void set_clock(std::function<int64_t()> now_ms) { now_ms_ = std::move(now_ms); }

 private:
  std::unique_ptr<Storage> StorageNamed(const std::string& name) const;
  // Restores a scratch copy of a one-database backup and runs the plan's checks there.
  absl::Status VerifyByRestoring(const BackupRecord& rec, const PlanConfig& plan);
  // Reads `rec`'s object from `storage` end to end (every chunk authenticated, decompressed),
  // also into `copy` when not null, and checks the stored and the original SHA-256 against the
  // catalog. Verify and Stage both judge a copy this way.
  absl::Status ReadAndCheck(const BackupRecord& rec, Storage* storage, ByteSink* copy);

  std::shared_ptr<const VaultConfig> cfg_;
  Catalog* catalog_;
  std::function<int64_t()> now_ms_;
  std::vector<int64_t> last_pruned_;
};

}  // namespace bulwark::vault
