// Restores, as the AlkaidSYS restore script does by hand: check the backup, keep a safety copy of
// what is there, restore, check the result, and put the safety copy back if anything failed.
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/str_join.h"
#include "core/event_loop.h"
#include "core/strings.h"
#include "vault/database.h"
#include "core/process.h"
#include "vault/vault.h"

namespace bulwark::vault {
namespace {

bool DirIsEmptyOrMissing(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return true;
  return std::filesystem::is_directory(dir, ec) && std::filesystem::is_empty(dir, ec);
}

}  // namespace

absl::Status StepLog::Run(const std::string& what, const std::function<absl::Status()>& fn) {
  int64_t start = MonotonicMs();
  absl::Status st = fn();
  nlohmann::json j = {{"step", what}, {"ms", MonotonicMs() - start}, {"ok", st.ok()}};
  if (!st.ok()) j["error"] = std::string(st.message());
  steps.push_back(j);
  return st;
}

nlohmann::json RestoreResult::ToJson() const {
  nlohmann::json j = {{"backup_id", backup_id},   {"plan", plan},
                      {"source", source},         {"target", target},
                      {"status", status},         {"steps", log.steps},
                      {"started_ms", started_ms}, {"finished_ms", finished_ms}};
  if (report_id) j["id"] = report_id;
  if (safety_backup_id) j["safety_backup_id"] = safety_backup_id;
  if (!error.empty()) j["error"] = error;
  if (!rollback_error.empty()) j["rollback_error"] = rollback_error;
  return j;
}

absl::Status Vault::VerifyByRestoring(const BackupRecord& rec, const PlanConfig& plan) {
  DatabaseClient db(plan.source);
  std::string scratch = StrCat("bulwark_verify_", rec.id);
  if (auto st = db.Drop(scratch); !st.ok()) return st;
  if (auto st = db.Create(scratch); !st.ok()) {
    return absl::FailedPreconditionError(
        StrCat("cannot create the scratch database ", scratch, ": ", st.message()));
  }
  absl::Status st = [&]() -> absl::Status {
    auto cmd = db.Command(db.RestoreArgv(scratch));
    if (!cmd.ok()) return cmd.status();
    auto restore = ProcessSink::Start(cmd->argv, cmd->env);
    if (!restore.ok()) return restore.status();
    if (auto est = Extract(rec.id, restore->get()); !est.ok()) return est;
    if (auto fst = (*restore)->Finish(); !fst.ok()) {
      return absl::DataLossError(StrCat("restoring into ", scratch, ": ", fst.message()));
    }
    for (const CheckConfig& c : plan.checks) {
      if (auto cst = db.RunCheck(c, scratch); !cst.ok()) return cst;
    }
    return absl::OkStatus();
  }();
  (void)db.Drop(scratch);
  return st;
}

absl::StatusOr<RestoreResult> Vault::Restore(const RestoreOptions& o) {
  auto rec = catalog_->Get(o.backup_id);
  if (!rec.ok()) return rec.status();
  if (rec->status != "ok") {
    return absl::FailedPreconditionError(
        StrCat("backup ", rec->id, " is ", rec->status, "; only complete backups can be restored"));
  }
  auto pit = cfg_->plans.find(rec->plan);
  if (pit == cfg_->plans.end()) {
    return absl::FailedPreconditionError(
        StrCat("backup ", rec->id, " belongs to plan \"", rec->plan,
               "\", which is no longer configured; its source settings say where to restore. "
               "Use `bulwark backup cat ",
               rec->id, "` to read it"));
  }
  const PlanConfig& plan = pit->second;
  const SourceConfig& src = plan.source;
  if (src.type != rec->source) {
    return absl::FailedPreconditionError(StrCat("backup ", rec->id, " was made by a ", rec->source,
                                                " source; plan ", plan.name, " now has a ",
                                                src.type, " source"));
  }
  if (rec->trigger == "drill" && !o.skip_checks) {
    return absl::FailedPreconditionError(
        StrCat("backup ", rec->id,
               " was made by a drill of its own database; it is not restored "
               "outside the drill"));
  }
  RestoreResult r;
  r.backup_id = rec->id;
  r.plan = plan.name;
  r.source = src.type;
  r.started_ms = now_ms_();

  // What the target is, and the operations on it, by source type.
  DatabaseClient db(src);
  std::string where;                               // for messages
  std::function<absl::StatusOr<bool>()> has_data;  // something a restore would overwrite
  std::function<absl::Status()> prepare;           // make it empty
  std::function<std::vector<std::string>()> restore_argv;
  std::function<absl::Status()> discard;  // undo a failed restore when there is no safety copy
  PlanConfig safety = plan;               // backs up the target as it is now
  safety.schedule.reset();
  safety.retention = {};
  // The database a one-database backup goes to: --target, or the one it was taken of (a safety
  // backup of another database goes back there).
  std::string target_db;
  if (src.OneDatabase()) {
    target_db = !o.target.empty()        ? o.target
                : !rec->database.empty() ? rec->database
                                         : src.database;
  }
  if (!src.Engine().empty() && src.type != "pg_basebackup") {
    if (!src.OneDatabase() && !o.target.empty()) {
      return absl::InvalidArgumentError(
          "this backup holds every database of its server; it restores to that server only "
          "(no --target)");
    }
    // pg_restore -d and psql -d take connection strings too: a target is a name, never a
    // "host=... dbname=..." that would send the restore to another server.
    if (src.OneDatabase() && !IsPlainDatabaseName(target_db)) {
      return absl::InvalidArgumentError(
          StrCat("--target: \"", target_db, "\" is not a database name (letters, digits, _, $ "
                 "and -)"));
    }
    r.target = db.Describe(target_db);
    where = r.target;
    if (src.OneDatabase()) {
      has_data = [&db, target_db] { return db.Exists(target_db); };
      prepare = [&db, target_db]() -> absl::Status {
        if (auto st = db.Drop(target_db); !st.ok()) return st;
        return db.Create(target_db);
      };
      discard = [&db, target_db] { return db.Drop(target_db); };
    } else {
      has_data = [] { return true; };
      prepare = [] { return absl::OkStatus(); };  // the dump drops and re-creates each database
      discard = [] { return absl::OkStatus(); };
    }
    restore_argv = [&db, target_db] { return db.RestoreArgv(target_db); };
    safety.source = db.DumpOf(target_db);
  } else if (src.type == "files" || src.type == "pg_basebackup") {
    std::string dir = o.target;
    if (src.type == "pg_basebackup" && dir.empty()) {
      return absl::InvalidArgumentError(
          "a pg_basebackup backup restores into a new data directory: give --target DIR (empty or "
          "missing)");
    }
    if (!dir.empty() && dir[0] != '/') {
      return absl::InvalidArgumentError(StrCat("--target: \"", dir, "\" is not an absolute path"));
    }
    if (!dir.empty()) {
      // Into a directory of its own: nothing is overwritten, so there is nothing to keep safe.
      if (!DirIsEmptyOrMissing(dir)) {
        return absl::FailedPreconditionError(
            StrCat("--target ", dir,
                   " is not empty; restoring into it would mix two sets of "
                   "files. Give an empty or new directory"));
      }
      r.target = dir;
      where = dir;
      has_data = [] { return false; };
      prepare = [dir]() -> absl::Status {
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        if (ec) return absl::UnavailableError(StrCat(dir, ": ", ec.message()));
        // A data directory must be 0700 or PostgreSQL will not start on it.
        chmod(dir.c_str(), 0700);
        return absl::OkStatus();
      };
      restore_argv = [dir] {
        return std::vector<std::string>{"tar", "--extract", "--file=-", "--same-permissions",
                                        "--directory=" + dir};
      };
      discard = [dir]() -> absl::Status {
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
          std::filesystem::remove_all(e.path(), ec);
        }
        return absl::OkStatus();
      };
    } else {
      // In place: the files go back to their absolute paths; the safety copy is a tar of
      // those paths as they are now.
      r.target = "the original paths (" + absl::StrJoin(src.paths, ", ") + ")";
      where = r.target;
      std::vector<std::string> present;
      for (const std::string& p : src.paths) {
        struct stat sb;
        if (lstat(p.c_str(), &sb) == 0) present.push_back(p);
      }
      has_data = [present] { return !present.empty(); };
      safety.source.paths = present;
      prepare = [] { return absl::OkStatus(); };
      restore_argv = [] {
        return std::vector<std::string>{"tar", "--extract", "--file=-", "--absolute-names",
                                        "--same-permissions"};
      };
      discard = [] { return absl::OkStatus(); };
    }
  } else {
    if (src.restore_command.empty()) {
      return absl::FailedPreconditionError(
          StrCat("plan ", plan.name,
                 " has a command source without restore_command: bulwark does "
                 "not know what takes this backup back. Add restore_command, or use `bulwark "
                 "backup cat ",
                 rec->id, "`"));
    }
    if (!o.target.empty()) {
      return absl::InvalidArgumentError(
          "a command source restores through its restore_command; "
          "--target does not apply");
    }
    r.target = absl::StrJoin(src.restore_command, " ");
    where = r.target;
    has_data = [] { return true; };
    prepare = [] { return absl::OkStatus(); };
    restore_argv = [&src] { return src.restore_command; };
    discard = [] { return absl::OkStatus(); };
  }
  // Only a staged copy that verified is applied (Stage): what reaches the restore program is
  // what was checked, whatever happens to the storage meanwhile.
  auto restore_from = [&](const Staged& staged) -> absl::Status {
    if (auto st = prepare(); !st.ok()) return st;
    auto cmd = db.Command(restore_argv());
    if (!cmd.ok()) return cmd.status();
    auto proc = ProcessSink::Start(cmd->argv, cmd->env);
    if (!proc.ok()) return proc.status();
    if (auto st = ExtractStaged(staged, proc->get()); !st.ok()) return st;
    return (*proc)->Finish();
  };
  auto checks = [&]() -> absl::Status {
    if (o.skip_checks) return absl::OkStatus();
    for (const CheckConfig& c : plan.checks) {
      if (absl::Status st = db.RunCheck(c, target_db); !st.ok()) return st;
    }
    return absl::OkStatus();
  };

