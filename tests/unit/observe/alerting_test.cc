// The built-in Alertmanager's parts with a driven clock: configuration errors (the AlkaidSYS and
// cloud-phone platform files), routing, group timing, the dedup rules, inhibition and silences, and
// the payloads. (tests/integration/alertmanager_oracle_test.cc checks whole notifications against
// Alertmanager 0.25 itself.)
#include <gtest/gtest.h>

#include "nlohmann/json.hpp"
#include "observe/alerting/config.h"
#include "observe/alerting/dispatcher.h"
#include "observe/alerting/notify.h"
#include "observe/rules/rule_file.h"

namespace bulwark::observe::alerting {
namespace {

std::string Fixtures() { return std::string(BULWARK_SOURCE_DIR) + "/../shared/fixtures/seeds/"; }

TEST(AlertmanagerConfig, DesignDocumentFilesLoadOrReportEveryErrorWithItsLine) {
  auto ok = LoadAlertmanagerConfig(Fixtures() + "001-alertmanager.yml");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->receivers.size(), 3u);
  EXPECT_EQ((*ok)->route->routes.size(), 2u);
  EXPECT_EQ((*ok)->route->routes[0]->receiver, "critical-alerts");
  EXPECT_EQ((*ok)->route->routes[0]->repeat_interval_ms, 12 * 3600 * 1000);  // inherited
  EXPECT_EQ((*ok)->route->routes[1]->key, "{}/{severity=\"warning\"}");

