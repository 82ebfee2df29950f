// Scatter-gather for queries without a shard key (when `routing.allow_scatter` says so): the
// same SELECT runs on every shard and bulwark merges the answers the way ShardingSphere does —
// rows concatenated, count/sum added, min/max compared, avg recomputed from each shard's sum
// and count, GROUP BY groups merged, then ORDER BY, OFFSET and LIMIT applied to the whole.
//
// Planning is a pure function of the SQL text (PostgreSQL's parser, libpg_query); merging is a
// pure function of the shards' RowDescriptions and rows (text format). Both refuse what they
// cannot merge exactly, with the reason.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "pg/protocol.h"

namespace bulwark::pg {

enum class Aggregate { kNone, kCount, kSum, kMin, kMax, kAvg };

struct ScatterPlan {
  std::string sql;  // what every shard runs: avg() split, LIMIT widened by OFFSET, OFFSET 0
  std::vector<Aggregate> columns;
  std::vector<int> group_by;  // target columns that form the group key
  struct Sort {
    int column = 0;
    bool desc = false;
    bool nulls_first = false;  // PostgreSQL's default: NULLS LAST ascending, FIRST descending
  };
  std::vector<Sort> order_by;
  std::optional<int64_t> limit;
  int64_t offset = 0;
  bool aggregates = false;
};

absl::StatusOr<ScatterPlan> PlanScatter(std::string_view sql);

using Row = std::vector<std::optional<std::string>>;

// The merged answer: the RowDescription's body (as the client sees the columns) and the rows,
// in order.
struct ScatterResult {
  std::string row_description;
  std::vector<uint32_t> types;
  std::vector<Row> rows;
};

class ScatterMerger {
 public:
  explicit ScatterMerger(const ScatterPlan& plan) : plan_(plan) {}
  // One shard's answer. Every shard must describe the same columns.
  absl::Status Add(const std::vector<FieldDescription>& fields, std::vector<Row> rows);
  absl::StatusOr<ScatterResult> Finish();

 private:
  const ScatterPlan& plan_;
  std::vector<FieldDescription> fields_;
  std::vector<std::string> names_;
  bool have_fields_ = false;
  std::vector<Row> rows_;
};

// Decimal arithmetic on PostgreSQL's text forms, exact (exposed for tests).
std::string DecimalAdd(std::string_view a, std::string_view b);
// a / b rounded half away from zero to PostgreSQL's numeric division scale (select_div_scale).
std::string NumericDivide(std::string_view a, std::string_view b);
// <0, 0, >0 comparing two values of a type (numbers numerically, everything else bytewise).
int CompareValues(uint32_t type_oid, std::string_view a, std::string_view b);

}  // namespace bulwark::pg
