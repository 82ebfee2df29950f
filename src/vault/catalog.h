// The backup catalog: every backup bulwark made or tried, in SQLite (one file, no server).
// A row is written before the first byte is read from the source (status "running") and
// finished after every copy is complete, so a crash in between leaves a row that says so;
// RecoverInterrupted() (vault.h) turns those into "failed" and removes their partial objects.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/mutex.h"
#include "nlohmann/json.hpp"

struct sqlite3;

namespace bulwark::vault {

struct BackupRecord {
  int64_t id = 0;
  std::string plan;
  std::string source;   // the source type (pg_dump, files, command)
  std::string trigger;  // manual | "schedule <cron>" | safety | drill | recovery
  std::string status;   // running | ok | failed | deleted
  int64_t started_ms = 0, finished_ms = 0;
  int64_t raw_bytes = 0, stored_bytes = 0;
  std::string raw_sha256, stored_sha256;
  std::string compression, key_id;
  std::string object;                // the object's name in each storage
  std::vector<std::string> storage;  // the storages holding a copy (or meant to)
  int64_t pid = 0;                   // the process writing it, while running
  std::string error;
  std::string verified;  // "" (never), ok, failed
  int64_t verified_ms = 0;
  std::string verify_error;
  // The database it holds (one-database sources): where a restore goes by default. A safety
  // backup of another database, or a drill's, names its own.
  std::string database;
};

// Everything the catalog knows of a backup, as the CLI's --json and the admin API give it
// (times both as Unix milliseconds and as UTC text).
nlohmann::json BackupJson(const BackupRecord& b);

// A restore, a drill or a recovery-plan run: what ran, how it ended, its detail as JSON.
struct Report {
  int64_t id = 0;
  std::string kind;    // restore | drill | plan
  std::string name;    // the backup id, drill name or plan name
  std::string status;  // running | ok | failed | rolled_back | dry_run
  int64_t started_ms = 0, finished_ms = 0;
  std::string detail = "{}";
};

class Catalog {
 public:
  // Opens (or creates) the catalog at `path`, making its directories.
  static absl::StatusOr<std::unique_ptr<Catalog>> Open(const std::string& path);
  ~Catalog();

  // Inserts `b` (status running); returns its id.
  absl::StatusOr<int64_t> Begin(const BackupRecord& b);
  // Stores the final state of `b` (found by id): status, sizes, checksums, error.
  absl::Status Finish(const BackupRecord& b);
  absl::Status SetVerified(int64_t id, bool ok, const std::string& error, int64_t now_ms);
  absl::Status SetStatus(int64_t id, const std::string& status);
  absl::StatusOr<BackupRecord> Get(int64_t id);
  // Newest first; `plan` "" for every plan.
  absl::StatusOr<std::vector<BackupRecord>> List(const std::string& plan = "");

  absl::StatusOr<int64_t> AddReport(const Report& r);
  absl::Status UpdateReport(const Report& r);  // by id
  // Newest first; `name` "" for all of `kind`.
  absl::StatusOr<std::vector<Report>> Reports(const std::string& kind, const std::string& name = "",
                                              int limit = 50);

 private:
  explicit Catalog(sqlite3* db) : db_(db) {}
  absl::Status Exec(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plans run on threads of their own (scheduler.h): one call at a time on the connection, so
  // an insert and its last_insert_rowid() stay together.
  Mutex mu_;
  sqlite3* db_ ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace bulwark::vault
