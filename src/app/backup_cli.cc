#include "app/backup_cli.h"

#include <cstdio>

#include "app/config.h"
#include "app/state.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "vault/recovery.h"
#include "vault/vault.h"

namespace bulwark {
namespace {

std::string Time(int64_t ms) { return ms <= 0 ? "-" : FormatUtc(ms, "%Y-%m-%dT%H:%M:%SZ"); }

std::string Seconds(int64_t ms) {
  char buf[32];
  if (ms >= 3600000) {
    snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(ms / 3600000),
             static_cast<long long>(ms / 60000 % 60));
  } else {
    snprintf(buf, sizeof(buf), "%.1f s", static_cast<double>(ms) / 1000.0);
  }
  return buf;
}

// One line per step: ✓/✗, what, how long, and the error.
void PrintSteps(const nlohmann::json& steps, FILE* f) {
  int n = 0;
  for (const auto& s : steps) {
    ++n;
    if (!s.contains("ok")) {
      fprintf(f, "  %d. %s\n", n, s["step"].get<std::string>().c_str());
      continue;
    }
    fprintf(f, "  %s %s (%s)%s%s\n", s["ok"].get<bool>() ? "ok  " : "FAIL",
            s["step"].get<std::string>().c_str(), Seconds(s["ms"].get<int64_t>()).c_str(),
            s.contains("error") ? ": " : "",
            s.contains("error") ? s["error"].get<std::string>().c_str() : "");
  }
}

void PrintJournalEntry(const nlohmann::json& e, FILE* f) {
  fprintf(f, "  %-8s %-20s %-16s attempt %lld  %-4s %8s%s%s\n",
          e["phase"].get<std::string>().c_str(), e["id"].get<std::string>().c_str(),
          e["action"].get<std::string>().c_str(),
          static_cast<long long>(e["attempt"].get<int64_t>()), e["ok"].get<bool>() ? "ok" : "FAIL",
          Seconds(e["ms"].get<int64_t>()).c_str(), e.contains("error") ? "  " : "",
          e.contains("error") ? e["error"].get<std::string>().c_str() : "");
}

int RunRestore(vault::Vault& v, const BackupCommand& cmd) {
  vault::RestoreOptions o;
  o.backup_id = cmd.id;
  o.target = cmd.target;
  o.dry_run = cmd.dry_run;
  auto r = v.Restore(o);
  if (!r.ok()) {
    fprintf(stderr, "bulwark: restore of backup %lld: %s\n", static_cast<long long>(cmd.id),
            std::string(r.status().message()).c_str());
    return 2;
  }
  if (cmd.json) {
    printf("%s\n", r->ToJson().dump().c_str());
  } else if (r->status == "dry_run") {
    printf("dry run: restoring backup %lld (plan %s) into %s would:\n",
           static_cast<long long>(r->backup_id), r->plan.c_str(), r->target.c_str());
    PrintSteps(r->log.steps, stdout);
    printf("nothing was changed\n");
  } else {
    FILE* f = r->status == "ok" ? stdout : stderr;
    fprintf(f, "restore of backup %lld (plan %s) into %s: %s\n",
            static_cast<long long>(r->backup_id), r->plan.c_str(), r->target.c_str(),
            r->status == "ok"            ? "ok"
            : r->status == "rolled_back" ? "FAILED, rolled back to the safety backup"
                                         : "FAILED");
    PrintSteps(r->log.steps, f);
    if (r->safety_backup_id > 0) {
      fprintf(f, "safety backup: %lld\n", static_cast<long long>(r->safety_backup_id));
    }
    if (!r->error.empty()) fprintf(f, "error: %s\n", r->error.c_str());
    if (!r->rollback_error.empty()) {
      fprintf(f, "the roll back failed too: %s\n", r->rollback_error.c_str());
    }
  }
  return r->status == "ok" || r->status == "dry_run" ? 0 : 1;
}

int RunDrill(vault::Vault& v, const BackupCommand& cmd) {
  auto d = v.Drill(cmd.plan);
  if (!d.ok()) {
    fprintf(stderr, "bulwark: drill %s: %s\n", cmd.plan.c_str(),
            std::string(d.status().message()).c_str());
    return 2;
  }
  bool passed = (*d)["status"] == "passed";
  if (cmd.json) {
    printf("%s\n", d->dump().c_str());
    return passed ? 0 : 1;
  }
  FILE* f = passed ? stdout : stderr;
  fprintf(f, "drill %s (plan %s, %s): %s\n", cmd.plan.c_str(),
          (*d)["plan"].get<std::string>().c_str(), (*d)["database"].get<std::string>().c_str(),
          passed ? "PASSED" : "FAILED");
  PrintSteps((*d)["steps"], f);
  if (d->contains("rto_ms")) {
    fprintf(f, "RTO %s", Seconds((*d)["rto_ms"].get<int64_t>()).c_str());
    if (d->contains("rto_target_ms")) {
      fprintf(f, " (target %s)", Seconds((*d)["rto_target_ms"].get<int64_t>()).c_str());
    }
    fprintf(f, ", RPO %s measured", Seconds((*d)["rpo_ms"].get<int64_t>()).c_str());
    if (d->contains("schedule_rpo_ms")) {
      fprintf(f, ", %s by the plan's schedule",
              Seconds((*d)["schedule_rpo_ms"].get<int64_t>()).c_str());
    }
    if (d->contains("rpo_target_ms")) {
      fprintf(f, " (target %s)", Seconds((*d)["rpo_target_ms"].get<int64_t>()).c_str());
    }
    fprintf(f, "\n");
  }
  if (d->contains("problems")) {
    for (const auto& p : (*d)["problems"])
      fprintf(f, "problem: %s\n", p.get<std::string>().c_str());
  }
  fprintf(f, "report %lld kept in the catalog\n",
          static_cast<long long>((*d)["id"].get<int64_t>()));
  return passed ? 0 : 1;
}

int RunPlan(vault::Vault& v, const BackupCommand& cmd, const Config& cfg) {
  vault::RecoveryRunner runner(&v);
  // drain-upstream and friends call this bulwark's admin API: with its token, found as the
  // running bulwark keeps it (the configured one, or the file in the state directory).
  auto token = FindAdminToken(cfg);
  if (token.ok()) {
    runner.set_admin_token(token->token);
  } else if (cfg.admin.enabled) {
    fprintf(stderr, "bulwark: note: %s\n", std::string(token.status().message()).c_str());
  }
  if (!cmd.json) {
    printf("recovery plan %s:\n", cmd.plan.c_str());
    runner.set_on_step([](const nlohmann::json& e) {
      PrintJournalEntry(e, stdout);
      fflush(stdout);
    });
  }
  auto r = runner.Run(cmd.plan);
  if (!r.ok()) {
    fprintf(stderr, "bulwark: plan %s: %s\n", cmd.plan.c_str(),
            std::string(r.status().message()).c_str());
    return 2;
  }
  std::string status = (*r)["status"];
  if (cmd.json) {
    printf("%s\n", r->dump().c_str());
  } else {
    printf("%s: %s in %s%s%s\n", cmd.plan.c_str(),
           status == "ok"            ? "done"
           : status == "rolled_back" ? "FAILED, rolled back"
                                     : "FAILED",
           Seconds((*r)["finished_ms"].get<int64_t>() - (*r)["started_ms"].get<int64_t>()).c_str(),
           r->contains("error") ? "; " : "",
           r->contains("error") ? (*r)["error"].get<std::string>().c_str() : "");
  }
  return status == "ok" ? 0 : 1;
}

int PlanStatus(vault::Vault& v, const BackupCommand& cmd) {
  nlohmann::json out = nlohmann::json::array();
  std::vector<std::string> names;
  if (!cmd.plan.empty()) {
    names.push_back(cmd.plan);
  } else {
    for (const auto& [name, p] : v.config().recovery) names.push_back(name);
  }
  for (const std::string& name : names) {
    auto runs = v.catalog()->Reports("plan", name, 1);
    if (!runs.ok()) {
      fprintf(stderr, "bulwark: %s\n", std::string(runs.status().message()).c_str());
      return 2;
    }
    if (runs->empty()) {
      if (!cmd.json) printf("%s: never run\n", name.c_str());
      continue;
    }
    const vault::Report& r = runs->front();
    auto detail = nlohmann::json::parse(r.detail, nullptr, false);
    if (cmd.json) {
      detail["id"] = r.id;
      detail["status"] = r.status;
      out.push_back(detail);
      continue;
    }
    printf("%s: %s, run %lld started %s%s%s\n", name.c_str(), r.status.c_str(),
           static_cast<long long>(r.id), Time(r.started_ms).c_str(),
           r.finished_ms > 0 ? ", took " : "",
           r.finished_ms > 0 ? Seconds(r.finished_ms - r.started_ms).c_str() : "");
    if (detail.is_object() && detail.contains("journal")) {
      for (const auto& e : detail["journal"]) PrintJournalEntry(e, stdout);
    }
  }
  if (cmd.json) printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int RunBackupCommand(const BackupCommand& cmd) {
  ConfigLoad load = LoadConfigFile(cmd.config, ProcessEnv());
  if (!load.errors.empty()) {
    for (const auto& e : load.errors) fprintf(stderr, "%s\n", e.c_str());
    return 2;
  }
  std::shared_ptr<const vault::VaultConfig> vc = load.config->vault;
  if (!vc->enabled) {
    fprintf(stderr, "bulwark: %s has no vault: block\n", cmd.config.c_str());
    return 2;
  }
  auto catalog = vault::Catalog::Open(vc->catalog);
  if (!catalog.ok()) {
    fprintf(stderr, "bulwark: %s\n", std::string(catalog.status().message()).c_str());
    return 2;
  }
  vault::Vault v(vc, catalog->get());
  auto recovered = v.RecoverInterrupted();
  if (!recovered.ok()) {
    fprintf(stderr, "bulwark: %s\n", std::string(recovered.status().message()).c_str());
    return 2;
  }
  if (*recovered > 0) {
    fprintf(stderr, "bulwark: %d interrupted backup%s marked failed\n", *recovered,
            *recovered == 1 ? "" : "s");
  }
  for (const std::string& note : vc->notes) fprintf(stderr, "bulwark: note: %s\n", note.c_str());
  if (cmd.action == "restore") return RunRestore(v, cmd);
  if (cmd.action == "drill") return RunDrill(v, cmd);
  if (cmd.action == "plan-run") return RunPlan(v, cmd, *load.config);
  if (cmd.action == "plan-status") return PlanStatus(v, cmd);

  if (cmd.action == "run") {
    auto r = v.Backup(cmd.plan, "manual");
    if (!r.ok()) {
      fprintf(stderr, "bulwark: %s\n", std::string(r.status().message()).c_str());
      return 2;
    }
    if (cmd.json) {
      printf("%s\n", vault::BackupJson(*r).dump().c_str());
    } else if (r->status == "ok") {
      printf("backup %lld of plan %s: ok, %s → %s in %.1f s (%s%s%s), %s\n",
             static_cast<long long>(r->id), r->plan.c_str(), HumanBytes(r->raw_bytes).c_str(),
             HumanBytes(r->stored_bytes).c_str(),
             static_cast<double>(r->finished_ms - r->started_ms) / 1000.0, r->compression.c_str(),
             r->key_id.empty() ? ", not encrypted" : ", key ", r->key_id.c_str(),
             r->object.c_str());
      if (!v.last_pruned().empty()) {
        std::string ids;
        for (int64_t id : v.last_pruned()) ids += (ids.empty() ? "" : ", ") + std::to_string(id);
        printf("retention deleted backup%s %s\n", v.last_pruned().size() == 1 ? "" : "s",
               ids.c_str());
      }
    } else {
      fprintf(stderr, "backup %lld of plan %s failed: %s\n", static_cast<long long>(r->id),
              r->plan.c_str(), r->error.c_str());
    }
    return r->status == "ok" ? 0 : 1;
  }
  if (cmd.action == "list") {
    auto all = (*catalog)->List(cmd.plan);
    if (!all.ok()) {
      fprintf(stderr, "bulwark: %s\n", std::string(all.status().message()).c_str());
      return 2;
    }
    if (cmd.json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& b : *all) j.push_back(vault::BackupJson(b));
      printf("%s\n", j.dump().c_str());
      return 0;
    }
    printf("%-6s %-16s %-8s %-20s %10s %10s %-8s\n", "ID", "PLAN", "STATUS", "STARTED", "SIZE",
           "STORED", "VERIFIED");
    for (const auto& b : *all) {
      printf("%-6lld %-16s %-8s %-20s %10s %10s %-8s\n", static_cast<long long>(b.id),
             b.plan.c_str(), b.status.c_str(), Time(b.started_ms).c_str(),
             HumanBytes(b.raw_bytes).c_str(), HumanBytes(b.stored_bytes).c_str(),
             b.verified.empty() ? "-" : b.verified.c_str());
    }
    return 0;
  }
  if (cmd.action == "cat") {
    // The original bytes on stdout: `bulwark backup cat 12 | pg_restore -d app`.
    class StdoutSink final : public ByteSink {
     public:
      absl::Status Write(std::string_view d) override {
        if (fwrite(d.data(), 1, d.size(), stdout) != d.size()) {
          return absl::UnavailableError("stdout: write failed");
        }
        return absl::OkStatus();
      }
    } out;
    auto st = v.Extract(cmd.id, &out);
    fflush(stdout);
    if (!st.ok()) {
      fprintf(stderr, "bulwark: backup %lld: %s\n", static_cast<long long>(cmd.id),
              std::string(st.message()).c_str());
      return 1;
    }
    return 0;
  }
  if (cmd.action == "verify") {
    auto r = v.Verify(cmd.id);
    if (!r.ok()) {
      fprintf(stderr, "bulwark: %s\n", std::string(r.status().message()).c_str());
      return 2;
    }
    if (cmd.json) {
      printf("%s\n", vault::BackupJson(*r).dump().c_str());
    } else if (r->verified == "ok") {
      printf("backup %lld: verified (%zu cop%s, %s original bytes)\n",
             static_cast<long long>(r->id), r->storage.size(), r->storage.size() == 1 ? "y" : "ies",
             HumanBytes(r->raw_bytes).c_str());
    } else {
      fprintf(stderr, "backup %lld: verification failed: %s\n", static_cast<long long>(r->id),
              r->verify_error.c_str());
    }
    return r->verified == "ok" ? 0 : 1;
  }
  return 2;
}

}  // namespace bulwark
