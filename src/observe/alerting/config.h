// Alertmanager's configuration (version 0.25), loaded as Alertmanager loads it: `global`,
// the `route` tree (match, match_re, matchers, continue, group_by with `...`, group_wait,
// group_interval, repeat_interval; children inherit what they leave out), `receivers` with
// webhook, Slack and email configurations, and `inhibit_rules`. Unknown fields and a route
// naming an undefined receiver are errors with FILE:LINE:COL, as amtool reports them — but all
// of them at once.
//
// bulwark adds one receiver type Alertmanager lacks: `dingtalk_configs` (a DingTalk robot
// webhook with its optional signing secret).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "observe/model/labels.h"

namespace bulwark::observe::alerting {

using LabelMap = std::map<std::string, std::string>;

// Parses Alertmanager's matcher syntax: `name="value"`, `name=~"re"`, `name!=value`, several
// separated by commas, optionally in braces.
absl::StatusOr<std::vector<observe::Matcher>> ParseMatchers(std::string_view text);
bool Matches(const std::vector<observe::Matcher>& matchers, const LabelMap& labels);
// `{a="b",c=~"d"}` as Alertmanager prints a route's matchers in group keys.
std::string MatchersString(const std::vector<observe::Matcher>& matchers);

struct Route {
  std::string receiver;
  std::vector<std::string> group_by;
  bool group_by_all = false;  // group_by: ['...']
  int64_t group_wait_ms = 30000;
  int64_t group_interval_ms = 300000;
  int64_t repeat_interval_ms = 4 * 3600 * 1000;
  std::vector<observe::Matcher> matchers;
  bool continue_matching = false;
  std::vector<std::unique_ptr<Route>> routes;
  const Route* parent = nullptr;
  std::string key;  // Alertmanager's route key: "{}/{severity=\"critical\"}"
  int line = 0;

  // The routes an alert goes to: the deepest matching ones, in order (Alertmanager's
  // Route.Match, with `continue`).
  void Match(const LabelMap& labels, std::vector<const Route*>* out) const;
};

struct WebhookConfig {
  std::string url;
  bool send_resolved = true;
  int max_alerts = 0;
};

struct SlackConfig {
  std::string api_url;
  std::string channel, username, icon_emoji, icon_url, color;
  std::string title, title_link, pretext, text, fallback;
  bool send_resolved = false;
};

struct EmailConfig {
  std::string to, from, smarthost, hello = "localhost";
  std::string auth_username, auth_password, auth_identity;
  bool require_tls = true;
  std::map<std::string, std::string> headers;  // Subject, To, From, ...
  std::string html, text;
  bool send_resolved = false;
};

struct DingTalkConfig {
  std::string url;     // https://oapi.dingtalk.com/robot/send?access_token=...
  std::string secret;  // "SEC..." when the robot signs requests
  std::string title, text;
  bool send_resolved = true;
};

struct Receiver {
  std::string name;
  std::vector<WebhookConfig> webhooks;
  std::vector<SlackConfig> slack;
  std::vector<EmailConfig> email;
  std::vector<DingTalkConfig> dingtalk;
  int line = 0;
};

struct InhibitRule {
  std::vector<observe::Matcher> source, target;
  std::vector<std::string> equal;
};

struct AlertmanagerConfig {
  int64_t resolve_timeout_ms = 5 * 60 * 1000;
  std::unique_ptr<Route> route;
  std::vector<Receiver> receivers;
  std::vector<InhibitRule> inhibit_rules;
  std::vector<std::string> templates;

  const Receiver* FindReceiver(const std::string& name) const;
};

// All errors, one per line, each "FILE:LINE:COL: message".
absl::StatusOr<std::unique_ptr<AlertmanagerConfig>> ParseAlertmanagerConfig(
    const std::string& path, const std::string& text);
absl::StatusOr<std::unique_ptr<AlertmanagerConfig>> LoadAlertmanagerConfig(const std::string& path);

}  // namespace bulwark::observe::alerting