  auto exists = has_data();
  if (!exists.ok()) {
    return absl::UnavailableError(StrCat(where, ": ", exists.status().message()));
  }
  std::string what = StrCat("backup ", rec->id, " (", HumanBytes(rec->raw_bytes), ", ",
                            FormatUtc(rec->started_ms, "%Y-%m-%dT%H:%M:%SZ"), ")");
  if (o.dry_run) {
    r.status = "dry_run";
    r.log.Planned(StrCat("copy ", what, " into the staging directory and verify the copy: "
                         "checksums, every chunk decrypted; only that copy is applied"));
    if (*exists) {
      r.log.Planned(
          StrCat("take a safety backup of ", where, " (plan ", plan.name, ", trigger safety)"));
    } else {
      r.log.Planned(StrCat(where, " holds nothing yet: no safety backup needed"));
    }
    r.log.Planned(StrCat("restore ", what, " into ", where, " with ", restore_argv()[0]));
    int n = !o.skip_checks ? static_cast<int>(plan.checks.size()) : 0;
    for (int i = 0; i < n; ++i) r.log.Planned("check: " + plan.checks[static_cast<size_t>(i)].name);
    r.log.Planned(*exists ? "if the restore or a check fails: restore the safety backup"
                          : "if the restore or a check fails: remove what was restored");
    r.finished_ms = now_ms_();
    return r;
  }

