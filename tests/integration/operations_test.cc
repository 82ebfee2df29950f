// Operational behaviour: the admin token, trusted proxies, affinity, access-log rotation, the demo.
#include <dirent.h>
#include <signal.h>
#include <zlib.h>

#include <chrono>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

using namespace std::chrono_literals;

std::string Listener(int port, const std::string& upstream_block, const std::string& top = "") {
  return top + "listeners: [{listen: '127.0.0.1:" + std::to_string(port) +
         "', routes: [{name: app, prefix: /, upstream: app}]}]\nupstreams:\n  app:\n" +
         upstream_block;
}

TEST(Admin, BearerTokenProtectsEverythingButHealthAndReady) {
  Backend a([](const Backend::Request&) { return Backend::Reply(200, "A"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Listener(port, "    servers: ['127.0.0.1:" + std::to_string(a.port()) + "']\n",
                     "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
                         ", token: s3cret}\naccess_log: {enabled: false}\n"));
  ASSERT_TRUE(b.Ready(port, admin));
  EXPECT_EQ(HttpGet(admin, "/health").status, 200);
  EXPECT_EQ(HttpGet(admin, "/ready").status, 200);
  EXPECT_EQ(HttpGet(admin, "/metrics").status, 401);
  EXPECT_EQ(HttpGet(admin, "/api/v1/upstreams").status, 401);
  EXPECT_EQ(HttpGet(admin, "/metrics", "Authorization: Bearer wrong\r\n").status, 401);
  EXPECT_EQ(HttpGet(admin, "/metrics", "Authorization: Bearer s3cret\r\n").status, 200);
  EXPECT_EQ(HttpPost(admin, "/api/v1/reload", "").status, 401);
  EXPECT_EQ(HttpGet(admin, "/nope", "Authorization: Bearer s3cret\r\n").status, 404);
}

TEST(TrustedProxies, RealClientIpComesFromTheChainOnlyWhenThePeerIsTrusted) {
  Backend echo([](const Backend::Request& r) {
    return Backend::Reply(200, r.headers.at("x-real-ip") + "|" + r.headers.at("x-forwarded-for") +
                                   "|" + r.headers.at("x-forwarded-proto"));
  });
  int port = FreePort(), admin = FreePort();
  std::string up = "    servers: ['127.0.0.1:" + std::to_string(echo.port()) + "']\n";
  std::string top =
      "admin: {listen: 127.0.0.1:" + std::to_string(admin) + "}\naccess_log: {enabled: false}\n";
  {
    Bulwark b(Listener(port, up, top + "trusted_proxies: [127.0.0.0/8, 10.0.0.0/8]\n"));
    ASSERT_TRUE(b.Ready(port, admin));
    Response r = HttpGet(port, "/",
                         "X-Forwarded-For: 203.0.113.7, 10.1.2.3\r\nX-Forwarded-Proto: https\r\n");
    EXPECT_EQ(r.body, "203.0.113.7|203.0.113.7, 10.1.2.3, 127.0.0.1|https");
  }
  port = FreePort();
  admin = FreePort();
  top = "admin: {listen: 127.0.0.1:" + std::to_string(admin) + "}\naccess_log: {enabled: false}\n";
  Bulwark b(Listener(port, up, top + "trusted_proxies: [10.0.0.0/8]\n"));
  ASSERT_TRUE(b.Ready(port, admin));
  Response r = HttpGet(port, "/", "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n");
  EXPECT_EQ(r.body, "127.0.0.1|127.0.0.1|http");
}

TEST(Affinity, HeaderHashKeepsAUserOnOneServer) {
  std::vector<std::unique_ptr<Backend>> bs;
  std::string servers;
  for (int i = 0; i < 3; ++i) {
    bs.push_back(std::make_unique<Backend>(
        [i](const Backend::Request&) { return Backend::Reply(200, std::to_string(i)); }));
    servers +=
        (i ? ", " : "") + std::string("'127.0.0.1:") + std::to_string(bs.back()->port()) + "'";
  }
  int port = FreePort(), admin = FreePort();
  Bulwark b(Listener(
      port,
      "    balance: hash\n    hash: {key: 'header:X-User', algorithm: maglev}\n    servers: [" +
          servers + "]\n",
      "workers: 2\nadmin: {listen: 127.0.0.1:" + std::to_string(admin) +
          "}\naccess_log: {enabled: false}\n"));
  ASSERT_TRUE(b.Ready(port, admin));
  std::set<std::string> seen_servers;
  for (int u = 0; u < 12; ++u) {
    std::string h = "X-User: user-" + std::to_string(u) + "\r\n";
    std::string first = HttpGet(port, "/", h).body;
    ASSERT_FALSE(first.empty());
    seen_servers.insert(first);
    for (int k = 0; k < 4; ++k) EXPECT_EQ(HttpGet(port, "/", h).body, first) << "user " << u;
  }
  EXPECT_GE(seen_servers.size(), 2u);  // users are spread
}

std::string Gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return "";
  std::string out;
  char buf[8192];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, n);
  gzclose(f);
  return out;
}

