// The tenant shard map, in the shape of the AlkaidSYS sharding.yml (ShardingSphere's): a list of
// databases, and per table a database strategy (`algorithm_expression:
// db_tenant_${tenant_id % 8}` on a `sharding_column`) and monthly tables from a date column
// (`users` -> `users_2025_01` by `created_at`, between `start_date` and `end_date`).
//
//   sharding:
//     databases: [db_tenant_0000, ..., db_tenant_0007]
//     tables:
//       users:
//         sharding_type: range
//         sharding_column: created_at
//         sharding_rules:
//           - {date_format: "%Y_%m", table_name: "users_{yyyy_MM}", start_date: "2025_01",
//           end_date: "2030_12"}
//         database_strategy: {type: standard, sharding_column: tenant_id,
//                             algorithm_expression: "db_tenant_${tenant_id % 8}"}
//
// An expression's result names a database of the list exactly, or by its number when the list
// pads numbers with zeros (the AlkaidSYS `db_tenant_${tenant_id % 8}` gives `db_tenant_3`, its
// list says `db_tenant_0003`): bulwark maps one to the other and says so at load.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config_reader.h"

namespace bulwark::pg {

// ShardingSphere's inline expression, the forms the AlkaidSYS file uses: text with `${column}` and
// `${column % N}` (N > 0); the column's value must be an integer for `%`.
class ShardExpression {
 public:
  static absl::StatusOr<ShardExpression> Parse(std::string_view text);
  const std::string& column() const { return column_; }
  absl::StatusOr<std::string> Eval(std::string_view value) const;
  const std::string& text() const { return text_; }

 private:
  std::string text_, prefix_, suffix_, column_;
  int64_t modulo_ = 0;  // 0: the value as is
};

struct MonthlyTables {
  std::string column;         // created_at
  std::string table_pattern;  // users_{yyyy_MM}
  int start_year = 0, start_month = 0, end_year = 0, end_month = 0;
  // The table for a date/timestamp literal ("2025-03-14", "2025-03-14 10:00:00+00") or an epoch
  // number; an error outside [start, end] or for an unreadable date.
  absl::StatusOr<std::string> TableFor(std::string_view value) const;
};

struct ShardedTable {
  std::string name;
  std::optional<ShardExpression> database;  // the tenant -> database rule
  std::optional<MonthlyTables> monthly;
};

struct ShardingConfig {
  std::vector<std::string> databases;
  std::map<std::string, ShardedTable> tables;
  std::string shard_column = "tenant_id";  // the database strategies' column
  // A database strategy's result, resolved against the list (exact or by number).
  absl::StatusOr<std::string> DatabaseFor(const ShardedTable& t, std::string_view key) const;
  absl::StatusOr<std::string> DatabaseFor(std::string_view key) const;  // any table's rule
  std::vector<std::string> notes;  // what load decided (e.g. zero-padded names mapped)
};

// Reads the `sharding:` mapping (the AlkaidSYS file as it is: other top-level keys of that file,
// such as its MySQL `database:` block, are not this reader's business).
void LoadSharding(ConfigContext& ctx, const YAML::Node& node, ShardingConfig* out);

}  // namespace bulwark::pg
