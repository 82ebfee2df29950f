#include "pg/shard_router.h"

#include <algorithm>

#include "core/strings.h"

namespace bulwark::pg {

ClassifyOptions ShardClassifyOptions(const ShardingConfig& cfg, ClassifyOptions base) {
  base.shard_column = cfg.shard_column;
  base.value_columns.clear();
  for (const auto& [name, t] : cfg.tables) {
    if (t.monthly && std::find(base.value_columns.begin(), base.value_columns.end(),
                               t.monthly->column) == base.value_columns.end()) {
      base.value_columns.push_back(t.monthly->column);
    }
  }
  return base;
}

namespace {

std::optional<std::string> Resolve(const ShardKeyRef& r,
                                   const std::vector<std::optional<std::string>>& params) {
  if (r.literal) return r.literal;
  if (r.param >= 1 && static_cast<size_t>(r.param) <= params.size()) return params[r.param - 1];
  return std::nullopt;
}

// Two spellings of one tenant: the same text, or the same integer ('007' and 7).
bool SameTenant(const std::string& a, const std::string& b) {
  if (a == b) return true;
  int64_t ia = 0, ib = 0;
  return ParseInt(a, &ia) && ParseInt(b, &ib) && ia == ib;
}

}  // namespace

absl::StatusOr<ShardRoute> RouteShard(const ShardingConfig& cfg, const Classification& c,
                                      std::string_view sql,
                                      const std::vector<std::optional<std::string>>& params,
                                      const std::optional<std::string>& session_tenant,
                                      bool allow_scatter) {
  const std::string& col = cfg.shard_column;
  if (c.assigns_shard_key) {
    // The row would belong to another tenant, maybe on another shard: ShardingSphere and Citus
    // refuse to update the sharding column too. Delete and insert instead.
    return absl::FailedPreconditionError(
        StrCat("the query assigns the sharding column ", col,
               "; a row cannot move between tenants (delete it and insert it again)"));
  }
  // The tenant the statement itself names (every `tenant_id = ...` must agree).
  std::optional<std::string> own;
  for (const ShardKeyRef& r : c.keys) {
    auto v = Resolve(r, params);
    if (!v) {
      return absl::InvalidArgumentError(r.param > 0
                                            ? StrCat(col, " = $", r.param, " has no value to route by")
                                            : StrCat(col, " has no value to route by"));
    }
    if (own && !SameTenant(*own, *v)) {
      return absl::InvalidArgumentError(StrCat("the query names several tenants (", col, " ",
                                               *own, " and ", *v,
                                               "); one query may touch one shard"));
    }
    own = v;
  }
  // A hint or the session's tenant that says otherwise is refused, not overruled: either way
  // the statement would read or write another tenant's rows on the wrong shard.
  if (own && c.hint_tenant && !SameTenant(*own, *c.hint_tenant)) {
    return absl::InvalidArgumentError(StrCat("the query names ", col, " ", *own,
                                             " but its /* ", col, ": ", *c.hint_tenant,
                                             " */ comment another tenant"));
  }
  if (own && !c.hint_tenant && session_tenant && !SameTenant(*own, *session_tenant)) {
    return absl::InvalidArgumentError(StrCat("the query names ", col, " ", *own,
                                             " but the session's bulwark.", col, " is ",
                                             *session_tenant));
  }
  std::optional<std::string> key = c.hint_tenant ? c.hint_tenant : own ? own : session_tenant;
  ShardRoute out;
  if (!key) {
    if (allow_scatter) {
      out.scatter = true;
      return out;
    }
    return absl::FailedPreconditionError(
        StrCat("no shard key: name the tenant with `", col, " = ...` in the query, `SET bulwark.",
               col, " = ...` for the session, or a /* ", col, ": N */ comment"));
  }
  auto db = cfg.DatabaseFor(*key);
  if (!db.ok()) return db.status();
  auto it = std::find(cfg.databases.begin(), cfg.databases.end(), *db);
  if (it == cfg.databases.end()) {
    return absl::InternalError(StrCat("shard ", *db, " is not in the database list"));
  }
  out.shard = static_cast<int>(it - cfg.databases.begin());
  out.tenant = *key;
  // Monthly tables, renamed from the last occurrence back so earlier offsets stay valid.
  std::vector<std::pair<int, std::pair<size_t, std::string>>> renames;
  for (const TableRef& t : c.table_refs) {
    auto tit = cfg.tables.find(t.name);
    if (tit == cfg.tables.end() || !tit->second.monthly) continue;
    const MonthlyTables& m = *tit->second.monthly;
    std::optional<std::string> date;
    auto vit = c.values.find(m.column);
    if (vit != c.values.end()) {
      for (const ShardKeyRef& r : vit->second) {
        auto v = Resolve(r, params);
        if (v && date && *date != *v) {
          auto a = m.TableFor(*date), b = m.TableFor(*v);
          if (!a.ok() || !b.ok() || *a != *b) {
            return absl::InvalidArgumentError(StrCat("table ", t.name,
                                                     " is split by month: the "
                                                     "query's ",
                                                     m.column, " values fall in different months"));
          }
        }
        if (v) date = v;
      }
    }
    if (!date) {
      return absl::FailedPreconditionError(StrCat("table ", t.name,
                                                  " is split by month: the query needs `", m.column,
                                                  " = <date>` to name its table"));
    }
    auto table = m.TableFor(*date);
    if (!table.ok()) return table.status();
    if (t.location < 0 || static_cast<size_t>(t.location) + t.name.size() > sql.size() ||
        sql.substr(static_cast<size_t>(t.location), t.name.size()) != t.name) {
      return absl::InvalidArgumentError(StrCat("table ", t.name,
                                               " is split by month; write its name unquoted "
                                               "and without a schema"));
    }
    renames.push_back({t.location, {t.name.size(), *table}});
  }
  if (!renames.empty()) {
    std::sort(renames.begin(), renames.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    out.sql = std::string(sql);
    for (const auto& [loc, r] : renames)
      out.sql.replace(static_cast<size_t>(loc), r.first, r.second);
  }
  return out;
}

}  // namespace bulwark::pg
