// Parsers for the value syntaxes operators already write in nginx configs:
// durations ("500ms", "30s", "1h 30m"), sizes ("10M", "512k") and rates ("10r/s", "600r/m").
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulwark {

// Returns milliseconds. Units as nginx's ngx_parse_time: ms s m h d w (M = 30d, y = 365d).
// A bare number means seconds, as it does in nginx. Several parts may be combined: "1m 30s".
absl::StatusOr<int64_t> ParseDurationMs(std::string_view text);

// Returns bytes. Suffixes as nginx's ngx_parse_size: k/K, m/M, g/G (powers of 1024).
absl::StatusOr<int64_t> ParseSizeBytes(std::string_view text);

// Returns the rate in thousandths of a request per second, the unit nginx's limit_req keeps
// internally (so "1r/m" is exact). Accepts "Nr/s" and "Nr/m".
absl::StatusOr<int64_t> ParseRateMilli(std::string_view text);

// Formats milliseconds back the way a user would write them ("1500ms", "30s", "5m").
std::string FormatDurationMs(int64_t ms);

}  // namespace bulwark
