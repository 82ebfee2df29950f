// bulwark's built-in Alertmanager against the real one (Debian's prometheus-alertmanager
// 0.25): both get the same configuration (routes with continue, match_re, group_by, an
// inhibition, send_resolved off, max_alerts) and the same alerts, then the same resolutions;
// every webhook notification must be the same JSON document, in the same order, within one
// group_interval of each other.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

using json = nlohmann::json;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Rfc3339(int64_t ms) {
  time_t s = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[80];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

// POST with a JSON content type (Alertmanager's API refuses anything else with 415).
int PostJson(int port, const std::string& path, const std::string& body) {
  Client c(port);
  if (!c.Send("POST " + path +
              " HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
              "Content-Length: " +
              std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body)) {
    return 0;
  }
  return c.Read().status;
}

struct Received {
  int64_t at_ms;
  std::string path;
  json body;
};

std::string Config(int hook_port, const std::string& side) {
  std::string base = "http://127.0.0.1:" + std::to_string(hook_port) + "/" + side;
  return "global:\n  resolve_timeout: 5m\n"
         "route:\n"
         "  receiver: default\n"
         "  group_by: [alertname]\n"
         "  group_wait: 1s\n"
         "  group_interval: 2s\n"
         "  repeat_interval: 1h\n"
         "  routes:\n"
         "    - matchers: ['severity=\"critical\"']\n"
         "      receiver: pager\n"
         "      continue: true\n"
         "    - match_re: {service: 'db|cache'}\n"
         "      receiver: storage\n"
         "      group_by: [service]\n"
         "inhibit_rules:\n"
         "  - source_matchers: ['severity=\"critical\"']\n"
         "    target_matchers: ['severity=\"warning\"']\n"
         "    equal: [instance]\n"
         "receivers:\n"
         "  - name: default\n"
         "    webhook_configs: [{url: '" +
         base +
         "/default'}]\n"
         "  - name: pager\n"
         "    webhook_configs: [{url: '" +
         base +
         "/pager', send_resolved: false}]\n"
         "  - name: storage\n"
         "    webhook_configs: [{url: '" +
         base + "/storage', max_alerts: 1}]\n";
}

std::string Alerts(const std::vector<std::pair<std::string, bool>>& alerts, int64_t starts,
                   int64_t ends) {
  json list = json::array();
  for (const auto& [labels, resolved] : alerts) {
    json l = json::parse(labels);
    list.push_back({{"labels", l},
                    {"annotations", {{"summary", "about " + l.value("instance", "")}}},
                    {"startsAt", Rfc3339(starts)},
                    {"endsAt", Rfc3339(resolved ? ends : ends + 300000)},
                    {"generatorURL", "http://prometheus.test/graph"}});
  }
  return list.dump();
}

TEST(AlertmanagerOracle, SameNotificationsAsAlertmanager) {
  std::string am_bin = FindProgram("prometheus-alertmanager");
  ASSERT_FALSE(am_bin.empty()) << "prometheus-alertmanager is not installed: run scripts/deps";
  std::mutex mu;
  std::vector<Received> got;
  Backend hooks([&](const Backend::Request& r) {
    std::lock_guard<std::mutex> l(mu);
    got.push_back({NowMs(), r.target, json::parse(r.body, nullptr, false)});
    return Backend::Reply(200, "");
  });
  std::string dir = MakeTempDir();
  WriteFile(dir + "/am.yml", Config(hooks.port(), "am"));
  WriteFile(dir + "/bw.yml", Config(hooks.port(), "bw"));
  int am_port = FreePort();
  Process am({am_bin, "--config.file=" + dir + "/am.yml", "--storage.path=" + dir + "/data",
              "--web.listen-address=127.0.0.1:" + std::to_string(am_port),
              "--web.external-url=http://alerts.test", "--cluster.listen-address="},
             {}, dir + "/am.log");
  Backend app([](const Backend::Request&) { return Backend::Reply(200, "ok"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(ObserveConfig(
      port, admin, app.port(),
      "  external_url: http://alerts.test\n  alertmanager: {config_file: " + dir + "/bw.yml}\n"));
  ASSERT_TRUE(b.Ready(port, admin));
  bool am_ready = false;
  for (int i = 0; i < 100 && !am_ready; ++i) {
    am_ready = HttpGet(am_port, "/-/ready").status == 200;
    if (!am_ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(am_ready) << ReadFile(dir + "/am.log");

  const std::string A = R"({"alertname":"HighCpu","instance":"a","severity":"critical"})";
  const std::string B = R"({"alertname":"HighCpu","instance":"a","severity":"warning"})";
  const std::string C = R"({"alertname":"HighCpu","instance":"b","severity":"warning"})";
  const std::string D =
      R"({"alertname":"DiskFull","instance":"c","service":"db","severity":"warning"})";
  const std::string E =
      R"({"alertname":"DiskFull","instance":"d","service":"db","severity":"warning"})";
  int64_t t0 = NowMs();
  std::string phase1 = Alerts({{A, false}, {B, false}, {C, false}, {D, false}, {E, false}}, t0, t0);
  ASSERT_EQ(PostJson(am_port, "/api/v2/alerts", phase1), 200);
  ASSERT_EQ(PostJson(admin, "/api/v2/alerts", phase1), 200);
  // Mid-way between two flushes: A and C resolve, so B is no longer inhibited.
  std::this_thread::sleep_for(std::chrono::milliseconds(4000));
  int64_t t1 = NowMs();
  std::string phase2 = Alerts({{A, true}, {C, true}}, t0, t1);
  ASSERT_EQ(PostJson(am_port, "/api/v2/alerts", phase2), 200);
  ASSERT_EQ(PostJson(admin, "/api/v2/alerts", phase2), 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(5000));

  std::lock_guard<std::mutex> l(mu);
  std::map<std::string, std::vector<const Received*>> am_got, bw_got;
  for (const Received& r : got) {
    if (r.path.rfind("/am/", 0) == 0) am_got[r.path.substr(3)].push_back(&r);
    if (r.path.rfind("/bw/", 0) == 0) bw_got[r.path.substr(3)].push_back(&r);
  }
  // What Alertmanager does here: default gets C (B inhibited), then B firing with C resolved;
  // pager gets A and nothing when it resolves (send_resolved: false); storage gets one group
  // of D and E, truncated to one alert.
  ASSERT_EQ(am_got["/default"].size(), 2u) << ReadFile(dir + "/am.log");
  ASSERT_EQ(am_got["/pager"].size(), 1u);
  ASSERT_EQ(am_got["/storage"].size(), 1u);
  for (const char* path : {"/default", "/pager", "/storage"}) {
    ASSERT_EQ(bw_got[path].size(), am_got[path].size()) << path;
    for (size_t i = 0; i < am_got[path].size(); ++i) {
      EXPECT_EQ(bw_got[path][i]->body, am_got[path][i]->body)
          << path << " #" << i << "\nalertmanager: " << am_got[path][i]->body.dump(1)
          << "\nbulwark: " << bw_got[path][i]->body.dump(1);
      EXPECT_LE(std::abs(bw_got[path][i]->at_ms - am_got[path][i]->at_ms), 2000)
          << path << " #" << i << " arrived more than one group_interval apart";
    }
  }
  EXPECT_EQ(am_got["/storage"][0]->body["truncatedAlerts"], 1);
  const json& second = am_got["/default"][1]->body["alerts"];
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0]["labels"]["instance"], "a");  // B, no longer inhibited
  EXPECT_EQ(second[0]["status"], "firing");
  EXPECT_EQ(second[1]["status"], "resolved");  // C
}

TEST(AlertmanagerOracle, SilencesThroughTheApi) {
  std::mutex mu;
  std::vector<json> got;
  Backend hooks([&](const Backend::Request& r) {
    std::lock_guard<std::mutex> l(mu);
    got.push_back(json::parse(r.body, nullptr, false));
    return Backend::Reply(200, "");
  });
  std::string dir = MakeTempDir();
  WriteFile(dir + "/am.yml", Config(hooks.port(), "bw"));
  Backend app([](const Backend::Request&) { return Backend::Reply(200, "ok"); });
  int port = FreePort(), admin = FreePort();
  Bulwark b(ObserveConfig(port, admin, app.port(),
                          "  alertmanager: {config_file: " + dir + "/am.yml}\n"));
  ASSERT_TRUE(b.Ready(port, admin));
  int64_t now = NowMs();
  json silence = {
      {"matchers", {{{"name", "instance"}, {"value", "b"}, {"isRegex", false}, {"isEqual", true}}}},
      {"startsAt", Rfc3339(now)},
      {"endsAt", Rfc3339(now + 3600000)},
      {"createdBy", "test"},
      {"comment", "maintenance"}};
  Response r = HttpPost(admin, "/api/v2/silences", silence.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  std::string id = json::parse(r.body)["silenceID"];
  // Refused: no matcher that needs a value.
  json bad = silence;
  bad["matchers"] = {{{"name", "instance"}, {"value", ".*"}, {"isRegex", true}, {"isEqual", true}}};
  EXPECT_EQ(HttpPost(admin, "/api/v2/silences", bad.dump()).status, 400);
  ASSERT_EQ(
      HttpPost(admin, "/api/v2/alerts",
               Alerts({{R"({"alertname":"HighCpu","instance":"b","severity":"warning"})", false},
                       {R"({"alertname":"HighCpu","instance":"c","severity":"warning"})", false}},
                      now, now))
          .status,
      200);
  std::this_thread::sleep_for(std::chrono::milliseconds(1800));
  json alerts = json::parse(HttpGet(admin, "/api/v2/alerts").body);
  ASSERT_EQ(alerts.size(), 2u);
  for (const json& a : alerts) {
    bool silenced = a["labels"]["instance"] == "b";
    EXPECT_EQ(a["status"]["state"], silenced ? "suppressed" : "active");
    if (silenced) {
      EXPECT_EQ(a["status"]["silencedBy"][0], id);
    }
  }
  {
    std::lock_guard<std::mutex> l(mu);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_EQ(got[0]["alerts"].size(), 1u);
    EXPECT_EQ(got[0]["alerts"][0]["labels"]["instance"], "c");
  }
  json listed = json::parse(HttpGet(admin, "/api/v2/silences").body);
  ASSERT_EQ(listed.size(), 1u);
  // Alertmanager's own client speaks to bulwark's API.
  std::string amtool = FindProgram("amtool");
  ASSERT_FALSE(amtool.empty());
  // With the admin token as any Prometheus HTTP client sends one (http_config authorization).
  WriteFile(dir + "/amtool-http.yml",
            "authorization:\n  credentials_file: " + b.state_dir() + "/admin.token\n");
  Process q({amtool, "--alertmanager.url=http://127.0.0.1:" + std::to_string(admin),
             "--http.config.file=" + dir + "/amtool-http.yml", "silence", "query", "-o", "json"},
            {}, dir + "/amtool.out");
  ASSERT_EQ(q.Wait(20000), 0) << ReadFile(dir + "/amtool.out");
  json via_amtool = json::parse(ReadFile(dir + "/amtool.out"), nullptr, false);
  ASSERT_TRUE(via_amtool.is_array()) << ReadFile(dir + "/amtool.out");
  ASSERT_EQ(via_amtool.size(), 1u);
  EXPECT_EQ(via_amtool[0]["id"], id);
  EXPECT_EQ(listed[0]["status"]["state"], "active");
  EXPECT_EQ(listed[0]["comment"], "maintenance");
  // Expire it: the next flush sends the silenced alert.
  Client c(admin);
  ASSERT_TRUE(c.Send("DELETE /api/v2/silence/" + id +
                     " HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n"));
  EXPECT_EQ(c.Read().status, 200);
  EXPECT_EQ(json::parse(HttpGet(admin, "/api/v2/silences").body)[0]["status"]["state"], "expired");
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  std::lock_guard<std::mutex> l(mu);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1]["alerts"].size(), 2u);
}

}  // namespace
}  // namespace bulwark::testing
