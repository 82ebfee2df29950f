#include "core/redis_cluster.h"

#include <gtest/gtest.h>

#include <string>

#include "core/resp.h"

namespace bulwark {
namespace {

// Values from the Redis Cluster specification and redis-cli's "Redirected to slot" examples.
TEST(RedisCluster, KeySlotIsCrc16ModuloTheSlotCount) {
  EXPECT_EQ(RedisClusterClient::KeySlot("123456789"), 0x31C3);  // the spec's CRC16 check value
  EXPECT_EQ(RedisClusterClient::KeySlot("foo"), 12182);
  EXPECT_EQ(RedisClusterClient::KeySlot("bar"), 5061);
  EXPECT_EQ(RedisClusterClient::KeySlot("hello"), 866);
  EXPECT_EQ(RedisClusterClient::KeySlot(""), 0);
}

TEST(RedisCluster, HashTagsFollowTheSpecRules) {
  auto slot = RedisClusterClient::KeySlot;
  // The part between the first '{' and the next '}' is hashed...
  EXPECT_EQ(slot("{user1000}.following"), slot("user1000"));
  EXPECT_EQ(slot("{user1000}.followers"), slot("{user1000}.following"));
  EXPECT_EQ(slot("foo{bar}{zap}"), slot("bar"));
  EXPECT_EQ(slot("foo{{bar}}zap"), slot("{bar"));
  // ...unless it is empty or never closed: then the whole key is.
  EXPECT_NE(slot("foo{}{bar}"), slot("bar"));
  EXPECT_NE(slot("{user1000"), slot("user1000"));
}

TEST(RedisCluster, RedirectionsAreParsedAndOtherErrorsAreNot) {
  bool ask = true;
  uint16_t slot = 0;
  std::string_view address;
  ASSERT_TRUE(
      RedisClusterClient::ParseRedirect("MOVED 3999 127.0.0.1:6381", &ask, &slot, &address));
  EXPECT_FALSE(ask);
  EXPECT_EQ(slot, 3999);
  EXPECT_EQ(address, "127.0.0.1:6381");
  ASSERT_TRUE(RedisClusterClient::ParseRedirect("ASK 16383 [::1]:7000", &ask, &slot, &address));
  EXPECT_TRUE(ask);
  EXPECT_EQ(slot, 16383);
  EXPECT_EQ(address, "[::1]:7000");
  for (const char* bad : {"MOVED 16384 127.0.0.1:1", "MOVED x 127.0.0.1:1", "MOVED 1", "MOVED 1 ",
                          "ERR wrong type", "NOSCRIPT", "ASKING"}) {
    EXPECT_FALSE(RedisClusterClient::ParseRedirect(bad, &ask, &slot, &address)) << bad;
  }
}

RedisReply Parse(std::string_view wire) {
  RedisReply r;
  size_t used = 0;
  std::string err;
  EXPECT_EQ(ParseResp(wire, RespLimits{}, &r, &used, &err), RespStatus::kDone) << err;
  return r;
}

TEST(RedisCluster, SlotMapSkipsWhatItCannotUse) {
  // Three ranges: a normal one, one whose master is "the node asked" (empty ip, Redis 7), one
  // whose endpoint is unknown ("?"); then a malformed one (string bounds).
  RedisReply r = Parse(
      "*4\r\n"
      "*3\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
      "*3\r\n:5461\r\n:10922\r\n*2\r\n$0\r\n\r\n:7001\r\n"
      "*3\r\n:10923\r\n:16383\r\n*2\r\n$1\r\n?\r\n:7002\r\n"
      "*3\r\n$1\r\n0\r\n$1\r\n9\r\n*2\r\n$9\r\n127.0.0.1\r\n:7003\r\n");
  auto ranges = RedisClusterClient::ParseSlots(r, "10.0.0.9");
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].from, 0);
  EXPECT_EQ(ranges[0].to, 5460);
  EXPECT_EQ(ranges[0].master, "127.0.0.1:7000");
  EXPECT_EQ(ranges[1].from, 5461);
  EXPECT_EQ(ranges[1].to, 10922);
  EXPECT_EQ(ranges[1].master, "10.0.0.9:7001");
  EXPECT_TRUE(RedisClusterClient::ParseSlots(
                  Parse("-ERR This instance has cluster support disabled\r\n"), "x")
                  .empty());
}

}  // namespace
}  // namespace bulwark
