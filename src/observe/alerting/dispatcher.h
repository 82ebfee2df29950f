// Alert routing as Alertmanager 0.25 does it, in process:
//  - alerts (from bulwark's rules or POSTed to /api/v2/alerts) are kept by fingerprint; an
//    alert without an end time ends `resolve_timeout` after it was last received;
//  - each alert goes to the routes that match it; per route it joins the aggregation group of
//    its `group_by` labels (all labels for `...`);
//  - a group flushes `group_wait` after it was created (at once if its first alert is older
//    than that), then every `group_interval`;
//  - a flush drops inhibited and silenced alerts, then, per integration of the receiver,
//    notifies when the set of firing alerts grew, when alerts resolved (with send_resolved),
//    when the last firing alert resolved, or when `repeat_interval` passed since the last
//    notification (Alertmanager's notification log and dedup stage);
//  - resolved alerts leave their group once notified.
// Time is passed in (Tick), so tests drive it. Owned by the observe plane's loop; not
// thread-safe. Deliveries happen elsewhere (Notifier); their outcome comes back through
// Delivered().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "observe/alerting/config.h"

namespace bulwark::observe::alerting {

// Alertmanager's fingerprint: FNV-1a over the sorted label pairs; printed as %016x.
uint64_t Fingerprint(const LabelMap& labels);
std::string FingerprintString(uint64_t fp);
// RFC 3339 with nanoseconds trimmed, as Go prints times in JSON ("0001-01-01T00:00:00Z" for 0).
std::string Rfc3339(int64_t ms);
// Parses that form (with a zone offset or Z); false if malformed.
bool ParseRfc3339(std::string_view s, int64_t* ms);

struct Alert {
  LabelMap labels;
  LabelMap annotations;
  int64_t starts_at_ms = 0;
  int64_t ends_at_ms = 0;  // 0: not given (resolve_timeout applies)
  int64_t updated_at_ms = 0;
  bool timeout = false;  // ends_at was set from resolve_timeout
  std::string generator_url;
  uint64_t fingerprint = 0;

  bool Resolved(int64_t now_ms) const { return ends_at_ms != 0 && ends_at_ms <= now_ms; }
};

struct Silence {
  std::string id;
  std::vector<observe::Matcher> matchers;
  int64_t starts_at_ms = 0, ends_at_ms = 0, updated_at_ms = 0;
  std::string created_by, comment;
  // "pending", "active" or "expired" at `now`.
  std::string State(int64_t now_ms) const;
};

// One delivery to make: a receiver's integration for one group flush.
struct Notification {
  uint64_t id = 0;
  std::string receiver;
  std::string integration;  // "webhook", "slack", "email", "dingtalk"
  int index = 0;            // which config of that type in the receiver
  std::string group_key;
  LabelMap group_labels;
  std::vector<Alert> alerts;  // not muted; firing and resolved
  int64_t now_ms = 0;         // when the flush happened (decides firing/resolved)
  int64_t deadline_ms = 0;    // retries stop here (the group's next flush)
};

class Dispatcher {
 public:
  using Send = std::function<void(Notification)>;
  Dispatcher(std::shared_ptr<const AlertmanagerConfig> config, Send send);

  // Adds or updates an alert (merging with a known one as Alertmanager does).
  void Put(Alert alert, int64_t now_ms);
  // Flushes every group that is due; drops groups left empty and long-resolved alerts.
  void Tick(int64_t now_ms);
  // The outcome of a delivery (from the notifier): success updates the notification log.
  void Delivered(const Notification& n, bool ok, int64_t now_ms);
  // A new configuration: groups are rebuilt from the current alerts (as Alertmanager does on
  // reload); the notification log is kept, so nothing is sent twice.
  void SetConfig(std::shared_ptr<const AlertmanagerConfig> config, int64_t now_ms);

  // Silences (the admin API's /api/v2/silences).
  std::string AddSilence(Silence s, int64_t now_ms);  // returns its id; replaces one with s.id
  bool ExpireSilence(const std::string& id, int64_t now_ms);
  const std::vector<Silence>& silences() const { return silences_; }

  // Alerts with their state for the API: silenced_by / inhibited ids.
  struct AlertStatus {
    const Alert* alert;
    std::vector<std::string> silenced_by;
    std::vector<std::string> inhibited_by;  // fingerprints of the inhibiting alerts
    std::vector<std::string> receivers;
  };
  std::vector<AlertStatus> Alerts(int64_t now_ms) const;

  struct GroupInfo {
    std::string key;
    std::string receiver;
    LabelMap labels;
    std::vector<uint64_t> alerts;
  };
  std::vector<GroupInfo> Groups() const;

  // Counters for metrics.
  struct Stats {
    uint64_t alerts_received = 0;
    uint64_t alerts_invalid = 0;
    uint64_t notifications = 0;  // handed to the notifier
    uint64_t notifications_ok = 0;
    uint64_t notifications_failed = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Group {
    const Route* route;
    std::string key;
    LabelMap labels;
    std::set<uint64_t> alerts;  // fingerprints
    int64_t next_flush_ms = 0;
    bool flushed = false;
  };
  struct LogEntry {
    std::set<uint64_t> firing, resolved;
    int64_t at_ms = 0;
  };

  void Route(const Alert& a, int64_t now_ms);
  void Flush(Group& g, int64_t now_ms);
  bool Silenced(const Alert& a, int64_t now_ms, std::vector<std::string>* by) const;
  bool Inhibited(const Alert& a, int64_t now_ms, std::vector<std::string>* by) const;
  static LabelMap GroupLabels(const alerting::Route& r, const LabelMap& labels);

  std::shared_ptr<const AlertmanagerConfig> config_;
  Send send_;
  std::map<uint64_t, Alert> alerts_;
  std::map<std::string, Group> groups_;
  // Notification log: (group key, receiver, integration, index) -> last delivered state.
  std::map<std::string, LogEntry> nflog_;
  std::vector<Silence> silences_;
  uint64_t next_id_ = 1;
  int64_t last_gc_ms_ = 0;
  Stats stats_;
};

}  // namespace bulwark::observe::alerting
