// Reads the Prometheus text exposition format (0.0.4): what bulwark's own /metrics renders and
// what the targets it scrapes (node, postgres, redis exporters) serve.
//   # HELP / # TYPE lines and other comments are skipped;
//   name{label="value",...} value [timestamp_ms]
// Values are Go floats (NaN, +Inf, -Inf, exponents); label values use \\, \" and \n escapes.
// Limits keep a broken or hostile target cheap: lines up to 64 KiB, 64 labels per sample and a
// caller-chosen sample limit (Prometheus's sample_limit): over it, the scrape fails as a whole.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "observe/promql/series_notation.h"

namespace bulwark::observe {

inline constexpr size_t kMaxExpositionLine = 64 * 1024;
inline constexpr size_t kMaxExpositionLabels = 64;

struct ExpositionSample {
  observe::Labels labels;  // sorted, "__name__" included; empty values dropped
  double value = 0;
  std::optional<int64_t> timestamp_ms;
};

// Calls `sample` for every sample in `text`. An error names the line ("line 12: ...").
absl::Status ParseExposition(std::string_view text, size_t sample_limit,
                             const std::function<void(ExpositionSample&)>& sample);

}  // namespace bulwark::observe
