#include "observe/alerting/config.h"

#include <re2/re2.h>

#include <algorithm>
#include <fstream>

#include "core/config_reader.h"
#include "core/files.h"
#include "core/strings.h"
#include "yaml-cpp/yaml.h"
#include "observe/model/duration.h"

namespace bulwark::observe::alerting {
namespace {

using observe::Matcher;

absl::StatusOr<Matcher> MakeMatcher(std::string name, Matcher::Op op, std::string value) {
  Matcher m;
  m.name = std::move(name);
  m.op = op;
  m.value = std::move(value);
  if (op == Matcher::Op::kRegex || op == Matcher::Op::kNotRegex) {
    auto re = std::make_shared<re2::RE2>("^(?:" + m.value + ")$", re2::RE2::Quiet);
    if (!re->ok()) {
      return absl::InvalidArgumentError(
          StrCat("invalid regular expression \"", m.value, "\": ", re->error()));
    }
    m.re = std::move(re);
  }
  return m;
}

bool LabelNameChar(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (!first && c >= '0' && c <= '9');
}

}  // namespace

absl::StatusOr<std::vector<Matcher>> ParseMatchers(std::string_view text) {
  std::string_view t = Trim(text);
  if (!t.empty() && t.front() == '{') {
    if (t.back() != '}') return absl::InvalidArgumentError(StrCat("missing closing '}' in ", text));
    t = Trim(t.substr(1, t.size() - 2));
  }
  std::vector<Matcher> out;
  size_t i = 0;
  while (i < t.size()) {
    while (i < t.size() && (t[i] == ' ' || t[i] == ',')) ++i;
    if (i >= t.size()) break;
    size_t ns = i;
    while (i < t.size() && LabelNameChar(t[i], i == ns)) ++i;
    std::string name(t.substr(ns, i - ns));
    if (name.empty()) return absl::InvalidArgumentError(StrCat("bad matcher format: ", text));
    while (i < t.size() && t[i] == ' ') ++i;
    Matcher::Op op;
    if (t.substr(i, 2) == "=~") {
      op = Matcher::Op::kRegex;
      i += 2;
    } else if (t.substr(i, 2) == "!~") {
      op = Matcher::Op::kNotRegex;
      i += 2;
    } else if (t.substr(i, 2) == "!=") {
      op = Matcher::Op::kNotEqual;
      i += 2;
    } else if (i < t.size() && t[i] == '=') {
      op = Matcher::Op::kEqual;
      i += 1;
    } else {
      return absl::InvalidArgumentError(StrCat("bad matcher format: ", text));
    }
    while (i < t.size() && t[i] == ' ') ++i;
    std::string value;
    if (i < t.size() && t[i] == '"') {
      ++i;
      bool closed = false;
      while (i < t.size()) {
        char c = t[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i < t.size()) {
          char e = t[i++];
          value.push_back(e == 'n' ? '\n' : e);
        } else {
          value.push_back(c);
        }
      }
      if (!closed) return absl::InvalidArgumentError(StrCat("unterminated quoted value in ", text));
    } else {
      size_t vs = i;
      while (i < t.size() && t[i] != ',') ++i;
      value = std::string(Trim(t.substr(vs, i - vs)));
    }
    auto m = MakeMatcher(std::move(name), op, std::move(value));
    if (!m.ok()) return m.status();
    out.push_back(std::move(*m));
    while (i < t.size() && t[i] == ' ') ++i;
    if (i < t.size() && t[i] != ',')
      return absl::InvalidArgumentError(StrCat("bad matcher format: ", text));
  }
  return out;
}

bool Matches(const std::vector<Matcher>& matchers, const LabelMap& labels) {
  for (const Matcher& m : matchers) {
    auto it = labels.find(m.name);
    if (!m.Matches(it == labels.end() ? std::string_view() : std::string_view(it->second)))
      return false;
  }
  return true;
}

std::string MatchersString(const std::vector<Matcher>& matchers) {
  std::string out = "{";
  for (size_t i = 0; i < matchers.size(); ++i) {
    if (i > 0) out += ",";
    StrAppend(&out, matchers[i].name, observe::MatcherOpName(matchers[i].op), "\"");
    for (char c : matchers[i].value) {
      if (c == '\\' || c == '"') out.push_back('\\');
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out.push_back(c);
    }
    out += "\"";
  }
  return out + "}";
}

void Route::Match(const LabelMap& labels, std::vector<const Route*>* out) const {
  if (!Matches(matchers, labels)) return;
  size_t before = out->size();
  for (const auto& child : routes) {
    size_t n = out->size();
    child->Match(labels, out);
    if (out->size() > n && !child->continue_matching) break;
  }
  if (out->size() == before) out->push_back(this);
}

const Receiver* AlertmanagerConfig::FindReceiver(const std::string& name) const {
  for (const Receiver& r : receivers) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

namespace {

class Loader {
 public:
  explicit Loader(ConfigContext& ctx) : ctx_(ctx) {}

  void Error(const YAML::Node& at, const std::string& msg) {
    ctx_.Error(at ? at.Mark() : YAML::Mark::null_mark(), msg);
  }

  void Keys(const YAML::Node& n, const std::vector<std::string>& known, std::string_view type) {
    if (!n.IsMap()) return;
    for (const auto& kv : n) {
      std::string k = kv.first.Scalar();
      if (std::find(known.begin(), known.end(), k) != known.end()) continue;
      std::string hint = Suggest(k, known);
      std::string extra;
      if (type == "email_config" && (k == "subject" || k == "body")) {
        extra = k == "subject" ? " (Alertmanager sets the subject with headers: {Subject: ...})"
                               : " (Alertmanager takes the body as html: or text:)";
      } else if (!hint.empty()) {
        extra = StrCat(" (did you mean \"", hint, "\"?)");
      }
      Error(kv.first, StrCat("field ", k, " not found in type ", type, extra));
    }
  }

  std::string Str(const YAML::Node& n) { return n && n.IsScalar() ? n.Scalar() : ""; }

  bool Bool(const YAML::Node& n, bool* out) {
    if (!n) return true;
    std::string s = Str(n);
    if (s == "true") {
      *out = true;
    } else if (s == "false") {
      *out = false;
    } else {
      Error(n, StrCat("expected true or false, got \"", s, "\""));
      return false;
    }
    return true;
  }

  void Duration(const YAML::Node& n, int64_t* ms) {
    if (!n) return;
    auto d = observe::ParseDurationMs(Str(n));
    if (!d.ok()) {
      Error(n, StrCat("not a valid duration string: \"", Str(n), "\""));
      return;
    }
    *ms = *d;
  }

  void MatchersOf(const YAML::Node& n, const YAML::Node& match, const YAML::Node& match_re,
                  std::vector<Matcher>* out) {
    if (match) {
      if (!match.IsMap()) {
        Error(match, "match: expected a mapping of label to value");
      } else {
        for (const auto& kv : match) {
          auto m = MakeMatcher(kv.first.Scalar(), Matcher::Op::kEqual, Str(kv.second));
          if (m.ok()) out->push_back(std::move(*m));
        }
      }
    }
    if (match_re) {
      if (!match_re.IsMap()) {
        Error(match_re, "match_re: expected a mapping of label to regular expression");
      } else {
        for (const auto& kv : match_re) {
          // The old-style match_re keeps its regex anchored, and so prints it in route keys.
          auto m =
              MakeMatcher(kv.first.Scalar(), Matcher::Op::kRegex, "^(?:" + Str(kv.second) + ")$");
          if (!m.ok()) {
            Error(kv.second, std::string(m.status().message()));
          } else {
            out->push_back(std::move(*m));
          }
        }
      }
    }
    if (n) {
      if (!n.IsSequence()) {
        Error(n, "matchers: expected a list");
        return;
      }
      for (const YAML::Node& item : n) {
        auto ms = ParseMatchers(Str(item));
        if (!ms.ok()) {
          Error(item, std::string(ms.status().message()));
          continue;
        }
        for (auto& m : *ms) out->push_back(std::move(m));
      }
    }
    // Alertmanager sorts a route's matchers (its key prints them in order).
    std::sort(out->begin(), out->end(), [](const Matcher& a, const Matcher& b) {
      if (a.name != b.name) return a.name < b.name;
      if (a.value != b.value) return a.value < b.value;
      return a.op < b.op;
    });
  }

  std::unique_ptr<Route> LoadRoute(const YAML::Node& n, const Route* parent) {
    auto r = std::make_unique<Route>();
    r->parent = parent;
    r->line = n.Mark().line + 1;
    Keys(
        n,
        {"receiver", "group_by", "continue", "match", "match_re", "matchers", "mute_time_intervals",
         "active_time_intervals", "group_wait", "group_interval", "repeat_interval", "routes"},
        "config.plain");
    if (parent != nullptr) {
      r->receiver = parent->receiver;
      r->group_by = parent->group_by;
      r->group_by_all = parent->group_by_all;
      r->group_wait_ms = parent->group_wait_ms;
      r->group_interval_ms = parent->group_interval_ms;
      r->repeat_interval_ms = parent->repeat_interval_ms;
    }
    if (n["receiver"]) r->receiver = Str(n["receiver"]);
    if (YAML::Node g = n["group_by"]) {
      r->group_by.clear();
      r->group_by_all = false;
      if (!g.IsSequence()) {
        Error(g, "group_by: expected a list of label names");
      } else {
        for (const YAML::Node& l : g) {
          std::string name = Str(l);
          if (name == "...") {
            r->group_by_all = true;
          } else if (std::find(r->group_by.begin(), r->group_by.end(), name) != r->group_by.end()) {
            Error(l, StrCat("duplicated label \"", name, "\" in group_by"));
          } else {
            r->group_by.push_back(name);
          }
        }
        if (r->group_by_all && !r->group_by.empty()) {
          Error(g, "cannot have wildcard group_by (`...`) and other other labels at the same time");
        }
      }
    }
    Duration(n["group_wait"], &r->group_wait_ms);
    Duration(n["group_interval"], &r->group_interval_ms);
    Duration(n["repeat_interval"], &r->repeat_interval_ms);
    if (n["group_interval"] && r->group_interval_ms == 0)
      Error(n["group_interval"], "group_interval cannot be zero");
    if (n["repeat_interval"] && r->repeat_interval_ms == 0)
      Error(n["repeat_interval"], "repeat_interval cannot be zero");
    Bool(n["continue"], &r->continue_matching);
    MatchersOf(n["matchers"], n["match"], n["match_re"], &r->matchers);
    if (parent == nullptr) {
      if (r->receiver.empty()) Error(n, "root route must specify a default receiver");
      if (!r->matchers.empty()) Error(n, "root route must not have any matchers");
      if (r->continue_matching) Error(n, "cannot have continue in root route");
    }
    r->key = parent == nullptr ? MatchersString(r->matchers)
                               : StrCat(parent->key, "/", MatchersString(r->matchers));
    routes_.emplace_back(n["receiver"] ? n["receiver"] : n, r.get());
    if (YAML::Node children = n["routes"]) {
      if (!children.IsSequence()) {
        Error(children, "routes: expected a list");
      } else {
        for (const YAML::Node& c : children) r->routes.push_back(LoadRoute(c, r.get()));
      }
    }
    return r;
  }

  void LoadReceiver(const YAML::Node& n, const YAML::Node& global, Receiver* r) {
    r->line = n.Mark().line + 1;
    Keys(n,
         {"name", "webhook_configs", "slack_configs", "email_configs", "dingtalk_configs",
          "pagerduty_configs", "opsgenie_configs", "wechat_configs", "pushover_configs",
          "victorops_configs", "sns_configs", "telegram_configs", "webex_configs"},
         "config.plain");
    r->name = Str(n["name"]);
    if (r->name.empty()) Error(n, "missing name in receiver");
    for (const char* unsupported :
         {"pagerduty_configs", "opsgenie_configs", "wechat_configs", "pushover_configs",
          "victorops_configs", "sns_configs", "telegram_configs", "webex_configs"}) {
      if (n[unsupported]) {
        Error(n[unsupported], StrCat(unsupported,
                                     " are not supported by bulwark's notifier: "
                                     "forward alerts to a real Alertmanager for them "
                                     "(observe.alertmanager.forward)"));
      }
    }
    for (const YAML::Node& w : n["webhook_configs"]) {
      Keys(w, {"url", "url_file", "send_resolved", "max_alerts", "http_config"}, "webhook_config");
      WebhookConfig c;
      c.url = Str(w["url"]);
      if (c.url.empty()) Error(w, "one of url or url_file must be configured");
      Bool(w["send_resolved"], &c.send_resolved);
      if (w["max_alerts"]) {
        int64_t v = 0;
        if (!ParseInt(Str(w["max_alerts"]), &v) || v < 0)
          Error(w["max_alerts"], "max_alerts: expected a non-negative integer");
        c.max_alerts = static_cast<int>(v);
      }
      r->webhooks.push_back(std::move(c));
    }
    for (const YAML::Node& s : n["slack_configs"]) {
      Keys(s,
           {"api_url",       "api_url_file", "channel",    "username",  "icon_emoji", "icon_url",
            "color",         "title",        "title_link", "pretext",   "text",       "fallback",
            "send_resolved", "short_fields", "footer",     "mrkdwn_in", "link_names", "callback_id",
            "fields",        "actions",      "image_url",  "thumb_url", "http_config"},
           "slack_config");
      SlackConfig c;
      c.api_url = s["api_url"] ? Str(s["api_url"]) : Str(global["slack_api_url"]);
      if (c.api_url.empty()) Error(s, "no global Slack API URL set");
      c.channel = Str(s["channel"]);
      c.username = Str(s["username"]);
      c.icon_emoji = Str(s["icon_emoji"]);
      c.icon_url = Str(s["icon_url"]);
      c.color = Str(s["color"]);
      c.title = Str(s["title"]);
      c.title_link = Str(s["title_link"]);
      c.pretext = Str(s["pretext"]);
      c.text = Str(s["text"]);
      c.fallback = Str(s["fallback"]);
      Bool(s["send_resolved"], &c.send_resolved);
      r->slack.push_back(std::move(c));
    }
    for (const YAML::Node& e : n["email_configs"]) {
      Keys(e,
           {"to", "from", "smarthost", "hello", "auth_username", "auth_password",
            "auth_password_file", "auth_secret", "auth_identity", "require_tls", "tls_config",
            "headers", "html", "text", "send_resolved"},
           "email_config");
      EmailConfig c;
      c.to = Str(e["to"]);
      if (c.to.empty()) Error(e, "missing to address in email config");
      c.from = e["from"] ? Str(e["from"]) : Str(global["smtp_from"]);
      c.smarthost = e["smarthost"] ? Str(e["smarthost"]) : Str(global["smtp_smarthost"]);
      if (e["hello"] || global["smtp_hello"])
        c.hello = e["hello"] ? Str(e["hello"]) : Str(global["smtp_hello"]);
      c.auth_username =
          e["auth_username"] ? Str(e["auth_username"]) : Str(global["smtp_auth_username"]);
      c.auth_password =
          e["auth_password"] ? Str(e["auth_password"]) : Str(global["smtp_auth_password"]);
      c.auth_identity =
          e["auth_identity"] ? Str(e["auth_identity"]) : Str(global["smtp_auth_identity"]);
      if (global["smtp_require_tls"]) Bool(global["smtp_require_tls"], &c.require_tls);
      Bool(e["require_tls"], &c.require_tls);
      if (YAML::Node h = e["headers"]) {
        for (const auto& kv : h) c.headers[kv.first.Scalar()] = Str(kv.second);
      }
      c.html = Str(e["html"]);
      c.text = Str(e["text"]);
      Bool(e["send_resolved"], &c.send_resolved);
      if (c.smarthost.empty()) Error(e, "no global SMTP smarthost set");
      if (c.from.empty()) Error(e, "no global SMTP from set");
      r->email.push_back(std::move(c));
    }
    for (const YAML::Node& d : n["dingtalk_configs"]) {
      Keys(d, {"url", "secret", "title", "text", "send_resolved"}, "dingtalk_config");
      DingTalkConfig c;
      c.url = Str(d["url"]);
      if (c.url.empty()) Error(d, "missing url in dingtalk config");
      c.secret = Str(d["secret"]);
      c.title = Str(d["title"]);
      c.text = Str(d["text"]);
      Bool(d["send_resolved"], &c.send_resolved);
      r->dingtalk.push_back(std::move(c));
    }
  }

  void Load(const YAML::Node& root, AlertmanagerConfig* cfg) {
    if (!root.IsMap()) {
      Error(root, "expected a mapping with route and receivers");
      return;
    }
    Keys(root,
         {"global", "route", "receivers", "inhibit_rules", "templates", "time_intervals",
          "mute_time_intervals", "groups"},
         "config.plain");
    YAML::Node global = root["global"];
    if (global) {
      Keys(global,
           {"resolve_timeout",
            "smtp_from",
            "smtp_hello",
            "smtp_smarthost",
            "smtp_auth_username",
            "smtp_auth_password",
            "smtp_auth_password_file",
            "smtp_auth_secret",
            "smtp_auth_identity",
            "smtp_require_tls",
            "slack_api_url",
            "slack_api_url_file",
            "http_config",
            "pagerduty_url",
            "opsgenie_api_url",
            "opsgenie_api_key",
            "wechat_api_url",
            "wechat_api_secret",
            "wechat_api_corp_id",
            "victorops_api_url",
            "victorops_api_key",
            "telegram_api_url",
            "webex_api_url"},
           "config.GlobalConfig");
      Duration(global["resolve_timeout"], &cfg->resolve_timeout_ms);
    }
    YAML::Node receivers = root["receivers"];
    if (receivers && receivers.IsSequence()) {
      for (const YAML::Node& n : receivers) {
        Receiver r;
        LoadReceiver(n, global ? global : YAML::Node(), &r);
        for (const Receiver& other : cfg->receivers) {
          if (other.name == r.name && !r.name.empty()) {
            Error(n["name"], StrCat("notification config name \"", r.name, "\" is not unique"));
          }
        }
        cfg->receivers.push_back(std::move(r));
      }
    }
    YAML::Node route = root["route"];
    if (!route) {
      Error(root, "no routes provided");
    } else {
      cfg->route = LoadRoute(route, nullptr);
      for (const auto& [at, r] : routes_) {
        if (!r->receiver.empty() && cfg->FindReceiver(r->receiver) == nullptr) {
          Error(at, StrCat("undefined receiver \"", r->receiver, "\" used in route"));
        }
      }
    }
    for (const YAML::Node& n : root["inhibit_rules"]) {
      Keys(n,
           {"source_match", "source_match_re", "source_matchers", "target_match", "target_match_re",
            "target_matchers", "equal"},
           "config.InhibitRule");
      InhibitRule rule;
      MatchersOf(n["source_matchers"], n["source_match"], n["source_match_re"], &rule.source);
      MatchersOf(n["target_matchers"], n["target_match"], n["target_match_re"], &rule.target);
      for (const YAML::Node& e : n["equal"]) rule.equal.push_back(Str(e));
      cfg->inhibit_rules.push_back(std::move(rule));
    }
    for (const YAML::Node& t : root["templates"]) cfg->templates.push_back(Str(t));
  }

 private:
  ConfigContext& ctx_;
  std::vector<std::pair<YAML::Node, const Route*>> routes_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AlertmanagerConfig>> ParseAlertmanagerConfig(
    const std::string& path, const std::string& text) {
  if (text.size() > 16 * 1024 * 1024)
    return absl::InvalidArgumentError(StrCat(path, ": larger than 16 MiB"));
  // Alertmanager files take no ${VAR} interpolation (Alertmanager reads them as they are).
  ConfigContext ctx(path,
                    [](std::string_view) -> std::optional<std::string> { return std::nullopt; });
  std::optional<YAML::Node> root = LoadYamlText(ctx, text);
  auto cfg = std::make_unique<AlertmanagerConfig>();
  if (root) {
    Loader loader(ctx);
    try {
      loader.Load(*root, cfg.get());
    } catch (const YAML::Exception& e) {
      ctx.Error(e.mark, e.msg);
    }
  }
  if (!ctx.ok()) return absl::InvalidArgumentError(ctx.ErrorText());
  return cfg;
}

absl::StatusOr<std::unique_ptr<AlertmanagerConfig>> LoadAlertmanagerConfig(
    const std::string& path) {
  auto text = ReadFileToString(path, 16 * 1024 * 1024);
  if (!text.ok()) return text.status();
  return ParseAlertmanagerConfig(path, *text);
}

}  // namespace bulwark::observe::alerting
