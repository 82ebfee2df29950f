// The record bulwark keeps under one Redis key as a cache's second level: the cache library's
// entries and the gateway's HTTP cache zones' responses alike. Layout and keys:
// docs/formats/cache_l2.md.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/redis_client.h"
#include "core/strings.h"

namespace bulwark::cache {

// Limits on what a record carries, so a hostile or foreign value cannot blow up a reader.
constexpr size_t kL2MaxTags = 64;
constexpr size_t kL2MaxTagLength = 1024;

struct L2Record {
  // The key is known not to exist (the cache library's negative caching); no payload.
  bool negative = false;
  // Wall-clock milliseconds since the Unix epoch, so instances whose monotonic clocks started
  // at different times agree on freshness.
  int64_t fresh_until_ms = 0;
  int64_t stale_until_ms = 0;
  // For an instance that copies the value into its first level to drop it on a tag
  // invalidation. The HTTP cache keeps its tags inside the stored response and sends none here.
  std::vector<std::string_view> tags;
  std::string_view payload;
};

// Tags past kL2MaxTags and bytes of a tag past kL2MaxTagLength are left out.
std::string EncodeL2Record(const L2Record& r);
// False for anything else (a foreign value under the prefix, another version, a truncated or
// oversized field): callers treat it as a miss. Views point into `in`.
bool DecodeL2Record(std::string_view in, L2Record* out);

// Adds `member` (a record's key) to the set at `tag_key`, which then lives at least `life_ms`
// plus a minute: a tag set outlives its members a little, and a stale member only costs a
// useless DEL on purge.
// `redis` is a RedisClient or anything with its Command (the cache library's cluster link).
template <typename Redis>
void AddToL2TagSet(Redis& redis, const std::string& tag_key, const std::string& member,
                   int64_t life_ms) {
  std::string px = StrCat(std::max<int64_t>(life_ms, 1) + 60000);
  redis.Command({"SADD", tag_key, member}, [](const RedisReply&) {});
  // GT extends a set that already expires; NX gives a new one its expiry (GT alone leaves a
  // key without an expiry as it is).
  redis.Command({"PEXPIRE", tag_key, px, "GT"}, [](const RedisReply&) {});
  redis.Command({"PEXPIRE", tag_key, px, "NX"}, [](const RedisReply&) {});
}

}  // namespace bulwark::cache
