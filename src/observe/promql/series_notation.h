// The series notation of Prometheus's rule unit tests (promtool test rules): a series is
// written `name{label="value", ...}` and its samples in the "expanding notation":
//   a          one sample
//   _          one missing sample (a scrape that returned nothing)
//   stale      a staleness marker
//   axN        a, N+1 times
//   a+bxN      a, a+b, ..., a+N·b (N+1 samples); a-bxN counts down
//   _xN        N missing samples
// Numbers are decimal (with exponent), Inf and NaN with an optional sign.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "observe/model/labels.h"

namespace bulwark::observe::promql {

struct SeriesValue {
  enum class Kind : uint8_t { kValue, kMissing, kStale };
  Kind kind = Kind::kValue;
  double value = 0;
};

// At most this many samples from one values string (a typo like 1+1x100000000 is an error,
// not an allocation).
inline constexpr size_t kMaxSeriesValues = 1000000;

absl::StatusOr<std::vector<SeriesValue>> ParseSeriesValues(std::string_view text);
absl::StatusOr<Labels> ParseSeriesDesc(std::string_view text);

}  // namespace bulwark::observe::promql
