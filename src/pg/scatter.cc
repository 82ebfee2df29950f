#include "pg/scatter.h"

#include <pg_query.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace bulwark::pg {
namespace {

using json = nlohmann::json;

// ------------------------------------------------------------------------------ decimals

struct Dec {
  bool neg = false;
  std::string digits;  // the value * 10^scale, without leading zeros ("" is zero)
  int scale = 0;
};

bool ParseDec(std::string_view s, Dec* out) {
  Dec d;
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) d.neg = s[i++] == '-';
  bool any = false, dot = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.' && !dot) {
      dot = true;
    } else if (c >= '0' && c <= '9') {
      any = true;
      if (!(d.digits.empty() && c == '0')) d.digits.push_back(c);
      if (dot) ++d.scale;
    } else {
      return false;  // exponents, NaN, Infinity: not exact decimals
    }
  }
  if (!any) return false;
  if (d.digits.empty()) d.neg = false;
  *out = std::move(d);
  return true;
}

std::string Format(const Dec& d) {
  std::string digits = d.digits;
  if (static_cast<int>(digits.size()) <= d.scale) {
    digits.insert(0, static_cast<size_t>(d.scale) + 1 - digits.size(), '0');
  }
  std::string out = d.neg && !d.digits.empty() ? "-" : "";
  if (d.scale > 0) {
    out += digits.substr(0, digits.size() - static_cast<size_t>(d.scale));
    out += '.';
    out += digits.substr(digits.size() - static_cast<size_t>(d.scale));
  } else {
    out += digits;
  }
  return out;
}

void Rescale(Dec* d, int scale) {
  if (!d->digits.empty()) d->digits.append(static_cast<size_t>(scale - d->scale), '0');
  d->scale = scale;
}

int CompareMagnitude(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  return a.compare(b) < 0 ? -1 : a.compare(b) > 0 ? 1 : 0;
}

std::string AddMagnitude(const std::string& a, const std::string& b) {
  std::string out;
  int carry = 0;
  for (size_t i = 0; i < std::max(a.size(), b.size()) || carry; ++i) {
    int s = carry;
    if (i < a.size()) s += a[a.size() - 1 - i] - '0';
    if (i < b.size()) s += b[b.size() - 1 - i] - '0';
    out.push_back(static_cast<char>('0' + s % 10));
    carry = s / 10;
  }
  std::reverse(out.begin(), out.end());
  size_t nz = out.find_first_not_of('0');
  return nz == std::string::npos ? "" : out.substr(nz);
}

std::string SubMagnitude(const std::string& a, const std::string& b) {  // a >= b
  std::string out;
  int borrow = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    int s = a[a.size() - 1 - i] - '0' - borrow;
    if (i < b.size()) s -= b[b.size() - 1 - i] - '0';
    borrow = s < 0;
    if (s < 0) s += 10;
    out.push_back(static_cast<char>('0' + s));
  }
  std::reverse(out.begin(), out.end());
  size_t nz = out.find_first_not_of('0');
  return nz == std::string::npos ? "" : out.substr(nz);
}

Dec Add(Dec a, Dec b) {
  int scale = std::max(a.scale, b.scale);
  Rescale(&a, scale);
  Rescale(&b, scale);
  Dec r;
  r.scale = scale;
  if (a.neg == b.neg) {
    r.digits = AddMagnitude(a.digits, b.digits);
    r.neg = a.neg;
  } else if (CompareMagnitude(a.digits, b.digits) >= 0) {
    r.digits = SubMagnitude(a.digits, b.digits);
    r.neg = a.neg;
  } else {
    r.digits = SubMagnitude(b.digits, a.digits);
    r.neg = b.neg;
  }
  if (r.digits.empty()) r.neg = false;
  return r;
}

