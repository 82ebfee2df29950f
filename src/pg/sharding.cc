#include "pg/sharding.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>

#include "core/strings.h"

namespace bulwark::pg {
namespace {

// "db_tenant_0003" -> ("db_tenant_", 3); no trailing digits -> nullopt.
std::optional<std::pair<std::string, int64_t>> SplitNumber(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && std::isdigit(static_cast<unsigned char>(s[i - 1]))) --i;
  if (i == s.size() || s.size() - i > 18) return std::nullopt;
  int64_t n = 0;
  if (!ParseInt(s.substr(i), &n)) return std::nullopt;
  return std::make_pair(std::string(s.substr(0, i)), n);
}

bool ParseYearMonth(std::string_view s, int* y, int* m) {
  // "2025_01", "2025-01", "202501"
  std::string digits;
  for (char c : s) {
    if (std::isdigit(static_cast<unsigned char>(c))) digits.push_back(c);
  }
  if (digits.size() != 6) return false;
  *y = std::atoi(digits.substr(0, 4).c_str());
  *m = std::atoi(digits.substr(4, 2).c_str());
  return *m >= 1 && *m <= 12;
}

}  // namespace

absl::StatusOr<ShardExpression> ShardExpression::Parse(std::string_view text) {
  ShardExpression e;
  e.text_ = std::string(text);
  size_t open = text.find("${");
  size_t close = open == std::string_view::npos ? open : text.find('}', open);
  if (open == std::string_view::npos || close == std::string_view::npos ||
      text.find("${", close) != std::string_view::npos) {
    return absl::InvalidArgumentError(
        StrCat("algorithm_expression \"", text, "\": expected one ${column} or ${column % N}"));
  }
  e.prefix_ = std::string(text.substr(0, open));
  e.suffix_ = std::string(text.substr(close + 1));
  std::string_view inner = Trim(text.substr(open + 2, close - open - 2));
  size_t pct = inner.find('%');
  std::string_view col = Trim(inner.substr(0, pct));
  if (col.empty() || !std::all_of(col.begin(), col.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
      })) {
    return absl::InvalidArgumentError(
        StrCat("algorithm_expression \"", text, "\": bad column name"));
  }
  e.column_ = std::string(col);
  if (pct != std::string_view::npos) {
    if (!ParseInt(Trim(inner.substr(pct + 1)), &e.modulo_) || e.modulo_ <= 0) {
      return absl::InvalidArgumentError(
          StrCat("algorithm_expression \"", text, "\": expected a positive number after %"));
    }
  }
  return e;
}

absl::StatusOr<std::string> ShardExpression::Eval(std::string_view value) const {
  if (modulo_ == 0) return StrCat(prefix_, value, suffix_);
  int64_t v = 0;
  if (!ParseInt(Trim(value), &v)) {
    return absl::InvalidArgumentError(StrCat(column_, " = \"", value, "\" is not an integer"));
  }
  int64_t r = v % modulo_;
  if (r < 0) r += modulo_;  // a negative key still lands on a shard
  return StrCat(prefix_, r, suffix_);
}

