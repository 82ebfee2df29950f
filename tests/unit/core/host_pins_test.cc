// URLs' hosts pinned for libcurl: literals pass through, names come from the Resolver.
#include "core/host_pins.h"

#include "core/clock.h"
#include "gtest/gtest.h"

namespace bulwark {
namespace {

TEST(HostPins, UrlHostAndPort) {
  auto a = UrlHostPort("http://etcd-1.internal:2379/v3/kv");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "etcd-1.internal");
  EXPECT_EQ(a->port, 2379);
  auto b = UrlHostPort("https://alertmanager.example.com");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->port, 443);  // the scheme's default
  auto c = UrlHostPort("http://[::1]:9093");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->host.empty());
  ASSERT_TRUE(c->address.has_value());
  EXPECT_EQ(c->address->ToString(), "[::1]:9093");
  auto d = UrlHostPort("smtp://127.0.0.1:25");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->host.empty());
  EXPECT_FALSE(UrlHostPort("not a url").ok());
  EXPECT_FALSE(UrlHostPort("http://bad_host!:80").ok());
}

TEST(HostPins, LiteralsAreNotPinnedAndNamesAreByTheResolver) {
  HostPins none(nullptr);
  EXPECT_EQ(*none.EntryFor("http://anything.test:80/"), "");

  ResolverOptions o;
  o.timeout_ms = 300;
  o.attempts = 1;
  Resolver resolver(o);
  ASSERT_TRUE(resolver.Start().ok());
  HostPins pins(&resolver);
  EXPECT_EQ(*pins.EntryFor("http://127.0.0.1:9090/metrics"), "");
  EXPECT_EQ(pins.watched(), 0u);
  // localhost comes from /etc/hosts, as every resolver reads it.
  auto e = pins.EntryFor("http://localhost:9090/metrics");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->rfind("localhost:9090:", 0), 0u) << *e;
  EXPECT_NE(e->find("127.0.0.1"), std::string::npos) << *e;
  EXPECT_EQ(pins.watched(), 1u);
  EXPECT_EQ(*pins.EntryFor("http://localhost:9091/"), "localhost:9091:" + e->substr(15));
  EXPECT_EQ(pins.watched(), 1u);  // one watch per name, whatever the port
}

TEST(HostPins, ANameThatNeverResolvedIsAnErrorAfterOneLookupsWait) {
  ResolverOptions o;
  o.servers = {"127.0.0.1:1"};  // nothing answers there
  o.timeout_ms = 200;
  o.attempts = 1;
  Resolver resolver(o);
  ASSERT_TRUE(resolver.Start().ok());
  HostPins pins(&resolver);
  int64_t start = MonotonicMs();
  auto e = pins.EntryFor("http://nowhere.test:80/");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("\"nowhere.test\" does not resolve"), std::string::npos);
  EXPECT_LE(MonotonicMs() - start, resolver.LookupBoundMs() + 1000);
  // Later uses do not wait again: the watch keeps trying in the background.
  start = MonotonicMs();
  EXPECT_FALSE(pins.EntryFor("http://nowhere.test:80/").ok());
  EXPECT_LT(MonotonicMs() - start, resolver.LookupBoundMs());
}

}  // namespace
}  // namespace bulwark
