#include "cache/http_policy.h"

#include <gtest/gtest.h>

namespace bulwark::cache {
namespace {

CacheControl CC(std::string_view v) {
  CacheControl c;
  ParseCacheControl(v, &c);
  return c;
}

TEST(CacheControl, Directives) {
  CacheControl c = CC("public, max-age=60, s-maxage=\"120\", stale-while-revalidate=30, X-Ext=1");
  EXPECT_TRUE(c.public_);
  EXPECT_EQ(c.max_age, 60);
  EXPECT_EQ(c.s_maxage, 120);
  EXPECT_EQ(c.stale_while_revalidate, 30);
  EXPECT_EQ(c.stale_if_error, -1);
  c = CC("No-Store , PRIVATE,no-cache=\"Set-Cookie, X\",must-revalidate");
  EXPECT_TRUE(c.no_store);
  EXPECT_TRUE(c.private_);
  EXPECT_TRUE(c.no_cache);
  EXPECT_TRUE(c.must_revalidate);
  EXPECT_EQ(CC("max-age=abc").max_age, -1);
  EXPECT_EQ(CC("max-age=99999999999999").max_age, int64_t{1} << 31);  // saturates per §1.2.2
  CacheControl two;
  ParseCacheControl("max-age=5", &two);
  ParseCacheControl("stale-if-error=7", &two);  // a second header line adds to the first
  EXPECT_EQ(two.max_age, 5);
  EXPECT_EQ(two.stale_if_error, 7);
}

TEST(HttpDate, TheThreeFormats) {
  EXPECT_EQ(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
  EXPECT_EQ(ParseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
  EXPECT_EQ(ParseHttpDate("Sun Nov  6 08:49:37 1994"), 784111777);
  EXPECT_EQ(ParseHttpDate("0"), -1);
  EXPECT_EQ(ParseHttpDate("Sun, 06 Nov 1994 25:49:37 GMT"), -1);
  EXPECT_EQ(ParseHttpDate(""), -1);
}

HttpCacheRules Rules() {
  HttpCacheRules r;
  r.default_ttl_ms = 60000;
  r.statuses = {200, 301, 404};
  return r;
}

TEST(DecideStorage, Lifetimes) {
  const int64_t now = 1000000;
  ResponseFacts f;
  f.status = 200;
  StorageDecision d = DecideStorage(f, Rules(), now);
  EXPECT_TRUE(d.store);
  EXPECT_EQ(d.fresh_ms, 60000);  // the route's TTL, as nginx proxy_cache_valid
  f.cc = CC("max-age=10");
  EXPECT_EQ(DecideStorage(f, Rules(), now).fresh_ms, 10000);
  f.cc = CC("max-age=10, s-maxage=20");
  EXPECT_EQ(DecideStorage(f, Rules(), now).fresh_ms, 20000);  // shared caches prefer s-maxage
  f.cc = CacheControl{};
  f.date = now - 5;
  f.expires = now + 30;
  EXPECT_EQ(DecideStorage(f, Rules(), now).fresh_ms, 30000);  // Expires - Date, minus 5 s of age
  f.expires = -1;  // an invalid Expires means already expired
  EXPECT_FALSE(DecideStorage(f, Rules(), now).store);
  f = ResponseFacts{};
  f.status = 200;
  f.cc = CC("max-age=100");
  f.age = 40;
  EXPECT_EQ(DecideStorage(f, Rules(), now).fresh_ms, 60000);
  f.status = 500;
  f.age = 0;
  f.cc = CacheControl{};
  EXPECT_FALSE(DecideStorage(f, Rules(), now).store);  // not in the list, no explicit freshness
  f.cc = CC("max-age=5");
  EXPECT_TRUE(DecideStorage(f, Rules(), now).store);  // explicit freshness: any final status
}

TEST(DecideStorage, WhatIsNeverStored) {
  auto reason = [](ResponseFacts f) {
    f.status = f.status ? f.status : 200;
    StorageDecision d = DecideStorage(f, Rules(), 1000);
    return d.store ? std::string("stored") : std::string(d.reason);
  };
  ResponseFacts f;
  f.cc = CC("no-store");
  EXPECT_EQ(reason(f), "no-store");
  f.cc = CC("private, max-age=60");
  EXPECT_EQ(reason(f), "private");
  f = ResponseFacts{};
  f.request_no_store = true;
  EXPECT_EQ(reason(f), "no-store");
  f = ResponseFacts{};
  f.vary_star = true;
  EXPECT_EQ(reason(f), "Vary: *");
  f = ResponseFacts{};
  f.has_set_cookie = true;
  EXPECT_EQ(reason(f), "Set-Cookie");
  f = ResponseFacts{};
  f.status = 206;
  EXPECT_EQ(reason(f), "status");
  f = ResponseFacts{};
  f.request_authorization = true;
  EXPECT_EQ(reason(f), "Authorization");
  f.cc = CC("public");
  EXPECT_EQ(reason(f), "stored");  // §3.5: public allows it
  f.cc = CC("s-maxage=10");
  EXPECT_EQ(reason(f), "stored");
}

TEST(DecideStorage, StaleWindowsAndRevalidation) {
  HttpCacheRules r = Rules();
  r.stale_if_error_ms = 3600000;
  ResponseFacts f;
  f.status = 200;
  f.cc = CC("max-age=60, stale-while-revalidate=30");
  StorageDecision d = DecideStorage(f, r, 1000);
  EXPECT_EQ(d.stale_while_revalidate_ms, 30000);
  EXPECT_EQ(d.stale_if_error_ms, 3600000);  // the route's default
  f.cc = CC("max-age=60, stale-if-error=10");
  EXPECT_EQ(DecideStorage(f, r, 1000).stale_if_error_ms, 10000);  // the response's own
  f.cc = CC("max-age=60, stale-while-revalidate=30, must-revalidate");
  d = DecideStorage(f, r, 1000);
  EXPECT_EQ(d.stale_while_revalidate_ms, 0);
  EXPECT_EQ(d.stale_if_error_ms, 0);
  f.cc = CC("no-cache");
  d = DecideStorage(f, r, 1000);
  EXPECT_TRUE(d.store);  // kept only for stale-if-error
  EXPECT_EQ(d.fresh_ms, 0);
  r.stale_if_error_ms = 0;
  EXPECT_FALSE(DecideStorage(f, r, 1000).store);
}

TEST(HttpObject, RoundTripAndRejectsGarbage) {
  HttpObject o;
  o.status = 404;
  o.head = "Content-Type: text/plain\r\nETag: \"x\"\r\n";
  o.vary = {{"accept-encoding", "gzip"}};
  o.stored_unix_s = 1234567;
  o.initial_age_s = 3;
  o.stale_while_revalidate_ms = 5000;
  o.stale_if_error_ms = 60000;
  o.tags = {"product-1", "catalog"};
  o.body = std::string("body\0bytes", 10);
  std::string enc = EncodeHttpObject(o);
  HttpObjectView v;
  ASSERT_TRUE(DecodeHttpObject(enc, &v));
  EXPECT_EQ(v.status, 404);
  EXPECT_EQ(v.head, o.head);
  ASSERT_EQ(v.vary.size(), 1u);
  EXPECT_EQ(v.vary[0].second, "gzip");
  EXPECT_EQ(v.stored_unix_s, 1234567);
  EXPECT_EQ(v.initial_age_s, 3);
  EXPECT_EQ(v.stale_while_revalidate_ms, 5000);
  EXPECT_EQ(v.stale_if_error_ms, 60000);
  ASSERT_EQ(v.tags.size(), 2u);
  EXPECT_EQ(v.tags[1], "catalog");
  EXPECT_EQ(v.body, o.body);
  for (size_t cut = 0; cut < enc.size() - o.body.size(); ++cut) {
    EXPECT_FALSE(DecodeHttpObject(std::string_view(enc).substr(0, cut), &v)) << cut;
  }
  EXPECT_FALSE(DecodeHttpObject("\x02garbage", &v));
}

}  // namespace
}  // namespace bulwark::cache
