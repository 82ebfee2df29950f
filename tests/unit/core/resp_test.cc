#include "core/resp.h"

#include <gtest/gtest.h>

namespace bulwark {
namespace {

RespStatus Parse(std::string_view in, RedisReply* r, size_t* used, std::string* err) {
  return ParseResp(in, RespLimits{}, r, used, err);
}

TEST(Resp, ParsesEveryType) {
  RedisReply r;
  size_t used = 0;
  std::string err;
  ASSERT_EQ(Parse("+OK\r\n", &r, &used, &err), RespStatus::kDone);
  EXPECT_EQ(r.type, RedisReply::Type::kStatus);
  EXPECT_EQ(r.str, "OK");
  EXPECT_EQ(used, 5u);
  ASSERT_EQ(Parse("-NOSCRIPT No matching script\r\n", &r, &used, &err), RespStatus::kDone);
  EXPECT_TRUE(r.is_error());
  ASSERT_EQ(Parse(":-42\r\n", &r, &used, &err), RespStatus::kDone);
  EXPECT_EQ(r.integer, -42);
  ASSERT_EQ(Parse("$5\r\nhe\r\no\r\n", &r, &used, &err), RespStatus::kDone);
  EXPECT_EQ(r.str, "he\r\no");
  ASSERT_EQ(Parse("$-1\r\n", &r, &used, &err), RespStatus::kDone);
  EXPECT_EQ(r.type, RedisReply::Type::kNil);
  ASSERT_EQ(Parse("*3\r\n:1\r\n$1\r\nx\r\n*1\r\n+y\r\nrest", &r, &used, &err), RespStatus::kDone);
  ASSERT_EQ(r.elements.size(), 3u);
  EXPECT_EQ(r.elements[1].str, "x");
  EXPECT_EQ(r.elements[2].elements[0].str, "y");
  EXPECT_EQ(used, 23u);
}

TEST(Resp, WaitsForMoreAtEveryCut) {
  std::string full = "*2\r\n$3\r\nabc\r\n:7\r\n";
  for (size_t cut = 0; cut < full.size(); ++cut) {
    RedisReply r;
    size_t used = 0;
    std::string err;
    EXPECT_EQ(Parse(full.substr(0, cut), &r, &used, &err), RespStatus::kNeedMore) << cut;
  }
}

TEST(Resp, RefusesBadInput) {
  RespLimits tight;
  tight.max_bulk = 10;
  tight.max_elements = 4;
  tight.max_depth = 2;
  for (const char* bad : {"?x\r\n", ":12a\r\n", "$abc\r\n", "$3\r\nabcXY", "$-2\r\n", "*-5\r\n",
                          "$11\r\n", "*5\r\n", "*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"}) {
    RedisReply r;
    size_t used = 0;
    std::string err;
    EXPECT_EQ(ParseResp(bad, tight, &r, &used, &err), RespStatus::kError) << bad;
    EXPECT_FALSE(err.empty());
  }
}

TEST(Resp, EncodesCommands) {
  std::string out;
  AppendRespCommand(&out, {"SET", "k", std::string_view("a\0b", 3)});
  EXPECT_EQ(out, std::string("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na\0b\r\n", 29));
}

}  // namespace
}  // namespace bulwark
