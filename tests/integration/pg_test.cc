// The PostgreSQL plane's parts against a real PostgreSQL 15 (Debian's, run as the postgres
// user): the protocol codec and the client side of md5 and SCRAM-SHA-256 authentication, as
// the proxy will speak them to its servers; the query classifier against what a read-only
// transaction refuses; and the harness's streaming replicas the routing tests will use.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "pg/auth.h"
#include "core/strings.h"
#include "pg/classify.h"
#include "pg/health.h"
#include "pg/protocol.h"
#include "tests/integration/harness.h"
#include "tests/integration/pg_client.h"

namespace bulwark::testing {
namespace {

TEST(PgReal, Md5AndScramLoginsAndQueries) {
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << ReadFile(pg.dir() + "/initdb.log") << pg.log();
  pg.Psql(
      "SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD 's3cret';"
      "SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'pw';");
  pg.Psql("CREATE DATABASE app OWNER scram_user");  // not inside the block above
  {
    PgConn c(pg.port());
    ASSERT_EQ(c.Login("scram_user", "s3cret", "app"), "");
    EXPECT_EQ(c.used(), "scram");
    EXPECT_TRUE(c.verified());  // the server proved it knows the verifier
    EXPECT_EQ(c.Query("SELECT 40 + 2"), "42");
    EXPECT_EQ(c.Query("SELECT x FROM generate_series(1, 3) x"), "1|2|3");
    EXPECT_EQ(c.Query("SELEC 1"), "ERROR 42601");
  }
  {
    PgConn c(pg.port());
    ASSERT_EQ(c.Login("md5_user", "pw", "postgres"), "");
    EXPECT_EQ(c.used(), "md5");
    EXPECT_EQ(c.Query("SELECT current_user"), "md5_user");
  }
  {
    PgConn c(pg.port());
    EXPECT_EQ(c.Login("scram_user", "wrong", "app").substr(0, 5), "28P01");
  }
  {
    PgConn c(pg.port());
    EXPECT_EQ(c.Login("md5_user", "wrong", "postgres").substr(0, 5), "28P01");
  }
  // The verifier bulwark would keep for a user list checks out against PostgreSQL's own.
  std::string stored = pg.Psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_user'");
  auto v = pg::ParseScramVerifier(stored);
  ASSERT_TRUE(v.ok()) << stored;
  pg::ScramVerifier mine = pg::MakeScramVerifier("s3cret", v->salt, v->iterations);
  EXPECT_EQ(mine.stored_key, v->stored_key);
  EXPECT_EQ(mine.server_key, v->server_key);
}

TEST(PgReal, ClassifierAgreesWithAReadOnlyReplicaOnWhatIsARead) {
  // What PostgreSQL refuses in a read-only transaction (what a replica refuses), the classifier
  // must call a write; what it accepts may be a read.
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.log();
  pg.Psql(
      "CREATE TABLE t (id int, tenant_id int); CREATE SEQUENCE s;"
      "CREATE FUNCTION bump() RETURNS int LANGUAGE sql AS 'UPDATE t SET id = id + 1 RETURNING 1';"
      "CREATE FUNCTION twice(int) RETURNS int STABLE LANGUAGE sql AS 'SELECT $1 * 2';");
  // The functions the proxy would learn from this server.
  pg::FunctionNames known;
  for (const std::string& name : Split(pg.Psql(pg::ReadOnlyFunctionsQuery()), '\n')) {
    if (!name.empty()) known.insert(name);
  }
  EXPECT_GT(known.size(), 1000u);
  EXPECT_TRUE(known.count("twice") && known.count("count") && !known.count("bump"));
  for (const char* sql : {"SELECT * FROM t WHERE tenant_id = 1", "SELECT count(*) FROM t",
                          "SELECT bump()", "SELECT twice(id), lower('A'), now() FROM t",
                          "SELECT pg_is_in_recovery(), random()",
                          "INSERT INTO t VALUES (1, 1)", "UPDATE t SET id = 2", "DELETE FROM t",
                          "SELECT * FROM t FOR UPDATE", "SELECT nextval('s')",
                          "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                          "CREATE TABLE u (a int)", "SELECT * INTO v FROM t"}) {
    std::string out = pg.Psql(std::string("BEGIN TRANSACTION READ ONLY; ") + sql + "; COMMIT;");
    pg::Classification c = pg::Classify(sql, pg::ClassifyOptions{}, &known);
    // psql prints nothing for a refused statement on stdout; its error goes to stderr, which
    // the harness keeps in the same file: "ERROR:  cannot execute ... in a read-only transaction".
    bool read_only_error = out.find("read-only transaction") != std::string::npos;
    EXPECT_EQ(c.write, read_only_error) << sql << " -> " << out << " (" << c.reason << ")";
  }
}

}  // namespace
}  // namespace bulwark::testing

namespace bulwark::testing {
namespace {

TEST(PgReal, StreamingReplicasFollowThePrimaryAndCanBePaused) {
  PostgresServer primary;
  ASSERT_TRUE(primary.ok()) << primary.log();
  PostgresServer r1(PostgresServer::ReplicaOf{&primary}), r2(PostgresServer::ReplicaOf{&primary});
  ASSERT_TRUE(r1.ok()) << ReadFile(r1.dir() + "/basebackup.log") << r1.log();
  ASSERT_TRUE(r2.ok()) << r2.log();
  EXPECT_EQ(primary.Psql("SELECT pg_is_in_recovery()"), "f");
  EXPECT_EQ(r1.Psql("SELECT pg_is_in_recovery()"), "t");
  EXPECT_EQ(primary.Psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"),
            "2");
  primary.Psql("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10)");
  auto count_is = [](PostgresServer& s, const std::string& want) {
    for (int i = 0; i < 100; ++i) {
      if (s.Psql("SELECT count(*) FROM t") == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  ASSERT_TRUE(count_is(r1, "10"));
  ASSERT_TRUE(count_is(r2, "10"));
  // A replica whose replay is paused falls behind (how the lag tests will exclude one).
  r1.Psql("SELECT pg_wal_replay_pause()");
  primary.Psql("INSERT INTO t SELECT generate_series(11, 20)");
  ASSERT_TRUE(count_is(r2, "20"));
  EXPECT_EQ(r1.Psql("SELECT count(*) FROM t"), "10");
  EXPECT_EQ(
      r1.Psql("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) > 0"),
      "t");
  r1.Psql("SELECT pg_wal_replay_resume()");
  EXPECT_TRUE(count_is(r1, "20"));
}

}  // namespace
}  // namespace bulwark::testing
