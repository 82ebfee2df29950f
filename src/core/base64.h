// Standard base64 (RFC 4648 section 4, with padding), for SCRAM and signed webhook URLs.
// (JWTs use the URL alphabet: security/jwt.h.)
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulwark {

std::string Base64Encode(std::string_view in);
absl::StatusOr<std::string> Base64Decode(std::string_view in);

}  // namespace bulwark