absl::StatusOr<std::string> MonthlyTables::TableFor(std::string_view value) const {
  int y = 0, m = 0;
  std::string_view v = Trim(value);
  int64_t epoch = 0;
  if (ParseInt(v, &epoch)) {
    time_t t = static_cast<time_t>(epoch > 100000000000LL ? epoch / 1000 : epoch);  // s or ms
    struct tm tm;
    gmtime_r(&t, &tm);
    y = tm.tm_year + 1900;
    m = tm.tm_mon + 1;
  } else if (v.size() >= 7 && std::isdigit(static_cast<unsigned char>(v[0])) &&
             (v[4] == '-' || v[4] == '_' || v[4] == '/')) {
    y = std::atoi(std::string(v.substr(0, 4)).c_str());
    m = std::atoi(std::string(v.substr(5, 2)).c_str());
  }
  if (y == 0 || m < 1 || m > 12) {
    return absl::InvalidArgumentError(StrCat(column, " = \"", value, "\" is not a date"));
  }
  int ym = y * 12 + m, lo = start_year * 12 + start_month, hi = end_year * 12 + end_month;
  if (ym < lo || ym > hi) {
    return absl::OutOfRangeError(StrCat(column, " = \"", value,
                                        "\" is outside the monthly tables (", start_year, "_",
                                        start_month, " to ", end_year, "_", end_month, ")"));
  }
  char ym_text[16], y_text[8], m_text[8];
  std::snprintf(ym_text, sizeof(ym_text), "%04d_%02d", y, m);
  std::snprintf(y_text, sizeof(y_text), "%04d", y);
  std::snprintf(m_text, sizeof(m_text), "%02d", m);
  std::string out = table_pattern;
  for (auto [token, text] : {std::pair<std::string_view, const char*>{"{yyyy_MM}", ym_text},
                             {"{yyyyMM}", nullptr},
                             {"{yyyy}", y_text},
                             {"{MM}", m_text}}) {
    std::string repl = text ? text : std::string(y_text) + m_text;
    for (size_t at = out.find(token); at != std::string::npos; at = out.find(token)) {
      out.replace(at, token.size(), repl);
    }
  }
  return out;
}

absl::StatusOr<std::string> ShardingConfig::DatabaseFor(const ShardedTable& t,
                                                        std::string_view key) const {
  if (!t.database)
    return absl::FailedPreconditionError(StrCat("table ", t.name, " has no database_strategy"));
  auto name = t.database->Eval(key);
  if (!name.ok()) return name.status();
  for (const std::string& d : databases) {
    if (d == *name) return d;
  }
  auto want = SplitNumber(*name);
  if (want) {
    for (const std::string& d : databases) {
      auto have = SplitNumber(d);
      if (have && *have == *want) return d;
    }
  }
  return absl::NotFoundError(
      StrCat(t.database->text(), " gives \"", *name, "\", which is not in sharding.databases"));
}

absl::StatusOr<std::string> ShardingConfig::DatabaseFor(std::string_view key) const {
  for (const auto& [name, t] : tables) {
    if (t.database) return DatabaseFor(t, key);
  }
  return absl::FailedPreconditionError("no table has a database_strategy");
}

