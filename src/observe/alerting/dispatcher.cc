#include "observe/alerting/dispatcher.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "core/strings.h"
#include "observe/go_strings.h"

namespace bulwark::observe::alerting {
namespace {

// Alertmanager keeps a resolved alert this long before forgetting it.
constexpr int64_t kResolvedRetentionMs = 30 * 60 * 1000;

std::string LabelSetString(const LabelMap& l) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : l) {
    if (!first) out += ", ";
    first = false;
    StrAppend(&out, k, "=", GoQuote(v));
  }
  return out + "}";
}

std::string NewId() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof(b)) != 1) {
    for (unsigned char& c : b) c = static_cast<unsigned char>(std::rand());
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // a version 4 UUID, as Alertmanager's silence ids
  b[8] = (b[8] & 0x3f) | 0x80;
  char out[40];
  std::snprintf(out, sizeof(out),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

// Alertmanager's order of alerts in a notification: by job, then instance, then the label
// sets (fewer labels first, then name by name).
bool AlertBefore(const Alert& x, const Alert& y) {
  for (const char* key : {"job", "instance"}) {
    auto i = x.labels.find(key), j = y.labels.find(key);
    bool iok = i != x.labels.end(), jok = j != y.labels.end();
    if (!iok && !jok) continue;
    if (!iok) return false;
    if (!jok) return true;
    if (i->second != j->second) return i->second < j->second;
  }
  if (x.labels.size() != y.labels.size()) return x.labels.size() < y.labels.size();
  std::set<std::string> names;
  for (const auto& [k, v] : x.labels) names.insert(k);
  for (const auto& [k, v] : y.labels) names.insert(k);
  for (const std::string& n : names) {
    auto a = x.labels.find(n), b = y.labels.find(n);
    if (a == x.labels.end()) return true;
    if (b == y.labels.end()) return false;
    if (a->second != b->second) return a->second < b->second;
  }
  return false;
}

}  // namespace

uint64_t Fingerprint(const LabelMap& labels) {
  uint64_t h = 14695981039346656037ull;
  auto add = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  auto sep = [&h]() {
    h ^= 0xff;
    h *= 1099511628211ull;
  };
  for (const auto& [k, v] : labels) {  // std::map iterates sorted, as Alertmanager sorts
    add(k);
    sep();
    add(v);
    sep();
  }
  return h;
}

std::string FingerprintString(uint64_t fp) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(fp));
  return buf;
}

