// Leader election through a real etcd (Debian's 3.4): one leader at a time, a prompt hand-over
// when the leader stops, and a leader that loses etcd stepping down before its lease expires.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "core/etcd_lease.h"
#include "core/strings.h"
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

// etcd over TLS (its certificate verified against a CA of its own, a client certificate for
// --client-cert-auth) with authentication on: bulwark's configuration leads through it; a wrong
// password or a CA that did not sign etcd's certificate never does.
TEST(Cluster, EtcdOverTlsWithAClientCertificateAndAUser) {
  std::string pki = MakeTempDir();
  ASSERT_NO_FATAL_FAILURE(MakeTestPki(pki));
  EtcdServer etcd(pki);
  ASSERT_TRUE(etcd.ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        return etcd.Post("/v3/maintenance/status", "{}").find("version") != std::string::npos;
      },
      10000))
      << etcd.Post("/v3/maintenance/status", "{}");
  ASSERT_TRUE(etcd.EnableAuth("s3cret"));
  // Without a token etcd refuses (so a lease below can only have been won with one).
  const std::string put = R"({"key": "YQ==", "value": "Yg=="})";
  EXPECT_NE(etcd.Post("/v3/kv/put", put).find("user name is empty"), std::string::npos)
      << etcd.Post("/v3/kv/put", put);

  int port = FreePort(), admin = FreePort();
  Bulwark b(StrCat("admin: {listen: 127.0.0.1:", admin,
                   "}\naccess_log: {enabled: false}\ncluster:\n  name: tls-one\n  etcd:\n"
                   "    endpoints: ['",
                   etcd.endpoint(),
                   "']\n    username: root\n    password: s3cret\n    lease_ttl: 3s\n"
                   "    tls: {ca_file: ",
                   pki, "/ca.crt, cert: ", pki, "/client-nocn.crt, key: ", pki,
                   "/client-nocn.key}\nlisteners: [{listen: '127.0.0.1:", port,
                   "', routes: [{prefix: /, return: {status: 200}}]}]\n"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  EXPECT_TRUE(WaitFor(
      [&] {
        return HttpGet(admin, "/api/v1/cluster").body.find("\"leader\":true") != std::string::npos;
      },
      10000))
      << HttpGet(admin, "/api/v1/cluster").body << b.log();

  auto options = [&](const std::string& name) {
    EtcdLeaseOptions o;
    o.endpoints = {etcd.endpoint()};
    o.key = "/bulwark-test/tls-leader";
    o.name = name;
    o.ttl_ms = 3000;
    o.request_timeout_ms = 1000;
    o.username = "root";
    o.password = "s3cret";
    o.ca_file = pki + "/ca.crt";
    o.cert_file = pki + "/client-nocn.crt";
    o.key_file = pki + "/client-nocn.key";
    return o;
  };
  EtcdLeaseOptions wrong_password = options("wrong-password");
  wrong_password.password = "nope";
  EtcdLeaseOptions wrong_ca = options("wrong-ca");
  wrong_ca.ca_file = pki + "/other-ca.crt";
  EtcdLease bad1(wrong_password), bad2(wrong_ca);
  bad1.Start();
  bad2.Start();
  EtcdLease good(options("good"));
  good.Start();
  ASSERT_TRUE(WaitFor([&] { return good.leader(); }, 10000));
  // Three of the bad ones' rounds (a ttl) later they still have not taken part.
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  EXPECT_FALSE(bad1.leader());
  EXPECT_FALSE(bad2.leader());
  EXPECT_EQ(bad1.holder(), "");
  EXPECT_EQ(bad2.holder(), "");
}

}  // namespace
}  // namespace bulwark::testing
