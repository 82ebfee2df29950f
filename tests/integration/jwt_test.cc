// JWT on a route of the real binary: tokens minted by `bulwark token issue`, attack cases,
// claims forwarded (and not spoofable), a rate limit keyed by a claim.
#include <signal.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

TEST(JwtRoute, ServiceTokensOnARoute) {
  std::mutex mu;
  std::string seen_service;
  Backend backend([&](const Backend::Request& r) {
    std::lock_guard<std::mutex> l(mu);
    auto it = r.headers.find("x-service-name");
    seen_service = it == r.headers.end() ? "" : it->second;
    return Backend::Reply(200, "ok");
  });
  int port = FreePort(), admin = FreePort();
  std::string cfg =
      "workers: 2\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" + std::to_string(admin) +
      "}\njwt_providers:\n  services:\n    secret: ${SVC_SECRET}\n    issuer: bulwark\n"
      "    audience: internal\n    header: X-Service-Auth\n"
      "    forward_claims: {sub: X-Service-Name}\n"
      "limit_req_zones:\n  per_service: {key: 'jwt:sub', rate: 1r/m}\n"
      "listeners:\n  - listen: 127.0.0.1:" + std::to_string(port) +
      "\n    routes:\n      - {prefix: /, upstream: app}\n"
      "      - {prefix: /internal/, upstream: app, jwt: services}\n"
      "      - {prefix: /limited/, upstream: app, jwt: services, limit_req: {zone: per_service}}\n"
      "upstreams:\n  app: {servers: ['127.0.0.1:" + std::to_string(backend.port()) + "']}\n";
  std::map<std::string, std::string> env{{"SVC_SECRET", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t!"}};
  Bulwark b(cfg, env);
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();

  // `bulwark token issue` mints with the configured secret, issuer and audience.
  setenv("SVC_SECRET", env["SVC_SECRET"].c_str(), 1);
  std::string out;
  ASSERT_EQ(RunBulwark({"token", "issue", "-c", b.config_path(), "--service", "billing", "--ttl", "1h"},
                       &out),
            0)
      << out;
  std::string token = Trim(out);
  ASSERT_EQ(RunBulwark({"token", "issue", "-c", b.config_path(), "--service", "reports"}, &out), 0);
  std::string token2 = Trim(out);

  Response r = HttpGet(port, "/internal/x", "X-Service-Auth: Bearer " + token + "\r\nX-Service-Name: admin\r\n");
  EXPECT_EQ(r.status, 200);
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(seen_service, "billing");  // the claim, not the client's own header
  }
  // No token, and the open route still works.
  r = HttpGet(port, "/internal/x");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.headers["www-authenticate"], "Bearer realm=\"bulwark\"");
  EXPECT_EQ(HttpGet(port, "/open").status, 200);
  // Attacks: alg none, a changed payload, a token from Authorization instead of the header.
  std::string payload = token.substr(token.find('.') + 1, token.rfind('.') - token.find('.') - 1);
  r = HttpGet(port, "/internal/x", "X-Service-Auth: Bearer eyJhbGciOiJub25lIn0." + payload + ".\r\n");
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.headers["www-authenticate"].find("error_description=\"algorithm\""), std::string::npos);
  std::string forged = token.substr(0, token.find('.') + 1) + "eyJzdWIiOiJhZG1pbiJ9" + token.substr(token.rfind('.'));
  EXPECT_EQ(HttpGet(port, "/internal/x", "X-Service-Auth: " + forged + "\r\n").status, 401);
  EXPECT_EQ(HttpGet(port, "/internal/x", "Authorization: Bearer " + token + "\r\n").status, 401);

  // A limit per service: each service gets its own bucket.
  EXPECT_EQ(HttpGet(port, "/limited/", "X-Service-Auth: " + token + "\r\n").status, 200);
  EXPECT_EQ(HttpGet(port, "/limited/", "X-Service-Auth: " + token + "\r\n").status, 429);
  EXPECT_EQ(HttpGet(port, "/limited/", "X-Service-Auth: " + token2 + "\r\n").status, 200);

  // One keep-alive connection: the verified token is remembered, a different one is checked in
  // full, and after a reload that rotates the secret the old token is refused at once.
  Client c(port);
  auto get = [&](const std::string& t) {
    c.Send("GET /internal/k HTTP/1.1\r\nHost: localhost\r\nX-Service-Auth: Bearer " + t + "\r\n\r\n");
    return c.Read().status;
  };
  EXPECT_EQ(get(token), 200);
  EXPECT_EQ(get(forged), 401);
  EXPECT_EQ(get(token), 200);
  EXPECT_EQ(get(token), 200);

  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_EQ(Metric(m, "bulwark_jwt_rejections_total{provider=\"services\",reason=\"missing\"}"), "2");
  EXPECT_EQ(Metric(m, "bulwark_jwt_rejections_total{provider=\"services\",reason=\"algorithm\"}"), "1");
  EXPECT_EQ(Metric(m, "bulwark_jwt_rejections_total{provider=\"services\",reason=\"signature\"}"), "2");
  EXPECT_EQ(Metric(m, "bulwark_jwt_verified_total{provider=\"services\"}"), "7");

  std::string rotated = cfg;
  rotated.replace(rotated.find("${SVC_SECRET}"), 13, "another-secret-another-secret-another");
  WriteFile(b.config_path(), rotated);
  b.process().Signal(SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(get(token), 401);
}

TEST(JwtConfig, ErrorsNameTheProviderAndFile) {
  std::string dir = MakeTempDir();
  WriteFile(dir + "/c.yml",
            "jwt_providers:\n  a: {secret: short}\n  b: {secret: 0123456789abcdef0123456789abcdef, "
            "jwks_file: nope.json}\n"
            "listeners: [{listen: '127.0.0.1:1', routes: [{prefix: /, return: 204, jwt: c}]}]\n");
  std::string out;
  EXPECT_EQ(RunBulwark({"check-config", dir + "/c.yml"}, &out), 1);
  EXPECT_NE(out.find("jwt_providers.a: the HS256 secret must be at least 32 bytes"), std::string::npos) << out;
  EXPECT_NE(out.find("jwt_providers.b.jwks_file: cannot read " + dir + "/nope.json"), std::string::npos) << out;
  EXPECT_NE(out.find("set exactly one of"), std::string::npos) << out;
  EXPECT_NE(out.find("no jwt_providers entry named \"c\""), std::string::npos) << out;
}

}  // namespace
}  // namespace bulwark::testing