// PostgreSQL's numeric: base-10000 digits. The weight and first digit of a value, as
// select_div_scale() computes them.
void WeightAndFirst(const Dec& d, int* weight, int* first) {
  *weight = 0;
  *first = 0;
  if (d.digits.empty()) return;
  int int_len = static_cast<int>(d.digits.size()) - d.scale;
  if (int_len > 0) {
    int groups = (int_len + 3) / 4;
    *weight = groups - 1;
    int lead = int_len - 4 * (groups - 1);
    *first = std::stoi(d.digits.substr(0, static_cast<size_t>(lead)));
    return;
  }
  // Only a fraction: leading zeros after the point, then the digits.
  std::string frac(static_cast<size_t>(-int_len), '0');
  frac += d.digits;
  for (size_t k = 0; k * 4 < frac.size(); ++k) {
    std::string g = frac.substr(k * 4, 4);
    g.append(4 - g.size(), '0');
    int v = std::stoi(g);
    if (v != 0) {
      *weight = -static_cast<int>(k) - 1;
      *first = v;
      return;
    }
  }
}

// ------------------------------------------------------------------------------ floats

bool IsFloat(uint32_t oid) { return oid == 700 || oid == 701; }
bool IsExactNumber(uint32_t oid) {
  return oid == 20 || oid == 21 || oid == 23 || oid == 26 || oid == 1700;
}

// The shortest text that reads back as `v`, in the style PostgreSQL prints float8.
std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof(buf), "%.*g", p, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// ------------------------------------------------------------------------------ planning

const char* kAggregates[] = {"count", "sum", "min", "max", "avg"};

std::string FuncName(const json& f) {
  if (!f.contains("funcname") || f["funcname"].empty()) return "";
  return AsciiLower(f["funcname"].back()["String"].value("sval", ""));
}

bool IsAggregateName(const std::string& n) {
  return std::find(std::begin(kAggregates), std::end(kAggregates), n) != std::end(kAggregates);
}

bool ContainsAggregate(const json& n, int depth = 0) {
  if (depth > 200) return false;
  if (n.is_array()) {
    for (const json& x : n) {
      if (ContainsAggregate(x, depth + 1)) return true;
    }
    return false;
  }
  if (!n.is_object()) return false;
  for (auto it = n.begin(); it != n.end(); ++it) {
    if (it.key() == "FuncCall" && IsAggregateName(FuncName(it.value()))) return true;
    if (it.key() == "SubLink") continue;  // a subquery's aggregates run inside each shard
    if (ContainsAggregate(it.value(), depth + 1)) return true;
  }
  return false;
}

// The index just past the parenthesis that closes the one opening at or after `from`.
size_t CloseParen(std::string_view sql, size_t from) {
  size_t i = sql.find('(', from);
  if (i == std::string_view::npos) return std::string_view::npos;
  int depth = 0;
  for (; i < sql.size(); ++i) {
    char c = sql[i];
    if (c == '\'' || c == '"') {
      char q = c;
      for (++i; i < sql.size(); ++i) {
        if (sql[i] == q) {
          if (i + 1 < sql.size() && sql[i + 1] == q) {
            ++i;
            continue;
          }
          break;
        }
      }
      continue;
    }
    if (c == '(') ++depth;
    if (c == ')' && --depth == 0) return i + 1;
  }
  return std::string_view::npos;
}

std::optional<int64_t> IntConst(const json& n) {
  if (!n.is_object() || !n.contains("A_Const")) return std::nullopt;
  const json& c = n["A_Const"];
  if (!c.contains("ival")) return std::nullopt;
  return c["ival"].value("ival", int64_t{0});
}

size_t DigitsAt(std::string_view sql, size_t at) {
  size_t n = 0;
  while (at + n < sql.size() && sql[at + n] >= '0' && sql[at + n] <= '9') ++n;
  return n;
}

}  // namespace

std::string DecimalAdd(std::string_view a, std::string_view b) {
  Dec x, y;
  if (!ParseDec(a, &x) || !ParseDec(b, &y)) return "";
  return Format(Add(std::move(x), std::move(y)));
}

