// The gateway against real processes on loopback: bulwark itself (the built binary), nginx from
// Debian as a backend, and scriptable backends in this process.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <regex>
#include <thread>

#include "core/strings.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

using namespace std::chrono_literals;

std::string Config(int listen, int admin, const std::string& upstream_servers,
                   const std::string& extra = "", const std::string& upstream_extra = "") {
  return "workers: 2\n"
         "access_log: {path: stderr}\n"
         "admin: {listen: 127.0.0.1:" +
         std::to_string(admin) + "}\n" + extra +
         "listeners:\n"
         "  - listen: 127.0.0.1:" +
         std::to_string(listen) +
         "\n"
         "    routes:\n"
         "      - {name: health, exact: /health, return: {status: 200, body: \"healthy\\n\"}}\n"
         "      - {name: app, prefix: /, upstream: app}\n"
         "upstreams:\n"
         "  app:\n"
         "    connect_timeout: 1s\n"
         "    read_timeout: 5s\n" +
         upstream_extra + "    servers: [" + upstream_servers + "]\n";
}

// The log lines that are not a plain 200 (for failure messages).
std::string NotOk(const std::string& log) {
  std::string out;
  size_t start = 0;
  while (start < log.size()) {
    size_t nl = log.find('\n', start);
    if (nl == std::string::npos) nl = log.size();
    std::string line = log.substr(start, nl - start);
    if (line.find("\"status\":200,") == std::string::npos) out += line + "\n";
    start = nl + 1;
  }
  return out;
}

std::string Servers(const std::vector<int>& ports) {
  std::string s;
  for (int p : ports)
    s += (s.empty() ? "" : ", ") + std::string("'127.0.0.1:") + std::to_string(p) + "'";
  return s;
}

// Load: `threads` keep-alive clients sending GETs until `stop`; counts non-200 answers.
struct Load {
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, bad{0}, reconnects{0};
  std::vector<std::thread> threads;
  std::vector<std::string> failures;
  std::mutex mu;
  Load(int port, int n) {
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([this, port] {
        auto client = std::make_unique<Client>(port);
        while (!stop) {
          Response r = client->Get("/load");
          if (r.status == 200) {
            ++ok;
          } else {
            ++bad;
            std::lock_guard<std::mutex> l(mu);
            failures.push_back(std::to_string(r.status) + " " + r.error);
          }
          if (r.status == 0 || r.closed) {
            ++reconnects;
            client = std::make_unique<Client>(port);
          }
        }
      });
    }
  }
  void Finish() {
    stop = true;
    for (auto& t : threads) t.join();
  }
};

