#include "gateway/conn_limit.h"

#include <string>

#include "gtest/gtest.h"

namespace bulwark::gateway {
namespace {

TEST(ConnZone, CountsPerKeyAndGivesPlacesBack) {
  ConnZone z("perip", "client_ip", 1 << 20);
  EXPECT_TRUE(z.Acquire("a", 2));
  EXPECT_TRUE(z.Acquire("a", 2));
  EXPECT_FALSE(z.Acquire("a", 2));
  EXPECT_TRUE(z.Acquire("b", 2));
  EXPECT_EQ(z.Keys(), 2u);
  z.Release("a");
  EXPECT_TRUE(z.Acquire("a", 2));
  z.Release("a");
  z.Release("a");
  z.Release("b");
  EXPECT_EQ(z.Keys(), 0u);  // a key leaves the table when nothing is in progress
  z.Release("never-acquired");  // harmless
  EXPECT_EQ(z.Keys(), 0u);
}

TEST(ConnZone, AFullTableRefusesNewKeys) {
  // 32k / 128 bytes a key / 16 shards = 16 keys a shard; more keys than the table holds are
  // refused (nginx answers limit_conn_status when its zone has no room), known keys still count.
  ConnZone z("small", "client_ip", 32 * 1024);
  int admitted = 0;
  for (int i = 0; i < 1000; ++i) admitted += z.Acquire("k" + std::to_string(i), 5);
  EXPECT_LE(admitted, 256);
  EXPECT_GE(admitted, 16);
  EXPECT_EQ(z.Keys(), static_cast<size_t>(admitted));
  EXPECT_TRUE(z.Acquire("k0", 5));
}

}  // namespace
}  // namespace bulwark::gateway
