// Failing upstreams against the real binary: circuit breakers, outlier ejection with Envoy's
// panic threshold, retry policies with backoff, budget and per-try timeouts.
#include <signal.h>

#include <atomic>
#include <set>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

using namespace std::chrono_literals;

// nginx passive health (max_fails) is off in these configs, so each test sees only the
// mechanism it is about.
std::string Cfg(int port, int admin, const std::vector<int>& servers, const std::string& upstream) {
  std::string list;
  for (int p : servers) {
    list += std::string(list.empty() ? "" : ", ") + "{address: '127.0.0.1:" + std::to_string(p) +
            "', max_fails: 0}";
  }
  return "workers: 2\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" +
         std::to_string(admin) + "}\nlisteners:\n  - listen: 127.0.0.1:" + std::to_string(port) +
         "\n    routes: [{prefix: /, upstream: app}]\n"
         "upstreams:\n  app:\n    read_timeout: 5s\n" +
         upstream + "    servers: [" + list + "]\n";
}

TEST(Resilience, CircuitBreakerOpensDoublesAndCloses) {
  std::atomic<bool> broken{true};
  Backend bad([&](const Backend::Request&) {
    return broken ? Backend::Reply(500, "bad") : Backend::Reply(200, "fixed");
  });
  Backend good([](const Backend::Request&) { return Backend::Reply(200, "good"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Cfg(port, admin, {bad.port(), good.port()},
                "    circuit_breaker: {failures: 2, open_time: 1s, max_open_time: 10s}\n"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  for (int i = 0; i < 20; ++i) HttpGet(port, "/");
  // Two failures opened the breaker; the rest went to the good server.
  EXPECT_EQ(bad.requests(), 2);
  std::string series = "bulwark_upstream_circuit_breaker_state{upstream=\"app\",server=\"127.0.0.1:" +
                       std::to_string(bad.port()) + "\",state=\"open\"}";
  EXPECT_EQ(Metric(HttpGet(admin, "/metrics").body, series), "1");
  // After 1 s one probe goes through, fails, and the breaker re-opens for 2 s.
  std::this_thread::sleep_for(1100ms);
  for (int i = 0; i < 10; ++i) HttpGet(port, "/");
  EXPECT_EQ(bad.requests(), 3);
  std::this_thread::sleep_for(1100ms);
  for (int i = 0; i < 10; ++i) HttpGet(port, "/");
  EXPECT_EQ(bad.requests(), 3);  // still open: 2 s this time
  broken = false;
  std::this_thread::sleep_for(1000ms);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(HttpGet(port, "/").status, 200);
  EXPECT_GE(bad.requests(), 6);  // the probe closed it; round robin resumed
  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_EQ(Metric(m, "bulwark_upstream_circuit_breaker_opens_total{upstream=\"app\",server=\"127.0.0.1:" +
                          std::to_string(bad.port()) + "\"}"),
            "2");
  EXPECT_NE(b.log().find("circuit breaker opened for 2s"), std::string::npos) << b.log();
  EXPECT_NE(b.log().find("circuit breaker closed"), std::string::npos) << b.log();
}

TEST(Resilience, OutlierEjectionRespectsMaxPercentAndPanics) {
  Backend bad1([](const Backend::Request&) { return Backend::Reply(503, "x"); });
  Backend bad2([](const Backend::Request&) { return Backend::Reply(503, "x"); });
  Backend good([](const Backend::Request&) { return Backend::Reply(200, "ok"); });
  int port = FreePort(), admin = FreePort();
  auto servers = [&](const std::vector<int>& ports) {
    std::string s;
    for (int p : ports) s += std::string(s.empty() ? "" : ", ") + "{address: '127.0.0.1:" + std::to_string(p) + "', max_fails: 0}";
    return s;
  };
  std::string cfg = "workers: 1\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" +
                    std::to_string(admin) + "}\nlisteners:\n  - listen: 127.0.0.1:" +
                    std::to_string(port) +
                    "\n    routes: [{prefix: /, upstream: app}]\n"
                    "upstreams:\n  app:\n"
                    "    outlier_detection: {consecutive_5xx: 2, base_ejection_time: 30s, "
                    "max_ejection_percent: 34, panic_threshold: 50}\n"
                    "    servers: [" + servers({bad1.port(), bad2.port(), good.port()}) + "]\n";
  Bulwark b(cfg);
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  for (int i = 0; i < 30; ++i) HttpGet(port, "/");
  // One of the bad servers is ejected (34% of 3 is one server); the other keeps failing but
  // cannot be ejected too.
  std::string m = HttpGet(admin, "/metrics").body;
  auto ejected = [&](int p) {
    return Metric(m, "bulwark_upstream_ejected{upstream=\"app\",server=\"127.0.0.1:" + std::to_string(p) + "\"}");
  };
  EXPECT_EQ(std::stoi(ejected(bad1.port())) + std::stoi(ejected(bad2.port())), 1) << m;
  EXPECT_EQ(ejected(good.port()), "0");
  EXPECT_EQ(Metric(m, "bulwark_upstream_panic_total"), "0");
  EXPECT_NE(b.log().find("ejected for 30s"), std::string::npos) << b.log();

  // With room for both to be ejected, 1 of 3 usable is under the 50% panic threshold: Envoy
  // then spreads requests over all servers, ejected or not.
  std::string cfg2 = cfg;
  cfg2.replace(cfg2.find("max_ejection_percent: 34"), 24, "max_ejection_percent: 100");
  WriteFile(b.config_path(), cfg2);
  b.process().Signal(SIGHUP);
  std::this_thread::sleep_for(300ms);
  for (int i = 0; i < 30; ++i) HttpGet(port, "/");
  m = HttpGet(admin, "/metrics").body;
  EXPECT_EQ(std::stoi(ejected(bad1.port())) + std::stoi(ejected(bad2.port())), 2) << m;
  int before = bad1.requests() + bad2.requests();
  for (int i = 0; i < 30; ++i) HttpGet(port, "/");
  EXPECT_GT(bad1.requests() + bad2.requests(), before);  // panic: the ejected get traffic
  m = HttpGet(admin, "/metrics").body;
  EXPECT_NE(Metric(m, "bulwark_upstream_panic_total"), "0");
}

TEST(Resilience, RetryPolicyOnStatusesWithBackoffAndBudget) {
  Backend bad([](const Backend::Request&) { return Backend::Reply(503, "busy"); });
  Backend good([](const Backend::Request&) { return Backend::Reply(200, "ok"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Cfg(port, admin, {bad.port(), good.port()},
                "    retry: {on: [connect_failure, timeout, 503], backoff: {base: 20ms}}\n"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  for (int i = 0; i < 10; ++i) {
    Response r = HttpGet(port, "/");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ok");
  }
  EXPECT_GT(bad.requests(), 0);
  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_NE(Metric(m, "bulwark_retry_backoffs_total"), "0");
  EXPECT_NE(Metric(m, "bulwark_upstream_retries_total{upstream=\"app\",server=\"127.0.0.1:" +
                          std::to_string(good.port()) + "\"}"),
            "0");
}

TEST(Resilience, PostsAreRetriedOnlyWhereARouteOptsIn) {
  Backend bad([](const Backend::Request&) { return Backend::Reply(503, "busy"); });
  Backend good([](const Backend::Request&) { return Backend::Reply(200, "ok"); });
  int port = FreePort(), admin = FreePort();
  std::string cfg = Cfg(port, admin, {bad.port(), good.port()}, "    retry: {on: [503], backoff: {base: 0ms}}\n");
  cfg.replace(cfg.find("    routes: [{prefix: /, upstream: app}]"), 40,
              "    routes: [{prefix: /, upstream: app}, {prefix: /idempotent-api, upstream: app, "
              "retry_non_idempotent: true}]");
  Bulwark b(cfg);
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  int plain503 = 0, opted200 = 0;
  for (int i = 0; i < 8; ++i) {
    plain503 += HttpPost(port, "/orders", "x").status == 503;
    opted200 += HttpPost(port, "/idempotent-api/put", "x").status == 200;
  }
  EXPECT_GT(plain503, 0);  // round robin sends some POSTs to the failing server: not resent
  EXPECT_EQ(opted200, 8);  // the route allows it: resent to the good one
}

TEST(Resilience, RetryBudgetAndPerTryTimeout) {
  Backend bad([](const Backend::Request&) { return Backend::Reply(503, "busy"); });
  Backend slow([](const Backend::Request&) {
    std::this_thread::sleep_for(1500ms);
    return Backend::Reply(200, "slow");
  });
  Backend good([](const Backend::Request&) { return Backend::Reply(200, "ok"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Cfg(port, admin, {bad.port(), good.port()},
                "    retry: {on: [503], budget: {percent: 0, min_retry_concurrency: 0}}\n"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  // A budget of nothing: no retry may be made, the 503 reaches the client and is counted.
  int got503 = 0;
  for (int i = 0; i < 10; ++i) got503 += HttpGet(port, "/").status == 503 ? 1 : 0;
  EXPECT_GT(got503, 0);
  EXPECT_EQ(Metric(HttpGet(admin, "/metrics").body, "bulwark_retry_budget_exhausted_total"),
            std::to_string(got503));

  int port2 = FreePort(), admin2 = FreePort();
  Bulwark b2(Cfg(port2, admin2, {slow.port(), good.port()},
                 "    retry: {on: [timeout], per_try_timeout: 200ms, backoff: {base: 0ms}}\n"));
  ASSERT_TRUE(b2.Ready(port2, admin2)) << b2.log();
  for (int i = 0; i < 4; ++i) {
    auto start = std::chrono::steady_clock::now();
    Response r = HttpGet(port2, "/");
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ok");
    EXPECT_LT(ms, 1500);  // sooner than the slow server would have answered
  }
  EXPECT_GT(slow.requests(), 0);
}

TEST(Sticky, SignedCookiePinsAndMovesWhenTheServerDies) {
  std::vector<std::unique_ptr<Backend>> backends;
  for (int i = 0; i < 3; ++i) {
    backends.push_back(std::make_unique<Backend>(
        [i](const Backend::Request&) { return Backend::Reply(200, "s" + std::to_string(i)); }));
  }
  int port = FreePort(), admin = FreePort();
  Bulwark b(Cfg(port, admin, {backends[0]->port(), backends[1]->port(), backends[2]->port()},
                "    sticky: {cookie: srv, secret: s3cret, max_age: 1h}\n"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  Response first = HttpGet(port, "/");
  ASSERT_EQ(first.status, 200);
  std::string set = first.headers["set-cookie"];
  ASSERT_EQ(set.rfind("srv=", 0), 0u) << set;
  EXPECT_NE(set.find("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"), std::string::npos) << set;
  std::string cookie = set.substr(0, set.find(';'));
  for (int i = 0; i < 10; ++i) {
    Response r = HttpGet(port, "/", "Cookie: a=b; " + cookie + "\r\n");
    EXPECT_EQ(r.body, first.body);
    EXPECT_EQ(r.headers.count("set-cookie"), 0u);  // already pinned there
  }
  // A cookie a client made up (or changed) is not believed: balanced, and a real one is set.
  std::string forged = cookie;
  forged[forged.size() - 1] = forged.back() == '0' ? '1' : '0';
  std::set<std::string> seen;
  for (int i = 0; i < 6; ++i) {
    Response r = HttpGet(port, "/", "Cookie: " + forged + "\r\n");
    seen.insert(r.body);
    EXPECT_EQ(r.headers["set-cookie"].rfind("srv=", 0), 0u);
  }
  EXPECT_GT(seen.size(), 1u);
  // The pinned server dies: the session moves and the cookie is rewritten.
  int pinned = first.body[1] - '0';
  backends[pinned]->Stop();
  Response moved = HttpGet(port, "/", "Cookie: " + cookie + "\r\n");
  EXPECT_EQ(moved.status, 200);
  EXPECT_NE(moved.body, first.body);
  std::string reset = moved.headers["set-cookie"];
  ASSERT_FALSE(reset.empty());
  std::string cookie2 = reset.substr(0, reset.find(';'));
  EXPECT_NE(cookie2, cookie);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(HttpGet(port, "/", "Cookie: " + cookie2 + "\r\n").body, moved.body);
}

}  // namespace
}  // namespace bulwark::testing
