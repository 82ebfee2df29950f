#include "pg/classify.h"

#include <gtest/gtest.h>

namespace bulwark::pg {
namespace {

Classification C(const std::string& sql) { return Classify(sql, ClassifyOptions{}); }

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
