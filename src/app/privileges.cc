#include "app/privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/strings.h"

namespace bulwark {

absl::StatusOr<RunAs> LookUpRunAs(const std::string& user, const std::string& group_name) {
  RunAs out;
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr)
    return absl::NotFoundError(StrCat("user: no user \"", user, "\" on this system"));
  out.user = user;
  out.uid = pw.pw_uid;
  out.gid = pw.pw_gid;
  out.home = pw.pw_dir != nullptr ? pw.pw_dir : "";
  if (!group_name.empty()) {
    struct group gr {};
    struct group* g = nullptr;
    if (getgrnam_r(group_name.c_str(), &gr, buf.data(), buf.size(), &g) != 0 || g == nullptr)
      return absl::NotFoundError(StrCat("group: no group \"", group_name, "\" on this system"));
    out.gid = gr.gr_gid;
  }
  out.group = group_name;
  return out;
}

absl::Status DropPrivileges(const RunAs& to, const std::vector<std::string>& paths) {
  if (geteuid() != 0) return absl::FailedPreconditionError("user: only root can change user");
  for (const std::string& p : paths) {
    if (chown(p.c_str(), to.uid, to.gid) != 0 && errno != ENOENT)
      return absl::InternalError(
          StrCat("user: cannot give ", p, " to ", to.user, ": ", strerror(errno)));
  }
  // Capabilities are per thread: this one (the control thread, which binds listeners on reload)
  // keeps its permitted set across setuid, the others lose everything.
  if (prctl(PR_SET_KEEPCAPS, 1) != 0)
    return absl::InternalError(StrCat("user: PR_SET_KEEPCAPS: ", strerror(errno)));
  if (initgroups(to.user.c_str(), to.gid) != 0)
    return absl::InternalError(StrCat("user: initgroups: ", strerror(errno)));
  if (setgid(to.gid) != 0) return absl::InternalError(StrCat("user: setgid: ", strerror(errno)));
  if (setuid(to.uid) != 0) return absl::InternalError(StrCat("user: setuid: ", strerror(errno)));
  if (setuid(0) == 0) return absl::InternalError("user: could become root again");
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  data[0].effective = data[0].permitted = 1u << CAP_NET_BIND_SERVICE;
  if (syscall(SYS_capset, &header, data) != 0)
    return absl::InternalError(StrCat("user: capset: ", strerror(errno)));
  prctl(PR_SET_KEEPCAPS, 0);
  return absl::OkStatus();
}

}  // namespace bulwark
