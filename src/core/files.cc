#include "core/files.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/strings.h"

namespace bulwark {

absl::StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(path, ": cannot open: ", std::strerror(errno)));
  std::string out;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    out.append(buf, static_cast<size_t>(in.gcount()));
    if (out.size() > max_bytes) {
      return absl::InvalidArgumentError(StrCat(path, ": larger than ", max_bytes, " bytes"));
    }
  }
  return out;
}

}  // namespace bulwark