std::string NumericDivide(std::string_view a, std::string_view b) {
  Dec x, y;
  if (!ParseDec(a, &x) || !ParseDec(b, &y) || y.scale != 0 || y.digits.empty() ||
      y.digits.size() > 18) {
    return "";  // only what scatter-gather needs: division by a count
  }
  int w1, f1, w2, f2;
  WeightAndFirst(x, &w1, &f1);
  WeightAndFirst(y, &w2, &f2);
  int qweight = w1 - w2;
  if (f1 <= f2) --qweight;
  int rscale = 16 - qweight * 4;  // NUMERIC_MIN_SIG_DIGITS, DEC_DIGITS
  rscale = std::max({rscale, x.scale, y.scale, 0});
  rscale = std::min(rscale, 1000);
  uint64_t divisor = std::stoull(y.digits);
  // x * 10^(rscale - x.scale) / divisor, rounded half away from zero.
  std::string num = x.digits;
  num.append(static_cast<size_t>(rscale - x.scale), '0');
  std::string q;
  unsigned __int128 rem = 0;
  for (char c : num) {
    rem = rem * 10 + static_cast<unsigned>(c - '0');
    q.push_back(static_cast<char>('0' + static_cast<int>(rem / divisor)));
    rem %= divisor;
  }
  if (rem * 2 >= divisor) q = AddMagnitude(q, "1");
  size_t nz = q.find_first_not_of('0');
  Dec r;
  r.digits = nz == std::string::npos ? "" : q.substr(nz);
  r.scale = rscale;
  r.neg = x.neg != y.neg && !r.digits.empty();
  return Format(r);
}

