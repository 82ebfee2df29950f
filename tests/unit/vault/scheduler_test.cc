#include "vault/scheduler.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "core/strings.h"

namespace bulwark::vault {
namespace {

constexpr int64_t kNov30 = 1796004000000;  // 2026-11-30T02:00:00Z

std::shared_ptr<VaultConfig> Config(const std::string& dir) {
  auto cfg = std::make_shared<VaultConfig>();
  cfg->enabled = true;
  cfg->catalog = dir + "/catalog.db";
  StorageConfig s;
  s.name = "disk";
  s.path = dir + "/store";
  cfg->storage["disk"] = s;
  PlanConfig p;
  p.name = "nightly";
  p.source.type = "command";
  p.source.command = {"sh", "-c", "echo backup"};
  p.encrypt = false;
  p.storage = {"disk"};
  p.schedule_text = "0 2 * * *";
  p.schedule = *CronSchedule::Parse(p.schedule_text);
  cfg->plans["nightly"] = p;
  PlanConfig broken = p;
  broken.name = "broken";
  broken.source.command = {"sh", "-c", "exit 4"};
  broken.schedule.reset();
  cfg->plans["broken"] = broken;
  return cfg;
}

std::string TempDir() {
  char tmpl[] = "/tmp/bulwark-sched-XXXXXX";
  return mkdtemp(tmpl);
}

TEST(Scheduler, RunsWhenDueOnlyOnTheLeaderAndNeverCatchesUp) {
  std::string dir = TempDir();
  bool lead = true;
  Scheduler s(Config(dir), [&] { return lead; });
  ASSERT_TRUE(s.OpenForTest().ok());
  EXPECT_EQ(s.Tick(kNov30 - 30000), 0);  // learns the next run: 02:00
  EXPECT_EQ(s.Tick(kNov30 - 1000), 0);
  EXPECT_EQ(s.Tick(kNov30), 1);
  s.WaitIdle();
  EXPECT_EQ(s.Tick(kNov30 + 30000), 0);  // once per scheduled minute
  lead = false;                          // another instance holds the lease
  EXPECT_EQ(s.Tick(kNov30 + 86400000), 0);
  lead = true;
  // Down for five days: one run now, not five (Vixie cron makes nothing up).
  EXPECT_EQ(s.Tick(kNov30 + 6 * 86400000 + 1800000), 1);
  s.WaitIdle();
  EXPECT_EQ(s.Tick(kNov30 + 6 * 86400000 + 1860000), 0);
  // A manual run of a failing plan raises the alert gauge.
  EXPECT_TRUE(s.RunNow("broken"));
  EXPECT_FALSE(s.RunNow("nope"));
  EXPECT_EQ(s.Tick(kNov30 + 6 * 86400000 + 1900000), 1);
  s.WaitIdle();
  std::string m;
  s.CollectMetrics(&m);
  EXPECT_NE(m.find("bulwark_backup_runs_total{plan=\"nightly\",result=\"ok\"} 2"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("bulwark_backup_runs_total{plan=\"broken\",result=\"failed\"} 1"),
            std::string::npos);
  EXPECT_NE(m.find("bulwark_backup_failing{plan=\"broken\"} 1"), std::string::npos);
  EXPECT_NE(m.find("bulwark_backup_failing{plan=\"nightly\"} 0"), std::string::npos);
  EXPECT_EQ(m.find("bulwark_backup_last_success_timestamp_seconds{plan=\"nightly\"} 0\n"),
            std::string::npos);
  EXPECT_NE(m.find("bulwark_backup_last_raw_bytes{plan=\"nightly\"} 7"), std::string::npos);
  std::string list = s.ListJson("");
  EXPECT_NE(list.find("\"trigger\":\"schedule 0 2 * * *\""), std::string::npos);  // which one
  EXPECT_NE(list.find("\"trigger\":\"manual\""), std::string::npos);

  // A new process reads the last success back from the catalog.
  Scheduler again(Config(dir), nullptr);
  ASSERT_TRUE(again.OpenForTest().ok());
  std::string m2;
  again.CollectMetrics(&m2);
  EXPECT_NE(m2.find("bulwark_backup_last_raw_bytes{plan=\"nightly\"} 7"), std::string::npos) << m2;
  (void)system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace bulwark::vault