TEST(AccessLog, RotatesBySizeAndGzipsRotatedFiles) {
  Backend a([](const Backend::Request&) { return Backend::Reply(200, "A"); });
  int port = FreePort(), admin = FreePort();
  std::string dir = MakeTempDir();
  std::string log = dir + "/access.log";
  Bulwark b(Listener(port, "    servers: ['127.0.0.1:" + std::to_string(a.port()) + "']\n",
                     "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
                         "}\naccess_log: {path: " + log + ", max_size: 4k, max_files: 2}\n"));
  ASSERT_TRUE(b.Ready(port, admin));
  int sent = 0;
  // Three rounds of ~8 KiB of log lines, each followed by the control thread's 1 s rotation tick.
  for (int round = 0; round < 3; ++round) {
    Client c(port);
    for (int i = 0; i < 40; ++i, ++sent)
      ASSERT_EQ(c.Get("/r" + std::to_string(round) + "-" + std::to_string(i)).status, 200);
    std::this_thread::sleep_for(1500ms);
  }
  std::string l1 = Gunzip(log + ".1.gz");
  std::string l2 = Gunzip(log + ".2.gz");
  EXPECT_FALSE(l1.empty()) << "no " << log << ".1.gz";
  EXPECT_FALSE(l2.empty()) << "no " << log << ".2.gz";
  EXPECT_TRUE(ReadFile(log + ".3.gz").empty()) << "max_files: 2 keeps two";
  // Every line is a whole JSON object, and the newest requests are in the newest rotated file.
  for (const std::string* text : {&l1, &l2}) {
    size_t start = 0;
    while (start < text->size()) {
      size_t nl = text->find('\n', start);
      ASSERT_NE(nl, std::string::npos);
      std::string line = text->substr(start, nl - start);
      EXPECT_EQ(line.front(), '{');
      EXPECT_EQ(line.back(), '}');
      start = nl + 1;
    }
  }
  EXPECT_NE(l1.find("\"/r2-"), std::string::npos);
  EXPECT_NE(l2.find("\"/r1-"), std::string::npos);
  Response m = HttpGet(admin, "/metrics");
  EXPECT_NE(m.body.find("bulwark_access_log_rotations_total 3"), std::string::npos)
      << m.body.substr(0, 200);
}

