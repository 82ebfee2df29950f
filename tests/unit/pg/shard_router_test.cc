#include "pg/shard_router.h"

#include <gtest/gtest.h>

#include "tests/unit/fake_env.h"

namespace bulwark::pg {
namespace {

class ShardRouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string path =
        std::string(BULWARK_SOURCE_DIR) + "/../shared/fixtures/seeds/000-sharding.yml";
    ConfigContext ctx(path, testing::FakeEnv());
    auto root = LoadYamlFile(ctx, path);
    ASSERT_TRUE(root.has_value()) << ctx.ErrorText();
    LoadSharding(ctx, (*root)["sharding"], &cfg_);
    ASSERT_TRUE(ctx.ok()) << ctx.ErrorText();
    options_ = ShardClassifyOptions(cfg_, ClassifyOptions{});
  }
  absl::StatusOr<ShardRoute> Route(const std::string& sql,
                                   std::vector<std::optional<std::string>> params = {},
                                   std::optional<std::string> session = std::nullopt) {
    return RouteShard(cfg_, Classify(sql, options_), sql, params, session, false);
  }
  ShardingConfig cfg_;
  ClassifyOptions options_;
};

TEST_F(ShardRouterTest, TenantFromTheWhereClauseAndTheMonthFromTheDate) {
  auto r = Route("SELECT name FROM users WHERE tenant_id = 11 AND created_at = '2025-03-14'");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->shard, 3);  // db_tenant_${11 % 8}
  EXPECT_EQ(r->tenant, "11");
  EXPECT_EQ(r->sql,
            "SELECT name FROM users_2025_03 WHERE tenant_id = 11 AND created_at = '2025-03-14'");
}

TEST_F(ShardRouterTest, EveryKeySource) {
  // Parameters ($n), as the extended protocol sends them.
  auto p =
      Route("SELECT * FROM users WHERE created_at = $2 AND tenant_id = $1", {"9", "2025-02-01"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->shard, 1);
  EXPECT_EQ(p->sql, "SELECT * FROM users_2025_02 WHERE created_at = $2 AND tenant_id = $1");
  // INSERT values.
  auto i = Route("INSERT INTO orders (id, tenant_id, created_at) VALUES (1, 6, '2025-01-05')");
  ASSERT_TRUE(i.ok()) << i.status();
  EXPECT_EQ(i->shard, 6);
  EXPECT_EQ(i->sql,
            "INSERT INTO orders_2025_01 (id, tenant_id, created_at) VALUES (1, 6, '2025-01-05')");
  // A comment names the tenant; it wins over the session's.
  auto h = Route("/* tenant_id: 5 */ SELECT count(*) FROM orders WHERE created_at = '2025-01-02'",
                 {}, "4");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->shard, 5);
  // The session's tenant (SET bulwark.tenant_id), for queries that do not name one.
  auto s = Route("SELECT 1", {}, "4");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->shard, 4);
  EXPECT_EQ(s->sql, "");  // nothing to rename
}

TEST_F(ShardRouterTest, WhatCannotBeRoutedSaysWhy) {
  auto none = Route("SELECT count(*) FROM users WHERE created_at = '2025-01-01'");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(none.status().message().find("no shard key"), std::string::npos);
  auto two = Route(
      "INSERT INTO orders (id, tenant_id, created_at) VALUES (1, 1, '2025-01-05'), "
      "(2, 2, '2025-01-05')");
  EXPECT_EQ(two.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(two.status().message().find("several tenants (tenant_id 1 and 2)"), std::string::npos);
  auto nodate = Route("SELECT * FROM users WHERE tenant_id = 1");
  EXPECT_EQ(nodate.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(nodate.status().message().find("table users is split by month"), std::string::npos);
  auto late = Route("SELECT * FROM users WHERE tenant_id = 1 AND created_at = '2031-01-01'");
  EXPECT_EQ(late.status().code(), absl::StatusCode::kOutOfRange);
  auto unbound = Route("SELECT * FROM users WHERE tenant_id = $1 AND created_at = '2025-01-01'");
  EXPECT_EQ(unbound.status().code(), absl::StatusCode::kInvalidArgument);
  auto months = Route(
      "SELECT * FROM users WHERE tenant_id = 1 AND created_at = '2025-01-01' "
      "UNION ALL SELECT * FROM users WHERE tenant_id = 1 AND created_at = "
      "'2025-02-01'");
  EXPECT_FALSE(months.ok());
}

// A statement's own tenant must agree with the hint and the session's tenant (a disagreement
// would reach another tenant's rows, maybe on the wrong shard), and the sharding column is never
// assigned, as ShardingSphere and Citus refuse.
TEST_F(ShardRouterTest, DisagreeingTenantsAndShardKeyUpdatesAreRefused) {
  const std::string q = "SELECT * FROM orders WHERE tenant_id = 3 AND created_at = '2025-01-02'";
  auto hint = Route("/* tenant_id: 5 */ " + q);
  EXPECT_EQ(hint.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(hint.status().message(),
            "the query names tenant_id 3 but its /* tenant_id: 5 */ comment another tenant");
  auto session = Route(q, {}, "11");  // 11 % 8 = 3: the same shard, still another tenant
  EXPECT_EQ(session.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(session.status().message(),
            "the query names tenant_id 3 but the session's bulwark.tenant_id is 11");
  auto param = Route("SELECT * FROM orders WHERE tenant_id = $1 AND created_at = '2025-01-02'",
                     {"4"}, "3");
  EXPECT_FALSE(param.ok());
  // Agreeing spellings pass.
  EXPECT_TRUE(Route("/* tenant_id: 3 */ " + q).ok());
  EXPECT_TRUE(Route(q, {}, "003").ok());
  EXPECT_TRUE(Route("SELECT * FROM orders WHERE tenant_id = '3' AND tenant_id = 3 AND "
                    "created_at = '2025-01-02'")
                  .ok());
  for (const char* sql :
       {"UPDATE orders SET tenant_id = 4 WHERE tenant_id = 3 AND created_at = '2025-01-02'",
        "UPDATE orders SET (tenant_id, id) = (4, 1) WHERE tenant_id = 3 AND created_at = "
        "'2025-01-02'",
        "INSERT INTO orders (id, tenant_id, created_at) VALUES (1, 3, '2025-01-02') ON CONFLICT "
        "(id) DO UPDATE SET tenant_id = 4"}) {
    auto u = Route(sql);
    EXPECT_EQ(u.status().code(), absl::StatusCode::kFailedPrecondition) << sql;
    EXPECT_NE(u.status().message().find("assigns the sharding column tenant_id"),
              std::string::npos)
        << sql;
  }
  EXPECT_TRUE(
      Route("UPDATE orders SET id = 2 WHERE tenant_id = 3 AND created_at = '2025-01-02'").ok());
}

}  // namespace
}  // namespace bulwark::pg
