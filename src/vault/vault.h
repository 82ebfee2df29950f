// Backups end to end: a plan's source streamed through the archive into every storage, the
// catalog kept true at each step, verification of stored copies.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vault/catalog.h"
#include "vault/config.h"
#include "vault/storage.h"

namespace bulwark::vault {

// Runs `argv` (PATH lookup) with `env` added, stdin from /dev/null, its stdout streamed into
// `out`. Fails when the program cannot start, exits non-zero or is killed, or when `out` fails
// (the program is then stopped); the error ends with the last lines it wrote to stderr.
absl::Status RunSource(const std::vector<std::string>& argv,
                       const std::vector<std::pair<std::string, std::string>>& env, ByteSink* out);

class Vault {
 public:
  Vault(std::shared_ptr<const VaultConfig> cfg, Catalog* catalog);

  // Makes one backup of `plan`. The returned record says ok or failed (with the reason); an
  // error status means the catalog itself could not be written.
  absl::StatusOr<BackupRecord> Backup(const std::string& plan, const std::string& trigger);
  // Checks every stored copy of backup `id`: its SHA-256 against the catalog, then a full read
  // (every chunk authenticated, decompressed, the original's size and SHA-256 compared).
  absl::StatusOr<BackupRecord> Verify(int64_t id);
  // Writes the original bytes of backup `id` to `out`, read from its first storage; every chunk
  // is checked before it is passed on, and the end is checked against the catalog.
  absl::Status Extract(int64_t id, ByteSink* out);
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

  std::shared_ptr<const VaultConfig> cfg_;
  Catalog* catalog_;
  std::function<int64_t()> now_ms_;
  std::vector<int64_t> last_pruned_;
};

}  // namespace bulwark::vault