  // AlkaidSYS: email `subject`/`body` are not Alertmanager fields, and the route names two
  // receivers that do not exist; every one is reported with its line.
  auto bad = LoadAlertmanagerConfig(Fixtures() + "000-alertmanager.yml");
  ASSERT_FALSE(bad.ok());
  std::string e(bad.status().message());
  EXPECT_NE(e.find("000-alertmanager.yml:5:9: field subject not found in type email_config"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("000-alertmanager.yml:6:9: field body not found"), std::string::npos) << e;
  EXPECT_NE(e.find("000-alertmanager.yml:31:13: undefined receiver \"default\" used in route"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("undefined receiver \"warning-alerts\" used in route"), std::string::npos) << e;

  // The AlkaidSYS alerts.yml mixes rule groups with the same Alertmanager part: the groups load,
  // the Alertmanager part is split off with its line numbers intact.
  rules::RuleFileOptions opts;
  opts.allow_alertmanager = true;
  auto mixed = rules::LoadRuleFile(Fixtures() + "000-alerts.yml", opts);
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  EXPECT_EQ(mixed->groups.size(), 1u);
  EXPECT_EQ(mixed->groups[0].rules.size(), 9u);
  auto am = ParseAlertmanagerConfig(Fixtures() + "000-alerts.yml", mixed->alertmanager_yaml);
  ASSERT_FALSE(am.ok());
  EXPECT_NE(std::string(am.status().message()).find("000-alerts.yml:109:9: field subject"),
            std::string::npos)
      << am.status();
  // Without allow_alertmanager the same file is refused as Prometheus refuses it.
  EXPECT_FALSE(rules::LoadRuleFile(Fixtures() + "000-alerts.yml").ok());
}

TEST(AlertmanagerConfig, MatchersAndValidation) {
  auto m = ParseMatchers(R"({severity="critical", team=~"db|cache",env!=prod})");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ(MatchersString(*m), R"({severity="critical",team=~"db|cache",env!="prod"})");
  EXPECT_TRUE(Matches(*m, {{"severity", "critical"}, {"team", "db"}, {"env", "dev"}}));
  EXPECT_FALSE(Matches(*m, {{"severity", "critical"}, {"team", "dbx"}}));
  EXPECT_FALSE(ParseMatchers("=x").ok());
  EXPECT_FALSE(ParseMatchers("a=~\"(\"").ok());
  for (const char* cfg : {
           "route: {receiver: x}\nreceivers: [{name: x, pagerduty_configs: [{}]}]\n",
           "route: {receiver: x, group_by: ['...', a]}\nreceivers: [{name: x}]\n",
           "route: {receiver: x, match: {a: b}}\nreceivers: [{name: x}]\n",
           "route: {receiver: x}\nreceivers: [{name: x}, {name: x}]\n",
           "route: {receiver: x, group_wait: 5x}\nreceivers: [{name: x}]\n",
           "receivers: [{name: x}]\n",
       }) {
    EXPECT_FALSE(ParseAlertmanagerConfig("am.yml", cfg).ok()) << cfg;
  }
}

class DispatcherTest : public ::testing::Test {
 protected:
  void Load(const std::string& yaml) {
    auto c = ParseAlertmanagerConfig("am.yml", yaml);
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = std::shared_ptr<const AlertmanagerConfig>(std::move(*c));
    d_ = std::make_unique<Dispatcher>(config_,
                                      [this](Notification n) { sent_.push_back(std::move(n)); });
  }
  // An alert as Prometheus sends it: valid for an hour unless `ends` resolves it.
  Alert Fire(LabelMap labels, int64_t starts, int64_t ends = 0) {
    Alert a;
    a.labels = std::move(labels);
    a.starts_at_ms = starts;
    a.ends_at_ms = ends != 0 ? ends : starts + 3600000;
    return a;
  }
  // Runs the clock to `to` in 100 ms steps, delivering every notification successfully.
  void Run(int64_t to) {
    for (; now_ <= to; now_ += 100) {
      size_t before = sent_.size();
      d_->Tick(now_);
      for (size_t i = before; i < sent_.size(); ++i) d_->Delivered(sent_[i], true, now_);
    }
  }
  std::shared_ptr<const AlertmanagerConfig> config_;
  std::unique_ptr<Dispatcher> d_;
  std::vector<Notification> sent_;
  int64_t now_ = 1000000;
};

constexpr char kConfig[] =
    "route:\n  receiver: team\n  group_by: [alertname]\n  group_wait: 10s\n  group_interval: 1m\n"
    "  repeat_interval: 5m\n"
    "receivers:\n  - name: team\n    webhook_configs: [{url: 'http://x/', send_resolved: true}]\n"
    "    slack_configs: [{api_url: 'http://s/', send_resolved: false}]\n";

TEST_F(DispatcherTest, GroupWaitIntervalRepeatAndResolve) {
  Load(kConfig);
  int64_t t0 = now_;
  d_->Put(Fire({{"alertname", "A"}, {"i", "1"}}, t0), t0);
  Run(t0 + 9900);
  EXPECT_TRUE(sent_.empty());  // group_wait
  Run(t0 + 10000);
  ASSERT_EQ(sent_.size(), 2u);  // webhook and slack
  EXPECT_EQ(sent_[0].group_key, "{}:{alertname=\"A\"}");
  // A second alert joins: sent at the next group_interval, not before.
  d_->Put(Fire({{"alertname", "A"}, {"i", "2"}}, now_), now_);
  Run(t0 + 69900);
  EXPECT_EQ(sent_.size(), 2u);
  Run(t0 + 70000);
  ASSERT_EQ(sent_.size(), 4u);
  EXPECT_EQ(sent_[2].alerts.size(), 2u);
  // Nothing new: quiet until repeat_interval has passed since the last notification.
  Run(t0 + 370000);
  EXPECT_EQ(sent_.size(), 4u);
  Run(t0 + 430000);
  EXPECT_EQ(sent_.size(), 6u);
  // One resolves: the webhook (send_resolved) hears of it, Slack does not.
  d_->Put(Fire({{"alertname", "A"}, {"i", "2"}}, t0, now_), now_);
  Run(t0 + 490000);
  ASSERT_EQ(sent_.size(), 7u);
  EXPECT_EQ(sent_[6].integration, "webhook");
  // The last firing alert resolves: both are told (Alertmanager clears its log that way).
  d_->Put(Fire({{"alertname", "A"}, {"i", "1"}}, t0, now_), now_);
  Run(t0 + 550000);
  ASSERT_EQ(sent_.size(), 9u);
  // Resolved and delivered, the group empties: nothing more.
  Run(t0 + 2000000);
  EXPECT_EQ(sent_.size(), 9u);
  EXPECT_TRUE(d_->Groups().empty());
}

TEST_F(DispatcherTest, FailedDeliveriesAreRetriedAtTheNextFlush) {
  Load(kConfig);
  int64_t t0 = now_;
  d_->Put(Fire({{"alertname", "A"}}, t0 - 60000), t0);  // older than group_wait: at once
  d_->Tick(now_);
  ASSERT_EQ(sent_.size(), 2u);
  d_->Delivered(sent_[0], false, now_);  // the webhook fails
  d_->Delivered(sent_[1], true, now_);
  now_ += 60000;
  d_->Tick(now_);
  ASSERT_EQ(sent_.size(), 3u);  // only the webhook again
  EXPECT_EQ(sent_[2].integration, "webhook");
  EXPECT_EQ(d_->stats().notifications_failed, 1u);
}

TEST_F(DispatcherTest, RoutesContinueInhibitionAndSilences) {
  Load(
      "route:\n  receiver: all\n  group_wait: 0s\n  group_by: ['...']\n  routes:\n"
      "    - {receiver: db, matchers: ['team=\"db\"'], continue: true}\n"
      "    - {receiver: web, match_re: {team: 'web|db'}}\n"
      "inhibit_rules:\n  - {source_match: {severity: critical}, target_match: {severity: warning}, "
      "equal: [host]}\n"
      "receivers:\n  - {name: all, webhook_configs: [{url: 'http://a/'}]}\n"
      "  - {name: db, webhook_configs: [{url: 'http://d/'}]}\n"
      "  - {name: web, webhook_configs: [{url: 'http://w/'}]}\n");
  d_->Put(
      Fire({{"alertname", "X"}, {"team", "db"}, {"host", "h1"}, {"severity", "critical"}}, now_),
      now_);
  d_->Put(Fire({{"alertname", "Y"}, {"team", "db"}, {"host", "h1"}, {"severity", "warning"}}, now_),
          now_);
  d_->Put(
      Fire({{"alertname", "Z"}, {"team", "ops"}, {"host", "h2"}, {"severity", "warning"}}, now_),
      now_);
  Silence s;
  s.matchers = *ParseMatchers("alertname=Z");
  s.ends_at_ms = now_ + 3600000;
  std::string id = d_->AddSilence(s, now_);
  Run(now_ + 100);
  // X goes to db and (continue) web; Y is inhibited by X (same host); Z is silenced.
  std::vector<std::string> receivers;
  for (const Notification& n : sent_) {
    for (const Alert& a : n.alerts)
      receivers.push_back(n.receiver + ":" + a.labels.at("alertname"));
  }
  std::sort(receivers.begin(), receivers.end());
  EXPECT_EQ(receivers, (std::vector<std::string>{"db:X", "web:X"}));
  auto status = d_->Alerts(now_);
  ASSERT_EQ(status.size(), 3u);
  for (const auto& st : status) {
    const std::string& name = st.alert->labels.at("alertname");
    EXPECT_EQ(!st.inhibited_by.empty(), name == "Y") << name;
    EXPECT_EQ(!st.silenced_by.empty(), name == "Z") << name;
  }
  EXPECT_TRUE(d_->ExpireSilence(id, now_));
  EXPECT_FALSE(d_->ExpireSilence(id, now_));
  EXPECT_EQ(d_->silences()[0].State(now_), "expired");
}

TEST(AlertmanagerFormat, FingerprintsTimesAndPayloads) {
  // Values Alertmanager 0.25 printed for the same labels and times.
  EXPECT_EQ(FingerprintString(Fingerprint({{"alertname", "DiskFull"},
                                           {"instance", "c"},
                                           {"service", "db"},
                                           {"severity", "warning"}})),
            "944e392655f0aeb6");
  EXPECT_EQ(Rfc3339(0), "0001-01-01T00:00:00Z");
  EXPECT_EQ(Rfc3339(1796141225800), "2026-12-01T16:07:05.8Z");
  int64_t ms;
  ASSERT_TRUE(ParseRfc3339("2026-12-01T16:07:05.8Z", &ms));
  EXPECT_EQ(ms, 1796141225800);
  ASSERT_TRUE(ParseRfc3339("2026-12-01T17:07:05+01:00", &ms));
  EXPECT_EQ(ms, 1796141225000);
  EXPECT_FALSE(ParseRfc3339("yesterday", &ms));

  Notification n;
  n.receiver = "team";
  n.group_key = "{}:{alertname=\"A\"}";
  n.group_labels = {{"alertname", "A"}};
  n.now_ms = 2000;
  Alert firing, resolved;
  firing.labels = {{"alertname", "A"}, {"instance", "x"}, {"severity", "page"}};
  firing.annotations = {{"summary", "x is down"}};
  firing.starts_at_ms = 1000;
  firing.ends_at_ms = 5000;
  resolved.labels = {{"alertname", "A"}, {"instance", "y"}, {"severity", "page"}};
  resolved.starts_at_ms = 500;
  resolved.ends_at_ms = 1500;
  n.alerts = {firing, resolved};
  SlackConfig slack;
  slack.api_url = "http://hooks/";
  auto s = nlohmann::json::parse(SlackPayload(n, slack, "http://am"));
  // Without send_resolved the message is built from the firing alert alone.
  EXPECT_EQ(s["attachments"][0]["title"], "[FIRING:1] A (x page)");
  EXPECT_EQ(s["attachments"][0]["color"], "danger");
  EXPECT_EQ(s["attachments"][0]["title_link"], "http://am/#/alerts?receiver=team");
  EXPECT_EQ(s["username"], "Alertmanager");
  slack.text = "{{ range .Alerts }}*{{ .Labels.instance }}*: {{ .Annotations.summary }} {{ end }}";
  slack.send_resolved = true;
  s = nlohmann::json::parse(SlackPayload(n, slack, "http://am"));
  EXPECT_EQ(s["attachments"][0]["text"], "*x*: x is down *y*:  ");

  EmailConfig email;
  email.to = "ops@example.com";
  email.from = "bulwark@example.com";
  email.headers["Subject"] = "[{{ .Status | toUpper }}] {{ .GroupLabels.alertname }}";
  std::string msg = EmailMessage(n, email, "http://am", 1796141225000, "abc");
  EXPECT_NE(msg.find("Subject: [FIRING] A\r\n"), std::string::npos) << msg;
  EXPECT_NE(msg.find("To: ops@example.com\r\n"), std::string::npos);
  EXPECT_NE(msg.find("Content-Type: text/html"), std::string::npos);

  // Label values are hostile (an alert sender's, a scraped exporter's): a CR LF in one cannot
  // start a header, and non-ASCII text is RFC 2047-encoded, as Alertmanager does.
  Notification evil = n;
  evil.alerts[0].labels["alertname"] = "A\r\nBcc: attacker@example.com";
  evil.group_labels["alertname"] = "A\r\nBcc: attacker@example.com";
  email.headers["X-Team"] = "{{ .CommonLabels.alertname }} 数据库";
  msg = EmailMessage(evil, email, "http://am", 1796141225000, "abc");
  std::string head = msg.substr(0, msg.find("\r\n\r\n"));
  EXPECT_EQ(head.find("\nBcc:"), std::string::npos) << head;
  EXPECT_NE(head.find("Subject: =?utf-8?q?[FIRING]_A=0D=0ABcc:_attacker@example.com?=\r\n"),
            std::string::npos)
      << head;
  for (size_t pos = 0; pos < head.size();) {
    size_t nl = head.find("\r\n", pos);
    std::string line = head.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    EXPECT_NE(line.find(':'), std::string::npos) << "not a header: " << line;
    for (unsigned char ch : line) EXPECT_TRUE(ch >= 0x20 && ch < 0x7f) << line;
    if (nl == std::string::npos) break;
    pos = nl + 2;
  }
  EXPECT_EQ(EncodeHeaderValue("plain ASCII, unchanged"), "plain ASCII, unchanged");
  EXPECT_EQ(EncodeHeaderValue("数据库"), "=?utf-8?q?=E6=95=B0=E6=8D=AE=E5=BA=93?=");
  // Long values become several words of at most 75 characters, never splitting a character.
  std::string long_value;
  for (int i = 0; i < 30; ++i) long_value += "数";
  std::string enc = EncodeHeaderValue(long_value);
  size_t words = 0;
  for (size_t pos = 0; pos < enc.size();) {
    size_t sp = enc.find(' ', pos);
    std::string w = enc.substr(pos, sp == std::string::npos ? std::string::npos : sp - pos);
    EXPECT_LE(w.size(), 75u) << w;
    EXPECT_EQ(w.rfind("=?utf-8?q?", 0), 0u) << w;
    EXPECT_EQ((w.size() - 12) % 9, 0u) << w;  // whole characters only (=XX=XX=XX each)
    ++words;
    if (sp == std::string::npos) break;
    pos = sp + 1;
  }
  EXPECT_GT(words, 1u);

  DingTalkConfig ding;
  ding.url = "https://oapi.dingtalk.com/robot/send?access_token=t";
  ding.secret = "SECabc";
  std::string url = DingTalkUrl(ding, 1700000000000);
  EXPECT_EQ(
      url.find("https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000000&sign="),
      0u)
      << url;
  auto d = nlohmann::json::parse(DingTalkPayload(n, ding, "http://am"));
  EXPECT_EQ(d["msgtype"], "markdown");
  EXPECT_NE(d["markdown"]["text"].get<std::string>().find("x is down"), std::string::npos);
}

}  // namespace
}  // namespace bulwark::observe::alerting
