// The gateway's Redis over TLS with an ACL user (Redis 6+), against a real redis-server started
// with --tls-port and only that user: bans are shared through it; a wrong password or a CA that
// did not sign the server's certificate keeps it down, with the reason logged.
#include <sys/stat.h>

#include <string>

#include "core/strings.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

class TlsRedis {
 public:
  explicit TlsRedis(const std::string& pki) : port_(FreePort()), dir_(MakeTempDir()) {
    // ACL users need a configuration file (a `--user` argument would be one name with spaces).
    WriteFile(dir_ + "/redis.conf",
              StrCat("port 0\ntls-port ", port_, "\nbind 127.0.0.1\ntls-cert-file ", pki,
                     "/server.crt\ntls-key-file ", pki, "/server.key\ntls-ca-cert-file ", pki,
                     "/ca.crt\ntls-auth-clients no\nsave \"\"\nappendonly no\ndir ", dir_,
                     "\nuser default off\nuser bulwark on >s3cret ~* &* +@all\n"));
    proc_ =
        std::make_unique<Process>(std::vector<std::string>{"redis-server", dir_ + "/redis.conf"},
                                  std::map<std::string, std::string>{}, dir_ + "/redis.log");
    ok_ = WaitForPort(port_, 5000);
  }
  bool ok() const { return ok_; }
  int port() const { return port_; }
  std::string log() const { return ReadFile(dir_ + "/redis.log"); }
  // redis-cli over TLS as the ACL user.
  std::string Cli(const std::string& pki, const std::vector<std::string>& args) {
    std::vector<std::string> argv{"redis-cli",
                                  "--tls",
                                  "--cacert",
                                  pki + "/ca.crt",
                                  "--sni",
                                  "api.test",
                                  "-p",
                                  std::to_string(port_),
                                  "--user",
                                  "bulwark",
                                  "--pass",
                                  "s3cret",
                                  "--no-auth-warning"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out;
    RunProgram(argv, {}, &out);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

 private:
  int port_;
  std::string dir_;
  bool ok_ = false;
  std::unique_ptr<Process> proc_;
};

std::string Cfg(int port, int admin, int redis, const std::string& redis_extra) {
  return StrCat("workers: 2\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:", admin,
                "}\nredis: {address: '127.0.0.1:", redis, "', ", redis_extra,
                "}\nlisteners:\n  - listen: 127.0.0.1:", port,
                "\n    routes: [{prefix: /, return: {status: 200, body: ok}}]\n");
}

TEST(RedisTls, BansAreSharedThroughATlsRedisWithAnAclUser) {
  std::string pki = MakeTempDir();
  ASSERT_NO_FATAL_FAILURE(MakeTestPki(pki));
  TlsRedis redis(pki);
  ASSERT_TRUE(redis.ok()) << redis.log();
  std::string tls = StrCat("tls: {ca_file: ", pki, "/ca.crt, sni: api.test}");
  int port = FreePort(), admin = FreePort();
  Bulwark b(Cfg(port, admin, redis.port(), "username: bulwark, password: s3cret, " + tls));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  ASSERT_TRUE(WaitFor(
      [&] { return Metric(HttpGet(admin, "/metrics").body, "bulwark_redis_up") == "1"; }, 10000))
      << b.log() << redis.log();
  ASSERT_EQ(HttpPost(admin, "/api/v1/bans", R"({"key": "203.0.113.9", "duration": "1h"})").status,
            200);
  ASSERT_TRUE(WaitFor(
      [&] {
        return redis.Cli(pki, {"EXISTS", "bulwark:ban:203.0.113.9"}) == "1";
      },
      5000))
      << b.log();

  // A wrong password: the ACL refuses it, Redis stays down for bulwark, the log says why.
  int port2 = FreePort(), admin2 = FreePort();
  Bulwark wrong(Cfg(port2, admin2, redis.port(), "username: bulwark, password: nope, " + tls));
  ASSERT_TRUE(wrong.Ready(port2, admin2)) << wrong.log();
  ASSERT_TRUE(WaitFor([&] { return wrong.log().find("WRONGPASS") != std::string::npos; }, 10000))
      << wrong.log();
  EXPECT_EQ(Metric(HttpGet(admin2, "/metrics").body, "bulwark_redis_up"), "0");

  // A CA that did not sign the server's certificate: no connection.
  int port3 = FreePort(), admin3 = FreePort();
  Bulwark untrusted(Cfg(port3, admin3, redis.port(),
                        StrCat("username: bulwark, password: s3cret, tls: {ca_file: ", pki,
                               "/other-ca.crt, sni: api.test}")));
  ASSERT_TRUE(untrusted.Ready(port3, admin3)) << untrusted.log();
  ASSERT_TRUE(WaitFor(
      [&] {
        return untrusted.log().find("TLS handshake: certificate verify failed") !=
               std::string::npos;
      },
      10000))
      << untrusted.log();
}

}  // namespace
}  // namespace bulwark::testing
