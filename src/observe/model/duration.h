// Prometheus durations (common/model's ParseDuration and Duration.String), as PromQL, rule
// files, Alertmanager and the observe: block write them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulwark::observe {

// "1h30m", "5m", "250ms", "2d", "1w", "1y" (365 d); units in decreasing order, each at most
// once.
absl::StatusOr<int64_t> ParseDurationMs(std::string_view text);
// The inverse, in the same units ("1h30m", "0s").
std::string FormatDurationMs(int64_t ms);
// Milliseconds in one unit ("ms", "s", "m", "h", "d", "w", "y"); 0 for anything else.
int64_t DurationUnitMs(std::string_view unit);

}  // namespace bulwark::observe
