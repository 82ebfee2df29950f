#include "app/state.h"

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/files.h"
#include "core/strings.h"

namespace bulwark {

std::string StateDir(const Config& cfg) {
  if (!cfg.state_dir.empty()) return cfg.state_dir;
  if (const char* sd = std::getenv("STATE_DIRECTORY"); sd != nullptr && *sd != '\0') {
    std::string s(sd);
    return s.substr(0, s.find(':'));  // systemd lists several when several are configured
  }
  if (geteuid() == 0) return "/var/lib/bulwark";
  if (const char* x = std::getenv("XDG_STATE_HOME"); x != nullptr && *x == '/') {
    return StrCat(x, "/bulwark");
  }
  const char* home = std::getenv("HOME");
  return StrCat(home != nullptr && *home == '/' ? home : "/tmp", "/.local/state/bulwark");
}

absl::Status PrepareStateDir(const std::string& dir) {
  absl::Status s = MakeParentDirs(dir + "/x");
  if (!s.ok()) return s;
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        StrCat("state directory ", dir, ": ", errno != 0 ? strerror(errno) : "not a directory",
               " (set state_dir)"));
  }
  if ((st.st_mode & 07777) != 0700 && chmod(dir.c_str(), 0700) != 0) {
    return absl::PermissionDeniedError(
        StrCat("state directory ", dir, ": cannot set mode 0700: ", strerror(errno)));
  }
  return absl::OkStatus();
}

std::string AdminTokenPath(const std::string& state_dir) { return state_dir + "/admin.token"; }

std::string TokenId(std::string_view token) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), md);
  return "t-" + HexLower(md, 6);
}

namespace {

absl::StatusOr<AdminToken> ReadTokenFile(const std::string& path) {
  auto text = ReadFileToString(path, 4096);
  if (!text.ok()) return text.status();
  AdminToken t;
  t.token = std::string(Trim(*text));
  t.path = path;
  if (t.token.size() < 16) {
    return absl::FailedPreconditionError(
        StrCat(path, ": the admin token must be at least 16 characters (delete the file to have "
                     "a new one generated)"));
  }
  t.id = TokenId(t.token);
  return t;
}

}  // namespace

absl::StatusOr<AdminToken> LoadOrCreateAdminToken(const Config& cfg,
                                                  const std::string& state_dir) {
  if (!cfg.admin.token.empty()) {
    return AdminToken{cfg.admin.token, TokenId(cfg.admin.token), "", false};
  }
  std::string path = AdminTokenPath(state_dir);
  if (access(path.c_str(), F_OK) == 0) {
    // Whoever made it, only bulwark's user may read it.
    chmod(path.c_str(), 0600);
    return ReadTokenFile(path);
  }
  unsigned char raw[32];
  if (getrandom(raw, sizeof(raw), 0) != static_cast<ssize_t>(sizeof(raw))) {
    return absl::InternalError(StrCat("getrandom: ", strerror(errno)));
  }
  AdminToken t;
  t.token = HexLower(raw, sizeof(raw));
  t.id = TokenId(t.token);
  t.path = path;
  t.generated = true;
  // Written whole to a temporary file, then linked into place: a second bulwark starting at
  // the same moment either wins or reads the winner's complete file.
  std::string tmp = StrCat(path, ".", getpid(), ".tmp");
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(StrCat("cannot write ", tmp, ": ", strerror(errno)));
  std::string line = t.token + "\n";
  bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
            fchmod(fd, 0600) == 0 && fsync(fd) == 0;
  close(fd);
  if (!ok) {
    unlink(tmp.c_str());
    return absl::UnavailableError(StrCat("cannot write ", tmp));
  }
  int rc = link(tmp.c_str(), path.c_str());
  int err = errno;
  unlink(tmp.c_str());
  if (rc != 0) {
    if (err == EEXIST) return ReadTokenFile(path);
    return absl::UnavailableError(StrCat("cannot create ", path, ": ", strerror(err)));
  }
  return t;
}

absl::StatusOr<AdminToken> FindAdminToken(const Config& cfg) {
  if (!cfg.admin.token.empty()) {
    return AdminToken{cfg.admin.token, TokenId(cfg.admin.token), "", false};
  }
  std::string path = AdminTokenPath(StateDir(cfg));
  auto t = ReadTokenFile(path);
  if (!t.ok() && absl::IsNotFound(t.status())) {
    return absl::NotFoundError(StrCat("no admin token: ", path,
                                      " does not exist (bulwark serve creates it at first start)"));
  }
  return t;
}

}  // namespace bulwark
