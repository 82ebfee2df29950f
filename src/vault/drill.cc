// `bulwark drill NAME`: the AlkaidSYS disaster-recovery drill, measured. Known rows go into a
// database of the drill's own (never the application's), a backup is taken with the plan's
// settings, the database is broken, restored from that backup, and every row is checked.
#include "absl/strings/str_join.h"
#include "core/event_loop.h"
#include "core/strings.h"
#include "vault/database.h"
#include "core/process.h"
#include "vault/vault.h"

namespace bulwark::vault {
namespace {

// The longest wait between two runs of `c` over the next five weeks: the worst-case RPO a
// schedule gives (data written just after a backup waits this long for the next one).
int64_t WorstGapMs(const CronSchedule& c, int64_t now_ms) {
  int64_t t = c.Next(now_ms / 1000);
  int64_t end = now_ms / 1000 + 35 * 86400, worst = 0;
  while (t > 0 && t < end) {
    int64_t next = c.Next(t);
    if (next < 0) break;
    worst = std::max(worst, next - t);
    t = next;
  }
  return worst * 1000;
}

std::string Fingerprint(bool postgres) {
  // Every row's id and name, order-independent for MySQL (no length limit on the input).
  return postgres ? "SELECT count(*) || ':' || coalesce(md5(string_agg(id || '=' || name, ',' "
                    "ORDER BY id)), '') FROM bulwark_drill_rows"
                  : "SELECT CONCAT(COUNT(*), ':', COALESCE(SUM(CRC32(CONCAT(id, '=', name))), 0)) "
                    "FROM bulwark_drill_rows";
}

}  // namespace

absl::StatusOr<nlohmann::json> Vault::Drill(const std::string& name) {
  auto dit = cfg_->drills.find(name);
  if (dit == cfg_->drills.end())
    return absl::NotFoundError(StrCat("no drill named \"", name, "\""));
  const DrillConfig& d = dit->second;
  auto pit = cfg_->plans.find(d.plan);
  if (pit == cfg_->plans.end())
    return absl::NotFoundError(StrCat("no plan named \"", d.plan, "\""));
  // Checked again here: plans from a plans_file join after the config's own checks.
  if (const PlanConfig* p = PlanWithSourceDatabase(cfg_->plans, d.database)) {
    return absl::FailedPreconditionError(
        StrCat("drill ", name, ": database \"", d.database, "\" is the source database of plan \"",
               p->name, "\"; a drill drops and re-creates its database"));
  }
  if (!IsPlainDatabaseName(d.database)) {
    return absl::InvalidArgumentError(
        StrCat("drill ", name, ": \"", d.database, "\" is not a plain database name"));
  }
  PlanConfig plan = pit->second;
  DatabaseClient db(plan.source);
  bool pg = db.postgres();
  plan.source = db.DumpOf(d.database);
  plan.schedule.reset();
  plan.checks.clear();

  Report report;
  report.kind = "drill";
  report.name = name;
  report.status = "running";
  report.started_ms = now_ms_();
  auto rid = catalog_->AddReport(report);
  if (!rid.ok()) return rid.status();
  report.id = *rid;
  StepLog log;
  nlohmann::json j = {{"id", report.id},
                      {"drill", name},
                      {"plan", d.plan},
                      {"database", db.Describe(d.database)},
                      {"rows", d.rows},
                      {"break", d.break_mode},
                      {"started_ms", report.started_ms}};
  std::vector<std::string> problems;
  std::string expected;
  int64_t backup_id = 0, snapshot_ms = 0, break_ms = 0, recovered_ms = 0;

  absl::Status st =
      log.Run(StrCat("seed ", d.rows, " rows into ", d.database), [&]() -> absl::Status {
        if (auto s = db.Drop(d.database); !s.ok()) return s;
        if (auto s = db.Create(d.database); !s.ok()) return s;
        std::string create =
            pg ? "CREATE TABLE bulwark_drill_rows (id integer PRIMARY KEY, name text NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now())"
               : "CREATE TABLE bulwark_drill_rows (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
                 "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)";
        if (auto s = db.Query(d.database, create); !s.ok()) return s.status();
        for (int from = 1; from <= d.rows; from += 1000) {
          std::vector<std::string> values;
          for (int i = from; i < from + 1000 && i <= d.rows; ++i) {
            values.push_back(StrCat("(", i, ", 'drill_row_", i, "')"));
          }
          auto s = db.Query(d.database, "INSERT INTO bulwark_drill_rows (id, name) VALUES " +
                                            absl::StrJoin(values, ","));
          if (!s.ok()) return s.status();
        }
        auto fp = db.Query(d.database, Fingerprint(pg));
        if (!fp.ok()) return fp.status();
        expected = *fp;
        return absl::OkStatus();
      });
  if (st.ok()) {
    st = log.Run("back up " + d.database, [&]() -> absl::Status {
      auto b = BackupPlan(plan, "drill", false);
      if (!b.ok()) return b.status();
      backup_id = b->id;
      snapshot_ms = b->started_ms;
      if (b->status != "ok") return absl::AbortedError(b->error);
      return absl::OkStatus();
    });
  }
  if (st.ok()) {
    st = log.Run(d.break_mode == "command" ? "break: " + absl::StrJoin(d.break_command, " ")
                                           : "break: drop database " + d.database,
                 [&]() -> absl::Status {
                   break_ms = now_ms_();
                   if (d.break_mode == "command") {
                     std::string out;
                     return RunCapture(d.break_command, {}, 600000, &out);
                   }
                   return db.Drop(d.database);
                 });
  }
  if (st.ok()) {
    st = log.Run(StrCat("restore backup ", backup_id), [&]() -> absl::Status {
      RestoreOptions o;
      o.backup_id = backup_id;
      o.skip_checks = true;
      // The drill plan is not in the configuration; restore through a vault that has it.
      auto cfg = std::make_shared<VaultConfig>(*cfg_);
      cfg->plans[plan.name] = plan;
      Vault v(cfg, catalog_);
      v.set_clock(now_ms_);
      auto r = v.Restore(o);
      if (!r.ok()) return r.status();
      j["restore"] = r->ToJson();
      if (r->status != "ok") return absl::AbortedError(r->error);
      return absl::OkStatus();
    });
  }
  if (st.ok()) {
    st = log.Run(StrCat("check the ", d.rows, " rows"), [&]() -> absl::Status {
      auto fp = db.Query(d.database, Fingerprint(pg));
      if (!fp.ok()) return fp.status();
      recovered_ms = now_ms_();
      if (*fp != expected) {
        return absl::DataLossError(
            StrCat("rows after the restore (count:checksum) ", *fp, ", before ", expected));
      }
      return absl::OkStatus();
    });
  }
  if (!st.ok()) problems.push_back(std::string(st.message()));
  // Clean up like the AlkaidSYS script: the drill database and its backup go.
  (void)log.Run("clean up", [&]() -> absl::Status {
    absl::Status s = db.Drop(d.database);
    if (backup_id > 0) {
      auto rec = catalog_->Get(backup_id);
      if (rec.ok() && rec->status == "ok") {
        if (auto ds = Delete(backup_id); !ds.ok() && s.ok()) s = ds;
      }
    }
    return s;
  });

  if (backup_id) j["backup_id"] = backup_id;
  if (st.ok()) {
    int64_t rto = recovered_ms - break_ms, rpo = break_ms - snapshot_ms;
    j["rto_ms"] = rto;
    j["rpo_ms"] = rpo;
    if (d.rto_target_ms > 0) {
      j["rto_target_ms"] = d.rto_target_ms;
      if (rto > d.rto_target_ms) {
        problems.push_back(
            StrCat("RTO ", rto, " ms is over the target of ", d.rto_target_ms, " ms"));
      }
    }
    // The drill's own RPO is seconds; what the plan gives in production is its schedule's gap.
    int64_t rpo_judged = rpo;
    if (pit->second.schedule) {
      int64_t gap = WorstGapMs(*pit->second.schedule, now_ms_());
      j["schedule_rpo_ms"] = gap;
      rpo_judged = std::max(rpo, gap);
    }
    if (d.rpo_target_ms > 0) {
      j["rpo_target_ms"] = d.rpo_target_ms;
      if (rpo_judged > d.rpo_target_ms) {
        problems.push_back(StrCat("RPO ", rpo_judged, " ms (",
                                  pit->second.schedule
                                      ? "the schedule \"" + pit->second.schedule_text + "\""
                                      : "measured",
                                  ") is over the target of ", d.rpo_target_ms, " ms"));
      }
    }
  }
  j["steps"] = log.steps;
  j["status"] = problems.empty() ? "passed" : "failed";
  if (!problems.empty()) j["problems"] = problems;
  report.status = j["status"];
  report.finished_ms = now_ms_();
  j["finished_ms"] = report.finished_ms;
  report.detail = j.dump();
  if (auto s = catalog_->UpdateReport(report); !s.ok()) return s;
  return j;
}

}  // namespace bulwark::vault
