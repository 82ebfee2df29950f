#include "observe/alerting/notify.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <ctime>

#include "core/base64.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace bulwark::observe::alerting {
namespace {

using json = nlohmann::ordered_json;
using tmpl::TemplateValue;

const char* Status(const Alert& a, int64_t now_ms) {
  return a.Resolved(now_ms) ? "resolved" : "firing";
}

LabelMap Common(const std::vector<const Alert*>& alerts, bool annotations) {
  LabelMap out;
  if (alerts.empty()) return out;
  out = annotations ? alerts[0]->annotations : alerts[0]->labels;
  for (size_t i = 1; i < alerts.size(); ++i) {
    const LabelMap& m = annotations ? alerts[i]->annotations : alerts[i]->labels;
    for (auto it = out.begin(); it != out.end();) {
      auto o = m.find(it->first);
      it = (o == m.end() || o->second != it->second) ? out.erase(it) : std::next(it);
    }
  }
  return out;
}

// Go's time.Time String() in UTC, which templates print for .StartsAt.
std::string GoTime(int64_t ms) {
  if (ms == 0) return "0001-01-01 00:00:00 +0000 UTC";  // Go's zero time
  return tmpl::GoTimeString(ms / 1000, (ms % 1000) * 1000000);
}

std::string FiringCount(const Notification& n, const std::vector<const Alert*>& alerts) {
  size_t firing = 0;
  for (const Alert* a : alerts) firing += a->Resolved(n.now_ms) ? 0 : 1;
  return std::to_string(firing);
}

bool AnyFiring(const Notification& n, const std::vector<const Alert*>& alerts) {
  for (const Alert* a : alerts) {
    if (!a->Resolved(n.now_ms)) return true;
  }
  return false;
}

// Alertmanager's default "__subject": [FIRING:2] group values (other common values)
std::string DefaultSubject(const Notification& n, const std::vector<const Alert*>& alerts) {
  bool firing = AnyFiring(n, alerts);
  std::string out = StrCat("[", firing ? "FIRING" : "RESOLVED");
  if (firing) StrAppend(&out, ":", FiringCount(n, alerts));
  out += "] ";
  std::vector<std::string> values;
  for (const auto& [k, v] : n.group_labels) values.push_back(v);
  out += Join(values, " ");
  out += " ";
  LabelMap common = Common(alerts, false);
  if (common.size() > n.group_labels.size()) {
    std::vector<std::string> rest;
    for (const auto& [k, v] : common) {
      if (!n.group_labels.count(k)) rest.push_back(v);
    }
    StrAppend(&out, "(", Join(rest, " "), ")");
  }
  return out;
}

std::string AlertmanagerUrl(const Notification& n, const std::string& external_url) {
  return StrCat(external_url, "/#/alerts?receiver=", UrlQueryEscape(n.receiver));
}

std::string Expand(const std::string& text, const TemplateValue& data,
                   const std::string& fallback) {
  if (text.empty()) return fallback;
  auto t = tmpl::Template::Parse("notification", text);
  if (!t.ok()) return StrCat("<error parsing template: ", t.status().message(), ">");
  auto r = (*t)->ExpandValue(data);
  if (!r.ok()) return StrCat("<error expanding template: ", r.status().message(), ">");
  return *r;
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&#34;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::vector<const Alert*> AlertsToSend(const Notification& n, bool send_resolved) {
  std::vector<const Alert*> out;
  for (const Alert& a : n.alerts) {
    if (send_resolved || !a.Resolved(n.now_ms)) out.push_back(&a);
  }
  return out;
}

TemplateValue TemplateData(const Notification& n, const std::vector<const Alert*>& alerts,
                           const std::string& external_url) {
  std::vector<TemplateValue> list;
  for (const Alert* a : alerts) {
    list.push_back(TemplateValue::ObjectOf({
        {"Status", TemplateValue::Str(Status(*a, n.now_ms))},
        {"Labels", TemplateValue::MapOf(a->labels)},
        {"Annotations", TemplateValue::MapOf(a->annotations)},
        {"StartsAt", TemplateValue::Str(GoTime(a->starts_at_ms))},
        {"EndsAt", TemplateValue::Str(GoTime(a->Resolved(n.now_ms) ? a->ends_at_ms : 0))},
        {"GeneratorURL", TemplateValue::Str(a->generator_url)},
        {"Fingerprint", TemplateValue::Str(FingerprintString(a->fingerprint))},
    }));
  }
  return TemplateValue::ObjectOf({
      {"Receiver", TemplateValue::Str(n.receiver)},
      {"Status", TemplateValue::Str(AnyFiring(n, alerts) ? "firing" : "resolved")},
      {"Alerts", TemplateValue::ListOf(std::move(list))},
      {"GroupLabels", TemplateValue::MapOf(n.group_labels)},
      {"CommonLabels", TemplateValue::MapOf(Common(alerts, false))},
      {"CommonAnnotations", TemplateValue::MapOf(Common(alerts, true))},
      {"ExternalURL", TemplateValue::Str(external_url)},
  });
}

std::string WebhookPayload(const Notification& n, const WebhookConfig& c,
                           const std::string& external_url) {
  std::vector<const Alert*> alerts = AlertsToSend(n, c.send_resolved);
  size_t truncated = 0;
  if (c.max_alerts > 0 && alerts.size() > static_cast<size_t>(c.max_alerts)) {
    truncated = alerts.size() - static_cast<size_t>(c.max_alerts);
  }
  alerts.resize(alerts.size() - truncated);  // the first max_alerts, as Alertmanager keeps
  json list = json::array();
  for (const Alert* ap : alerts) {
    const Alert& a = *ap;
    list.push_back(json{{"status", Status(a, n.now_ms)},
                        {"labels", a.labels},
                        {"annotations", a.annotations},
                        {"startsAt", Rfc3339(a.starts_at_ms)},
                        {"endsAt", Rfc3339(a.Resolved(n.now_ms) ? a.ends_at_ms : 0)},
                        {"generatorURL", a.generator_url},
                        {"fingerprint", FingerprintString(a.fingerprint)}});
  }
  json msg = {{"receiver", n.receiver},
              {"status", AnyFiring(n, alerts) ? "firing" : "resolved"},
              {"alerts", list},
              {"groupLabels", n.group_labels},
              {"commonLabels", Common(alerts, false)},
              {"commonAnnotations", Common(alerts, true)},
              {"externalURL", external_url},
              {"version", "4"},
              {"groupKey", n.group_key},
              {"truncatedAlerts", truncated}};
  return msg.dump();
}

std::string SlackPayload(const Notification& n, const SlackConfig& c,
                         const std::string& external_url) {
  std::vector<const Alert*> alerts = AlertsToSend(n, c.send_resolved);
  TemplateValue data = TemplateData(n, alerts, external_url);
  std::string title = Expand(c.title, data, DefaultSubject(n, alerts));
  std::string link = Expand(c.title_link, data, AlertmanagerUrl(n, external_url));
  json attachment = {{"title", title},
                     {"title_link", link},
                     {"pretext", Expand(c.pretext, data, "")},
                     {"text", Expand(c.text, data, "")},
                     {"fallback", Expand(c.fallback, data, StrCat(title, " | ", link))},
                     {"color", Expand(c.color, data, AnyFiring(n, alerts) ? "danger" : "good")},
                     {"mrkdwn_in", json::array({"fallback", "pretext", "text"})}};
  json msg = {{"channel", Expand(c.channel, data, "")},
              {"username", Expand(c.username, data, "Alertmanager")},
              {"icon_emoji", Expand(c.icon_emoji, data, "")},
              {"icon_url", Expand(c.icon_url, data, "")},
              {"attachments", json::array({attachment})}};
  return msg.dump();
}

// A header value as Alertmanager writes it (Go's mime.QEncoding): unchanged when it is printable
// ASCII (tabs allowed), else RFC 2047 encoded words "=?utf-8?q?...?=" of at most 75 characters,
// never splitting a UTF-8 sequence. A CR or LF from a label value (an alert sender's, a scraped
// exporter's) is then "=0D"/"=0A" inside a word and can never start a header of its own.
std::string EncodeHeaderValue(std::string_view v) {
  bool plain = true;
  for (unsigned char c : v) plain = plain && ((c >= 0x20 && c <= 0x7e) || c == '\t');
  if (plain) return std::string(v);
  static constexpr std::string_view kOpen = "=?utf-8?q?", kClose = "?=";
  constexpr size_t kMaxWord = 75;
  std::string out, word;
  auto flush = [&] {
    if (word.empty()) return;
    if (!out.empty()) out.push_back(' ');
    StrAppend(&out, kOpen, word, kClose);
    word.clear();
  };
  size_t i = 0;
  while (i < v.size()) {
    // One character: a UTF-8 lead byte and its continuation bytes stay in one word.
    size_t len = 1;
    while (i + len < v.size() && (static_cast<unsigned char>(v[i + len]) & 0xC0) == 0x80) ++len;
    std::string enc;
    for (size_t k = i; k < i + len; ++k) {
      unsigned char b = static_cast<unsigned char>(v[k]);
      if (b == ' ') {
        enc.push_back('_');
      } else if (b > 0x20 && b < 0x7f && b != '=' && b != '?' && b != '_') {
        enc.push_back(static_cast<char>(b));
      } else {
        AppendHexEscape(&enc, '=', b);
      }
    }
    if (kOpen.size() + word.size() + enc.size() + kClose.size() > kMaxWord) flush();
    word += enc;
    i += len;
  }
  flush();
  return out;
}

std::string EmailMessage(const Notification& n, const EmailConfig& c,
                         const std::string& external_url, int64_t date_ms,
                         const std::string& message_id) {
  std::vector<const Alert*> alerts = AlertsToSend(n, c.send_resolved);
  TemplateValue data = TemplateData(n, alerts, external_url);
  std::map<std::string, std::string> headers;
  for (const auto& [k, v] : c.headers) headers[k] = Expand(v, data, "");
  if (!headers.count("Subject")) headers["Subject"] = DefaultSubject(n, alerts);
  if (!headers.count("To")) headers["To"] = Expand(c.to, data, "");
  if (!headers.count("From")) headers["From"] = Expand(c.from, data, "");
  std::string text = Expand(c.text, data, "");
  std::string html = c.html.empty() ? "" : Expand(c.html, data, "");
  if (c.html.empty() && c.text.empty()) {
    // A plain summary in place of Alertmanager's large default HTML template.
    html = StrCat("<h2>", HtmlEscape(DefaultSubject(n, alerts)), "</h2>\n<ul>\n");
    for (const Alert* a : alerts) {
      std::string labels;
      for (const auto& [k, v] : a->labels) StrAppend(&labels, k, "=", v, " ");
      StrAppend(&html, "<li><b>", Status(*a, n.now_ms), "</b> ", HtmlEscape(labels));
      auto s = a->annotations.find("summary");
      if (s != a->annotations.end()) StrAppend(&html, "<br>", HtmlEscape(s->second));
      StrAppend(&html, "<br>since ", GoTime(a->starts_at_ms), "</li>\n");
    }
    StrAppend(&html, "</ul>\n<p><a href=\"", HtmlEscape(AlertmanagerUrl(n, external_url)),
              "\">View in bulwark</a></p>\n");
  }
  time_t s = static_cast<time_t>(date_ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char date[64];
  std::strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
  std::string boundary = StrCat("bulwark-", message_id.substr(0, 16));
  std::string out;
  for (const auto& [k, v] : headers) StrAppend(&out, k, ": ", EncodeHeaderValue(v), "\r\n");
  StrAppend(&out, "Date: ", date, "\r\nMessage-Id: <", message_id,
            "@bulwark>\r\nMIME-Version: 1.0\r\n");
  StrAppend(&out, "Content-Type: multipart/alternative; boundary=", boundary, "\r\n\r\n");
  auto part = [&](std::string_view type, const std::string& body) {
    if (body.empty()) return;
    StrAppend(&out, "--", boundary, "\r\nContent-Type: ", type,
              "; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    // SMTP lines end in CRLF; a line with a single dot would end the message.
    size_t start = 0;
    while (start <= body.size()) {
      size_t nl = body.find('\n', start);
      std::string line =
          body.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty() && line[0] == '.') line.insert(0, ".");
      StrAppend(&out, line, "\r\n");
      if (nl == std::string::npos) break;
      start = nl + 1;
    }
  };
  part("text/plain", text);
  part("text/html", html);
  StrAppend(&out, "--", boundary, "--\r\n");
  return out;
}

std::string DingTalkPayload(const Notification& n, const DingTalkConfig& c,
                            const std::string& external_url) {
  std::vector<const Alert*> alerts = AlertsToSend(n, c.send_resolved);
  TemplateValue data = TemplateData(n, alerts, external_url);
  std::string title = Expand(c.title, data, DefaultSubject(n, alerts));
  std::string fallback = StrCat("### ", title, "\n");
  for (const Alert* a : alerts) {
    StrAppend(&fallback, "\n- **", Status(*a, n.now_ms), "** ");
    auto name = a->labels.find("alertname");
    if (name != a->labels.end()) fallback += name->second;
    auto s = a->annotations.find("summary");
    if (s != a->annotations.end()) StrAppend(&fallback, ": ", s->second);
    auto d = a->annotations.find("description");
    if (d != a->annotations.end()) StrAppend(&fallback, "\n  ", d->second);
  }
  StrAppend(&fallback, "\n\n[bulwark](", AlertmanagerUrl(n, external_url), ")");
  json msg = {{"msgtype", "markdown"},
              {"markdown", {{"title", title}, {"text", Expand(c.text, data, fallback)}}}};
  return msg.dump();
}

std::string DingTalkUrl(const DingTalkConfig& c, int64_t now_ms) {
  if (c.secret.empty()) return c.url;
  // DingTalk signs with HMAC-SHA256 over "timestamp\nsecret", base64, URL-encoded.
  std::string ts = std::to_string(now_ms);
  std::string msg = ts + "\n" + c.secret;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), c.secret.data(), static_cast<int>(c.secret.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
  std::string sign =
      UrlQueryEscape(Base64Encode(std::string_view(reinterpret_cast<char*>(mac), len)));
  return StrCat(c.url, c.url.find('?') == std::string::npos ? "?" : "&", "timestamp=", ts,
                "&sign=", sign);
}

std::string AlertmanagerV2Payload(const std::vector<OutgoingAlert>& alerts) {
  json list = json::array();
  for (const OutgoingAlert& a : alerts) {
    json j = {{"labels", a.labels}, {"annotations", a.annotations}};
    if (a.starts_at_ms != 0) j["startsAt"] = Rfc3339(a.starts_at_ms);
    if (a.ends_at_ms != 0) j["endsAt"] = Rfc3339(a.ends_at_ms);
    j["generatorURL"] = a.generator_url;
    list.push_back(std::move(j));
  }
  return list.dump();
}

}  // namespace bulwark::observe::alerting
