// bulwark's state directory and the admin API token kept in it.
//
// The state directory holds what bulwark writes for itself: the generated admin token, the
// audit log and, by default, the vault's catalog. It is `state_dir` when the config sets one,
// else $STATE_DIRECTORY (what systemd's StateDirectory= sets), else /var/lib/bulwark for root
// and $XDG_STATE_HOME/bulwark (~/.local/state/bulwark) for anyone else. It is kept at 0700
// whether or not bulwark created it.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "app/config.h"

namespace bulwark {

// The state directory `cfg` names or implies (not created).
std::string StateDir(const Config& cfg);

// Creates the state directory if needed (parents included) and sets it to 0700.
absl::Status PrepareStateDir(const std::string& dir);

struct AdminToken {
  std::string token;
  std::string id;       // "t-" + 12 hex digits of the token's SHA-256: names it in logs, never reveals it
  std::string path;     // the file it lives in ("" when the config sets it)
  bool generated = false;  // made by this call
};

// Where the generated token lives in `state_dir`.
std::string AdminTokenPath(const std::string& state_dir);

// The admin token: the configured one, else the one in the state directory, generated there
// (32 random bytes, hex, in a 0600 file written atomically) when there is none yet.
absl::StatusOr<AdminToken> LoadOrCreateAdminToken(const Config& cfg, const std::string& state_dir);

// For the CLI: the configured token or the one a running bulwark generated; NotFound when
// neither exists (nothing is generated).
absl::StatusOr<AdminToken> FindAdminToken(const Config& cfg);

// The id of a token (see AdminToken::id).
std::string TokenId(std::string_view token);

}  // namespace bulwark
