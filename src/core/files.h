// Reading whole files, with a size limit so a wrong path (a device, a huge log) fails clearly.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace bulwark {

// The file's bytes; NotFound when it cannot be opened, InvalidArgument beyond `max_bytes`.
absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes);

// `mkdir -p` for the directories above `path` (new ones get mode 0700).
absl::Status MakeParentDirs(const std::string& path);

}  // namespace bulwark
