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
  EXPECT_NE(errors.find("11:11: pg.databases.app.servers[1]: \"127.0.0.1\" needs a port"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("2 servers say role: primary; at most one may"), std::string::npos);
  EXPECT_NE(errors.find("colour"), std::string::npos) << errors;
}

// Servers may be host names (an RDS endpoint, a Kubernetes Service): the proxy runs a copy of
// the configuration in which each name is the servers of its current addresses.
// A server written as a plain string goes through ${VAR} expansion like every other scalar
// (it once was read raw, so `${PG_PRIMARY:-...}` was refused as an address).
TEST(PgConfig, ServerStringsExpandEnvironmentVariables) {
  PgConfig c;
  ConfigContext ctx("bulwark.yml", testing::FakeEnv({{"PG_PRIMARY", "10.0.0.7:5432"}}));
  auto root = LoadYamlText(ctx, R"(pg:
  users: [{name: app, password: x}]
  databases:
    app:
      servers: ['${PG_PRIMARY}', '${PG_REPLICA:-10.0.0.8:5433}']
)");
  ASSERT_TRUE(root);
  LoadPgConfig(ctx, (*root)["pg"], &c);
  ASSERT_EQ(ctx.ErrorText(), "");
  EXPECT_EQ(c.databases["app"].servers[0].address.ToString(), "10.0.0.7:5432");
  EXPECT_EQ(c.databases["app"].servers[1].address.ToString(), "10.0.0.8:5433");
}

TEST(PgConfig, ServersByHostNameAreExpandedToTheirAddresses) {
  PgConfig c;
  ASSERT_EQ(Load(R"(pg:
  users: [{name: app, password: x}]
  databases:
    app:
      servers: ['DB.internal:5432']
    two:
      servers:
        - {address: 'primary.internal:5432', role: primary}
        - 'replicas.internal:5433'
        - '10.0.0.9:5432'
)",
                 &c),
            "");
  const ServerConfig& lone = c.databases["app"].servers[0];
  EXPECT_EQ(lone.host, "db.internal");
  EXPECT_EQ(lone.port, 5432);
  EXPECT_FALSE(lone.resolved);
  EXPECT_EQ(lone.role, Role::kPrimary);  // a lone server takes everything
  EXPECT_EQ(lone.where, "bulwark.yml:5:17");
  EXPECT_EQ(ServerHostNames(c),
            (std::vector<std::string>{"db.internal", "primary.internal", "replicas.internal"}));

  NameTable names;
  names["db.internal"] = {*IpAddress::Parse("10.1.0.1")};
  names["replicas.internal"] = {*IpAddress::Parse("10.2.0.1"), std::nullopt,
                                *IpAddress::Parse("10.2.0.3")};
  auto e = ExpandServerNames(c, &names);
  const auto& app = e->databases.at("app").servers;
  ASSERT_EQ(app.size(), 1u);
  EXPECT_EQ(app[0].Name(), "DB.internal:5432");
  EXPECT_EQ(app[0].address.ToString(), "10.1.0.1:5432");
  EXPECT_TRUE(app[0].resolved);
  EXPECT_EQ(app[0].role, Role::kPrimary);
  const auto& two = e->databases.at("two").servers;
  ASSERT_EQ(two.size(), 4u);
  EXPECT_EQ(two[0].Name(), "primary.internal:5432");  // no address yet: one server, down
  EXPECT_FALSE(two[0].resolved);
  EXPECT_EQ(two[0].role, Role::kPrimary);
  EXPECT_EQ(two[1].Name(), "replicas.internal:5433");
  EXPECT_EQ(two[1].address.ToString(), "10.2.0.1:5433");
  EXPECT_EQ(two[2].Name(), "replicas.internal:5433#3");
  EXPECT_EQ(two[2].address.ToString(), "10.2.0.3:5433");
  EXPECT_EQ(two[3].Name(), "10.0.0.9:5432");
  // A lone name with several addresses is several servers whose roles are found out.
  names["db.internal"].push_back(*IpAddress::Parse("10.1.0.2"));
  e = ExpandServerNames(c, &names);
  ASSERT_EQ(e->databases.at("app").servers.size(), 2u);
  for (const auto& s : e->databases.at("app").servers) EXPECT_EQ(s.role, Role::kAuto);
  // The configuration itself is left as written.
  EXPECT_FALSE(c.databases["app"].servers[0].resolved);

  std::string errors = Load(
      "pg:\n  users: [{name: app, password: x}]\n  databases:\n"
      "    app: {servers: ['bad!name:5432', 'db.internal']}\n",
      &c);
  EXPECT_NE(errors.find("is neither an IP address nor a host name"), std::string::npos) << errors;
  EXPECT_NE(errors.find("\"db.internal\" needs a port"), std::string::npos) << errors;
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