  Report report;
  report.kind = "restore";
  report.name = std::to_string(rec->id);
  report.status = "running";
  report.started_ms = r.started_ms;
  auto rid = catalog_->AddReport(report);
  if (!rid.ok()) return rid.status();
  report.id = r.report_id = *rid;
  auto finish = [&](std::string status) -> absl::StatusOr<RestoreResult> {
    r.status = std::move(status);
    r.finished_ms = now_ms_();
    report.status = r.status;
    report.finished_ms = r.finished_ms;
    report.detail = r.ToJson().dump();
    if (auto st = catalog_->UpdateReport(report); !st.ok()) return st;
    return r;
  };

  std::unique_ptr<Staged> staged;
  absl::Status st = r.log.Run("stage and verify " + what, [&]() -> absl::Status {
    auto s = Stage(rec->id);
    if (!s.ok()) return s.status();
    staged = std::move(*s);
    return absl::OkStatus();
  });
  if (!st.ok()) {
    r.error =
        StrCat("backup ", rec->id, " did not verify; ", where, " was not touched: ", st.message());
    return finish("failed");
  }
  if (*exists) {
    st = r.log.Run(StrCat("safety backup of ", where), [&]() -> absl::Status {
      auto b = BackupPlan(safety, "safety", false);
      if (!b.ok()) return b.status();
      r.safety_backup_id = b->id;
      if (b->status != "ok") return absl::AbortedError(b->error);
      return absl::OkStatus();
    });
    if (!st.ok()) {
      r.error = StrCat("the safety backup failed, so ", where, " was not touched: ", st.message());
      return finish("failed");
    }
  }
  st = r.log.Run(StrCat("restore backup ", rec->id, " into ", where),
                 [&] { return restore_from(*staged); });
  if (st.ok()) {
    st = r.log.Run(StrCat("checks (", !o.skip_checks ? plan.checks.size() : 0, ")"), checks);
  }
  if (st.ok()) {
    if (r.safety_backup_id > 0) (void)Prune(plan.name);  // keeps the newest safety backups
    return finish("ok");
  }
  r.error = std::string(st.message());
  if (r.safety_backup_id > 0) {
    absl::Status rb = r.log.Run(StrCat("roll back: restore safety backup ", r.safety_backup_id),
                                [&]() -> absl::Status {
                                  auto sb = Stage(r.safety_backup_id);
                                  if (!sb.ok()) return sb.status();
                                  return restore_from(**sb);
                                });
    if (!rb.ok()) {
      r.rollback_error = std::string(rb.message());
      return finish("failed");
    }
    return finish("rolled_back");
  }
  (void)r.log.Run("remove what was restored", discard);
  return finish("failed");
}

}  // namespace bulwark::vault