std::string Rfc3339(int64_t ms) {
  if (ms == 0) return "0001-01-01T00:00:00Z";
  time_t s = static_cast<time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  int frac = static_cast<int>(ms - static_cast<int64_t>(s) * 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  if (frac != 0) {
    char f[8];
    std::snprintf(f, sizeof(f), ".%03d", frac);
    std::string fs = f;
    while (fs.back() == '0') fs.pop_back();
    out += fs;
  }
  return out + "Z";
}

bool ParseRfc3339(std::string_view s, int64_t* ms) {
  struct tm tm = {};
  int y, mo, d, h, mi, sec;
  if (s.size() < 20) return false;
  std::string str(s);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6)
    return false;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  if (y == 1 && mo == 1 && d == 1 && h == 0 && mi == 0 && sec == 0) {
    *ms = 0;  // Go's zero time
    return true;
  }
  int64_t t = static_cast<int64_t>(timegm(&tm)) * 1000;
  size_t i = 19;
  if (i < str.size() && str[i] == '.') {
    ++i;
    int64_t frac = 0, scale = 100;
    while (i < str.size() && std::isdigit(static_cast<unsigned char>(str[i]))) {
      frac += (str[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
    t += frac;
  }
  if (i < str.size() && (str[i] == 'Z' || str[i] == 'z')) {
    ++i;
  } else if (i + 6 <= str.size() && (str[i] == '+' || str[i] == '-')) {
    int oh = std::atoi(str.substr(i + 1, 2).c_str()), om = std::atoi(str.substr(i + 4, 2).c_str());
    int64_t off = (oh * 60 + om) * 60000ll;
    t += str[i] == '+' ? -off : off;
    i += 6;
  } else {
    return false;
  }
  if (i != str.size()) return false;
  *ms = t;
  return true;
}

std::string Silence::State(int64_t now_ms) const {
  if (now_ms < starts_at_ms) return "pending";
  if (now_ms >= ends_at_ms) return "expired";
  return "active";
}

Dispatcher::Dispatcher(std::shared_ptr<const AlertmanagerConfig> config, Send send)
    : config_(std::move(config)), send_(std::move(send)) {}

LabelMap Dispatcher::GroupLabels(const alerting::Route& r, const LabelMap& labels) {
  if (r.group_by_all) return labels;
  LabelMap out;
  for (const std::string& n : r.group_by) {
    auto it = labels.find(n);
    if (it != labels.end()) out[n] = it->second;
  }
  return out;
}

void Dispatcher::Put(Alert a, int64_t now_ms) {
  ++stats_.alerts_received;
  if (a.labels.empty()) {
    ++stats_.alerts_invalid;
    return;
  }
  if (a.starts_at_ms == 0) a.starts_at_ms = now_ms;
  if (a.ends_at_ms == 0) {
    a.timeout = true;
    a.ends_at_ms = now_ms + config_->resolve_timeout_ms;
  }
  a.updated_at_ms = now_ms;
  a.fingerprint = Fingerprint(a.labels);
  auto it = alerts_.find(a.fingerprint);
  if (it != alerts_.end()) {
    const Alert& old = it->second;
    // Merge when the activity ranges overlap (Alertmanager's provider), the younger alert
    // winning but keeping the earliest start.
    if ((a.ends_at_ms > old.starts_at_ms && a.ends_at_ms < old.ends_at_ms) ||
        (a.starts_at_ms > old.starts_at_ms && a.starts_at_ms < old.ends_at_ms)) {
      Alert res = a;
      if (old.starts_at_ms < a.starts_at_ms) res.starts_at_ms = old.starts_at_ms;
      if (a.Resolved(now_ms)) {
        if (old.Resolved(now_ms) && old.ends_at_ms > a.ends_at_ms) res.ends_at_ms = old.ends_at_ms;
      } else if (old.ends_at_ms > a.ends_at_ms && !old.timeout) {
        res.ends_at_ms = old.ends_at_ms;
      }
      a = std::move(res);
    }
  }
  uint64_t fp = a.fingerprint;
  alerts_[fp] = std::move(a);
  Route(alerts_[fp], now_ms);
}

void Dispatcher::Route(const Alert& a, int64_t now_ms) {
  if (!config_->route) return;
  std::vector<const alerting::Route*> routes;
  config_->route->Match(a.labels, &routes);
  for (const alerting::Route* r : routes) {
    LabelMap gl = GroupLabels(*r, a.labels);
    std::string group_key = StrCat(r->key, ":", LabelSetString(gl));
    // Two routes may print the same key; the route's address keeps their groups apart.
    std::string id = StrCat(reinterpret_cast<uintptr_t>(r), "|", group_key);
    auto [it, created] = groups_.try_emplace(id);
    Group& g = it->second;
    if (created) {
      g.route = r;
      g.key = group_key;
      g.labels = gl;
      g.next_flush_ms = now_ms + r->group_wait_ms;
    }
    g.alerts.insert(a.fingerprint);
    // An alert older than group_wait is sent at once (before the group's first flush).
    if (!g.flushed && a.starts_at_ms + r->group_wait_ms < now_ms) g.next_flush_ms = now_ms;
  }
}

void Dispatcher::Tick(int64_t now_ms) {
  for (auto& [id, g] : groups_) {
    if (g.next_flush_ms <= now_ms && !g.alerts.empty()) {
      g.flushed = true;
      g.next_flush_ms = now_ms + g.route->group_interval_ms;
      Flush(g, now_ms);
    }
  }
  if (now_ms - last_gc_ms_ >= 30000) {
    last_gc_ms_ = now_ms;
    for (auto it = groups_.begin(); it != groups_.end();) {
      it = it->second.alerts.empty() ? groups_.erase(it) : std::next(it);
    }
    for (auto it = alerts_.begin(); it != alerts_.end();) {
      bool old =
          it->second.Resolved(now_ms) && now_ms - it->second.ends_at_ms > kResolvedRetentionMs;
      if (old) {
        for (auto& [id, g] : groups_) g.alerts.erase(it->first);
      }
      it = old ? alerts_.erase(it) : std::next(it);
    }
  }
}

bool Dispatcher::Silenced(const Alert& a, int64_t now_ms, std::vector<std::string>* by) const {
  bool muted = false;
  for (const Silence& s : silences_) {
    if (s.State(now_ms) != "active" || !Matches(s.matchers, a.labels)) continue;
    muted = true;
    if (by) by->push_back(s.id);
  }
  return muted;
}

bool Dispatcher::Inhibited(const Alert& a, int64_t now_ms, std::vector<std::string>* by) const {
  for (const InhibitRule& r : config_->inhibit_rules) {
    if (!Matches(r.target, a.labels)) continue;
    // An alert matching both sides cannot be inhibited by alerts that also match both.
    bool two_sided = Matches(r.source, a.labels);
    for (const auto& [fp, s] : alerts_) {
      if (s.Resolved(now_ms) || !Matches(r.source, s.labels)) continue;
      if (two_sided && Matches(r.target, s.labels)) continue;
      bool equal = true;
      for (const std::string& n : r.equal) {
        auto x = a.labels.find(n), y = s.labels.find(n);
        std::string_view xv = x == a.labels.end() ? "" : std::string_view(x->second);
        std::string_view yv = y == s.labels.end() ? "" : std::string_view(y->second);
        if (xv != yv) {
          equal = false;
          break;
        }
      }
      if (!equal) continue;
      if (by) by->push_back(FingerprintString(fp));
      return true;
    }
  }
  return false;
}

void Dispatcher::Flush(Group& g, int64_t now_ms) {
  const Receiver* recv = config_->FindReceiver(g.route->receiver);
  std::vector<Alert> alerts;
  std::set<uint64_t> firing, resolved;
  for (uint64_t fp : g.alerts) {
    auto it = alerts_.find(fp);
    if (it == alerts_.end()) continue;
    const Alert& a = it->second;
    if (Inhibited(a, now_ms, nullptr) || Silenced(a, now_ms, nullptr)) continue;
    alerts.push_back(a);
    (a.Resolved(now_ms) ? resolved : firing).insert(fp);
  }
  std::stable_sort(alerts.begin(), alerts.end(), AlertBefore);
  bool sent = false;
  if (recv != nullptr && !alerts.empty()) {
    auto each = [&](const char* integration, size_t count, auto send_resolved_of) {
      for (size_t i = 0; i < count; ++i) {
        std::string log_key = StrCat(g.key, "\x1f", recv->name, "\x1f", integration, "\x1f", i);
        auto e = nflog_.find(log_key);
        bool send_resolved = send_resolved_of(i);
        bool needed;
        if (e == nflog_.end()) {
          needed = !firing.empty();
        } else if (!std::includes(e->second.firing.begin(), e->second.firing.end(), firing.begin(),
                                  firing.end())) {
          needed = true;
        } else if (firing.empty()) {
          needed = !e->second.firing.empty();  // the last firing alert resolved
        } else if (send_resolved &&
                   !std::includes(e->second.resolved.begin(), e->second.resolved.end(),
                                  resolved.begin(), resolved.end())) {
          needed = true;
        } else {
          needed = e->second.at_ms < now_ms - g.route->repeat_interval_ms;
        }
        if (!needed) continue;
        Notification n;
        n.id = next_id_++;
        n.receiver = recv->name;
        n.integration = integration;
        n.index = static_cast<int>(i);
        n.group_key = g.key;
        n.group_labels = g.labels;
        n.alerts = alerts;
        n.now_ms = now_ms;
        n.deadline_ms = now_ms + g.route->group_interval_ms;
        ++stats_.notifications;
        sent = true;
        send_(std::move(n));
      }
    };
    each("webhook", recv->webhooks.size(),
         [&](size_t i) { return recv->webhooks[i].send_resolved; });
    each("slack", recv->slack.size(), [&](size_t i) { return recv->slack[i].send_resolved; });
    each("email", recv->email.size(), [&](size_t i) { return recv->email[i].send_resolved; });
    each("dingtalk", recv->dingtalk.size(),
         [&](size_t i) { return recv->dingtalk[i].send_resolved; });
  }
  if (!sent) {
    // Nothing to deliver: resolved alerts leave the group now.
    for (uint64_t fp : resolved) g.alerts.erase(fp);
    for (auto it = g.alerts.begin(); it != g.alerts.end();) {
      auto a = alerts_.find(*it);
      it = (a == alerts_.end() || a->second.Resolved(now_ms)) ? g.alerts.erase(it) : std::next(it);
    }
  }
}

void Dispatcher::Delivered(const Notification& n, bool ok, int64_t now_ms) {
  if (!ok) {
    ++stats_.notifications_failed;
    return;
  }
  ++stats_.notifications_ok;
  LogEntry e;
  for (const Alert& a : n.alerts)
    (a.Resolved(n.now_ms) ? e.resolved : e.firing).insert(a.fingerprint);
  e.at_ms = now_ms;
  nflog_[StrCat(n.group_key, "\x1f", n.receiver, "\x1f", n.integration, "\x1f", n.index)] =
      std::move(e);
  // Resolved alerts that were delivered and not updated since leave their group.
  for (auto& [id, g] : groups_) {
    if (g.key != n.group_key) continue;
    for (const Alert& a : n.alerts) {
      auto cur = alerts_.find(a.fingerprint);
      if (a.Resolved(n.now_ms) && (cur == alerts_.end() || cur->second.updated_at_ms <= n.now_ms)) {
        g.alerts.erase(a.fingerprint);
      }
    }
  }
}

void Dispatcher::SetConfig(std::shared_ptr<const AlertmanagerConfig> config, int64_t now_ms) {
  config_ = std::move(config);
  std::map<std::string, Group> old;
  old.swap(groups_);
  for (const auto& [fp, a] : alerts_) {
    if (!a.Resolved(now_ms)) Route(a, now_ms);
  }
  // Groups that existed keep their schedule.
  for (auto& [id, g] : groups_) {
    for (const auto& [oid, o] : old) {
      if (o.key == g.key && o.flushed) {
        g.flushed = true;
        g.next_flush_ms = o.next_flush_ms;
      }
    }
  }
}

std::string Dispatcher::AddSilence(Silence s, int64_t now_ms) {
  s.updated_at_ms = now_ms;
  if (s.starts_at_ms == 0) s.starts_at_ms = now_ms;
  if (!s.id.empty()) {
    for (Silence& old : silences_) {
      if (old.id == s.id) {
        old = std::move(s);
        return old.id;
      }
    }
  }
  s.id = NewId();
  silences_.push_back(std::move(s));
  return silences_.back().id;
}

bool Dispatcher::ExpireSilence(const std::string& id, int64_t now_ms) {
  for (Silence& s : silences_) {
    if (s.id != id) continue;
    if (s.State(now_ms) == "expired") return false;
    if (s.starts_at_ms > now_ms) s.starts_at_ms = now_ms;
    s.ends_at_ms = now_ms;
    s.updated_at_ms = now_ms;
    return true;
  }
  return false;
}

std::vector<Dispatcher::AlertStatus> Dispatcher::Alerts(int64_t now_ms) const {
  std::vector<AlertStatus> out;
  for (const auto& [fp, a] : alerts_) {
    if (a.Resolved(now_ms)) continue;
    AlertStatus st;
    st.alert = &a;
    Silenced(a, now_ms, &st.silenced_by);
    Inhibited(a, now_ms, &st.inhibited_by);
    if (config_->route) {
      std::vector<const alerting::Route*> routes;
      config_->route->Match(a.labels, &routes);
      for (const alerting::Route* r : routes) st.receivers.push_back(r->receiver);
    }
    out.push_back(std::move(st));
  }
  return out;
}

std::vector<Dispatcher::GroupInfo> Dispatcher::Groups() const {
  std::vector<GroupInfo> out;
  for (const auto& [id, g] : groups_) {
    if (g.alerts.empty()) continue;
    out.push_back({g.key, g.route->receiver, g.labels, {g.alerts.begin(), g.alerts.end()}});
  }
  return out;
}

}  // namespace bulwark::observe::alerting
