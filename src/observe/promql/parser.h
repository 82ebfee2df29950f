// Parses PromQL as Prometheus 2.42 does: the same grammar, operator precedence (^ binds
// tightest and to the right; unary minus binds like *; then * / % atan2; + -; comparisons;
// and unless; or) and the same type checks, with errors that say where
// ("1:14: parse error: ..."). Limits keep hostile input cheap: a query is at most 64 KiB and
// nests at most 128 levels.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "observe/promql/ast.h"

namespace bulwark::observe::promql {

inline constexpr size_t kMaxQueryBytes = 64 * 1024;
inline constexpr int kMaxDepth = 128;

absl::StatusOr<std::unique_ptr<Expr>> Parse(std::string_view query);

}  // namespace bulwark::observe::promql
