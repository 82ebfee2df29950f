#include "vault/scheduler.h"

#include <chrono>

#include "core/event_loop.h"
#include "core/log.h"
#include "core/process.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "observe/metrics.h"

namespace bulwark::vault {
namespace {


}  // namespace

Scheduler::Scheduler(std::shared_ptr<const VaultConfig> cfg, std::function<bool()> leader)
    : leader_(std::move(leader)), cfg_(std::move(cfg)) {}

Scheduler::~Scheduler() { Stop(); }

absl::Status Scheduler::Open() {
  std::shared_ptr<const VaultConfig> cfg;
  {
    MutexLock l(&mu_);
    cfg = cfg_;
  }
  auto c = Catalog::Open(cfg->catalog);
  if (!c.ok()) return c.status();
  catalog_ = std::move(*c);
  Vault v(cfg, catalog_.get());
  auto n = v.RecoverInterrupted();
  if (!n.ok()) return n.status();
  if (*n > 0) LogWarn("vault: ", *n, " interrupted backup(s) marked failed");
  // The last success of each plan, from the catalog, so the metric survives restarts.
  auto all = catalog_->List();
  if (!all.ok()) return all.status();
  MutexLock l(&mu_);
  for (const BackupRecord& b : *all) {
    PlanStats& s = stats_[b.plan];
    if ((b.status == "ok" || b.status == "deleted") && s.last_success_ms == 0) {
      s.last_success_ms = b.finished_ms;
      s.last_duration_ms = b.finished_ms - b.started_ms;
      s.last_raw = b.raw_bytes;
      s.last_stored = b.stored_bytes;
    }
  }
  return absl::OkStatus();
}

absl::Status Scheduler::Start() {
  if (auto st = Open(); !st.ok()) return st;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void Scheduler::Stop() {
  {
    MutexLock l(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
  // Runs in flight stop their programs (and fail) rather than hold the shutdown.
  cancel_ = true;
  std::map<std::string, std::unique_ptr<Run>> runs;
  {
    MutexLock l(&mu_);
    runs.swap(runs_);
  }
  for (auto& [key, r] : runs) r->thread.join();
}

bool Scheduler::Launch(const std::string& key, std::function<void()> fn) {
  auto it = runs_.find(key);
  if (it != runs_.end()) {
    if (!it->second->done) return false;
    it->second->thread.join();
    runs_.erase(it);
  }
  auto run = std::make_unique<Run>();
  Run* r = run.get();
  r->thread = std::thread([this, r, fn = std::move(fn)] {
    {
      ScopedCancel scope(&cancel_);
      fn();
    }
    MutexLock l(&mu_);
    r->done = true;
    cv_.SignalAll();
  });
  runs_[key] = std::move(run);
  return true;
}

void Scheduler::WaitIdle() {
  MutexLock l(&mu_);
  for (;;) {
    bool idle = true;
    for (const auto& [key, r] : runs_) idle &= r->done;
    if (idle) return;
    cv_.Wait(&mu_);
  }
}

void Scheduler::Reload(std::shared_ptr<const VaultConfig> cfg) {
  MutexLock l(&mu_);
  cfg_ = std::move(cfg);
  for (auto& [name, s] : stats_) s.next_ms = -1;  // recomputed from the new schedules
  cv_.SignalAll();
}

bool Scheduler::RunNow(const std::string& plan) {
  MutexLock l(&mu_);
  if (!cfg_->plans.count(plan)) return false;
  manual_.emplace_back("backup", plan);
  cv_.SignalAll();
  return true;
}

bool Scheduler::RunDrill(const std::string& name) {
  MutexLock l(&mu_);
  if (!cfg_->drills.count(name)) return false;
  manual_.emplace_back("drill", name);
  cv_.SignalAll();
  return true;
}

void Scheduler::Loop() {
  MutexLock l(&mu_);
  while (!stop_) {
    mu_.Unlock();
    Tick(WallMs());
    mu_.Lock();
    if (stop_) break;
    // Schedules have minute resolution; a second's sleep keeps the start within a second.
    if (manual_.empty()) cv_.WaitFor(&mu_, std::chrono::seconds(1));
  }
}

int Scheduler::Tick(int64_t now_ms) {
  std::vector<std::pair<std::string, std::string>> due;  // plan, trigger
  std::vector<std::string> drills;
  {
    MutexLock l(&mu_);
    while (!manual_.empty()) {
      if (manual_.front().first == "drill") {
        drills.push_back(manual_.front().second);
      } else {
        due.emplace_back(manual_.front().second, "manual");
      }
      manual_.pop_front();
    }
    bool lead = !leader_ || leader_();
    for (const auto& [name, p] : cfg_->plans) {
      if (!p.schedule) continue;
      PlanStats& s = stats_[name];
      if (s.next_ms < 0) {
        s.next_ms = p.schedule->Next(now_ms / 1000) * 1000;
        continue;
      }
      if (now_ms < s.next_ms) continue;
      s.next_ms = p.schedule->Next(now_ms / 1000) * 1000;
      // The catalog keeps the schedule that made the backup, as it was then.
      if (lead) due.emplace_back(name, StrCat("schedule ", p.schedule_text));
    }
  }
  int started = 0;
  MutexLock l(&mu_);
  for (const auto& job : due) {
    const std::string& plan = job.first;
    if (Launch("backup:" + plan, [this, job] { RunOne(job.first, job.second); })) {
      ++started;
    } else {
      ++stats_[plan].skipped;
      LogWarn("vault: plan ", plan, " is still running; its ", job.second, " run is skipped");
    }
  }
  for (const std::string& d : drills) {
    if (Launch("drill:" + d, [this, d] { RunOneDrill(d); })) {
      ++started;
    } else {
      LogWarn("vault: drill ", d, " is still running; this run is skipped");
    }
  }
  return started;
}

void Scheduler::RunOneDrill(const std::string& name) {
  std::shared_ptr<const VaultConfig> cfg;
  {
    MutexLock l(&mu_);
    cfg = cfg_;
  }
  Vault v(cfg, catalog_.get());
  auto r = v.Drill(name);
  MutexLock l(&mu_);
  DrillStats& s = drills_[name];
  ++s.runs;
  s.last_ms = WallMs();
  if (!r.ok()) {
    s.passed = false;
    LogError("vault: drill ", name, ": ", r.status().message());
    return;
  }
  s.passed = (*r)["status"] == "passed";
  s.rto_ms = r->value("rto_ms", int64_t{-1});
  s.rpo_ms = r->value("rpo_ms", int64_t{-1});
  if (s.passed) {
    LogInfo("vault: drill ", name, " passed: RTO ", s.rto_ms, " ms, RPO ", s.rpo_ms, " ms");
  } else {
    LogError("vault: drill ", name, " failed: ", r->value("problems", nlohmann::json()).dump());
  }
}

std::string Scheduler::GetJson(int64_t id) {
  MutexLock l(&mu_);
  if (catalog_ == nullptr) return "";
  auto b = catalog_->Get(id);
  if (!b.ok()) return "";
  return BackupJson(*b).dump();
}

std::string Scheduler::ReportsJson(const std::string& kind, const std::string& name) {
  MutexLock l(&mu_);
  nlohmann::json out = nlohmann::json::array();
  if (catalog_ == nullptr) return out.dump();
  auto all = catalog_->Reports(kind, name, 50);
  if (!all.ok()) return nlohmann::json{{"error", all.status().message()}}.dump();
  for (const Report& r : *all) {
    auto detail = nlohmann::json::parse(r.detail, nullptr, false);
    nlohmann::json j = {{"id", r.id},
                        {"kind", r.kind},
                        {"name", r.name},
                        {"status", r.status},
                        {"started_ms", r.started_ms},
                        {"finished_ms", r.finished_ms}};
    if (detail.is_object()) j["detail"] = detail;
    out.push_back(std::move(j));
  }
  return out.dump();
}

void Scheduler::RunOne(const std::string& plan, const std::string& trigger) {
  std::shared_ptr<const VaultConfig> cfg;
  {
    MutexLock l(&mu_);
    cfg = cfg_;
  }
  Vault v(cfg, catalog_.get());
  auto r = v.Backup(plan, trigger);
  MutexLock l(&mu_);
  PlanStats& s = stats_[plan];
  if (!r.ok()) {
    ++s.failed;
    s.last_failed = true;
    LogError("vault: backup of plan ", plan, ": ", r.status().message());
    return;
  }
  if (r->status == "ok") {
    ++s.ok;
    s.last_failed = false;
    s.last_success_ms = r->finished_ms;
    s.last_duration_ms = r->finished_ms - r->started_ms;
    s.last_raw = r->raw_bytes;
    s.last_stored = r->stored_bytes;
    LogInfo("vault: backup ", r->id, " of plan ", plan, " (", trigger, "): ", r->raw_bytes,
            " bytes stored as ", r->stored_bytes, " in ", s.last_duration_ms, " ms");
  } else {
    ++s.failed;
    s.last_failed = true;
    LogError("vault: backup ", r->id, " of plan ", plan, " (", trigger, ") failed: ", r->error);
  }
}

void Scheduler::CollectMetrics(std::string* out) {
  using observe::AppendHeader;
  MutexLock l(&mu_);
  auto each = [&](const char* name, const char* type, const char* help, auto value)
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    AppendHeader(out, name, type, help);
    for (const auto& [plan, p] : cfg_->plans) {
      auto it = stats_.find(plan);
      PlanStats s = it == stats_.end() ? PlanStats{} : it->second;
      StrAppend(out, name, "{plan=\"", plan, "\"} ", value(s), "\n");
    }
  };
  each("bulwark_backup_last_success_timestamp_seconds", "gauge",
       "When the plan's last complete backup finished (0: never).",
       [](const PlanStats& s) { return s.last_success_ms / 1000; });
  each("bulwark_backup_last_duration_seconds", "gauge",
       "How long the plan's last complete backup took.",
       [](const PlanStats& s) { return static_cast<double>(s.last_duration_ms) / 1000.0; });
  each("bulwark_backup_last_raw_bytes", "gauge", "Original size of the last complete backup.",
       [](const PlanStats& s) { return s.last_raw; });
  each("bulwark_backup_last_stored_bytes", "gauge",
       "Stored (compressed, encrypted) size of the last complete backup.",
       [](const PlanStats& s) { return s.last_stored; });
  each("bulwark_backup_skipped_total", "counter",
       "Scheduled runs skipped because the plan's previous run was still going.",
       [](const PlanStats& s) { return s.skipped; });
  each("bulwark_backup_failing", "gauge",
       "1 when the plan's last backup failed (alert on it), 0 after a success.",
       [](const PlanStats& s) { return s.last_failed ? 1 : 0; });
  if (!cfg_->drills.empty()) {
    auto drill = [&](const char* name, const char* help, auto value)
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      AppendHeader(out, name, "gauge", help);
      for (const auto& [d, dc] : cfg_->drills) {
        auto it = drills_.find(d);
        DrillStats s = it == drills_.end() ? DrillStats{} : it->second;
        StrAppend(out, name, "{drill=\"", d, "\"} ", value(s), "\n");
      }
    };
    drill("bulwark_drill_last_timestamp_seconds", "When the drill last ran (0: not since start).",
          [](const DrillStats& s) { return s.last_ms / 1000; });
    drill("bulwark_drill_last_passed", "1 when the drill's last run passed.",
          [](const DrillStats& s) { return s.passed ? 1 : 0; });
    drill("bulwark_drill_last_rto_seconds", "The RTO the drill's last run measured (-1: none).",
          [](const DrillStats& s) {
            return s.rto_ms < 0 ? -1.0 : static_cast<double>(s.rto_ms) / 1000.0;
          });
  }
  AppendHeader(out, "bulwark_backup_runs_total", "counter",
               "Backups run by this process, by plan and result.");
  for (const auto& [plan, p] : cfg_->plans) {
    auto it = stats_.find(plan);
    PlanStats s = it == stats_.end() ? PlanStats{} : it->second;
    StrAppend(out, "bulwark_backup_runs_total{plan=\"", plan, "\",result=\"ok\"} ", s.ok, "\n");
    StrAppend(out, "bulwark_backup_runs_total{plan=\"", plan, "\",result=\"failed\"} ", s.failed,
              "\n");
  }
}

std::string Scheduler::ListJson(const std::string& plan) {
  MutexLock l(&mu_);
  nlohmann::json out = nlohmann::json::array();
  if (catalog_ == nullptr) return out.dump();
  auto all = catalog_->List(plan);
  if (!all.ok()) return nlohmann::json{{"error", all.status().message()}}.dump();
  for (const BackupRecord& b : *all) out.push_back(BackupJson(b));
  return out.dump();
}

}  // namespace bulwark::vault
