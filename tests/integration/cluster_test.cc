// Leader election through a real etcd (Debian's 3.4): one leader at a time, a prompt hand-over
// when the leader stops, and a leader that loses etcd stepping down before its lease expires.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "core/etcd_lease.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

using Clock = std::chrono::steady_clock;

EtcdLeaseOptions Options(const EtcdServer& etcd, const std::string& name) {
  EtcdLeaseOptions o;
  o.endpoints = {"http://127.0.0.1:1", etcd.endpoint()};  // the first is down: the next answers
  o.key = "/bulwark-test/leader";
  o.name = name;
  o.ttl_ms = 3000;
  o.request_timeout_ms = 500;
  return o;
}

TEST(Cluster, OneLeaderAndAPromptHandOver) {
  EtcdServer etcd;
  ASSERT_TRUE(etcd.ok());
  EtcdLease a(Options(etcd, "a")), b(Options(etcd, "b"));
  a.Start();
  ASSERT_TRUE(WaitFor([&] { return a.leader(); }, 5000));
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return b.holder() == "a"; }, 5000));
  for (int i = 0; i < 10; ++i) {  // for two ttl/3 rounds, never two leaders
    EXPECT_FALSE(a.leader() && b.leader());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(a.leader());
  EXPECT_FALSE(b.leader());
  auto stopped = Clock::now();
  a.Stop();  // revokes the lease: b takes over within its next round, not after the ttl
  EXPECT_FALSE(a.leader());
  ASSERT_TRUE(WaitFor([&] { return b.leader(); }, 5000));
  EXPECT_LT(Clock::now() - stopped, std::chrono::milliseconds(2500));
  EXPECT_EQ(b.holder(), "b");
}

TEST(Cluster, ALeaderWithoutEtcdStepsDownBeforeItsLeaseExpires) {
  EtcdServer etcd;
  ASSERT_TRUE(etcd.ok());
  EtcdLease a(Options(etcd, "a"));
  a.Start();
  ASSERT_TRUE(WaitFor([&] { return a.leader(); }, 5000));
  auto lost = Clock::now();
  etcd.Stop();
  ASSERT_TRUE(WaitFor([&] { return !a.leader(); }, 5000));
  // 2/3 of the 3 s ttl (plus a round and the request timeout), under the ttl.
  EXPECT_LT(Clock::now() - lost, std::chrono::milliseconds(3000));
}

}  // namespace
}  // namespace bulwark::testing
