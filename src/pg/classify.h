// What the router needs to know about a query, from PostgreSQL's own parser (libpg_query):
// whether it may run on a replica, what it does to the transaction, which tables it touches, and
// the shard key values it names.
//
// A query is a read only when every statement is a SELECT (or SHOW, or EXPLAIN without
// ANALYZE) that locks nothing (no FOR UPDATE/SHARE), creates nothing (no SELECT INTO), modifies
// nothing (no INSERT/UPDATE/DELETE/MERGE in a WITH), and calls none of the configured volatile
// functions (nextval, setval, pg_advisory_lock, ...). Everything else, anything that does not
// parse, and any query carrying a /* bulwark:primary */ comment goes to the primary.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::pg {

struct ShardKeyRef {
  std::optional<std::string> literal;  // the constant's text
  int param = 0;                       // $n (1-based) when the value is a parameter
};

// Where a table is named in the query text (unqualified names only), for rewriting it.
struct TableRef {
  std::string name;
  int location = -1;  // byte offset of the name in the query
};

struct Classification {
  bool parsed = true;
  std::string error;   // the parser's message when !parsed
  bool write = false;  // must run on the primary
  std::string reason;  // why, for logs and tests: "INSERT", "FOR UPDATE", "nextval()", ...
  enum class Tx { kNone, kBegin, kCommit, kRollback };
  Tx tx = Tx::kNone;
  std::vector<std::string> tables;
  std::vector<TableRef> table_refs;
  int statements = 0;
  std::vector<ShardKeyRef> keys;           // `<column> = value` in WHERE, INSERT values
  // The same for ClassifyOptions::value_columns (e.g. the date of monthly tables).
  std::map<std::string, std::vector<ShardKeyRef>> values;
  std::optional<std::string> set_tenant;   // SET bulwark.tenant_id = <value>
  std::optional<std::string> hint_tenant;  // /* tenant_id: <value> */
  bool hint_primary = false;               // /* bulwark:primary */
};

struct ClassifyOptions {
  std::string shard_column = "tenant_id";
  std::vector<std::string> value_columns;
  // Functions that make a SELECT a write (PgBouncer-style routers keep such a list).
  std::vector<std::string> volatile_functions = {"nextval",
                                                 "setval",
                                                 "pg_advisory_lock",
                                                 "pg_advisory_xact_lock",
                                                 "pg_try_advisory_lock",
                                                 "pg_advisory_unlock",
                                                 "lo_create",
                                                 "lo_import",
                                                 "pg_notify",
                                                 "txid_current",
                                                 "pg_current_xact_id",
                                                 "set_config"};
};

Classification Classify(std::string_view sql, const ClassifyOptions& options);

// The comments of `sql` (outside string literals, quoted identifiers and dollar quotes).
std::vector<std::string_view> SqlComments(std::string_view sql);

}  // namespace bulwark::pg
