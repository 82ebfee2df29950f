// TLS termination against real clients (curl and openssl s_client): certificates by SNI,
// protocol versions, reload of certificates, HTTP->HTTPS redirect and security headers.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

using namespace std::chrono_literals;

// Runs a shell command, returns its stdout+stderr and exit status.
TEST(Tls, TerminatesPicksBySniAndReloadsCertificates) {
  ASSERT_FALSE(FindProgram("curl").empty()) << "curl is not installed: run scripts/deps";
  ASSERT_FALSE(FindProgram("openssl").empty()) << "openssl is not installed: run scripts/deps";
  std::string dir = MakeTempDir();
  MakeCert(dir, "a.test");
  MakeCert(dir, "b.test");
  std::string big(1 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 61) big[i] = static_cast<char>('a' + i % 26);
  Backend backend([&](const Backend::Request& r) {
    if (r.target == "/big") return Backend::Reply(200, big);
    auto it = r.headers.find("x-forwarded-proto");
    return Backend::Reply(200, "proto=" + (it == r.headers.end() ? std::string() : it->second));
  });
  int https = FreePort(), http = FreePort(), admin = FreePort();
  std::string cfg =
      "workers: 2\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" +
      std::to_string(admin) +
      "}\nlisteners:\n"
      "  - name: https\n    listen: 127.0.0.1:" +
      std::to_string(https) +
      "\n    tls:\n      certificates:\n        - {cert: a.test.crt, key: a.test.key}\n"
      "        - {cert: b.test.crt, key: b.test.key}\n"
      "    add_header:\n"
      "      - {name: Strict-Transport-Security, value: max-age=31536000; includeSubDomains, "
      "always: true}\n"
      "      - {name: X-Frame-Options, value: DENY}\n"
      "    routes: [{prefix: /, upstream: app}]\n"
      "  - name: http\n    listen: 127.0.0.1:" +
      std::to_string(http) +
      "\n    routes: [{prefix: /, return: {status: 301, location: 'https://$host:" +
      std::to_string(https) +
      "$request_uri'}}]\n"
      "upstreams:\n  app: {servers: ['127.0.0.1:" +
      std::to_string(backend.port()) + "']}\n";
  WriteFile(dir + "/bulwark.yml", cfg);
  Process b({BULWARK_BINARY, "serve", "-c", dir + "/bulwark.yml"},
            {{"STATE_DIRECTORY", dir + "/state"}}, dir + "/bulwark.log");
  ASSERT_TRUE(WaitForPort(https, 5000) && WaitForPort(admin, 5000))
      << ReadFile(dir + "/bulwark.log");

  std::string resolve = " --resolve a.test:" + std::to_string(https) +
                        ":127.0.0.1 --resolve b.test:" + std::to_string(https) +
                        ":127.0.0.1 --resolve x.b.test:" + std::to_string(https) + ":127.0.0.1 ";
  int st = 0;
  // Verified against the right certificate for each name, including a wildcard.
  std::string out = Shell("curl -sS -i --cacert " + dir + "/a.test.crt" + resolve +
                              "https://a.test:" + std::to_string(https) + "/x",
                          &st);
  EXPECT_EQ(st, 0) << out;
  EXPECT_NE(out.find("proto=https"), std::string::npos) << out;
  EXPECT_NE(out.find("Strict-Transport-Security: max-age=31536000; includeSubDomains"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("X-Frame-Options: DENY"), std::string::npos) << out;
  out = Shell("curl -sS --cacert " + dir + "/b.test.crt" + resolve +
                  "https://x.b.test:" + std::to_string(https) + "/x",
              &st);
  EXPECT_EQ(st, 0) << out;
  out = Shell("curl -sS --cacert " + dir + "/a.test.crt" + resolve +
                  "https://b.test:" + std::to_string(https) + "/x",
              &st);
  EXPECT_NE(st, 0) << "b.test must not be served a.test's certificate: " << out;
  // A large body over TLS arrives whole; several requests share one connection.
  out = Shell("curl -sSk https://127.0.0.1:" + std::to_string(https) + "/big | sha256sum", &st);
  WriteFile(dir + "/big", big);
  EXPECT_EQ(out.substr(0, 64), Shell("sha256sum " + dir + "/big").substr(0, 64));
  out = Shell("curl -sSk -o /dev/null -o /dev/null -w '%{num_connects} ' https://127.0.0.1:" +
              std::to_string(https) + "/1 https://127.0.0.1:" + std::to_string(https) + "/2");
  EXPECT_EQ(out, "1 0 ") << out;
  // Protocols: TLS 1.2 and 1.3 yes, 1.1 no.
  std::string sc = "echo | openssl s_client -connect 127.0.0.1:" + std::to_string(https) +
                   " -servername a.test ";
  EXPECT_NE(Shell(sc + "-tls1_3").find("TLSv1.3"), std::string::npos);
  EXPECT_NE(Shell(sc + "-tls1_2").find("TLSv1.2"), std::string::npos);
  Shell(sc + "-tls1_1", &st);
  EXPECT_NE(st, 0);
  // Plain HTTP to the TLS port is a failed handshake, counted.
  HttpGet(https, "/");
  // The redirect listener sends clients to HTTPS.
  Response r = HttpGet(http, "/path?q=1", "");
  EXPECT_EQ(r.status, 301);
  // ($host is the request's Host without the port; the test client sends "Host: test".)
  EXPECT_EQ(r.headers["location"], "https://test:" + std::to_string(https) + "/path?q=1");

  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_NE(Metric(m, "bulwark_tls_handshakes_total{listener=\"https\",protocol=\"TLSv1.3\"}"), "0")
      << m;
  EXPECT_NE(Metric(m, "bulwark_tls_handshakes_total{listener=\"https\",protocol=\"TLSv1.2\"}"), "0")
      << m;
  EXPECT_NE(Metric(m, "bulwark_tls_handshake_errors_total{listener=\"https\"}"), "0") << m;

  // New certificate files + reload: new connections get them.
  std::string before = Shell(sc + "-tls1_3 | openssl x509 -noout -fingerprint");
  MakeCert(dir, "a.test");
  b.Signal(SIGHUP);
  std::this_thread::sleep_for(500ms);
  std::string after = Shell(sc + "-tls1_3 | openssl x509 -noout -fingerprint");
  EXPECT_NE(before, after);
  EXPECT_NE(after.find("Fingerprint"), std::string::npos) << after;
  b.Signal(SIGTERM);
  EXPECT_EQ(b.Wait(10000), 0) << ReadFile(dir + "/bulwark.log");
}

TEST(Tls, BadCertificatesAreConfigErrors) {
  std::string dir = MakeTempDir();
  MakeCert(dir, "a.test");
  MakeCert(dir, "b.test");
  WriteFile(dir + "/c.yml",
            "listeners:\n  - listen: 127.0.0.1:1\n    tls: {cert: a.test.crt, key: b.test.key, "
            "protocols: [TLSv1.1]}\n    routes: [{return: 204}]\n"
            "  - listen: 127.0.0.1:2\n    tls: {cert: missing.crt, key: a.test.key}\n"
            "    routes: [{return: 204}]\n");
  std::string out;
  EXPECT_EQ(RunBulwark({"check-config", dir + "/c.yml"}, &out), 1);
  EXPECT_NE(out.find("\"TLSv1.1\" is not TLSv1.2 or TLSv1.3"), std::string::npos) << out;
  EXPECT_NE(out.find("b.test.key is not the key of " + dir + "/a.test.crt"), std::string::npos)
      << out;
  EXPECT_NE(out.find(dir + "/missing.crt"), std::string::npos) << out;
}

}  // namespace
}  // namespace bulwark::testing
