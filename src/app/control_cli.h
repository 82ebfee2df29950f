// `bulwark reload` and `bulwark status`: talk to a running bulwark through its admin API, found
// from its configuration file (admin.listen and the admin token), as `nginx -s reload` finds
// its master through the pid file the configuration names.
#pragma once

#include <string>

namespace bulwark {

// Validates the file first (as `check-config`); then asks the running bulwark to reload it.
// Exit codes: 0 reloaded, 1 refused (the errors are printed), 3 no bulwark answers.
int RunReloadCommand(const std::string& config_path);

// Readiness, configuration generation and each upstream's servers. Exit codes as LSB init
// scripts' `status`: 0 running and ready, 1 running but not ready, 3 not running.
int RunStatusCommand(const std::string& config_path, bool json);

}  // namespace bulwark