TEST(Demo, OriginsFailOverAndRevive) {
  // The demo's origins take three consecutive ports from a base; on a busy machine one of them can
  // be taken between choosing and binding, so a start that fails to bind is retried with new ports.
  int port = 0, admin = 0;
  std::string dir;
  std::unique_ptr<Process> demo_proc;
  for (int attempt = 0; attempt < 5; ++attempt) {
    port = FreePort();
    admin = FreePort();
    int base = FreePort();
    dir = MakeTempDir();
    demo_proc = std::make_unique<Process>(
        std::vector<std::string>{BULWARK_BINARY, "demo"},
        std::map<std::string, std::string>{{"DEMO_PORT", std::to_string(port)},
                                           {"DEMO_ADMIN_PORT", std::to_string(admin)},
                                           {"DEMO_ORIGIN_BASE_PORT", std::to_string(base)}},
        dir + "/demo.log");
    if (WaitForPort(port, 5000) && WaitForPort(admin, 5000)) break;
    ASSERT_NE(ReadFile(dir + "/demo.log").find("Address already in use"), std::string::npos)
        << ReadFile(dir + "/demo.log");
    demo_proc.reset();
  }
  ASSERT_NE(demo_proc, nullptr);
  Process& demo = *demo_proc;
  std::set<std::string> origins;
  for (int i = 0; i < 6; ++i) {
    Response r = HttpGet(port, "/");
    ASSERT_EQ(r.status, 200);
    origins.insert(r.body.substr(0, r.body.find("\",\"path")));
  }
  EXPECT_EQ(origins.size(), 3u);
  ASSERT_EQ(HttpPost(admin, "/api/v1/demo/origins/2/stop", "").status, 200);
  int errors = 0;
  for (int i = 0; i < 30; ++i) {
    Response r = HttpGet(port, "/");
    errors += r.status != 200;
    EXPECT_EQ(r.body.find("origin-2"), std::string::npos);
  }
  EXPECT_EQ(errors, 0);
  ASSERT_EQ(HttpPost(admin, "/api/v1/demo/origins/2/start", "").status, 200);
  // The health check (interval 1s, rise 2) and fail_timeout (5s) bring it back (within ~6 s;
  // the wait is longer for slow sanitizer builds under a parallel test load).
  bool back = false;
  for (int i = 0; i < 200 && !back; ++i) {
    std::this_thread::sleep_for(100ms);
    back = HttpGet(port, "/").body.find("origin-2") != std::string::npos;
  }
  EXPECT_TRUE(back);
  std::string out = ReadFile(dir + "/demo.log");
  EXPECT_NE(out.find("bulwark demo is running"), std::string::npos);
  demo.Signal(SIGINT);
  EXPECT_EQ(demo.Wait(5000), 0);
}

// Regression: pooled client-connection objects kept the route of their previous connection. After
// a reload freed that route's snapshot, a malformed first request on a reused object logged
// against the freed route (a use-after-free ASan caught).
TEST(Regression, PooledConnectionForgetsItsRouteAcrossReload) {
  Backend a([](const Backend::Request&) { return Backend::Reply(200, "ok"); });
  int port = FreePort(), admin = FreePort();
  auto config = [&](const std::string& name) {
    return "workers: 1\naccess_log: {path: stderr}\nadmin: {listen: 127.0.0.1:" +
           std::to_string(admin) + "}\nlisteners:\n  - listen: 127.0.0.1:" + std::to_string(port) +
           "\n    routes: [{name: " + name + ", prefix: /, upstream: app}]\n"
           "upstreams:\n  app: {servers: ['127.0.0.1:" + std::to_string(a.port()) + "']}\n";
  };
  Bulwark b(config("first"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(HttpGet(port, "/").status, 200);
  std::this_thread::sleep_for(100ms);
  WriteFile(b.config_path(), config("second"));
  b.process().Signal(SIGHUP);
  std::this_thread::sleep_for(300ms);
  for (int i = 0; i < 3; ++i) {
    Client c(port);
    c.Send("NOT HTTP\r\n\r\n");
    EXPECT_EQ(c.Read().status, 400);
  }
  EXPECT_EQ(HttpGet(port, "/").status, 200);
  EXPECT_TRUE(b.process().running());
}

}  // namespace
}  // namespace bulwark::testing
