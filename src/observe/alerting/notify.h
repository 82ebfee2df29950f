// What a notification looks like on the wire, per integration, as Alertmanager 0.25 sends it:
//  - webhook: the version 4 JSON message (receiver, status, alerts with fingerprints, group,
//    common labels and annotations, externalURL, groupKey, truncatedAlerts);
//  - Slack: an incoming-webhook message with one attachment (Alertmanager's default title,
//    color and link unless the config gives its own templates);
//  - email: a MIME message (text and HTML parts) for SMTP;
//  - DingTalk: a robot markdown message, signed when the robot has a secret.
// Templates in the configs (title, text, html, headers) are Go templates over Alertmanager's
// data: .Receiver .Status .Alerts (.Labels .Annotations .StartsAt .EndsAt .GeneratorURL
// .Fingerprint .Status) .GroupLabels .CommonLabels .CommonAnnotations .ExternalURL.
#pragma once

#include <string>

#include "observe/alerting/config.h"
#include "observe/alerting/dispatcher.h"
#include "observe/template/template.h"

namespace bulwark::observe::alerting {

// The alerts a notification carries: with send_resolved false, only the firing ones.
std::vector<const Alert*> AlertsToSend(const Notification& n, bool send_resolved);

tmpl::TemplateValue TemplateData(const Notification& n, const std::vector<const Alert*>& alerts,
                                  const std::string& external_url);

std::string WebhookPayload(const Notification& n, const WebhookConfig& c,
                           const std::string& external_url);
// Errors only from the config's own templates (reported, the message still goes out with the
// error text, as Alertmanager does).
std::string SlackPayload(const Notification& n, const SlackConfig& c,
                         const std::string& external_url);
// The full message: headers, blank line, body. `date_ms` and `message_id` make it testable.
// RFC 2047 (Q) encoding of a header value, as Alertmanager does it; plain ASCII is unchanged.
std::string EncodeHeaderValue(std::string_view v);
std::string EmailMessage(const Notification& n, const EmailConfig& c,
                         const std::string& external_url, int64_t date_ms,
                         const std::string& message_id);
std::string DingTalkPayload(const Notification& n, const DingTalkConfig& c,
                            const std::string& external_url);
// The URL with &timestamp=..&sign=.. when the robot has a secret.
std::string DingTalkUrl(const DingTalkConfig& c, int64_t now_ms);

// Prometheus's notifier payload for a real Alertmanager's POST /api/v2/alerts.
struct OutgoingAlert {
  LabelMap labels, annotations;
  int64_t starts_at_ms = 0, ends_at_ms = 0;
  std::string generator_url;
};
std::string AlertmanagerV2Payload(const std::vector<OutgoingAlert>& alerts);

}  // namespace bulwark::observe::alerting
