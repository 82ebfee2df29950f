#include "pg/classify.h"

#include <pg_query.h>

#include <algorithm>
#include <cctype>

#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace bulwark::pg {
namespace {

using json = nlohmann::json;

bool IsWriteNode(std::string_view key) {
  return key == "InsertStmt" || key == "UpdateStmt" || key == "DeleteStmt" || key == "MergeStmt";
}

// The text of an A_Const, as the literal a client wrote.
std::optional<std::string> ConstText(const json& c) {
  if (!c.is_object()) return std::nullopt;
  if (c.contains("ival")) {
    const json& v = c["ival"];
    return std::to_string(v.is_object() && v.contains("ival") ? v["ival"].get<int64_t>() : 0);
  }
  if (c.contains("sval") && c["sval"].contains("sval")) return c["sval"]["sval"].get<std::string>();
  if (c.contains("fval") && c["fval"].contains("fval")) return c["fval"]["fval"].get<std::string>();
  if (c.contains("boolval")) return c["boolval"].value("boolval", false) ? "true" : "false";
  return std::nullopt;
}

std::optional<ShardKeyRef> ValueRef(const json& v) {
  if (!v.is_object()) return std::nullopt;
  if (v.contains("A_Const")) {
    auto t = ConstText(v["A_Const"]);
    if (!t) return std::nullopt;
    return ShardKeyRef{*t, 0};
  }
  if (v.contains("ParamRef")) return ShardKeyRef{std::nullopt, v["ParamRef"].value("number", 0)};
  if (v.contains("TypeCast")) return ValueRef(v["TypeCast"]["arg"]);
  return std::nullopt;
}

bool IsColumn(const json& e, std::string_view column) {
  if (!e.is_object() || !e.contains("ColumnRef")) return false;
  const json& fields = e["ColumnRef"]["fields"];
  if (!fields.is_array() || fields.empty()) return false;
  const json& last = fields.back();
  return last.contains("String") && last["String"].value("sval", "") == column;
}

// `column = value` in a WHERE clause, through AND.
void WhereKeys(const json& w, std::string_view column, std::vector<ShardKeyRef>* out) {
  if (!w.is_object()) return;
  if (w.contains("BoolExpr") && w["BoolExpr"].value("boolop", "") == "AND_EXPR") {
    for (const json& a : w["BoolExpr"]["args"]) WhereKeys(a, column, out);
    return;
  }
  if (!w.contains("A_Expr")) return;
  const json& e = w["A_Expr"];
  if (e.value("kind", "") != "AEXPR_OP" || !e.contains("name") || e["name"].empty() ||
      e["name"][0]["String"].value("sval", "") != "=") {
    return;
  }
  std::optional<ShardKeyRef> v;
  if (IsColumn(e["lexpr"], column)) v = ValueRef(e["rexpr"]);
  if (!v && IsColumn(e["rexpr"], column)) v = ValueRef(e["lexpr"]);
  if (v) out->push_back(*v);
}

bool Listed(const std::vector<std::string>& list, const std::string& name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// Built-in functions that pg_proc calls volatile because their answer changes from call to
// call, not because they write: a replica answers them as well (and tells its own recovery
// state, which is what a caller of pg_is_in_recovery() wants to learn).
bool VolatileRead(const std::string& name) {
  static const char* const kNames[] = {"random",
                                       "random_normal",
                                       "clock_timestamp",
                                       "timeofday",
                                       "gen_random_uuid",
                                       "pg_sleep",
                                       "pg_sleep_for",
                                       "pg_sleep_until",
                                       "pg_is_in_recovery",
                                       "pg_last_wal_receive_lsn",
                                       "pg_last_wal_replay_lsn",
                                       "pg_last_xact_replay_timestamp",
                                       "pg_is_wal_replay_paused"};
  for (const char* n : kNames) {
    if (name == n) return true;
  }
  return false;
}

// Advisory locks and large objects live on the primary whatever their volatility says.
bool AlwaysPrimary(const std::string& name) {
  return StartsWith(name, "pg_advisory_") || StartsWith(name, "pg_try_advisory_") ||
         StartsWith(name, "lo_") || name == "loread" || name == "lowrite";
}

class Walker {
 public:
  Walker(const ClassifyOptions& o, const FunctionNames* known, Classification* c)
      : o_(o), known_(known), c_(c) {}

  void Write(std::string reason) {
    if (!c_->write) c_->reason = std::move(reason);
    c_->write = true;
  }

  void Walk(const json& n, int depth) {
    if (depth > 500) return;  // the parser itself limits nesting; this is belt and braces
    if (n.is_array()) {
      for (const json& x : n) Walk(x, depth + 1);
      return;
    }
    if (!n.is_object()) return;
    for (auto it = n.begin(); it != n.end(); ++it) {
      const std::string& k = it.key();
      const json& v = it.value();
      if (IsWriteNode(k)) {
        std::string verb = k.substr(0, k.size() - 4);
        Write(AsciiUpper(verb));
        // The target table is a bare RangeVar (no "RangeVar" key around it).
        if (v.contains("relation")) Table(v["relation"]);
        if (k == "InsertStmt") InsertKeys(v);
        if ((k == "UpdateStmt" || k == "DeleteStmt") && v.contains("whereClause")) {
          AllWhereKeys(v["whereClause"]);
        }
        if (k == "UpdateStmt") Assigns(v.value("targetList", json::array()));
        if (k == "InsertStmt" && v.contains("onConflictClause")) {
          Assigns(v["onConflictClause"].value("targetList", json::array()));
        }
        if (k == "MergeStmt") {
          for (const json& w : v.value("mergeWhenClauses", json::array())) {
            Assigns(w.value("MergeWhenClause", json::object()).value("targetList", json::array()));
          }
        }
      } else if (k == "SelectStmt") {
        if (v.contains("lockingClause")) Write("FOR UPDATE/SHARE");
        if (v.contains("intoClause")) Write("SELECT INTO");
        if (v.contains("whereClause")) AllWhereKeys(v["whereClause"]);
      } else if (k == "FuncCall" && v.contains("funcname") && !v["funcname"].empty()) {
        std::string name = AsciiLower(v["funcname"].back()["String"].value("sval", ""));
        if (Listed(o_.volatile_functions, name) || AlwaysPrimary(name)) {
          Write(name + "()");
        } else if (!Listed(o_.read_only_functions, name) && !VolatileRead(name) &&
                   (known_ == nullptr || !known_->count(name))) {
          Write(name + "() is not known to be read-only");
        }
      } else if (k == "RangeVar") {
        Table(v);
      }
      Walk(v, depth + 1);
    }
  }

  void Table(const json& rv) {
    if (!rv.is_object() || !rv.contains("relname")) return;
    std::string t = rv["relname"];
    if (std::find(c_->tables.begin(), c_->tables.end(), t) == c_->tables.end()) {
      c_->tables.push_back(t);
    }
    if (!rv.contains("schemaname")) c_->table_refs.push_back({t, rv.value("location", -1)});
  }

  // SET <column> = ... in an UPDATE's target list.
  void Assigns(const json& targets) {
    if (!targets.is_array()) return;
    for (const json& t : targets) {
      if (t.is_object() && t.contains("ResTarget") &&
          t["ResTarget"].value("name", "") == o_.shard_column) {
        c_->assigns_shard_key = true;
      }
    }
  }

  void AllWhereKeys(const json& where) {
    WhereKeys(where, o_.shard_column, &c_->keys);
    for (const std::string& col : o_.value_columns) WhereKeys(where, col, &c_->values[col]);
  }

  void InsertKeys(const json& ins) {
    InsertColumn(ins, o_.shard_column, &c_->keys);
    for (const std::string& col : o_.value_columns) InsertColumn(ins, col, &c_->values[col]);
  }

  void InsertColumn(const json& ins, const std::string& column, std::vector<ShardKeyRef>* out) {
    if (!ins.contains("cols") || !ins.contains("selectStmt")) return;
    int index = -1, i = 0;
    for (const json& col : ins["cols"]) {
      if (col["ResTarget"].value("name", "") == column) index = i;
      ++i;
    }
    if (index < 0) return;
    const json& sel = ins["selectStmt"]["SelectStmt"];
    if (!sel.is_object() || !sel.contains("valuesLists")) return;
    for (const json& row : sel["valuesLists"]) {
      const json& items = row["List"]["items"];
      if (items.is_array() && index < static_cast<int>(items.size())) {
        if (auto v = ValueRef(items[static_cast<size_t>(index)])) out->push_back(*v);
      }
    }
  }

  void Statement(const json& stmt) {
    if (!stmt.is_object() || stmt.empty()) return;
    const std::string& kind = stmt.begin().key();
    const json& body = stmt.begin().value();
    if (kind == "SelectStmt" || kind == "VariableShowStmt") {
      // A read, unless something inside says otherwise.
    } else if (kind == "ExplainStmt") {
      bool analyze = false;
      for (const json& opt : body.value("options", json::array())) {
        if (opt["DefElem"].value("defname", "") == "analyze") analyze = true;
      }
      if (analyze) Write("EXPLAIN ANALYZE");
      if (!analyze) {
        // EXPLAIN without ANALYZE only plans; an EXPLAINed write still goes to the primary.
        Walk(body.value("query", json::object()), 0);
        return;
      }
    } else if (kind == "TransactionStmt") {
      std::string k = body.value("kind", "");
      if (k == "TRANS_STMT_BEGIN" || k == "TRANS_STMT_START") {
        c_->tx = Classification::Tx::kBegin;
        // BEGIN READ ONLY / START TRANSACTION READ WRITE, ISOLATION ... READ ONLY: the
        // options the parser found, the last one winning as in PostgreSQL.
        for (const json& opt : body.value("options", json::array())) {
          const json& d = opt.value("DefElem", json::object());
          if (d.value("defname", "") != "transaction_read_only") continue;
          auto v = ValueRef(d.value("arg", json::object()));
          c_->tx_read_only = v && v->literal && *v->literal != "0" && *v->literal != "false";
        }
      } else if (k == "TRANS_STMT_COMMIT" || k == "TRANS_STMT_COMMIT_PREPARED") {
        c_->tx = Classification::Tx::kCommit;
      } else if (k == "TRANS_STMT_ROLLBACK" || k == "TRANS_STMT_ROLLBACK_PREPARED") {
        c_->tx = Classification::Tx::kRollback;
      }
      return;  // transaction control follows the transaction, not a side
    } else if (kind == "VariableSetStmt" &&
               body.value("name", "") == "bulwark." + o_.shard_column) {
      const json& args = body.value("args", json::array());
      if (!args.empty()) {
        if (auto v = ValueRef(args[0])) c_->set_tenant = v->literal;
      }
      return;
    } else {
      Write(AsciiUpper(kind.size() > 4 && kind.substr(kind.size() - 4) == "Stmt"
                           ? kind.substr(0, kind.size() - 4)
                           : kind));
    }
    Walk(stmt, 0);  // from the statement's own node, so its locking clause counts too
  }

 private:
  const ClassifyOptions& o_;
  const FunctionNames* known_;
  Classification* c_;
};

}  // namespace

std::vector<std::string_view> SqlComments(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == '\'' || c == '"') {
      // 'string' with '' escapes, "identifier" with "" escapes (E'' strings' backslashes too).
      bool backslash = c == '\'' && i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e');
      ++i;
      while (i < s.size()) {
        if (backslash && s[i] == '\\') {
          i += 2;
          continue;
        }
        if (s[i] == c) {
          if (i + 1 < s.size() && s[i + 1] == c) {
            i += 2;
            continue;
          }
          break;
        }
        ++i;
      }
      ++i;
    } else if (c == '$') {
      // $tag$ ... $tag$
      size_t j = i + 1;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      if (j < s.size() && s[j] == '$' &&
          !(j > i + 1 && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
        std::string_view tag = s.substr(i, j - i + 1);
        size_t end = s.find(tag, j + 1);
        i = end == std::string_view::npos ? s.size() : end + tag.size();
      } else {
        i = j;
      }
    } else if (c == '-' && i + 1 < s.size() && s[i + 1] == '-') {
      size_t nl = s.find('\n', i);
      size_t end = nl == std::string_view::npos ? s.size() : nl;
      out.push_back(s.substr(i + 2, end - i - 2));
      i = end;
    } else if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
      // Block comments nest in PostgreSQL.
      size_t start = i + 2, depth = 1;
      i += 2;
      while (i < s.size() && depth > 0) {
        if (s.compare(i, 2, "/*") == 0) {
          ++depth;
          i += 2;
        } else if (s.compare(i, 2, "*/") == 0) {
          --depth;
          i += 2;
        } else {
          ++i;
        }
      }
      out.push_back(s.substr(start, (depth == 0 ? i - 2 : i) - start));
    } else {
      ++i;
    }
  }
  return out;
}