int CompareValues(uint32_t oid, std::string_view a, std::string_view b) {
  if (IsExactNumber(oid)) {
    Dec x, y;
    if (ParseDec(a, &x) && ParseDec(b, &y)) {
      if (x.neg != y.neg) return x.neg ? -1 : 1;
      int scale = std::max(x.scale, y.scale);
      Rescale(&x, scale);
      Rescale(&y, scale);
      int c = CompareMagnitude(x.digits, y.digits);
      return x.neg ? -c : c;
    }
  }
  if (IsFloat(oid) || oid == 1700) {
    // NaN sorts above everything, as in PostgreSQL.
    double x = std::strtod(std::string(a).c_str(), nullptr);
    double y = std::strtod(std::string(b).c_str(), nullptr);
    if (std::isnan(x) || std::isnan(y)) return std::isnan(x) - std::isnan(y);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  int c = a.compare(b);
  return c < 0 ? -1 : c > 0 ? 1 : 0;
}

absl::StatusOr<ScatterPlan> PlanScatter(std::string_view sql) {
  auto refuse = [](std::string why) {
    return absl::FailedPreconditionError(StrCat("cannot scatter to every shard: ", why));
  };
  std::string text(sql);
  PgQueryParseResult r = pg_query_parse(text.c_str());
  if (r.error != nullptr) {
    std::string m = r.error->message ? r.error->message : "syntax error";
    pg_query_free_parse_result(r);
    return absl::InvalidArgumentError(m);
  }
  json tree = json::parse(r.parse_tree, nullptr, false);
  pg_query_free_parse_result(r);
  if (!tree.is_object() || !tree.contains("stmts") || tree["stmts"].size() != 1) {
    return refuse("one SELECT statement at a time");
  }
  const json& stmt = tree["stmts"][0].value("stmt", json::object());
  if (!stmt.contains("SelectStmt")) return refuse("only SELECT runs on every shard");
  const json& s = stmt["SelectStmt"];
  if (s.value("op", "SETOP_NONE") != "SETOP_NONE") return refuse("UNION/INTERSECT/EXCEPT");
  if (s.contains("distinctClause")) return refuse("SELECT DISTINCT");
  if (s.contains("havingClause")) return refuse("HAVING");
  if (s.contains("windowClause")) return refuse("window functions");
  if (s.contains("lockingClause")) return refuse("FOR UPDATE/SHARE");
  if (s.contains("intoClause")) return refuse("SELECT INTO");
  if (s.value("limitOption", "") == "LIMIT_OPTION_WITH_TIES") return refuse("FETCH ... WITH TIES");
  ScatterPlan plan;
  std::vector<std::string> names;  // per target: its alias or column name
  struct Edit {
    size_t at, len;
    std::string with;
  };
  std::vector<Edit> edits;
  for (const json& t : s.value("targetList", json::array())) {
    const json& rt = t.value("ResTarget", json::object());
    const json& val = rt.value("val", json::object());
    std::string name = rt.value("name", "");
    Aggregate agg = Aggregate::kNone;
    if (val.contains("FuncCall") && IsAggregateName(FuncName(val["FuncCall"]))) {
      const json& f = val["FuncCall"];
      if (f.contains("over")) return refuse("window functions");
      if (f.value("agg_distinct", false)) return refuse("aggregates over DISTINCT values");
      if (ContainsAggregate(f.value("args", json::array()))) return refuse("nested aggregates");
      std::string fn = FuncName(f);
      agg = fn == "count" ? Aggregate::kCount
            : fn == "sum" ? Aggregate::kSum
            : fn == "min" ? Aggregate::kMin
            : fn == "max" ? Aggregate::kMax
                          : Aggregate::kAvg;
      if (name.empty()) name = fn;
      if (agg == Aggregate::kAvg) {
        size_t at = static_cast<size_t>(f.value("location", 0));
        size_t end = CloseParen(sql, at);
        size_t open = sql.find('(', at);
        if (end == std::string_view::npos || open == std::string_view::npos) {
          return refuse("avg() not understood");
        }
        std::string args(sql.substr(open + 1, end - open - 2));
        // Each shard's sum, count and the type avg() has here, in one column.
        std::string with = StrCat("concat(sum(", args, "), ',', count(", args,
                                  "), ',', pg_typeof(avg(", args, ")))");
        if (!rt.contains("name")) with += " AS avg";
        edits.push_back({at, end - at, with});
      }
    } else if (ContainsAggregate(val)) {
      return refuse("an aggregate inside an expression (select the aggregate itself)");
    } else if (name.empty() && val.contains("ColumnRef")) {
      const json& fields = val["ColumnRef"]["fields"];
      if (!fields.empty() && fields.back().contains("String")) {
        name = fields.back()["String"].value("sval", "");
      }
    }
    if (agg != Aggregate::kNone) plan.aggregates = true;
    plan.columns.push_back(agg);
    names.push_back(name);
  }
  auto column_of = [&](const json& n) -> int {
    if (auto pos = IntConst(n)) {
      return *pos >= 1 && *pos <= static_cast<int64_t>(names.size()) ? static_cast<int>(*pos - 1)
                                                                     : -1;
    }
    if (n.contains("ColumnRef")) {
      const json& fields = n["ColumnRef"]["fields"];
      if (!fields.empty() && fields.back().contains("String")) {
        std::string want = fields.back()["String"].value("sval", "");
        for (size_t i = 0; i < names.size(); ++i) {
          if (names[i] == want) return static_cast<int>(i);
        }
      }
    }
    return -1;
  };
  for (const json& g : s.value("groupClause", json::array())) {
    int c = column_of(g);
    if (c < 0) return refuse("GROUP BY must name selected columns");
    plan.group_by.push_back(c);
  }
  for (const json& o : s.value("sortClause", json::array())) {
    const json& sb = o.value("SortBy", json::object());
    int c = column_of(sb.value("node", json::object()));
    if (c < 0) return refuse("ORDER BY must name selected columns (by name or position)");
    ScatterPlan::Sort sort;
    sort.column = c;
    sort.desc = sb.value("sortby_dir", "") == "SORTBY_DESC";
    std::string nulls = sb.value("sortby_nulls", "SORTBY_NULLS_DEFAULT");
    sort.nulls_first =
        nulls == "SORTBY_NULLS_FIRST" || (nulls == "SORTBY_NULLS_DEFAULT" && sort.desc);
    if (sb.contains("useOp")) return refuse("ORDER BY ... USING");
    plan.order_by.push_back(sort);
  }
  std::optional<size_t> limit_at, offset_at;
  if (s.contains("limitCount")) {
    const json& l = s["limitCount"];
    bool all = l.contains("A_Const") && l["A_Const"].value("isnull", false);
    if (!all) {
      auto v = IntConst(l);
      if (!v || *v < 0) return refuse("LIMIT must be a number");
      plan.limit = *v;
      limit_at = static_cast<size_t>(l["A_Const"].value("location", -1));
    }
  }
  if (s.contains("limitOffset")) {
    auto v = IntConst(s["limitOffset"]);
    if (!v || *v < 0) return refuse("OFFSET must be a number");
    plan.offset = *v;
    offset_at = static_cast<size_t>(s["limitOffset"]["A_Const"].value("location", -1));
  }
  // Every shard returns enough rows for the whole page: LIMIT n+m, OFFSET 0.
  if (plan.offset > 0 && offset_at) {
    size_t n = DigitsAt(sql, *offset_at);
    if (n == 0) return refuse("OFFSET must be a number");
    edits.push_back({*offset_at, n, "0"});
    if (plan.limit && limit_at) {
      size_t m = DigitsAt(sql, *limit_at);
      if (m == 0) return refuse("LIMIT must be a number");
      edits.push_back({*limit_at, m, std::to_string(*plan.limit + plan.offset)});
    }
  }
  std::sort(edits.begin(), edits.end(), [](const Edit& a, const Edit& b) { return a.at > b.at; });
  plan.sql = std::string(sql);
  for (const Edit& e : edits) plan.sql.replace(e.at, e.len, e.with);
  return plan;
}

absl::Status ScatterMerger::Add(const std::vector<FieldDescription>& fields,
                                std::vector<Row> rows) {
  if (fields.size() != plan_.columns.size()) {
    return absl::InternalError(
        StrCat("a shard answered ", fields.size(), " columns, expected ", plan_.columns.size()));
  }
  if (!have_fields_) {
    names_.clear();
    for (const auto& f : fields) names_.emplace_back(f.name);
    fields_ = fields;
    for (size_t i = 0; i < fields_.size(); ++i) fields_[i].name = names_[i];
    have_fields_ = true;
  }
  for (auto& r : rows) {
    if (r.size() != plan_.columns.size()) return absl::InternalError("a row of the wrong width");
    rows_.push_back(std::move(r));
  }
  return absl::OkStatus();
}

absl::StatusOr<ScatterResult> ScatterMerger::Finish() {
  ScatterResult out;
  size_t n = plan_.columns.size();
  std::vector<uint32_t> types(n, 25);
  for (size_t i = 0; i < n && i < fields_.size(); ++i) types[i] = fields_[i].type_oid;
  std::vector<Row> rows;
  std::vector<uint32_t> avg_type(n, 1700);
  if (plan_.aggregates || !plan_.group_by.empty()) {
    // Groups in the order first seen.
    std::map<std::string, size_t> index;
    struct Acc {
      Row row;
      std::vector<std::string> avg_sum;
      std::vector<int64_t> avg_count;
      std::vector<double> fsum;
    };
    std::vector<Acc> groups;
    for (Row& r : rows_) {
      std::string key;
      for (int g : plan_.group_by) {
        const auto& v = r[static_cast<size_t>(g)];
        key += v ? "v" + *v : std::string("n");
        key.push_back('\0');
      }
      auto [it, fresh] = index.emplace(key, groups.size());
      if (fresh) {
        Acc a;
        a.row.assign(n, std::nullopt);
        a.avg_sum.assign(n, "0");
        a.avg_count.assign(n, 0);
        a.fsum.assign(n, 0);
        groups.push_back(std::move(a));
      }
      Acc& a = groups[it->second];
      for (size_t i = 0; i < n; ++i) {
        const auto& v = r[i];
        auto& cur = a.row[i];
        switch (plan_.columns[i]) {
          case Aggregate::kNone:
            if (fresh) cur = v;
            break;
          case Aggregate::kCount:
            cur = DecimalAdd(cur ? *cur : "0", v ? *v : "0");
            break;
          case Aggregate::kSum:
            if (!v) break;
            if (IsFloat(types[i])) {
              a.fsum[i] += std::strtod(v->c_str(), nullptr);
              cur = FormatDouble(a.fsum[i]);
            } else {
              std::string s = cur ? DecimalAdd(*cur, *v) : *v;
              if (s.empty()) return absl::InternalError("sum() of a value that is not a number");
              cur = s;
            }
            break;
          case Aggregate::kMin:
          case Aggregate::kMax:
            if (!v) break;
            if (!cur ||
                (plan_.columns[i] == Aggregate::kMin ? CompareValues(types[i], *v, *cur) < 0
                                                     : CompareValues(types[i], *v, *cur) > 0)) {
              cur = v;
            }
            break;
          case Aggregate::kAvg: {
            if (!v) break;
            std::vector<std::string> parts = Split(*v, ',');
            if (parts.size() != 3) return absl::InternalError("avg() parts missing");
            if (parts[2] == "double precision" || parts[2] == "real") {
              avg_type[i] = 701;
              if (!parts[0].empty()) a.fsum[i] += std::strtod(parts[0].c_str(), nullptr);
            } else if (parts[2] == "numeric") {
              if (!parts[0].empty()) {
                a.avg_sum[i] = DecimalAdd(a.avg_sum[i], parts[0]);
                if (a.avg_sum[i].empty()) return absl::InternalError("avg() of a non-number");
              }
            } else {
              return absl::FailedPreconditionError(
                  StrCat("cannot scatter to every shard: avg() of ", parts[2]));
            }
            a.avg_count[i] += std::strtoll(parts[1].c_str(), nullptr, 10);
            break;
          }
        }
      }
    }
    for (Acc& a : groups) {
      for (size_t i = 0; i < n; ++i) {
        if (plan_.columns[i] != Aggregate::kAvg) continue;
        if (a.avg_count[i] == 0) {
          a.row[i] = std::nullopt;
        } else if (avg_type[i] == 701) {
          a.row[i] = FormatDouble(a.fsum[i] / static_cast<double>(a.avg_count[i]));
        } else {
          a.row[i] = NumericDivide(a.avg_sum[i], std::to_string(a.avg_count[i]));
        }
      }
      rows.push_back(std::move(a.row));
    }
    if (groups.empty() && plan_.group_by.empty()) {
      // No shard answered a row: count() is 0, the rest NULL.
      Row r(n);
      for (size_t i = 0; i < n; ++i) {
        if (plan_.columns[i] == Aggregate::kCount) r[i] = "0";
      }
      rows.push_back(std::move(r));
    }
  } else {
    rows = std::move(rows_);
  }
  if (!plan_.order_by.empty()) {
    std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
      for (const auto& s : plan_.order_by) {
        const auto& x = a[static_cast<size_t>(s.column)];
        const auto& y = b[static_cast<size_t>(s.column)];
        if (!x || !y) {
          if (!x && !y) continue;
          return !x ? s.nulls_first : !s.nulls_first;
        }
        int c = CompareValues(types[static_cast<size_t>(s.column)], *x, *y);
        if (c != 0) return s.desc ? c > 0 : c < 0;
      }
      return false;
    });
  }
  size_t from = std::min(rows.size(), static_cast<size_t>(plan_.offset));
  size_t to =
      plan_.limit ? std::min(rows.size(), from + static_cast<size_t>(*plan_.limit)) : rows.size();
  out.rows.assign(std::make_move_iterator(rows.begin() + static_cast<long>(from)),
                  std::make_move_iterator(rows.begin() + static_cast<long>(to)));
  AppendInt16(&out.row_description, static_cast<int16_t>(fields_.size()));
  for (size_t i = 0; i < fields_.size(); ++i) {
    FieldDescription f = fields_[i];
    if (plan_.columns[i] == Aggregate::kAvg) {
      f.type_oid = avg_type[i];
      f.type_size = avg_type[i] == 701 ? 8 : -1;
      f.type_modifier = -1;
    }
    out.row_description += names_[i];
    out.row_description.push_back('\0');
    AppendInt32(&out.row_description, static_cast<int32_t>(f.table_oid));
    AppendInt16(&out.row_description, f.column);
    AppendInt32(&out.row_description, static_cast<int32_t>(f.type_oid));
    AppendInt16(&out.row_description, f.type_size);
    AppendInt32(&out.row_description, f.type_modifier);
    AppendInt16(&out.row_description, f.format);
    out.types.push_back(f.type_oid);
  }
  return out;
}

}  // namespace bulwark::pg