void LoadSharding(ConfigContext& ctx, const YAML::Node& node, ShardingConfig* out) {
  MapReader r(ctx, node, "sharding");
  if (!r.valid()) return;
  r.StringList("databases", &out->databases);
  if (out->databases.empty()) ctx.Error(node.Mark(), "sharding.databases: at least one database");
  YAML::Node tables = r.Get("tables");
  if (tables.IsDefined() && !tables.IsMap())
    ctx.Error(tables.Mark(), "sharding.tables: expected a mapping");
  if (tables.IsDefined() && tables.IsMap()) {
    for (const auto& kv : tables) {
      ShardedTable t;
      t.name = kv.first.Scalar();
      std::string what = StrCat("sharding.tables.", t.name);
      MapReader tr(ctx, kv.second, what);
      if (!tr.valid()) continue;
      std::string type, column;
      tr.Enum("sharding_type", {"range", "standard", "none"}, &type);
      tr.String("sharding_column", &column);
      YAML::Node rules = tr.Get("sharding_rules");
      if (rules.IsDefined()) {
        if (!rules.IsSequence() || rules.size() != 1) {
          ctx.Error(rules.Mark(), StrCat(what, ".sharding_rules: expected one monthly rule"));
        } else {
          MapReader rr(ctx, rules[0], what + ".sharding_rules[0]");
          MonthlyTables mt;
          mt.column = column;
          std::string format, start, end;
          rr.String("date_format", &format);
          rr.String("table_name", &mt.table_pattern);
          rr.String("start_date", &start);
          rr.String("end_date", &end);
          rr.Finish();
          if (format != "%Y_%m") {
            ctx.Error(rules[0].Mark(), StrCat(what, ": date_format \"", format,
                                              "\": only %Y_%m (monthly tables) is supported"));
          }
          if (!ParseYearMonth(start, &mt.start_year, &mt.start_month) ||
              !ParseYearMonth(end, &mt.end_year, &mt.end_month)) {
            ctx.Error(rules[0].Mark(), StrCat(what, ": start_date and end_date are YYYY_MM"));
          }
          if (mt.table_pattern.find('{') == std::string::npos) {
            ctx.Error(rules[0].Mark(), StrCat(what, ": table_name needs {yyyy_MM}"));
          }
          if (column.empty())
            ctx.Error(kv.second.Mark(),
                      StrCat(what, ": sharding_column is needed for monthly tables"));
          t.monthly = mt;
        }
      }
      auto strategy = [&](std::string_view key, std::optional<ShardExpression>* dst) {
        YAML::Node s = tr.Get(key);
        if (!s.IsDefined()) return;
        MapReader sr(ctx, s, StrCat(what, ".", key));
        std::string stype, scol, expr;
        sr.Enum("type", {"standard", "inline"}, &stype);
        sr.String("sharding_column", &scol);
        // Read as written: ${...} here is ShardingSphere's expression, not an environment variable.
        YAML::Node en = sr.Get("algorithm_expression");
        if (en.IsDefined() && en.IsScalar()) expr = en.Scalar();
        sr.Finish();
        auto e = ShardExpression::Parse(expr);
        if (!e.ok()) {
          ctx.Error(s.Mark(), StrCat(what, ".", key, ": ", e.status().message()));
          return;
        }
        if (!scol.empty() && scol != e->column()) {
          ctx.Error(s.Mark(), StrCat(what, ".", key, ": sharding_column ", scol,
                                     " but the expression uses ", e->column()));
          return;
        }
        if (dst) *dst = std::move(*e);
      };
      strategy("database_strategy", &t.database);
      if (t.monthly) {
        // With monthly rules the table name comes from the date; a modulo table strategy on a
        // timestamp (the AlkaidSYS file has `users_${created_at % 100}`) cannot name those tables.
        if (tr.Has("table_strategy")) {
          std::optional<ShardExpression> ignored;
          strategy("table_strategy", &ignored);
          out->notes.push_back(StrCat(
              what, ".table_strategy is not used: the monthly sharding_rules name the tables"));
        }
      } else {
        std::optional<ShardExpression> table_expr;
        strategy("table_strategy", &table_expr);
        if (table_expr) {
          ctx.Error(kv.second.Mark(),
                    StrCat(what, ".table_strategy without monthly rules is not supported"));
        }
      }
      if (t.database) {
        if (out->shard_column != t.database->column()) {
          if (out->tables.empty()) {
            out->shard_column = t.database->column();
          } else {
            ctx.Error(kv.second.Mark(),
                      StrCat(what, ": every database_strategy must use the same column"));
          }
        }
        // Say how the expression's names meet the list.
        for (int64_t k = 0; k < 64; ++k) {
          auto name = t.database->Eval(std::to_string(k));
          if (!name.ok()) break;
          if (std::find(out->databases.begin(), out->databases.end(), *name) !=
              out->databases.end())
            continue;
          auto resolved = out->DatabaseFor(t, std::to_string(k));
          if (!resolved.ok()) {
            ctx.Error(kv.second.Mark(), StrCat(what, ": ", resolved.status().message()));
          } else {
            out->notes.push_back(StrCat(what, ": \"", *name, "\" is taken to mean \"", *resolved,
                                        "\" (the same number)"));
          }
          break;
        }
      }
      tr.Finish();
      out->tables.emplace(t.name, std::move(t));
    }
  }
  r.Finish();
}

}  // namespace bulwark::pg