Classification Classify(std::string_view sql, const ClassifyOptions& options,
                        const FunctionNames* known) {
  Classification c;
  for (std::string_view comment : SqlComments(sql)) {
    std::string_view t = Trim(comment);
    if (t == "bulwark:primary") c.hint_primary = true;
    std::string key = options.shard_column + ":";
    if (StartsWith(t, key)) c.hint_tenant = std::string(Trim(t.substr(key.size())));
  }
  if (sql.size() > options.max_bytes) {
    c.parsed = false;
    c.write = true;
    c.reason = StrCat("longer than classify_max_bytes (", options.max_bytes, ")");
    return c;
  }
  std::string text(sql);
  PgQueryParseResult r = pg_query_parse(text.c_str());
  if (r.error != nullptr) {
    c.parsed = false;
    c.error = r.error->message ? r.error->message : "syntax error";
    c.write = true;
    c.reason = "does not parse";
    pg_query_free_parse_result(r);
    return c;
  }
  json tree = json::parse(r.parse_tree, nullptr, false);
  pg_query_free_parse_result(r);
  Walker w(options, known, &c);
  if (tree.is_object() && tree.contains("stmts")) {
    for (const json& s : tree["stmts"]) {
      ++c.statements;
      w.Statement(s.value("stmt", json::object()));
    }
  }
  if (c.hint_primary) w.Write("/* bulwark:primary */");
  return c;
}

}  // namespace bulwark::pg
