#include "pg/config.h"

#include <gtest/gtest.h>

#include "tests/unit/fake_env.h"

namespace bulwark::pg {
namespace {

// Loads `text` as a whole file holding a `pg:` block; returns the errors, one per line.
std::string Load(const std::string& text, PgConfig* out) {
  ConfigContext ctx("bulwark.yml", testing::FakeEnv());
  ctx.set_dir(std::string(BULWARK_SOURCE_DIR) + "/config");
  auto root = LoadYamlText(ctx, text);
  if (root) LoadPgConfig(ctx, (*root)["pg"], out);
  return ctx.ErrorText();
}

TEST(PgConfig, PgBouncerNamesAndDefaults) {
  PgConfig c;
  ASSERT_EQ(Load(R"(pg:
  listen: 127.0.0.1:6432
  pool_mode: transaction
  default_pool_size: 40
  reserve_pool_size: 5
  reserve_pool_timeout: 3s
  server_idle_timeout: 60s
  query_wait_timeout: 30s
  max_packet_size: 1MiB
  users:
    - {name: app, password: secret, pool_mode: session}
  databases:
    app:
      dbname: app_prod
      servers:
        - 127.0.0.1:5432
        - {address: '127.0.0.1:5433', role: replica}
        - /var/run/postgresql:5434
)",
                 &c),
            "");
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.pool_mode, PoolMode::kTransaction);
  EXPECT_EQ(c.default_pool_size, 40);
  EXPECT_EQ(c.reserve_pool_size, 5);
  EXPECT_EQ(c.reserve_pool_timeout_ms, 3000);
  EXPECT_EQ(c.server_idle_timeout_ms, 60000);
  EXPECT_EQ(c.query_wait_timeout_ms, 30000);
  EXPECT_EQ(c.max_packet_size, 1 << 20);
  // PgBouncer's defaults where the file says nothing.
  EXPECT_EQ(c.max_client_conn, 100);
  EXPECT_EQ(c.server_lifetime_ms, 3600 * 1000);
  EXPECT_EQ(c.server_reset_query, "DISCARD ALL");
  EXPECT_EQ(c.auth_type, AuthType::kScram);
  ASSERT_EQ(c.users.size(), 1u);
  EXPECT_EQ(c.users[0].pool_mode, PoolMode::kSession);
  const DatabaseConfig& db = c.databases.at("app");
  EXPECT_EQ(db.dbname, "app_prod");
  ASSERT_EQ(db.servers.size(), 3u);
  EXPECT_EQ(db.servers[0].role, Role::kAuto);
  EXPECT_EQ(db.servers[1].role, Role::kReplica);
  EXPECT_EQ(db.servers[2].unix_path, "/var/run/postgresql/.s.PGSQL.5434");
}

TEST(PgConfig, MistakesAreReportedWithTheirLines) {
  PgConfig c;
  std::string errors = Load(R"(pg:
  pool_mode: statement
  auth_user: pgbouncer
  users:
    - {name: app, password: x}
    - {name: app, password: y}
  databases:
    app:
      servers:
        - {address: '127.0.0.1:5432', role: primary}
        - {address: '127.0.0.1', role: primary}
  colour: blue
)",
                            &c);
  EXPECT_NE(errors.find("bulwark.yml:2:14: pg.pool_mode: \"statement\" pooling is not supported"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("user \"app\" is listed twice"), std::string::npos) << errors;
  EXPECT_NE(errors.find("pg.auth_user: \"pgbouncer\" must be in pg.users"), std::string::npos);
  EXPECT_NE(errors.find("11:11: pg.databases.app.servers[1]: invalid address \"127.0.0.1\""),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("2 servers say role: primary; at most one may"), std::string::npos);
  EXPECT_NE(errors.find("colour"), std::string::npos) << errors;
}

TEST(PgConfig, TheAlkaidSysShardingFileCanBeReferenced) {
  PgConfig c;
  ASSERT_EQ(Load(R"(pg:
  users: [{name: app, password: x}]
  databases:
    tenants:
      sharding_file: ../../shared/fixtures/seeds/000-sharding.yml
      servers: ['127.0.0.1:5432']
)",
                 &c),
            "");
  ASSERT_TRUE(c.databases.at("tenants").sharding.has_value());
  EXPECT_EQ(c.databases.at("tenants").sharding->databases.size(), 8u);
}

}  // namespace
}  // namespace bulwark::pg
