// `bulwark backup run|list|verify|cat`, `bulwark restore`, `bulwark drill`, `bulwark plan
// run|status`: the vault from the command line (cron-free operation, scripts, drills).
#pragma once

#include <string>

namespace bulwark {

struct BackupCommand {
  std::string config;
  std::string action;  // run | list | verify | cat | restore | drill | plan-run | plan-status
  std::string plan;    // run: the plan; list: a filter; drill, plan-*: the drill / recovery plan
  int64_t id = 0;      // verify, cat, restore
  std::string target;  // restore
  bool dry_run = false;
  bool json = false;
};

// Returns the process exit code: 0 done, 1 the backup or check failed, 2 usage/config error.
int RunBackupCommand(const BackupCommand& cmd);

}  // namespace bulwark
