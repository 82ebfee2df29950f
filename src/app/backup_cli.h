// `bulwark backup run|list|verify`: the vault from the command line (cron-free operation,
// scripts, drills).
#pragma once

#include <string>

namespace bulwark {

struct BackupCommand {
  std::string config;
  std::string action;  // run | list | verify | cat
  std::string plan;    // run: the plan; list: a filter
  int64_t id = 0;      // verify, cat
  bool json = false;
};

// Returns the process exit code: 0 done, 1 the backup or check failed, 2 usage/config error.
int RunBackupCommand(const BackupCommand& cmd);

}  // namespace bulwark
