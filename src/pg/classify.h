// What the router needs to know about a query, from PostgreSQL's own parser (libpg_query):
// whether it may run on a replica, what it does to the transaction, which tables it touches, and
// the shard key values it names.
//
// A query is a read only when every statement is a SELECT (or SHOW, or EXPLAIN without
// ANALYZE) that locks nothing (no FOR UPDATE/SHARE), creates nothing (no SELECT INTO), modifies
// nothing (no INSERT/UPDATE/DELETE/MERGE in a WITH), and calls only functions known to be
// read-only: listed in `read_only_functions`, or stable/immutable in the server's pg_proc
// (pgpool-II's rule: a volatile or unknown function is a write), or one of the built-ins that are
// volatile only because their answer changes (random, clock_timestamp, pg_is_in_recovery,
// pg_sleep, gen_random_uuid, the replay positions). The functions of
// `volatile_functions` and every advisory-lock and large-object function (pg_advisory_*,
// pg_try_advisory_*, lo_*) always go to the primary, as do currval/lastval (session state).
// Everything else, anything that does not parse or is longer than `max_bytes` (never handed to
// the parser: its tree would cost many times the text), and any query carrying a
// /* bulwark:primary */ comment goes to the primary. A transaction is read-only when its BEGIN
// or START TRANSACTION says so in its options (the parse tree, never a substring of the text).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
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
  bool tx_read_only = false;  // BEGIN/START TRANSACTION ... READ ONLY (the last mode named)
  std::vector<std::string> tables;
  std::vector<TableRef> table_refs;
  int statements = 0;
  std::vector<ShardKeyRef> keys;  // `<column> = value` in WHERE, INSERT values
  // The same for ClassifyOptions::value_columns (e.g. the date of monthly tables).
  std::map<std::string, std::vector<ShardKeyRef>> values;
  // An UPDATE (or ON CONFLICT DO UPDATE, or MERGE ... UPDATE) assigns the shard column.
  bool assigns_shard_key = false;
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
                                                 "currval",
                                                 "lastval",
                                                 "pg_notify",
                                                 "txid_current",
                                                 "pg_current_xact_id",
                                                 "set_config"};
  // Functions the operator vouches for: they read, whatever pg_proc says.
  std::vector<std::string> read_only_functions;
  // Longer statements are not parsed: they go to the primary (and a shard only by a hint or
  // the session's tenant).
  size_t max_bytes = 64 * 1024;
};

// Function names whose every overload is immutable or stable, from a server's pg_proc.
using FunctionNames = std::unordered_set<std::string>;

// `known` (may be null: nothing known) says which functions not listed in `options` read.
Classification Classify(std::string_view sql, const ClassifyOptions& options,
                        const FunctionNames* known = nullptr);

// The comments of `sql` (outside string literals, quoted identifiers and dollar quotes).
std::vector<std::string_view> SqlComments(std::string_view sql);

}  // namespace bulwark::pg
