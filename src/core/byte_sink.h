// Where bytes go: an archive's storage, a program's stdin, a digest. The one interface the
// streaming pipelines (core/process, the vault's archive and storage) share.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace bulwark {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual absl::Status Write(std::string_view data) = 0;
};

}  // namespace bulwark
