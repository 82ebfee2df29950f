#include "pg/sharding.h"

#include <gtest/gtest.h>

#include "tests/unit/fake_env.h"

namespace bulwark::pg {
namespace {

TEST(PgSharding, AlkaidSysShardingFileLoadsAsItIs) {
  std::string path = std::string(BULWARK_SOURCE_DIR) + "/../shared/fixtures/seeds/000-sharding.yml";
  ConfigContext ctx(path, testing::FakeEnv());
  auto root = LoadYamlFile(ctx, path);
  ASSERT_TRUE(root.has_value()) << ctx.ErrorText();
  ShardingConfig cfg;
  LoadSharding(ctx, (*root)["sharding"], &cfg);
  ASSERT_TRUE(ctx.ok()) << ctx.ErrorText();
  EXPECT_EQ(cfg.databases.size(), 8u);
  EXPECT_EQ(cfg.shard_column, "tenant_id");
  ASSERT_EQ(cfg.tables.size(), 2u);
  const ShardedTable& users = cfg.tables.at("users");
  // db_tenant_${tenant_id % 8}: tenant 11 -> db_tenant_3, which the list spells db_tenant_0003.
  EXPECT_EQ(*cfg.DatabaseFor(users, "11"), "db_tenant_0003");
  EXPECT_EQ(*cfg.DatabaseFor("-1"), "db_tenant_0007");
  EXPECT_FALSE(cfg.DatabaseFor(users, "abc").ok());
  ASSERT_TRUE(users.monthly.has_value());
  EXPECT_EQ(*users.monthly->TableFor("2025-03-14 10:00:00+00"), "users_2025_03");
  EXPECT_EQ(*users.monthly->TableFor("1767225600"), "users_2026_01");  // 2026-01-01T00:00:00Z
  EXPECT_EQ(users.monthly->TableFor("2031-01-01").status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(users.monthly->TableFor("yesterday").ok());
  bool mapped = false, ignored = false;
  for (const std::string& n : cfg.notes) {
    mapped |= n.find("\"db_tenant_0\" is taken to mean \"db_tenant_0000\"") != std::string::npos;
    ignored |= n.find("sharding.tables.orders.table_strategy is not used") != std::string::npos;
  }
  EXPECT_TRUE(mapped);
  EXPECT_TRUE(ignored);
}

TEST(PgSharding, ExpressionsAndErrors) {
  auto e = ShardExpression::Parse("shard_${id % 4}_x");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e->Eval("10"), "shard_2_x");
  EXPECT_EQ(*ShardExpression::Parse("db_${region}")->Eval("eu"), "db_eu");
  for (const char* bad : {"db", "db_${id % 0}", "db_${id % x}", "${a}${b}", "db_${}"}) {
    EXPECT_FALSE(ShardExpression::Parse(bad).ok()) << bad;
  }
  ConfigContext ctx("s.yml", testing::FakeEnv());
  auto root = LoadYamlText(
      ctx,
      "databases: [a_1, a_2]\ntables:\n  t:\n    database_strategy: {type: standard, "
      "sharding_column: k, algorithm_expression: 'b_${k % 2}'}\n    sharding_typo: x\n");
  ASSERT_TRUE(root.has_value());
  ShardingConfig cfg;
  LoadSharding(ctx, *root, &cfg);
  std::string errors = ctx.ErrorText();
  EXPECT_NE(errors.find("not in sharding.databases"), std::string::npos) << errors;
  EXPECT_NE(errors.find("sharding_typo"), std::string::npos) << errors;
}

}  // namespace
}  // namespace bulwark::pg
