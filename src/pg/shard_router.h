// Which shard a query goes to, and the query with its monthly tables named: a pure function of
// the classification, the bind parameters and the client's session tenant.
//
// The tenant comes from, in this order: a /* tenant_id: N */ comment, the query's own
// `tenant_id = value` (WHERE or INSERT values, constants or $n parameters; every one must name
// the same tenant), the session's `SET bulwark.tenant_id = N`. Without one, the query is
// refused (or, when allowed, sent to every shard). A table split by month (`users` ->
// `users_2025_01`) is renamed from its date column's value in the same query.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "pg/classify.h"
#include "pg/sharding.h"

namespace bulwark::pg {

struct ShardRoute {
  int shard = -1;        // index into ShardingConfig::databases; -1 with scatter
  bool scatter = false;  // no tenant, and scatter-gather is allowed
  std::string tenant;
  std::string sql;  // the query with monthly tables renamed; empty when unchanged
};

// `params`: the Bind's parameter values as text (nullopt: NULL or not known).
absl::StatusOr<ShardRoute> RouteShard(const ShardingConfig& cfg, const Classification& c,
                                      std::string_view sql,
                                      const std::vector<std::optional<std::string>>& params,
                                      const std::optional<std::string>& session_tenant,
                                      bool allow_scatter);

// The options the classifier needs for a shard map (its key column and monthly date columns).
ClassifyOptions ShardClassifyOptions(const ShardingConfig& cfg, ClassifyOptions base);

}  // namespace bulwark::pg
