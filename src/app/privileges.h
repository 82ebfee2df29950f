// Running as an unprivileged user after binding (nginx's `user` directive): a bulwark started as
// root binds its listeners, opens its logs, then becomes `user` and keeps one capability,
// CAP_NET_BIND_SERVICE, so a reload can still add a listener on a port below 1024.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulwark {

struct RunAs {
  unsigned uid = 0, gid = 0;
  std::string user, group;
  std::string home;
};

// Looks the user and group up ("" group: the user's primary group). An error naming the one
// that does not exist.
absl::StatusOr<RunAs> LookUpRunAs(const std::string& user, const std::string& group);

// Gives `paths` (files and directories bulwark made as root and keeps writing: the state
// directory and what is in it, log files) to the user, then sets the supplementary groups, the
// group and the user. Every thread changes with the process (glibc's setxid). Only for root.
absl::Status DropPrivileges(const RunAs& to, const std::vector<std::string>& paths);

}  // namespace bulwark
