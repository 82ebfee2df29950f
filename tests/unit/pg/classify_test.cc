#include "pg/classify.h"

#include <gtest/gtest.h>

namespace bulwark::pg {
namespace {

// What a server's pg_proc would say of the functions these tests call.
const FunctionNames kCatalog = {
    "count", "now", "lower", "currval", "pg_advisory_lock", "pg_try_advisory_xact_lock", "lo_get"};

Classification C(const std::string& sql) { return Classify(sql, ClassifyOptions{}, &kCatalog); }

TEST(PgClassify, ReadsAndWrites) {
  for (const char* read : {"SELECT 1", "select * from users where id = 3", "SHOW server_version",
                           "EXPLAIN SELECT * FROM t", "SELECT count(*) FROM a JOIN b USING (id)",
                           "WITH x AS (SELECT 1) SELECT * FROM x", "SELECT now(); SELECT 2"}) {
    Classification c = C(read);
    EXPECT_TRUE(c.parsed) << read << ": " << c.error;
    EXPECT_FALSE(c.write) << read << " (" << c.reason << ")";
  }
  struct W {
    const char* sql;
    const char* reason;
  };
  for (W w : std::vector<W>{{"INSERT INTO t VALUES (1)", "INSERT"},
                            {"UPDATE t SET a = 1", "UPDATE"},
                            {"DELETE FROM t", "DELETE"},
                            {"SELECT * FROM t WHERE id = 1 FOR UPDATE", "FOR UPDATE/SHARE"},
                            {"SELECT * FROM t FOR SHARE", "FOR UPDATE/SHARE"},
                            {"SELECT * INTO t2 FROM t", "SELECT INTO"},
                            {"WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d", "DELETE"},
                            {"SELECT nextval('seq')", "nextval()"},
                            {"SELECT pg_advisory_lock(1)", "pg_advisory_lock()"},
                            {"CREATE TABLE x (a int)", "CREATE"},
                            {"SELECT 1; UPDATE t SET a = 2", "UPDATE"},
                            {"EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE"},
                            {"/* bulwark:primary */ SELECT 1", "/* bulwark:primary */"},
                            {"SELEC 1", "does not parse"}}) {
    Classification c = C(w.sql);
    EXPECT_TRUE(c.write) << w.sql;
    EXPECT_EQ(c.reason, w.reason) << w.sql;
  }
  EXPECT_FALSE(C("SELEC 1").parsed);
}

TEST(PgClassify, FunctionsReadOnlyWhenTheCatalogOrTheOperatorSaysSo) {
  // Stable or immutable in pg_proc: a read. Unknown (a user function, or no catalog yet): a
  // write, as pgpool-II treats volatile functions.
  EXPECT_FALSE(C("SELECT lower(name) FROM users").write);
  Classification c = C("SELECT refresh_totals()");
  EXPECT_TRUE(c.write);
  EXPECT_EQ(c.reason, "refresh_totals() is not known to be read-only");
  EXPECT_TRUE(Classify("SELECT count(*) FROM t", ClassifyOptions{}).write);
  EXPECT_TRUE(C("SELECT * FROM t WHERE id = myschema.next_id()").write);
  ClassifyOptions o;
  o.read_only_functions = {"refresh_totals"};
  EXPECT_FALSE(Classify("SELECT refresh_totals()", o, &kCatalog).write);
  // Advisory locks, sequences' session state and large objects: the primary, whatever the
  // catalog says of them.
  for (const char* sql : {"SELECT currval('s')", "SELECT lastval()", "SELECT pg_advisory_lock(1)",
                          "SELECT pg_try_advisory_xact_lock(7)", "SELECT pg_advisory_unlock_all()",
                          "SELECT lo_get(16384)", "SELECT lo_unlink(16384)",
                          "SELECT pg_catalog.pg_try_advisory_lock(1)",
                          "SELECT x FROM t WHERE "
                          "pg_try_advisory_lock(id)"}) {
    EXPECT_TRUE(Classify(sql, o, &kCatalog).write) << sql;
  }
}

TEST(PgClassify, ReadOnlyTransactionsByTheParseTree) {
  EXPECT_TRUE(C("BEGIN READ ONLY").tx_read_only);
  EXPECT_TRUE(C("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").tx_read_only);
  EXPECT_TRUE(C("begin transaction read only").tx_read_only);
  EXPECT_FALSE(C("BEGIN").tx_read_only);
  EXPECT_FALSE(C("BEGIN READ WRITE").tx_read_only);
  EXPECT_FALSE(C("BEGIN READ ONLY, READ WRITE").tx_read_only);  // the last one named wins
  // The words in a comment or a string are not the transaction's mode.
  EXPECT_FALSE(C("BEGIN; -- READ ONLY").tx_read_only);
  EXPECT_FALSE(C("BEGIN /* READ ONLY */").tx_read_only);
  EXPECT_FALSE(C("BEGIN; SELECT 'READ ONLY'").tx_read_only);
}

TEST(PgClassify, LongStatementsAreNotParsed) {
  ClassifyOptions o;
  o.max_bytes = 1024;
  std::string sql = "/* tenant_id: 7 */ SELECT '" + std::string(2000, 'x') + "'";
  Classification c = Classify(sql, o);
  EXPECT_FALSE(c.parsed);
  EXPECT_TRUE(c.write);
  EXPECT_EQ(c.reason, "longer than classify_max_bytes (1024)");
  EXPECT_EQ(c.hint_tenant, "7");  // hints are comments, read without the parser
  EXPECT_FALSE(Classify("SELECT 1", o).write);
}

TEST(PgClassify, TransactionsTablesAndShardKeys) {
  EXPECT_EQ(C("BEGIN").tx, Classification::Tx::kBegin);
  EXPECT_EQ(C("START TRANSACTION ISOLATION LEVEL SERIALIZABLE").tx, Classification::Tx::kBegin);
  EXPECT_EQ(C("COMMIT").tx, Classification::Tx::kCommit);
  EXPECT_EQ(C("ROLLBACK").tx, Classification::Tx::kRollback);
  EXPECT_FALSE(C("BEGIN").write);

  Classification c = C(
      "SELECT * FROM users u JOIN orders o ON o.uid = u.id WHERE u.tenant_id = 5 AND o.total > 3");
  EXPECT_EQ(c.tables, (std::vector<std::string>{"users", "orders"}));
  ASSERT_EQ(c.keys.size(), 1u);
  EXPECT_EQ(*c.keys[0].literal, "5");
  c = C("UPDATE users SET name = 'x' WHERE tenant_id = $2 AND id = $1");
  ASSERT_EQ(c.keys.size(), 1u);
  EXPECT_EQ(c.keys[0].param, 2);
  c = C("INSERT INTO orders (amount, tenant_id) VALUES (10, 3), (20, $1)");
  ASSERT_EQ(c.keys.size(), 2u);
  EXPECT_EQ(*c.keys[0].literal, "3");
  EXPECT_EQ(c.keys[1].param, 1);
  c = C("SELECT * FROM t WHERE '7' = tenant_id");
  ASSERT_EQ(c.keys.size(), 1u);
  EXPECT_EQ(*c.keys[0].literal, "7");
  c = C("SELECT * FROM t WHERE tenant_id = 1 OR tenant_id = 2");  // not a single shard
  EXPECT_TRUE(c.keys.empty());
  c = C("SET bulwark.tenant_id = 12");
  ASSERT_TRUE(c.set_tenant.has_value());
  EXPECT_EQ(*c.set_tenant, "12");
  EXPECT_FALSE(c.write);
  c = C("/* tenant_id: 9 */ SELECT * FROM users");
  EXPECT_EQ(*c.hint_tenant, "9");
}

TEST(PgClassify, CommentsOutsideLiterals) {
  auto cs = SqlComments(
      "SELECT '/* not */', \"a--b\", $$ /* no */ $$, $q$x$q$ /* yes */ -- tail\n/* a /* nested */ "
      "b */");
  ASSERT_EQ(cs.size(), 3u);
  EXPECT_EQ(cs[0], " yes ");
  EXPECT_EQ(cs[1], " tail");
  EXPECT_EQ(cs[2], " a /* nested */ b ");
  EXPECT_TRUE(C("SELECT '/* bulwark:primary */'").write == false);
}

}  // namespace
}  // namespace bulwark::pg
