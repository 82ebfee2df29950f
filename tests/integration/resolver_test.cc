// The resolver against a real DNS server on loopback (dnsmasq, its own port and hosts file).
#include "core/resolver.h"

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <thread>

#include "core/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

std::vector<std::string> Texts(const std::vector<IpAddress>& a) {
  std::vector<std::string> out;
  for (const auto& ip : a) out.push_back(ip.ToString());
  return out;
}

TEST(Resolver, ANameWithSeveralRecordsIsSeveralAddressesInAStableOrder) {
  DnsServer dns;
  dns.Start("127.0.0.13 app.test\n127.0.0.11 app.test\n127.0.0.12 app.test\n::1 app.test\n");
  Resolver r(dns.options());
  auto got = r.Lookup("app.test");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Texts(got->addresses),
            (std::vector<std::string>{"127.0.0.11", "127.0.0.12", "127.0.0.13", "::1"}));
  EXPECT_EQ(got->ttl_ms, 1000);  // dnsmasq's --local-ttl
  // Literal addresses answer themselves; an unknown name is an error that names it.
  auto literal = r.Lookup("10.1.2.3");
  ASSERT_TRUE(literal.ok());
  EXPECT_EQ(Texts(literal->addresses), std::vector<std::string>{"10.1.2.3"});
  auto missing = r.Lookup("nowhere.test");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("\"nowhere.test\""), std::string::npos)
      << missing.status();
  EXPECT_EQ(r.stats().failures, 1u);
}

TEST(Resolver, AWatchFollowsChangesAndKeepsTheLastGoodAnswerWhenTheServerDies) {
  DnsServer dns;
  dns.Start("127.0.0.11 app.test\n");
  Resolver r(dns.options());
  ASSERT_TRUE(r.Start().ok());
  Mutex mu;
  std::vector<std::vector<std::string>> seen;
  auto id = r.Watch("app.test", [&](const std::vector<IpAddress>& a) {
    MutexLock l(&mu);
    seen.push_back(Texts(a));
  });
  auto count = [&] {
    MutexLock l(&mu);
    return seen.size();
  };
  ASSERT_TRUE(WaitFor([&] { return count() == 1; }, 10000));
  // The record changes: followed within its TTL (1 s, after the change is served).
  dns.SetHosts("127.0.0.21 app.test\n127.0.0.22 app.test\n");
  int64_t changed = MonotonicMs();
  ASSERT_TRUE(WaitFor([&] { return count() == 2; }, 10000));
  int64_t followed = MonotonicMs() - changed;
  {
    MutexLock l(&mu);
    EXPECT_EQ(seen[0], std::vector<std::string>{"127.0.0.11"});
    EXPECT_EQ(seen[1], (std::vector<std::string>{"127.0.0.21", "127.0.0.22"}));
  }
  EXPECT_EQ(r.stats().changes, 1u);
  // An unchanged answer calls nobody: wait for a few more lookups.
  uint64_t lookups = r.stats().lookups;
  ASSERT_TRUE(WaitFor([&] { return r.stats().lookups >= lookups + 2; }, 10000));
  EXPECT_EQ(count(), 2u);
  // The server dies: lookups fail and are counted, nobody is told of an empty set.
  dns.Kill();
  ASSERT_TRUE(WaitFor([&] { return r.stats().failures >= 2; }, 20000));
  EXPECT_EQ(count(), 2u);
  r.Unwatch(id);
  r.Stop();
  // How quickly a change was followed, for the record: within the TTL plus one lookup.
  std::cout << "change followed after " << followed << " ms\n";
}

}  // namespace
}  // namespace bulwark::testing
