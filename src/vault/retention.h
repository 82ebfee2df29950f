// Which backups a plan's retention policy lets go. Precedent: restic's `forget --keep-last
// --keep-within --keep-daily --keep-weekly --keep-monthly` — a backup stays when any rule
// keeps it; with no rule at all everything stays.
#pragma once

#include <cstdint>
#include <vector>

#include "vault/catalog.h"
#include "vault/config.h"

namespace bulwark::vault {

// The ids of the plan's complete backups ("ok") to delete at `now_ms`. Never the newest complete
// backup, and never the newest one that passed verification, whatever the rules say. Days,
// weeks (ISO, from Monday) and months are UTC and counted by the backups' start times; the
// newest backup of a period stands for it.
std::vector<int64_t> Expired(const std::vector<BackupRecord>& backups, const RetentionConfig& p,
                             int64_t now_ms);

}  // namespace bulwark::vault