TEST(Gateway, ProxiesToNginxWithForwardedHeaders) {
  std::string dir = MakeTempDir();
  int nginx_port = FreePort();
  WriteFile(dir + "/nginx.conf", "daemon off; worker_processes 1; pid " + dir +
                                     "/nginx.pid; error_log " + dir +
                                     "/error.log;\n"
                                     "events { worker_connections 128; }\n"
                                     "http { access_log off; client_body_temp_path " +
                                     dir + "; proxy_temp_path " + dir +
                                     ";\n"
                                     "  server { listen 127.0.0.1:" +
                                     std::to_string(nginx_port) +
                                     ";\n"
                                     "    location / { return 200 \"xff=$http_x_forwarded_for "
                                     "real=$http_x_real_ip rid=$http_x_request_id "
                                     "tp=$http_traceparent host=$http_host conn=$http_connection "
                                     "under=$http_x_a_b\"; } } }\n");
  std::string nginx_bin = FindProgram("nginx");
  ASSERT_FALSE(nginx_bin.empty()) << "nginx is not installed: run scripts/deps";
  Process nginx({nginx_bin, "-p", dir, "-c", dir + "/nginx.conf"}, {}, dir + "/nginx.out");
  ASSERT_TRUE(WaitForPort(nginx_port, 5000))
      << ReadFile(dir + "/nginx.out") << ReadFile(dir + "/error.log");
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(port, admin, Servers({nginx_port})));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();

  Response r = HttpGet(port, "/hello",
                       "X-Forwarded-For: 6.6.6.6\r\nX-Request-Id: abc-123\r\nX_A_B: smuggled\r\n");
  ASSERT_EQ(r.status, 200) << b.log();
  // The client is not a trusted proxy: its X-Forwarded-For is replaced, not extended.
  EXPECT_NE(r.body.find("xff=127.0.0.1 "), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("real=127.0.0.1 "), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("rid=abc-123 "), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("host=test "), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("tp=00-"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("under="), std::string::npos);
  EXPECT_EQ(r.body.find("smuggled"), std::string::npos) << "headers with underscores are dropped";
  EXPECT_EQ(r.headers["x-request-id"], "abc-123");

  // A request id is generated when absent; a valid traceparent is propagated as is.
  r = HttpGet(port, "/",
              "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["x-request-id"].size(), 32u);
  EXPECT_NE(r.body.find("tp=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            std::string::npos)
      << r.body;

  // Static return route and keep-alive with pipelining.
  Client c(port);
  ASSERT_TRUE(
      c.Send("GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /health "
             "HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(c.Read().body, "healthy\n");
  EXPECT_NE(c.Read().body.find("xff="), std::string::npos);
  EXPECT_EQ(c.Read().body, "healthy\n");

  // The access log has one JSON line per request with the fields operators search by.
  std::string log = b.log();
  EXPECT_NE(log.find("\"request_id\":\"abc-123\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"route\":\"app\""), std::string::npos);
  EXPECT_NE(log.find("\"upstream\":\"127.0.0.1:" + std::to_string(nginx_port) + "\""),
            std::string::npos);

  // Metrics carry the AlkaidSYS names.
  Response m = HttpGet(admin, "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(
      m.body.find("http_requests_total{method=\"GET\",endpoint=\"app\",status_code=\"200\"} 3"),
      std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"health\","
                        "status_code=\"200\",le=\"0.01\"}"),
            std::string::npos);
  EXPECT_NE(m.body.find("bulwark_upstream_up{upstream=\"app\",server=\"127.0.0.1:" +
                        std::to_string(nginx_port) + "\"} 1"),
            std::string::npos);
  nginx.Signal(SIGQUIT);
  nginx.Wait(5000);
}

TEST(Gateway, KillingOneOfThreeBackendsUnderLoadGivesNoErrors) {
  std::vector<std::unique_ptr<Backend>> backends;
  std::vector<int> ports;
  for (int i = 0; i < 3; ++i) {
    backends.push_back(std::make_unique<Backend>(
        [i](const Backend::Request&) { return Backend::Reply(200, "b" + std::to_string(i)); }));
    ports.push_back(backends.back()->port());
  }
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(port, admin, Servers(ports)));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  Load load(port, 6);
  std::this_thread::sleep_for(300ms);
  backends[1]->Stop();  // kill one backend mid-load
  std::this_thread::sleep_for(700ms);
  backends[1]->Start();
  std::this_thread::sleep_for(300ms);
  load.Finish();
  EXPECT_GT(load.ok.load(), 100);
  EXPECT_EQ(load.bad.load(), 0) << (load.failures.empty() ? "" : load.failures[0]) << "\n"
                                << NotOk(b.log());
  Response u = HttpGet(admin, "/api/v1/upstreams");
  EXPECT_NE(u.body.find("\"failures\""), std::string::npos);
}

TEST(Gateway, EveryServerDownAnswers503AtOnce) {
  int dead = FreePort();
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(port, admin, Servers({dead})));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  Response r = HttpGet(port, "/");
  EXPECT_EQ(r.status, 502);  // the first try fails to connect
  auto t0 = std::chrono::steady_clock::now();
  r = HttpGet(port, "/");
  EXPECT_EQ(r.status, 503);  // then the server is out for fail_timeout: no live upstreams
  // Sooner than one connect_timeout (1 s): no server was tried.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1000ms);
  EXPECT_EQ(HttpGet(admin, "/ready").status, 503);
  EXPECT_EQ(HttpGet(admin, "/health").status, 200);
}

TEST(Gateway, DrainAndEnableThroughTheAdminApi) {
  Backend a([](const Backend::Request&) { return Backend::Reply(200, "A"); });
  Backend c([](const Backend::Request&) { return Backend::Reply(200, "C"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(port, admin, Servers({a.port(), c.port()})));
  ASSERT_TRUE(b.Ready(port, admin));
  std::string addr = "127.0.0.1:" + std::to_string(a.port());
  ASSERT_EQ(HttpPost(admin, "/api/v1/upstreams/app/servers/" + addr + "/drain", "").status, 200);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(HttpGet(port, "/").body, "C");
  EXPECT_NE(HttpGet(admin, "/api/v1/upstreams").body.find("\"state\":\"drained\""),
            std::string::npos);
  ASSERT_EQ(HttpPost(admin, "/api/v1/upstreams/app/servers/" + addr + "/enable", "").status, 200);
  // Each worker keeps its own round-robin state and connections land on either worker, so
  // the split is not exact; both servers must be serving again.
  int as = 0;
  for (int i = 0; i < 20; ++i) as += HttpGet(port, "/").body == "A";
  EXPECT_GE(as, 5);
  EXPECT_LE(as, 15);
  EXPECT_EQ(HttpPost(admin, "/api/v1/upstreams/nope/servers/x/drain", "").status, 404);
}

TEST(Gateway, ActiveHealthChecksTakeAServerOutAndBack) {
  std::atomic<bool> healthy{true};
  Backend a([&](const Backend::Request& r) {
    if (r.target == "/healthz") return Backend::Reply(healthy ? 200 : 500, "");
    return Backend::Reply(200, "A");
  });
  Backend c([](const Backend::Request&) { return Backend::Reply(200, "C"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(
      port, admin, Servers({a.port(), c.port()}), "",
      "    health_check: {path: /healthz, interval: 100ms, timeout: 500ms, rise: 2, fall: 2}\n"));
  ASSERT_TRUE(b.Ready(port, admin));
  healthy = false;
  std::this_thread::sleep_for(600ms);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(HttpGet(port, "/").body, "C");
  std::string u = HttpGet(admin, "/api/v1/upstreams").body;
  EXPECT_NE(u.find("\"state\":\"down\""), std::string::npos) << u;
  healthy = true;
  std::this_thread::sleep_for(600ms);
  int as = 0;
  for (int i = 0; i < 20; ++i) as += HttpGet(port, "/").body == "A";
  EXPECT_GE(as, 5);
  EXPECT_LE(as, 15);
}

TEST(Gateway, HotReloadUnderLoadDropsNothing) {
  Backend a([](const Backend::Request&) { return Backend::Reply(200, "A"); });
  int port = FreePort(), admin = FreePort();
  const std::string http = "http: {keepalive_requests: 100000000}\n";
  Bulwark b(Config(port, admin, Servers({a.port()}), http));
  ASSERT_TRUE(b.Ready(port, admin));
  Load load(port, 4);
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(100ms);
    // Alternate between two valid configs, by API and by SIGHUP.
    WriteFile(b.config_path(), Config(port, admin, Servers({a.port()}), http,
                                      i % 2 ? "    keepalive: 8\n" : "    keepalive: 16\n"));
    if (i % 2) {
      b.process().Signal(SIGHUP);
    } else {
      EXPECT_EQ(HttpPost(admin, "/api/v1/reload", "").status, 200);
    }
  }
  // An invalid config is refused with its errors; the old one keeps serving.
  WriteFile(b.config_path(), "listeners: [{listen: 'x', routes: []}]\n");
  Response bad = HttpPost(admin, "/api/v1/reload", "");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("bulwark.yml:1:"), std::string::npos) << bad.body;
  std::this_thread::sleep_for(200ms);
  load.Finish();
  EXPECT_GT(load.ok.load(), 50);
  EXPECT_EQ(load.bad.load(), 0) << (load.failures.empty() ? "" : load.failures[0]);
  EXPECT_EQ(load.reconnects.load(), 0) << "established connections must survive a reload";
  Response m = HttpGet(admin, "/metrics");
  EXPECT_NE(m.body.find("bulwark_config_reloads_total{result=\"failure\"} 1"), std::string::npos);
  EXPECT_EQ(HttpGet(port, "/health").status, 200);
}

TEST(Gateway, ReloadThatReplacesServersNeverReusesTheirConnections) {
  Backend a([](const Backend::Request&) { return Backend::Reply(200, "A"); });
  Backend c([](const Backend::Request&) { return Backend::Reply(200, "C"); });
  Backend d([](const Backend::Request&) { return Backend::Reply(200, "D"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(port, admin, Servers({a.port()})));
  ASSERT_TRUE(b.Ready(port, admin));
  // Pooled keep-alive connections to A in every worker.
  for (int i = 0; i < 8; ++i) EXPECT_EQ(HttpGet(port, "/").body, "A");
  // A leaves; then a second reload lets its state go and a new server D may take its slot.
  WriteFile(b.config_path(), Config(port, admin, Servers({c.port()})));
  ASSERT_EQ(HttpPost(admin, "/api/v1/reload", "").status, 200);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(HttpGet(port, "/").body, "C");
  WriteFile(b.config_path(), Config(port, admin, Servers({d.port()})));
  ASSERT_EQ(HttpPost(admin, "/api/v1/reload", "").status, 200);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(HttpGet(port, "/").body, "D") << "a connection to a removed server was reused";
  // A third reload adds E, which can take a slot freed by A or C.
  Backend e([](const Backend::Request&) { return Backend::Reply(200, "E"); });
  WriteFile(b.config_path(), Config(port, admin, Servers({d.port(), e.port()})));
  ASSERT_EQ(HttpPost(admin, "/api/v1/reload", "").status, 200);
  for (int i = 0; i < 12; ++i) {
    std::string body = HttpGet(port, "/").body;
    EXPECT_TRUE(body == "D" || body == "E")
        << "a connection to a removed server was reused: " << body;
  }
  // A and C go away: bulwark sees their idle connections close and must not trip over them.
  a.Stop();
  c.Stop();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(HttpGet(admin, "/health").status, 200);
  EXPECT_TRUE(b.process().running()) << b.log();
}

// A kept-alive connection belongs to its listener, not to a position in the config: a reload
// that reorders listeners must not hand its next request to another listener's routes, and one
// that removes its listener ends it (idle: at once; a head still arriving: 503, then close).
TEST(Gateway, ReloadThatMovesOrRemovesListenersKeepsConnectionsOnTheirOwn) {
  Backend a([](const Backend::Request&) { return Backend::Reply(200, "A"); });
  Backend b([](const Backend::Request&) { return Backend::Reply(200, "B"); });
  Backend c([](const Backend::Request&) { return Backend::Reply(200, "C"); });
  int port_a = FreePort(), port_b = FreePort(), port_c = FreePort(), admin = FreePort();
  auto listener = [](int port, const char* upstream) {
    return StrCat("  - listen: 127.0.0.1:", port, "\n    routes: [{prefix: /, upstream: ", upstream,
                  "}]\n");
  };
  auto config = [&](const std::string& listeners) {
    return StrCat("workers: 1\naccess_log: {path: stderr}\nadmin: {listen: 127.0.0.1:", admin,
                  "}\nlisteners:\n", listeners, "upstreams:\n  a: {servers: ['127.0.0.1:", a.port(),
                  "']}\n  b: {servers: ['127.0.0.1:", b.port(),
                  "']}\n  c: {servers: ['127.0.0.1:", c.port(), "']}\n");
  };
  Bulwark gw(config(listener(port_a, "a") + listener(port_b, "b")));
  ASSERT_TRUE(gw.Ready(port_b, admin)) << gw.log();
  Client kept_a(port_a), kept_b(port_b), half_a(port_a);
  EXPECT_EQ(kept_a.Get("/").body, "A");
  EXPECT_EQ(kept_b.Get("/").body, "B");
  EXPECT_EQ(half_a.Get("/").body, "A");
  ASSERT_TRUE(half_a.Send("GET / HTTP/1.1\r\nHost: test\r\n"));  // a head still arriving
  // Listener B moves from the second place to the first, A leaves, C comes second.
  WriteFile(gw.config_path(), config(listener(port_b, "b") + listener(port_c, "c")));
  ASSERT_EQ(HttpPost(admin, "/api/v1/reload", "").status, 200) << gw.log();
  // C answering proves the (single) worker applied the new config: it accepts only afterwards.
  EXPECT_EQ(HttpGet(port_c, "/").body, "C") << gw.log();
  Response r = kept_b.Get("/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "B") << "a kept-alive connection was served by another listener's routes";
  EXPECT_TRUE(kept_a.WaitClosed(5000)) << "an idle connection of a removed listener stayed open";
  ASSERT_TRUE(half_a.Send("\r\n"));
  r = half_a.Read();
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_TRUE(half_a.WaitClosed(5000));
  // New connections to A are refused; B and C serve as configured.
  Client gone(port_a, 1000);
  EXPECT_FALSE(gone.connected());
  EXPECT_EQ(HttpGet(port_b, "/").body, "B");
  EXPECT_TRUE(gw.process().running()) << gw.log();
}

// nginx proxy_set_header / proxy_hide_header: set headers replace the client's and bulwark's own,
// variables are filled in per request, an empty value leaves the header out, a route with its
// own list takes nothing from its listener's.
TEST(Gateway, ProxySetHeaderAndProxyHideHeaderAsNginx) {
  Backend b([](const Backend::Request& r) {
    std::string out;
    for (const auto& [k, v] : r.headers) out += k + "=" + v + "\n";
    return Backend::Reply(200, out, "X-Powered-By: php\r\nServer: app/1\r\nX-Keep: 1\r\n");
  });
  int port = FreePort(), admin = FreePort();
  Bulwark gw(StrCat(
      "workers: 1\naccess_log: {path: stderr}\nadmin: {listen: 127.0.0.1:", admin,
      "}\nlisteners:\n  - listen: 127.0.0.1:", port,
      "\n    proxy_set_header:\n      Host: backend.internal\n      X-Tenant: $http_x_tenant_id\n"
      "      X-Forwarded-For: $proxy_add_x_forwarded_for\n"
      "      X-Url: '$${scheme}://$host$request_uri'\n      Accept-Encoding: ''\n"
      "      X-Absent: $http_x_nothing\n"
      "    proxy_hide_header: [X-Powered-By, server]\n"
      "    routes:\n      - {prefix: /b, upstream: app, proxy_set_header: {X-Only: "
      "b$is_args$args}}\n"
      "      - {prefix: /, upstream: app}\nupstreams:\n  app: {servers: ['127.0.0.1:",
      b.port(), "']}\n"));
  ASSERT_TRUE(gw.Ready(port, admin)) << gw.log();
  Client c(port);
  std::string extra = "X-Tenant-Id: t1\r\nX-Forwarded-For: 9.9.9.9\r\nAccept-Encoding: gzip\r\n";
  ASSERT_TRUE(c.Send("GET /a/x?q=1 HTTP/1.1\r\nHost: api.test:8080\r\n" + extra + "\r\n"));
  Response r = c.Read();
  ASSERT_EQ(r.status, 200) << gw.log();
  EXPECT_NE(r.body.find("host=backend.internal\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("x-tenant=t1\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("x-tenant-id=t1\n"), std::string::npos) << r.body;
  // As nginx's $proxy_add_x_forwarded_for: the client's list as sent, then its address.
  EXPECT_NE(r.body.find("x-forwarded-for=9.9.9.9, 127.0.0.1\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("x-url=http://api.test/a/x?q=1\n"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("accept-encoding"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("x-absent"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("x-forwarded-proto=http\n"), std::string::npos) << r.body;
  EXPECT_EQ(r.headers.count("x-powered-by"), 0u);
  EXPECT_EQ(r.headers.count("server"), 0u);
  EXPECT_EQ(r.headers["x-keep"], "1");
  // A route with its own list: only that, and bulwark's defaults for the rest.
  ASSERT_TRUE(c.Send("GET /b?k=v HTTP/1.1\r\nHost: api.test:8080\r\n" + extra + "\r\n"));
  r = c.Read();
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("x-only=b?k=v\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("host=api.test:8080\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("accept-encoding=gzip\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("x-forwarded-for=127.0.0.1\n"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("x-tenant="), std::string::npos) << r.body;
  EXPECT_EQ(r.headers.count("x-powered-by"), 0u);  // each directive is inherited on its own
}

// nginx client_max_body_size and proxy_read_timeout in a location: a route's own values win over
// the http and upstream ones, 0 lifts the body limit, a listener's apply to its routes.
TEST(Gateway, RouteBodyLimitsAndTimeoutsOverrideTheDefaults) {
  Backend b([](const Backend::Request& r) {
    if (r.target.rfind("/slow", 0) == 0 || r.target.rfind("/patient", 0) == 0)
      std::this_thread::sleep_for(2s);
    return Backend::Reply(200, StrCat("got ", r.body.size()));
  });
  int port = FreePort(), admin = FreePort();
  Bulwark gw(
      StrCat("workers: 1\naccess_log: {path: stderr}\nadmin: {listen: 127.0.0.1:", admin,
             "}\nhttp: {client_max_body_size: 100}\nlisteners:\n  - listen: 127.0.0.1:", port,
             "\n    client_max_body_size: 50\n    routes:\n"
             "      - {prefix: /small, upstream: app, client_max_body_size: 10}\n"
             "      - {prefix: /any, upstream: app, client_max_body_size: 0}\n"
             "      - {prefix: /slow, upstream: app, read_timeout: 200ms}\n"
             "      - {prefix: /, upstream: app}\n"
             "upstreams:\n  app: {read_timeout: 30s, servers: ['127.0.0.1:",
             b.port(), "']}\n"));
  ASSERT_TRUE(gw.Ready(port, admin)) << gw.log();
  EXPECT_EQ(HttpPost(port, "/small", std::string(10, 'a')).status, 200);
  EXPECT_EQ(HttpPost(port, "/small", std::string(11, 'a')).status, 413);
  // The listener's 50 for routes without their own, not http's 100.
  EXPECT_EQ(HttpPost(port, "/other", std::string(50, 'a')).status, 200);
  EXPECT_EQ(HttpPost(port, "/other", std::string(51, 'a')).status, 413);
  Response big = HttpPost(port, "/any", std::string(3 << 20, 'a'));
  EXPECT_EQ(big.status, 200);
  EXPECT_EQ(big.body, StrCat("got ", 3 << 20));
  // A chunked body is counted as it streams.
  Client c(port);
  ASSERT_TRUE(
      c.Send("POST /small HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
             "6\r\naaaaaa\r\n6\r\naaaaaa\r\n0\r\n\r\n"));
  EXPECT_EQ(c.Read().status, 413);
  // The same slow server: the upstream's 30s waits for it, the route with read_timeout 200ms
  // answers 504 (and, as in nginx, the timeout counts as the server's failure: asked last).
  Response patient = HttpGet(port, "/patient");
  EXPECT_EQ(patient.status, 200) << patient.error;
  EXPECT_EQ(HttpGet(port, "/slow").status, 504);
}

// nginx rewrite: server-level rules before the route search, a route's own after it; captures,
// arguments appended or dropped, last (search again), break (stay), redirect, permanent, an
// absolute replacement redirects, a cycle ends in 500, and the new path goes upstream escaped.
TEST(Gateway, RewriteAsNginx) {
  Backend b([](const Backend::Request& r) { return Backend::Reply(200, r.target); });
  int port = FreePort(), admin = FreePort();
  Bulwark gw(StrCat(
      "workers: 1\naccess_log: {path: stderr}\nadmin: {listen: 127.0.0.1:", admin,
      "}\nlisteners:\n  - listen: 127.0.0.1:", port,
      "\n    rewrite: ['^/old/(.*)$ /new/$1']\n"
      "    routes:\n"
      "      - {prefix: /new/, upstream: app}\n"
      "      - {prefix: /api/v1/, upstream: app,\n"
      "         rewrite: [{regex: '^/api/v1/(.*)$', replacement: '/v1/$1?ver=1', flag: break}]}\n"
      "      - {prefix: /go/, upstream: app, rewrite: ['^/go/(.*)$ /static/$1 last']}\n"
      "      - {prefix: /static/, return: {status: 200, body: 'static $uri$is_args$args'}}\n"
      "      - {prefix: /moved/, upstream: app,\n"
      "         rewrite: ['^/moved/(.*)$ https://example.com/$1 permanent']}\n"
      "      - {prefix: /tmp/, upstream: app, rewrite: ['^/tmp/(.*)$ /elsewhere/$1? redirect']}\n"
      "      - {prefix: /loop/, upstream: app, rewrite: ['^/loop/(.*)$ /loop/x$1']}\n"
      "      - {prefix: /sp/, upstream: app, rewrite: ['^/sp/(.*)$ /new/$1 break']}\n"
      "upstreams:\n  app: {servers: ['127.0.0.1:",
      b.port(), "']}\n"));
  ASSERT_TRUE(gw.Ready(port, admin)) << gw.log();
  EXPECT_EQ(HttpGet(port, "/old/a?q=1").body, "/new/a?q=1");
  EXPECT_EQ(HttpGet(port, "/api/v1/users?q=2").body, "/v1/users?ver=1&q=2");
  Response r = HttpGet(port, "/go/x?k=v");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "static /static/x?k=v");
  r = HttpGet(port, "/moved/x?q=2");
  EXPECT_EQ(r.status, 301);
  EXPECT_EQ(r.headers["location"], "https://example.com/x?q=2");
  r = HttpGet(port, "/tmp/x?q=2");
  EXPECT_EQ(r.status, 302);
  EXPECT_EQ(r.headers["location"], "/elsewhere/x");
  EXPECT_EQ(HttpGet(port, "/loop/a").status, 500);
  // The decoded path is what the rules see; what goes upstream is escaped again.
  EXPECT_EQ(HttpGet(port, "/sp/a%20b%3Fc").body, "/new/a%20b%3Fc");
  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_EQ(Metric(m, "bulwark_http_rewrites_total"), "16") << m;  // /loop: 10
}

TEST(Gateway, SlowlorisIsCutOffByTheHeaderTimeout) {
  Backend a([](const Backend::Request&) { return Backend::Reply(200, "A"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(port, admin, Servers({a.port()}), "http: {client_header_timeout: 1s}\n"));
  ASSERT_TRUE(b.Ready(port, admin));
  // Taken before the connections exist, so no timer of theirs can have started earlier.
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<Client>> slow;
  for (int i = 0; i < 20; ++i) {
    slow.push_back(std::make_unique<Client>(port));
    slow.back()->Send("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  }
  // Every client sends a byte every 200 ms until the first is answered: a timer restarted by each
  // read would never fire (the timeout is for the whole header, as nginx's client_header_timeout).
  // How late the answer may come is not guessed: only that it came while the client was still
  // sending, however loaded the machine.
  auto answered = [&] {
    pollfd p{slow[0]->fd(), POLLIN, 0};
    return poll(&p, 1, 0) > 0;
  };
  int rounds = 0;
  while (!answered() && std::chrono::steady_clock::now() - t0 < 30s) {
    std::this_thread::sleep_for(200ms);
    for (auto& c : slow) {
      if (c == slow[0] && answered()) break;
      c->Send("a");
    }
    if (++rounds <= 3) {
      EXPECT_EQ(HttpGet(port, "/").status, 200);  // others are still served
    }
  }
  auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(answered()) << "still not answered after " << rounds << " bytes";
  Response r = slow[0]->Read();
  EXPECT_EQ(r.status, 408);
  EXPECT_TRUE(slow[0]->WaitClosed(2000));
  // Not before the timeout (less the little by which the event loop's clock, read once per
  // wake-up, may lag).
  EXPECT_GE(elapsed, 900ms);
}

TEST(Gateway, SigtermFinishesInFlightRequestsThenExitsZero) {
  Backend slow([](const Backend::Request&) {
    std::this_thread::sleep_for(800ms);
    return Backend::Reply(200, "done");
  });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(port, admin, Servers({slow.port()}), "drain_timeout: 10s\n"));
  ASSERT_TRUE(b.Ready(port, admin));
  Response result;
  std::thread t([&] { result = HttpGet(port, "/slow"); });
  std::this_thread::sleep_for(200ms);
  b.process().Signal(SIGTERM);
  std::this_thread::sleep_for(200ms);
  Client late(port, 500);
  EXPECT_FALSE(late.connected() && late.Get("/").status == 200)
      << "new connections are not served while draining";
  t.join();
  EXPECT_EQ(result.status, 200);
  EXPECT_EQ(result.body, "done");
  EXPECT_EQ(b.process().Wait(5000), 0) << b.log();
}

TEST(Gateway, StreamsChunkedAndLargeBodiesBothWays) {
  Backend echo([](const Backend::Request& r) {
    std::string body =
        "len=" + std::to_string(r.body.size()) +
        " te=" + (r.headers.count("transfer-encoding") ? r.headers.at("transfer-encoding") : "-");
    // Answer chunked, in two chunks.
    char hex[16];
    snprintf(hex, sizeof(hex), "%zx", body.size());
    return std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nlen:\r\n") + hex +
           "\r\n" + body + "\r\n0\r\n\r\n";
  });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(port, admin, Servers({echo.port()}), "http: {client_max_body_size: 8M}\n"));
  ASSERT_TRUE(b.Ready(port, admin));
  Client c(port);
  c.Send(
      "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n "
      "world\r\n0\r\n\r\n");
  Response r = c.Read();
  ASSERT_EQ(r.status, 200) << b.log();
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  EXPECT_EQ(r.body.substr(0, 4), "len:");
  EXPECT_NE(r.body.find("len=11 te=chunked"), std::string::npos) << r.body;
  // A body larger than any buffer streams through.
  std::string big(3 * 1024 * 1024, 'x');
  Backend sizer(
      [](const Backend::Request& r) { return Backend::Reply(200, std::to_string(r.body.size())); });
  int port2 = FreePort(), admin2 = FreePort();
  Bulwark b2(Config(port2, admin2, Servers({sizer.port()}), "http: {client_max_body_size: 8M}\n"));
  ASSERT_TRUE(b2.Ready(port2, admin2));
  Response big_r = HttpPost(port2, "/big", big);
  EXPECT_EQ(big_r.status, 200);
  EXPECT_EQ(big_r.body, std::to_string(big.size()));
  Response too_big = HttpPost(port2, "/big", std::string(9 * 1024 * 1024, 'y'));
  EXPECT_EQ(too_big.status, 413);
}

TEST(Gateway, LargeResponseToASlowReaderIsStreamedWithBackpressure) {
  std::string big;
  for (int i = 0; big.size() < 8 * 1024 * 1024; ++i) big += "line " + std::to_string(i) + "\n";
  Backend origin([&big](const Backend::Request&) { return Backend::Reply(200, big); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(port, admin, Servers({origin.port()})));
  ASSERT_TRUE(b.Ready(port, admin));
  Client c(port, 20000);
  ASSERT_TRUE(c.Send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
  // Read the first megabyte slowly so bulwark has to pause reading from the server.
  std::string got;
  char buf[16384];
  while (got.size() < 1024 * 1024) {
    ssize_t n = recv(c.fd(), buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
    std::this_thread::sleep_for(2ms);
  }
  size_t head_end = got.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  EXPECT_NE(got.find("Content-Length: " + std::to_string(big.size())), std::string::npos);
  size_t want = head_end + 4 + big.size();
  while (got.size() < want) {
    ssize_t n = recv(c.fd(), buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(got.size(), want);
  EXPECT_TRUE(got.compare(head_end + 4, big.size(), big) == 0) << "body corrupted in transit";
  // The connection stays usable after a large response.
  EXPECT_EQ(c.Get("/small").status, 200);
}

TEST(Gateway, WebSocketUpgradeIsTunnelled) {
  Backend ws([](const Backend::Request& r) {
    if (r.headers.count("upgrade") && r.headers.at("upgrade") == "websocket") {
      return std::string(
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    }
    return Backend::Reply(400, "no upgrade");
  });
  int port = FreePort(), admin = FreePort();
  Bulwark b(Config(port, admin, Servers({ws.port()})));
  ASSERT_TRUE(b.Ready(port, admin));
  Client c(port);
  c.Send(
      "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "
      "websocket\r\nSec-WebSocket-Key: x\r\n\r\n");
  Response r = c.Read(true);
  ASSERT_EQ(r.status, 101) << b.log();
  EXPECT_EQ(r.headers["upgrade"], "websocket");
  c.Send("ping-frame-bytes");
  char buf[64] = {};
  ssize_t got = 0;
  while (got < 16) {
    ssize_t n = recv(c.fd(), buf + got, sizeof(buf) - got, 0);
    if (n <= 0) break;
    got += n;
  }
  EXPECT_EQ(std::string(buf, got), "ping-frame-bytes");
}

TEST(Gateway, Timeouts) {
  Backend slow([](const Backend::Request&) {
    std::this_thread::sleep_for(1500ms);
    return Backend::Reply(200, "late");
  });
  Backend fast([](const Backend::Request&) { return Backend::Reply(200, "fast"); });
  int port = FreePort(), admin = FreePort();
  auto short_read = [](std::string c) {
    c.replace(c.find("read_timeout: 5s"), 16, "read_timeout: 300ms");
    return c;
  };
  Bulwark b(short_read(Config(port, admin, Servers({slow.port()}))));
  ASSERT_TRUE(b.Ready(port, admin));
  // The server does not answer within read_timeout: 504.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(HttpGet(port, "/").status, 504);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);  // before the server would answer
  // The only server timed out, so it is out for fail_timeout (max_fails 1): 503 at once.
  EXPECT_EQ(HttpGet(port, "/").status, 503);

  // With a second server, a timed-out GET is retried there (nginx proxy_next_upstream timeout).
  int port2 = FreePort(), admin2 = FreePort();
  Bulwark b2(short_read(Config(port2, admin2, Servers({slow.port(), fast.port()}),
                               "http: {client_body_timeout: 500ms, keepalive_timeout: 500ms}\n")));
  ASSERT_TRUE(b2.Ready(port2, admin2));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(HttpGet(port2, "/").body, "fast");
  // A body that stops arriving: 408 after client_body_timeout, and the connection is closed.
  Client c(port2);
  c.Send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  Response r = c.Read();
  EXPECT_EQ(r.status, 408);
  EXPECT_TRUE(c.WaitClosed(1000));
  // An idle keep-alive connection is closed after keepalive_timeout.
  Client idle(port2);
  EXPECT_EQ(idle.Get("/health").status, 200);
  EXPECT_TRUE(idle.WaitClosed(1500));
}

TEST(CheckConfig, ExitCodesAndMessages) {
  std::string dir = MakeTempDir();
  WriteFile(dir + "/good.yml", "listeners: [{listen: '127.0.0.1:1', routes: [{return: 204}]}]\n");
  WriteFile(dir + "/bad.yml", "listeners:\n  - listen: 127.0.0.1:1\n    routs: []\n");
  std::string out;
  EXPECT_EQ(RunBulwark({"check-config", dir + "/good.yml"}, &out), 0) << out;
  EXPECT_EQ(RunBulwark({"check-config", dir + "/bad.yml"}, &out), 1);
  EXPECT_NE(
      out.find(dir +
               "/bad.yml:3:5: listeners[0]: unknown key \"routs\" (did you mean \"routes\"?)"),
      std::string::npos)
      << out;
  EXPECT_EQ(RunBulwark({"check-config", dir + "/missing.yml"}, &out), 1);
  EXPECT_NE(out.find("cannot open file"), std::string::npos);
  EXPECT_EQ(RunBulwark({"version"}, &out), 0);
  std::string version = out;
  EXPECT_EQ(RunBulwark({"--version"}, &out), 0);
  EXPECT_EQ(out, version);
  // The commit it was built from (a git checkout here: never "unknown"), the build's options
  // and the libraries' versions at run time.
  std::smatch m;
  EXPECT_TRUE(std::regex_search(
      version, m,
      std::regex("^bulwark [0-9]+\\.[0-9]+\\.[0-9]+ \\(commit [0-9a-f]{12}(-dirty)?; "
                 "(GNU|Clang) [0-9.]+, [A-Za-z]+[^)]*\\)\n")))
      << version;
  EXPECT_NE(version.find("libraries: OpenSSL 3."), std::string::npos) << version;
  EXPECT_NE(version.find(", c-ares 1."), std::string::npos) << version;
}

}  // namespace
}  // namespace bulwark::testing
