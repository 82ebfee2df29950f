#include "cache/l2_record.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace bulwark::cache {
namespace {

TEST(L2Record, RoundTripsEveryField) {
  L2Record r;
  r.fresh_until_ms = 1767225600123;
  r.stale_until_ms = 1767225660123;
  r.tags = {"user:1", "", "tenant:a"};
  std::string payload("v\0alue", 6);
  r.payload = payload;
  std::string bytes = EncodeL2Record(r);
  // version, flags, two times, tag count, three tags of 2 + n bytes, the payload
  EXPECT_EQ(bytes.size(), 1 + 1 + 8 + 8 + 2 + (2 + 6) + 2 + (2 + 8) + payload.size());
  L2Record d;
  ASSERT_TRUE(DecodeL2Record(bytes, &d));
  EXPECT_FALSE(d.negative);
  EXPECT_EQ(d.fresh_until_ms, r.fresh_until_ms);
  EXPECT_EQ(d.stale_until_ms, r.stale_until_ms);
  EXPECT_EQ(d.tags, r.tags);
  EXPECT_EQ(d.payload, payload);
}

TEST(L2Record, NegativeEntriesCarryNoPayload) {
  L2Record r;
  r.negative = true;
  r.fresh_until_ms = -5;  // times are signed
  L2Record d;
  ASSERT_TRUE(DecodeL2Record(EncodeL2Record(r), &d));
  EXPECT_TRUE(d.negative);
  EXPECT_EQ(d.fresh_until_ms, -5);
  EXPECT_TRUE(d.payload.empty());
  std::string bad = EncodeL2Record(r) + "x";  // a negative entry with a value is not ours
  EXPECT_FALSE(DecodeL2Record(bad, &d));
}

TEST(L2Record, TagsPastTheLimitsAreLeftOut) {
  std::vector<std::string> many(kL2MaxTags + 5, "t");
  many[0] = std::string(kL2MaxTagLength + 10, 'x');
  L2Record r;
  r.tags.assign(many.begin(), many.end());
  L2Record d;
  ASSERT_TRUE(DecodeL2Record(EncodeL2Record(r), &d));
  ASSERT_EQ(d.tags.size(), kL2MaxTags);
  EXPECT_EQ(d.tags[0].size(), kL2MaxTagLength);
}

TEST(L2Record, AnythingElseIsAMiss) {
  L2Record r;
  r.payload = "value";
  std::string good = EncodeL2Record(r);
  L2Record d;
  // Every truncation of the header.
  for (size_t n = 0; n < 20; ++n) EXPECT_FALSE(DecodeL2Record(good.substr(0, n), &d)) << n;
  std::string v1 = good;
  v1[0] = 1;  // the previous layout
  EXPECT_FALSE(DecodeL2Record(v1, &d));
  std::string flags = good;
  flags[1] = 2;  // a flag this version does not define
  EXPECT_FALSE(DecodeL2Record(flags, &d));
  std::string tags = good;
  tags[18] = static_cast<char>(kL2MaxTags + 1);  // more tags than allowed
  EXPECT_FALSE(DecodeL2Record(tags, &d));
  std::string longtag = good;
  longtag[18] = 1;  // one tag whose length runs past the end
  longtag.insert(20, "\xff\x03");
  EXPECT_FALSE(DecodeL2Record(longtag, &d));
  EXPECT_FALSE(DecodeL2Record("plain string somebody SET", &d));
}

}  // namespace
}  // namespace bulwark::cache
