// Upstream servers written with host names, against the real binary and a real DNS server on
// loopback (dnsmasq): several records are several servers, a changed record is followed within
// its TTL without a client error, a dead DNS server leaves the last good answer in use, a name
// that does not resolve yet is a server that is down until it does.
#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/clock.h"
#include "core/etcd_lease.h"
#include "core/host_pins.h"
#include "core/resolver.h"
#include "core/strings.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"
#include "tests/integration/pg_client.h"

namespace bulwark::testing {
namespace {

using namespace std::chrono_literals;

// A backend that answers with its own name.
std::unique_ptr<Backend> Named(const std::string& name, int port, const std::string& ip) {
  return std::make_unique<Backend>(
      [name](const Backend::Request&) { return Backend::Reply(200, name); }, port, ip);
}

std::string Cfg(const DnsServer& dns, int port, int admin, const std::string& servers,
                const std::string& extra = "", const std::string& upstream_extra = "") {
  return dns.ConfigBlock() + extra + "workers: 2\naccess_log: {enabled: false}\n" +
         "admin: {listen: 127.0.0.1:" + std::to_string(admin) + "}\n" +
         "listeners:\n  - listen: 127.0.0.1:" + std::to_string(port) +
         "\n    routes: [{prefix: /, upstream: app}]\n"
         "upstreams:\n  app:\n" +
         upstream_extra + "    servers: [" + servers + "]\n";
}

nlohmann::json Servers(int admin) {
  Response r = Client(admin).Get("/api/v1/upstreams");
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.contains("upstreams")) return nlohmann::json::array();
  return j["upstreams"][0]["servers"];
}

TEST(Names, ANameWithThreeRecordsIsThreeBalancedServers) {
  DnsServer dns;
  dns.Start("127.0.0.31 api.test\n127.0.0.32 api.test\n127.0.0.33 api.test\n");
  int app_port = FreePort();
  std::vector<std::unique_ptr<Backend>> backends;
  for (int i = 1; i <= 3; ++i)
    backends.push_back(Named("b" + std::to_string(i), app_port, "127.0.0.3" + std::to_string(i)));
  int port = FreePort(), admin = FreePort();
  std::string name = "api.test:" + std::to_string(app_port);
  Bulwark b(Cfg(dns, port, admin, "'" + name + "'"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();

  for (int i = 0; i < 300; ++i) ASSERT_EQ(HttpGet(port, "/").status, 200) << b.log();
  for (const auto& be : backends) EXPECT_GE(be->requests(), 60) << "unbalanced";

  // Three servers, labelled like HAProxy's server-template, each with its address and state.
  nlohmann::json servers = Servers(admin);
  ASSERT_EQ(servers.size(), 3u) << servers.dump();
  std::vector<std::string> labels, ips;
  for (const auto& s : servers) {
    labels.push_back(s["address"]);
    ips.push_back(s["ip"]);
    EXPECT_EQ(s["host"], "api.test");
    EXPECT_EQ(s["state"], "up");
    EXPECT_GE(s["requests"].get<int>(), 60);
  }
  EXPECT_EQ(labels, (std::vector<std::string>{name, name + "#2", name + "#3"}));
  EXPECT_EQ(ips, (std::vector<std::string>{"127.0.0.31", "127.0.0.32", "127.0.0.33"}));
  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_EQ(Metric(m, "bulwark_resolver_addresses{name=\"api.test\"}"), "3") << m;
  EXPECT_EQ(
      Metric(m, "bulwark_upstream_state{upstream=\"app\",server=\"" + name + "#2\",state=\"up\"}"),
      "1");
}

TEST(Names, ARecordChangedUnderLoadIsFollowedWithinItsTtlWithoutAClientError) {
  DnsServer dns;
  dns.Start("127.0.0.41 app.test\n");
  int app_port = FreePort();
  auto a = Named("a", app_port, "127.0.0.41");
  auto bb = Named("b", app_port, "127.0.0.42");
  int port = FreePort(), admin = FreePort();
  std::string name = "app.test:" + std::to_string(app_port);
  Bulwark b(Cfg(dns, port, admin, "'" + name + "'"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();

  // Two clients on kept-alive connections, as a busy site has.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, errors{0};
  std::atomic<int64_t> first_b_ms{0};
  std::mutex mu;
  std::string error_text;
  std::vector<std::thread> clients;
  for (int t = 0; t < 2; ++t) {
    clients.emplace_back([&] {
      std::unique_ptr<Client> c;
      while (!stop) {
        if (c == nullptr || !c->connected()) c = std::make_unique<Client>(port);
        Response r = c->Get("/");
        if (r.status != 200) {
          ++errors;
          std::lock_guard<std::mutex> l(mu);
          error_text += std::to_string(r.status) + " " + r.error + " " + r.body + "\n";
          c.reset();
          continue;
        }
        ++ok;
        if (r.closed || r.headers["connection"] == "close") c.reset();  // keepalive_requests
        if (r.body == "b" && first_b_ms == 0) first_b_ms = MonotonicMs();
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return ok > 200; }, 10000));
  dns.SetHosts("127.0.0.42 app.test\n");
  int64_t changed_ms = MonotonicMs();
  bool followed = WaitFor([&] { return first_b_ms != 0; }, 15000);
  // The old server stops getting requests once those in flight are done...
  int before = 0;
  bool quiet = followed && WaitFor(
                               [&] {
                                 before = a->requests();
                                 std::this_thread::sleep_for(300ms);
                                 return a->requests() == before;
                               },
                               10000);
  // ...and then goes away without a client noticing: no request or pooled connection is left
  // on it.
  a->Stop();
  int ok_before = ok;
  WaitFor([&] { return ok > ok_before + 200; }, 10000);
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_TRUE(followed) << b.log();
  EXPECT_TRUE(quiet);
  EXPECT_EQ(errors, 0) << error_text << b.log();
  EXPECT_GT(ok, ok_before + 200);
  // dnsmasq serves the record with a 1 s TTL: the change is seen within that, one lookup and
  // the new snapshot (bounded loosely: this runs beside other work).
  int64_t followed_ms = first_b_ms - changed_ms;
  std::cout << "record change followed after " << followed_ms << " ms\n";
  EXPECT_LT(followed_ms, 1000 + 5000);
  // Same server, same label and counters: the name moved, the server did not.
  nlohmann::json servers = Servers(admin);
  ASSERT_EQ(servers.size(), 1u) << servers.dump();
  EXPECT_EQ(servers[0]["address"], name);
  EXPECT_EQ(servers[0]["ip"], "127.0.0.42");
  EXPECT_EQ(servers[0]["requests"].get<int>(), a->requests() + bb->requests());
  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_EQ(Metric(m, "bulwark_resolver_changes_total{name=\"app.test\"}"), "1");
  EXPECT_NE(b.log().find("app.test now stands for 127.0.0.42 (was 127.0.0.41)"), std::string::npos)
      << b.log();
}

TEST(Names, WhenTheDnsServerDiesTrafficContinuesOnTheLastGoodAnswer) {
  DnsServer dns;
  dns.Start("127.0.0.45 app.test\n");
  int app_port = FreePort();
  auto a = Named("a", app_port, "127.0.0.45");
  int port = FreePort(), admin = FreePort();
  Bulwark b(Cfg(dns, port, admin, "'app.test:" + std::to_string(app_port) + "'"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  ASSERT_EQ(HttpGet(port, "/").body, "a");
  dns.Kill();
  auto failures = [&] {
    return std::atoi(Metric(HttpGet(admin, "/metrics").body,
                            "bulwark_resolver_failures_total{name=\"app.test\"}")
                         .c_str());
  };
  // The 1 s TTL runs out, lookups fail (every retry: 200 ms)...
  ASSERT_TRUE(WaitFor([&] { return failures() >= 3; }, 20000)) << b.log();
  // ...and the last good address stays in use.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(HttpGet(port, "/").body, "a");
  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_EQ(Metric(m, "bulwark_resolver_up{name=\"app.test\"}"), "0");
  // Logged once, not once per failed lookup.
  std::string log = b.log();
  size_t first = log.find("keeping the last good addresses");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("keeping the last good addresses", first + 1), std::string::npos) << log;
}

TEST(Names, ANameThatDoesNotResolveYetIsAServerThatIsDownUntilItDoes) {
  DnsServer dns;
  dns.Start("");
  int app_port = FreePort();
  std::mutex mu;
  std::string probe_host;
  Backend late(
      [&](const Backend::Request& r) {
        if (r.headers.count("user-agent") && r.headers.at("user-agent") == "bulwark-health-check") {
          std::lock_guard<std::mutex> l(mu);
          probe_host = r.headers.at("host");
        }
        return Backend::Reply(200, "late");
      },
      app_port, "127.0.0.51");
  int port = FreePort(), admin = FreePort();
  std::string name = "late.test:" + std::to_string(app_port);
  Bulwark b(Cfg(dns, port, admin, "'" + name + "'", "",
                "    health_check: {path: /health, interval: 200ms}\n"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  EXPECT_EQ(HttpGet(port, "/").status, 503);  // no usable server: immediate 503
  nlohmann::json servers = Servers(admin);
  ASSERT_EQ(servers.size(), 1u) << servers.dump();
  EXPECT_EQ(servers[0]["state"], "unresolved");
  EXPECT_EQ(HttpGet(admin, "/ready").status, 503);
  EXPECT_NE(b.log().find("cannot resolve \"late.test\""), std::string::npos) << b.log();

  dns.SetHosts("127.0.0.51 late.test\n");
  ASSERT_TRUE(WaitFor([&] { return HttpGet(port, "/").body == "late"; }, 15000)) << b.log();
  EXPECT_EQ(HttpGet(admin, "/ready").status, 200);
  servers = Servers(admin);
  EXPECT_EQ(servers[0]["state"], "up");
  EXPECT_EQ(servers[0]["ip"], "127.0.0.51");
  // Health checks start once there is an address, asking for the server by its name.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> l(mu);
        return !probe_host.empty();
      },
      10000));
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(probe_host, name);
}

TEST(Names, RequiredAtStartMakesAnUnresolvableNameAnErrorAtItsLine) {
  DnsServer dns;
  dns.Start("127.0.0.55 known.test\n");
  int port = FreePort(), admin = FreePort();
  std::string dir = MakeTempDir();
  std::string path = dir + "/bulwark.yml";
  std::string servers = "'known.test:80', 'nowhere.test:80'";
  WriteFile(path, Cfg(dns, port, admin, servers));
  std::string out;
  // Without required_at_start the server just starts down.
  EXPECT_EQ(RunBulwark({"check-config", path}, &out), 0) << out;
  std::string text = Cfg(dns, port, admin, servers);
  text.replace(text.find("attempts: 1"), 11, "attempts: 1, required_at_start: true");
  WriteFile(path, text);
  EXPECT_EQ(RunBulwark({"check-config", path}, &out), 1) << out;
  // The error names the file, line and column of the address that does not resolve.
  size_t line = 1 + std::count(text.begin(), text.begin() + text.find("'nowhere.test"), '\n');
  size_t col = text.find("'nowhere.test") - text.rfind('\n', text.find("'nowhere.test"));
  EXPECT_NE(out.find(path + ":" + std::to_string(line) + ":" + std::to_string(col) +
                     ": cannot resolve \"nowhere.test\""),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("known.test"), std::string::npos) << out;
  // serve refuses to start the same way.
  EXPECT_EQ(RunBulwark({"serve", "-c", path}, &out), 1);
  EXPECT_NE(out.find("cannot resolve \"nowhere.test\""), std::string::npos) << out;
  // So are the names of scrape targets, Alertmanagers, etcd endpoints and the gateway's Redis.
  text =
      Cfg(dns, port, admin, "'known.test:80'",
          "observe: {scrape: [{job: j, targets: ['gone.test:9100']}], alertmanager: {forward: "
          "['http://am-gone.test:9093']}}\ncluster: {etcd: {endpoints: ['etcd-gone.test:2379']}}\n"
          "redis: {sentinel: {master_name: m, nodes: ['sentinel-gone.test:26379']}}\n");
  text.replace(text.find("attempts: 1"), 11, "attempts: 1, required_at_start: true");
  WriteFile(path, text);
  EXPECT_EQ(RunBulwark({"check-config", path}, &out), 1) << out;
  for (const char* name : {"gone.test", "am-gone.test", "etcd-gone.test", "sentinel-gone.test"})
    EXPECT_NE(out.find(StrCat(": cannot resolve \"", name, "\"")), std::string::npos) << out;
}

// A PostgreSQL server written by host name (an RDS endpoint, a Kubernetes Service): down while
// its name does not resolve, reached at its address once it does.
TEST(Names, APgServerByNameIsDownUntilItsNameResolvesThenReachedThere) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  DnsServer dns;
  dns.Start("");
  int port = FreePort(), admin = FreePort();
  Bulwark b(dns.ConfigBlock() + "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
            "}\npg:\n  listen: 127.0.0.1:" + std::to_string(port) +
            "\n  pool_mode: transaction\n  server_login_retry: 200ms\n"
            "  users: [{name: app, password: secret}]\n"
            "  databases:\n    app: {servers: ['db.test:" +
            std::to_string(db.pg.port()) + "']}\n");
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  auto psql = [&] {
    std::string out;
    RunProgram({"psql", "-X", "-At", "-h", "127.0.0.1", "-p", std::to_string(port), "-U", "app",
                "-d", "app", "-c", "SELECT 40 + 2"},
               {{"PGPASSWORD", "secret"}}, &out, 60000);
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  };
  std::string refused = psql();
  EXPECT_NE(refused.find("does not resolve"), std::string::npos) << refused << b.log();
  dns.SetHosts("127.0.0.1 db.test\n");
  std::string out;
  ASSERT_TRUE(WaitFor([&] { return (out = psql()) == "42"; }, 20000)) << out << b.log();
  EXPECT_NE(b.log().find("pg: db.test now stands for 127.0.0.1"), std::string::npos) << b.log();
}

// Scrape targets and Alertmanager forward URLs written with host names resolve through
// bulwark's resolver (the system's knows none of these names), and keep working on the last
// good answer when the DNS server dies.
TEST(Names, ScrapeTargetsAndAlertmanagerUrlsByNameResolveThroughTheResolver) {
  DnsServer dns;
  dns.Start("127.0.0.61 exporter.test\n127.0.0.62 am.test\n");
  int ex_port = FreePort(), am_port = FreePort();
  Backend exporter(
      [](const Backend::Request& r) {
        if (r.target != "/metrics") return Backend::Reply(404, "");
        return Backend::Reply(200, "named_metric 7\n");
      },
      ex_port, "127.0.0.61");
  std::atomic<int> alert_posts{0};
  Backend am(
      [&](const Backend::Request& r) {
        if (r.method == "POST" && r.target == "/api/v2/alerts") ++alert_posts;
        return Backend::Reply(200, "");
      },
      am_port, "127.0.0.62");
  std::string dir = MakeTempDir();
  WriteFile(dir + "/rules.yml",
            "groups:\n  - name: g\n    rules:\n      - {alert: Always, expr: vector(1)}\n");
  int port = FreePort(), admin = FreePort();
  std::string observe =
      "observe:\n  evaluation_interval: 1s\n  rule_files: [" + dir +
      "/rules.yml]\n  alertmanager: {forward: ['http://am.test:" + std::to_string(am_port) +
      "'], resend_delay: 1s}\n  scrape:\n    - {job: named, interval: 1s, targets: "
      "['exporter.test:" +
      std::to_string(ex_port) + "']}\n";
  Backend app([](const Backend::Request&) { return Backend::Reply(200, "ok"); });
  Bulwark b(Cfg(dns, port, admin, "'127.0.0.1:" + std::to_string(app.port()) + "'", observe));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  auto up = [&] {
    auto j = nlohmann::json::parse(
        HttpGet(admin, "/api/v1/query?query=up%7Bjob%3D%22named%22%7D").body, nullptr, false);
    if (j.is_discarded() || j["data"]["result"].empty()) return std::string();
    return j["data"]["result"][0]["value"][1].get<std::string>();
  };
  ASSERT_TRUE(WaitFor([&] { return up() == "1"; }, 15000)) << b.log();
  auto j = nlohmann::json::parse(HttpGet(admin, "/api/v1/query?query=named_metric").body);
  ASSERT_EQ(j["data"]["result"].size(), 1u) << j.dump();
  EXPECT_EQ(j["data"]["result"][0]["metric"]["instance"],
            "exporter.test:" + std::to_string(ex_port));
  EXPECT_EQ(j["data"]["result"][0]["value"][1], "7");
  ASSERT_TRUE(WaitFor([&] { return alert_posts.load() > 0; }, 15000)) << b.log();

  dns.Kill();
  auto failures = [&] {
    return std::atoi(Metric(HttpGet(admin, "/metrics").body,
                            "bulwark_resolver_failures_total{name=\"exporter.test\"}")
                         .c_str());
  };
  ASSERT_TRUE(WaitFor([&] { return failures() >= 2; }, 20000)) << b.log();
  // Scrapes and forwarded alerts after lookups started failing still reach their targets.
  int served = exporter.requests(), posts = alert_posts.load();
  ASSERT_TRUE(WaitFor([&] { return exporter.requests() >= served + 2; }, 10000)) << b.log();
  ASSERT_TRUE(WaitFor([&] { return alert_posts.load() > posts; }, 15000)) << b.log();
  EXPECT_EQ(up(), "1") << b.log();
}

// An etcd endpoint written with a host name: the lease is won through it.
TEST(Names, AnEtcdEndpointByNameResolvesThroughTheResolver) {
  EtcdServer etcd;
  ASSERT_TRUE(etcd.ok());
  DnsServer dns;
  dns.Start("127.0.0.1 etcd.test\n");
  Resolver resolver(dns.options());
  ASSERT_TRUE(resolver.Start().ok());
  HostPins pins(&resolver);
  EtcdLeaseOptions o;
  std::string port = etcd.endpoint().substr(etcd.endpoint().rfind(':') + 1);
  o.endpoints = {"http://etcd.test:" + port};
  o.key = "/bulwark-names-test/leader";
  o.name = "by-name";
  o.ttl_ms = 3000;
  o.request_timeout_ms = 500;
  o.pins = &pins;
  EtcdLease lease(o);
  lease.Start();
  EXPECT_TRUE(WaitFor([&] { return lease.leader(); }, 10000));
  EXPECT_EQ(pins.watched(), 1u);
  lease.Stop();
}

// The gateway's Redis by name: while the name has no answer the workers decide locally (never
// waiting on DNS); once it resolves, every connection goes there.
TEST(Names, TheGatewaysRedisByNameIsReachedOnceTheNameResolves) {
  RedisServer redis;
  DnsServer dns;
  dns.Start("");
  Backend backend([](const Backend::Request&) { return Backend::Reply(200, "ok"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(dns.ConfigBlock() +
            StrCat("workers: 2\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:", admin,
                   "}\nredis: {address: 'redis.test:", redis.port(),
                   "'}\nlimit_req_zones: {z: {key: client_ip, rate: 100r/s, shared: true}}\n"
                   "listeners:\n  - listen: 127.0.0.1:",
                   port,
                   "\n    routes: [{prefix: /, upstream: app, limit_req: {zone: z, burst: 100}}]\n"
                   "upstreams:\n  app: {servers: ['127.0.0.1:",
                   backend.port(), "']}\n"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  auto fallbacks = [&] {
    return Metric(HttpGet(admin, "/metrics").body,
                  "bulwark_ratelimit_redis_fallbacks_total{zone=\"z\"}");
  };
  EXPECT_EQ(HttpGet(port, "/").status, 200);
  EXPECT_EQ(fallbacks(), "1");
  EXPECT_EQ(Metric(HttpGet(admin, "/metrics").body, "bulwark_redis_up"), "0");

  dns.SetHosts("127.0.0.1 redis.test\n");
  ASSERT_TRUE(WaitFor(
      [&] { return Metric(HttpGet(admin, "/metrics").body, "bulwark_redis_up") == "1"; }, 15000))
      << b.log();
  EXPECT_EQ(HttpGet(port, "/").status, 200);
  EXPECT_EQ(fallbacks(), "1");  // decided in Redis now
  ASSERT_EQ(HttpPost(admin, "/api/v1/bans", R"({"key": "192.0.2.1", "duration": "1h"})").status,
            200);
  EXPECT_TRUE(WaitFor(
      [&] {
        return RedisCli(redis.port(), {"EXISTS", "bulwark:ban:192.0.2.1"}) == "1";
      },
      5000));
  EXPECT_NE(Metric(HttpGet(admin, "/metrics").body, "bulwark_resolver_up{name=\"redis.test\"}"),
            "");
}

}  // namespace
}  // namespace bulwark::testing
