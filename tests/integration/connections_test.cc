// Connection limits: http.max_connections (nginx worker_connections, HAProxy maxconn), the
// descriptor reserve that keeps admin and the pg proxy alive through a flood, and limit_conn.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/pg_client.h"

namespace bulwark::testing {
namespace {

using namespace std::chrono_literals;

// A `pg:` block proxying `db`'s `app` database on `port`.
std::string PgBlock(const AppDatabase& db, int port, const std::string& extra = "") {
  return "pg:\n  listen: 127.0.0.1:" + std::to_string(port) + "\n" + extra +
         "  users:\n    - {name: app, password: secret}\n"
         "  databases:\n    app:\n      servers: ['127.0.0.1:" +
         std::to_string(db.pg.port()) + "']\n";
}

std::string QueryThrough(int port) {
  std::string out;
  RunProgram({"psql", "-X", "-At", "-h", "127.0.0.1", "-p", std::to_string(port), "-U", "app", "-d",
              "app", "-c", "SELECT 40 + 2"},
             {{"PGPASSWORD", "secret"}, {"PGCONNECT_TIMEOUT", "10"}}, &out, 30000);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Idle connections that never send a byte: the kernel completes each handshake, bulwark decides
// what to accept.
std::vector<std::unique_ptr<Client>> Flood(int port, int n) {
  std::vector<std::unique_ptr<Client>> hogs;
  for (int i = 0; i < n; ++i) hogs.push_back(std::make_unique<Client>(port, 1000));
  return hogs;
}

// Polls /metrics until `series` has `want` (the workers see the flood a moment after connect()
// returns) or 10 s pass; returns the last value.
std::string WaitMetric(int admin, const std::string& series, const std::string& want) {
  std::string v;
  for (int i = 0; i < 200; ++i) {
    v = Metric(HttpGet(admin, "/metrics").body, series);
    if (v == want) break;
    std::this_thread::sleep_for(50ms);
  }
  return v;
}

TEST(Connections, MaxConnectionsCapsAnIdleFloodAndAdminAndPgStillAnswer) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  Backend app([](const Backend::Request&) { return Backend::Reply(200, "app"); });
  int port = FreePort(), admin = FreePort(), pg_port = FreePort();
  Bulwark b("workers: 1\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" +
            std::to_string(admin) + "}\nhttp: {max_connections: 20}\nlisteners:\n  - listen: 127.0.0.1:" +
            std::to_string(port) + "\n    routes: [{prefix: /, upstream: app}]\n" +
            "upstreams:\n  app: {servers: ['127.0.0.1:" + std::to_string(app.port()) + "']}\n" +
            PgBlock(db, pg_port));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  auto hogs = Flood(port, 100);
  EXPECT_EQ(WaitMetric(admin, "bulwark_client_connections", "20"), "20");
  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_EQ(Metric(m, "bulwark_http_max_connections"), "20");
  EXPECT_NE(Metric(m, "bulwark_http_connections_limited_total{reason=\"max_connections\"}"), "0");
  // Admin and the pg proxy are not behind the gateway's cap.
  EXPECT_EQ(HttpGet(admin, "/health").status, 200);
  EXPECT_EQ(QueryThrough(pg_port), "42");
  // A new client waits in the listen queue, and is served once the idle ones go.
  Client waiting(port, 10000);
  ASSERT_TRUE(waiting.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
  hogs.clear();
  EXPECT_EQ(waiting.Read().status, 200);
  EXPECT_NE(b.log().find("max_connections (20) reached"), std::string::npos) << b.log();
}

TEST(Connections, DescriptorReserveKeepsAdminAndPgAliveThroughAFlood) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  std::string prlimit = FindProgram("prlimit");
  ASSERT_FALSE(prlimit.empty()) << "prlimit (util-linux) is missing";
  Backend app([](const Backend::Request&) { return Backend::Reply(200, "app"); });
  int port = FreePort(), admin = FreePort(), pg_port = FreePort();
  // 400 descriptors; the reserve is 256 + 2 x max_client_conn (20): the gateway gets what is
  // left after what the process holds at start. max_connections is set far too high for that
  // (nginx would only warn): the reserve holds all the same.
  Bulwark b("workers: 2\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" +
                std::to_string(admin) +
                "}\nhttp: {max_connections: 10000}\nlisteners:\n  - listen: 127.0.0.1:" +
                std::to_string(port) + "\n    routes: [{prefix: /, upstream: app}]\n" +
                "upstreams:\n  app: {servers: ['127.0.0.1:" + std::to_string(app.port()) +
                "']}\n" + PgBlock(db, pg_port, "  max_client_conn: 20\n"),
            {}, {prlimit, "--nofile=400", "--"});
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  std::string m = HttpGet(admin, "/metrics").body;
  int limit = std::stoi(Metric(m, "bulwark_gateway_descriptors_limit"));
  EXPECT_GT(limit, 40);
  EXPECT_LT(limit, 400 - 296);
  auto hogs = Flood(port, 500);
  // The gateway stops at its share (each client leaves room for an upstream connection)...
  std::string held;
  for (int i = 0; i < 200; ++i) {
    m = HttpGet(admin, "/metrics").body;
    held = Metric(m, "bulwark_client_connections");
    if (!held.empty() && std::stoi(held) >= limit - 1) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(held.empty());
  EXPECT_GE(std::stoi(held), limit - 1);
  EXPECT_LE(std::stoi(Metric(m, "bulwark_gateway_descriptors")), limit);
  EXPECT_NE(Metric(m, "bulwark_http_connections_limited_total{reason=\"descriptors\"}"), "0");
  // ...so admin, the pg proxy (a login and a server connection) still have descriptors.
  EXPECT_EQ(HttpGet(admin, "/health").status, 200);
  EXPECT_EQ(QueryThrough(pg_port), "42");
  EXPECT_EQ(QueryThrough(pg_port), "42");
  EXPECT_EQ(Metric(m, "bulwark_accept_errors_total"), "0");  // never ran out
  EXPECT_NE(b.log().find("http.max_connections 10000 x 2 workers x 2 exceeds"), std::string::npos)
      << b.log();
  hogs.clear();
  EXPECT_EQ(HttpGet(port, "/").status, 200);
}

// Without max_connections, each worker takes half the gateway's descriptors, split between the
// workers (a client may need an upstream connection too).
TEST(Connections, DefaultMaxConnectionsComesFromTheOpenFilesLimit) {
  std::string prlimit = FindProgram("prlimit");
  ASSERT_FALSE(prlimit.empty()) << "prlimit (util-linux) is missing";
  int port = FreePort(), admin = FreePort();
  Bulwark b("workers: 2\naccess_log: {enabled: false}\nreserved_descriptors: 100\n"
            "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
                "}\nlisteners: [{listen: '127.0.0.1:" + std::to_string(port) +
                "', routes: [{return: 204}]}]\n",
            {}, {prlimit, "--nofile=1000", "--"});
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  std::string m = HttpGet(admin, "/metrics").body;
  int limit = std::stoi(Metric(m, "bulwark_gateway_descriptors_limit"));
  EXPECT_GT(limit, 800);
  EXPECT_LE(limit, 900);
  EXPECT_EQ(Metric(m, "bulwark_http_max_connections"), std::to_string(limit / 2 / 2));
}

// nginx limit_conn: requests in progress per key; idle keep-alive connections do not count.
TEST(Connections, LimitConnCountsRequestsInProgressPerKey) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> arrived{0};
  Backend app([&](const Backend::Request& r) {
    if (r.target == "/slow") {
      ++arrived;
      std::unique_lock<std::mutex> l(mu);
      cv.wait_for(l, 20s, [&] { return release; });
    }
    return Backend::Reply(200, "done");
  });
  int port = FreePort(), admin = FreePort();
  Bulwark b("workers: 2\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" +
            std::to_string(admin) +
            "}\ntrusted_proxies: [127.0.0.1]\n"
            "limit_conn_zones:\n  perip: {key: client_ip}\n"
            "listeners:\n  - listen: 127.0.0.1:" +
            std::to_string(port) +
            "\n    limit_conn: {zone: perip, max: 2}\n"
            "    routes:\n      - {prefix: /, upstream: app}\n"
            "      - {prefix: /free/, upstream: app, limit_conn: []}\n"
            "upstreams:\n  app: {servers: ['127.0.0.1:" +
            std::to_string(app.port()) + "'], keepalive: 0}\n");
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  // Idle keep-alive connections of one client: they hold no request, so they count for nothing.
  std::vector<std::unique_ptr<Client>> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(std::make_unique<Client>(port));
    EXPECT_EQ(idle.back()->Get("/fast", "X-Forwarded-For: 198.51.100.1\r\n").status, 200);
  }
  // A request's place is given back when bulwark finalises it, which may be just after the
  // client has read its answer (nginx's limit_conn frees it in the same phase): wait until the
  // key holds nothing before counting.
  ASSERT_EQ(WaitMetric(admin, "bulwark_limit_conn_keys{zone=\"perip\"}", "0"), "0");
  // Two slow requests from 198.51.100.1 are in progress: its third is refused, another client
  // and a route without limit_conn are not.
  std::vector<std::thread> slow;
  std::vector<int> slow_status(2);
  for (int i = 0; i < 2; ++i) {
    slow.emplace_back([&, i] {
      slow_status[i] = HttpGet(port, "/slow", "X-Forwarded-For: 198.51.100.1\r\n").status;
    });
  }
  auto finish_slow = [&] {
    {
      std::lock_guard<std::mutex> l(mu);
      release = true;
    }
    cv.notify_all();
    for (auto& t : slow) t.join();
  };
  for (int i = 0; i < 400 && arrived.load() < 2; ++i) std::this_thread::sleep_for(25ms);
  if (arrived.load() != 2) {
    finish_slow();  // the threads are joined before the test ends either way
    FAIL() << arrived.load() << " slow requests arrived; answers " << slow_status[0] << ", "
           << slow_status[1];
  }
  EXPECT_EQ(idle[0]->Get("/fast", "X-Forwarded-For: 198.51.100.1\r\n").status, 429);
  EXPECT_EQ(HttpGet(port, "/fast", "X-Forwarded-For: 198.51.100.2\r\n").status, 200);
  EXPECT_EQ(HttpGet(port, "/free/x", "X-Forwarded-For: 198.51.100.1\r\n").status, 200);
  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_EQ(Metric(m, "bulwark_limit_conn_requests_total{zone=\"perip\",result=\"rejected\"}"), "1");
  // 198.51.100.2's place may be given back a moment after its answer (see above).
  EXPECT_EQ(WaitMetric(admin, "bulwark_limit_conn_keys{zone=\"perip\"}", "1"), "1");
  finish_slow();
  EXPECT_EQ(slow_status, (std::vector<int>{200, 200}));
  // Finished requests give their places back.
  EXPECT_EQ(idle[1]->Get("/fast", "X-Forwarded-For: 198.51.100.1\r\n").status, 200);
  EXPECT_EQ(WaitMetric(admin, "bulwark_limit_conn_keys{zone=\"perip\"}", "0"), "0");
}

}  // namespace
}  // namespace bulwark::testing
