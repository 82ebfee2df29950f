// The observe plane's HTTP API, on Prometheus's and Alertmanager's own paths: rules, queries
// (handed to query threads), alerts, silences and the plane's status.
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/strings.h"
#include "observe/observer.h"
#include "observe/promql/parser.h"

namespace bulwark::observe {
namespace {

using json = nlohmann::json;

json LabelsJson(const observe::Labels& l) {
  json j = json::object();
  for (const auto& [k, v] : l) j[k] = v;
  return j;
}

}  // namespace

std::string Observer::RulesJson() const {
  json groups = json::array();
  for (const GroupRun& g : groups_) {
    json rules = json::array();
    for (size_t i = 0; i < g.def->rules.size(); ++i) {
      const rules::Rule& r = g.def->rules[i];
      const rules::RuleState& st = g.eval->states()[i];
      json j = {
          {"name", r.name},
          {"query", r.expr_text},
          {"labels", LabelsJson(r.labels)},
          {"health", st.last_eval_ms == 0 ? "unknown" : (st.last_error.empty() ? "ok" : "err")},
          {"lastError", st.last_error},
          {"evaluationTime", st.last_duration_s},
          {"lastEvaluation", alerting::Rfc3339(st.last_eval_ms)},
          {"type", r.kind == rules::Rule::Kind::kAlert ? "alerting" : "recording"}};
      if (r.kind == rules::Rule::Kind::kAlert) {
        j["duration"] = static_cast<double>(r.for_ms) / 1000;
        j["keepFiringFor"] = static_cast<double>(r.keep_firing_for_ms) / 1000;
        j["annotations"] = LabelsJson(r.annotations);
        json alerts = json::array();
        std::string state = "inactive";
        for (const auto& [h, a] : st.active) {
          if (a.state == rules::AlertState::kInactive) continue;
          if (a.state == rules::AlertState::kFiring) state = "firing";
          if (a.state == rules::AlertState::kPending && state != "firing") state = "pending";
          alerts.push_back({{"labels", LabelsJson(a.labels)},
                            {"annotations", LabelsJson(a.annotations)},
                            {"state", rules::AlertStateName(a.state)},
                            {"activeAt", alerting::Rfc3339(a.active_at)},
                            {"value", promql::FormatGoFloat(a.value)}});
        }
        j["state"] = state;
        j["alerts"] = alerts;
      }
      rules.push_back(std::move(j));
    }
    groups.push_back({{"name", g.def->name},
                      {"file", g.def->file},
                      {"interval", static_cast<double>(g.interval_ms) / 1000},
                      {"rules", rules},
                      {"evaluationTime", g.eval->last_duration_s()}});
  }
  return json{{"status", "success"}, {"data", {{"groups", groups}}}}.dump();
}

void Observer::SubmitQuery(QueryRequest q, std::function<void(QueryAnswer)> done) {
  ++queries_total_;
  q.limits = config_->query;
  q.default_subquery_step_ms = config_->evaluation_interval_ms;
  q.now_ms = WallMs();
  std::weak_ptr<bool> alive = alive_;
  EventLoop* loop = loop_;
  queries_->Submit(std::move(q), [loop, alive, done = std::move(done)](QueryAnswer a) {
    loop->Post([alive, done, a = std::move(a)]() mutable {
      if (alive.expired() || !*alive.lock()) return;
      done(std::move(a));
    });
  });
}

std::string Observer::AlertsV2Json() const {
  json out = json::array();
  if (!dispatcher_) return out.dump();
  int64_t now = WallMs();
  for (const auto& st : dispatcher_->Alerts(now)) {
    const alerting::Alert& a = *st.alert;
    bool suppressed = !st.silenced_by.empty() || !st.inhibited_by.empty();
    json receivers = json::array();
    for (const std::string& r : st.receivers) receivers.push_back({{"name", r}});
    out.push_back({{"labels", a.labels},
                   {"annotations", a.annotations},
                   {"startsAt", alerting::Rfc3339(a.starts_at_ms)},
                   {"endsAt", alerting::Rfc3339(a.ends_at_ms)},
                   {"updatedAt", alerting::Rfc3339(a.updated_at_ms)},
                   {"generatorURL", a.generator_url},
                   {"fingerprint", alerting::FingerprintString(a.fingerprint)},
                   {"receivers", receivers},
                   {"status",
                    {{"state", suppressed ? "suppressed" : "active"},
                     {"silencedBy", st.silenced_by},
                     {"inhibitedBy", st.inhibited_by}}}});
  }
  return out.dump();
}

std::string Observer::PostAlerts(const std::string& body) {
  if (!dispatcher_) return "no Alertmanager configuration: set observe.alertmanager.config_file";
  json list = json::parse(body, nullptr, false);
  if (!list.is_array()) return "expected a JSON array of alerts";
  int64_t now = WallMs();
  std::vector<alerting::Alert> alerts;
  for (const json& j : list) {
    if (!j.is_object() || !j.contains("labels") || !j["labels"].is_object())
      return "every alert needs labels";
    alerting::Alert a;
    for (auto& [k, v] : j["labels"].items()) {
      if (!v.is_string()) return StrCat("label ", k, ": expected a string");
      if (!rules::IsValidLabelName(k)) return StrCat("invalid label name \"", k, "\"");
      if (!v.get<std::string>().empty()) a.labels[k] = v.get<std::string>();
    }
    if (a.labels.empty()) return "an alert has no labels";
    if (j.contains("annotations") && j["annotations"].is_object()) {
      for (auto& [k, v] : j["annotations"].items()) {
        if (v.is_string()) a.annotations[k] = v.get<std::string>();
      }
    }
    for (const char* f : {"startsAt", "endsAt"}) {
      if (!j.contains(f)) continue;
      int64_t ms = 0;
      if (!j[f].is_string() || !alerting::ParseRfc3339(j[f].get<std::string>(), &ms)) {
        return StrCat(f, ": expected an RFC 3339 time");
      }
      (std::string_view(f) == "startsAt" ? a.starts_at_ms : a.ends_at_ms) = ms;
    }
    if (a.ends_at_ms != 0 && a.starts_at_ms != 0 && a.ends_at_ms < a.starts_at_ms) {
      return "start time must be before end time";
    }
    if (j.contains("generatorURL") && j["generatorURL"].is_string())
      a.generator_url = j["generatorURL"];
    alerts.push_back(std::move(a));
  }
  for (alerting::Alert& a : alerts) dispatcher_->Put(std::move(a), now);
  return "";
}

std::string Observer::SilencesJson() const {
  json out = json::array();
  if (!dispatcher_) return out.dump();
  int64_t now = WallMs();
  for (const alerting::Silence& s : dispatcher_->silences()) {
    json matchers = json::array();
    for (const observe::Matcher& m : s.matchers) {
      bool regex = m.op == observe::Matcher::Op::kRegex || m.op == observe::Matcher::Op::kNotRegex;
      bool equal = m.op == observe::Matcher::Op::kEqual || m.op == observe::Matcher::Op::kRegex;
      matchers.push_back(
          {{"name", m.name}, {"value", m.value}, {"isRegex", regex}, {"isEqual", equal}});
    }
    out.push_back({{"id", s.id},
                   {"status", {{"state", s.State(now)}}},
                   {"updatedAt", alerting::Rfc3339(s.updated_at_ms)},
                   {"matchers", matchers},
                   {"startsAt", alerting::Rfc3339(s.starts_at_ms)},
                   {"endsAt", alerting::Rfc3339(s.ends_at_ms)},
                   {"createdBy", s.created_by},
                   {"comment", s.comment}});
  }
  return out.dump();
}

std::string Observer::PostSilence(const std::string& body, std::string* error) {
  if (!dispatcher_) {
    *error = "no Alertmanager configuration: set observe.alertmanager.config_file";
    return "";
  }
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("matchers") || !j["matchers"].is_array() ||
      j["matchers"].empty()) {
    *error = "a silence needs at least one matcher";
    return "";
  }
  alerting::Silence s;
  bool any_non_empty = false;
  for (const json& m : j["matchers"]) {
    if (!m.is_object() || !m.contains("name") || !m.contains("value") || !m["name"].is_string() ||
        !m["value"].is_string()) {
      *error = "every matcher needs a name and a value";
      return "";
    }
    bool regex = m.value("isRegex", false), equal = m.value("isEqual", true);
    std::string name = m["name"], value = m["value"];
    std::string op = regex ? (equal ? "=~" : "!~") : (equal ? "=" : "!=");
    auto parsed = alerting::ParseMatchers(StrCat(name, op, promql::GoQuote(value)));
    if (!parsed.ok() || parsed->size() != 1) {
      *error = parsed.ok() ? "bad matcher" : std::string(parsed.status().message());
      return "";
    }
    any_non_empty = any_non_empty || !(*parsed)[0].MatchesEmpty();
    s.matchers.push_back(std::move((*parsed)[0]));
  }
  if (!any_non_empty) {
    *error = "at least one matcher must not match the empty string";
    return "";
  }
  int64_t now = WallMs();
  for (const char* f : {"startsAt", "endsAt"}) {
    int64_t ms = 0;
    if (!j.contains(f) || !j[f].is_string() ||
        !alerting::ParseRfc3339(j[f].get<std::string>(), &ms)) {
      *error = StrCat(f, ": expected an RFC 3339 time");
      return "";
    }
    (std::string_view(f) == "startsAt" ? s.starts_at_ms : s.ends_at_ms) = ms;
  }
  if (s.ends_at_ms <= s.starts_at_ms) {
    *error = "end time must not be before start time";
    return "";
  }
  if (s.ends_at_ms <= now) {
    *error = "end time can't be in the past";
    return "";
  }
  s.created_by = j.value("createdBy", std::string());
  s.comment = j.value("comment", std::string());
  if (s.created_by.empty()) {
    *error = "missing createdBy";
    return "";
  }
  if (j.contains("id") && j["id"].is_string()) s.id = j["id"];
  return dispatcher_->AddSilence(std::move(s), now);
}

bool Observer::ExpireSilence(const std::string& id) {
  return dispatcher_ && dispatcher_->ExpireSilence(id, WallMs());
}

std::string Observer::StatusJson() const {
  tsdb::Store::Stats st = store_ ? store_->stats() : tsdb::Store::Stats{};
  size_t firing = 0, pending = 0;
  for (const GroupRun& g : groups_) {
    for (const rules::RuleState& rs : g.eval->states()) {
      for (const auto& [h, a] : rs.active) {
        firing += a.state == rules::AlertState::kFiring;
        pending += a.state == rules::AlertState::kPending;
      }
    }
  }
  return json{{"series", st.series},
              {"samples", st.samples},
              {"bytes", st.bytes},
              {"evaluationInterval",
               config_ ? static_cast<double>(config_->evaluation_interval_ms) / 1000 : 0},
              {"groups", groups_.size()},
              {"alertsFiring", firing},
              {"alertsPending", pending},
              {"silences", dispatcher_ ? dispatcher_->silences().size() : 0}}
      .dump();
}

void Observer::RegisterAdminRoutes(admin::AdminServer& admin) {
  using admin::AdminRequest;
  // Prometheus's and Alertmanager's own API paths, so their tools and dashboards work here.
  admin.Route("GET", "/api/v1/rules",
              [this](const AdminRequest&) { return admin::Json(200, RulesJson()); });
  // Queries run on query threads (observe/query_service.h): this thread, which also runs health
  // checks and the rest of the admin API, only hands them over and writes the answer.
  auto submit = [this](bool range) {
    return [this, range](const AdminRequest& r, admin::Responder respond) {
      QueryRequest q;
      q.range = range;
      q.query = admin::QueryParam(r.query, "query").value_or("");
      q.time = admin::QueryParam(r.query, "time").value_or("");
      q.start = admin::QueryParam(r.query, "start").value_or("");
      q.end = admin::QueryParam(r.query, "end").value_or("");
      q.step = admin::QueryParam(r.query, "step").value_or("");
      SubmitQuery(std::move(q),
                  [respond](QueryAnswer a) { respond(admin::Json(a.status, a.body)); });
    };
  };
  auto query_wait = [this] { return query_timeout_ms() + 5000; };
  admin.RouteAsync("GET", "/api/v1/query", submit(false), query_wait);
  admin.RouteAsync("GET", "/api/v1/query_range", submit(true), query_wait);
  admin.Route("GET", "/api/v1/observe/status",
              [this](const AdminRequest&) { return admin::Json(200, StatusJson()); });
  admin.Route("GET", "/api/v2/alerts",
              [this](const AdminRequest&) { return admin::Json(200, AlertsV2Json()); });
  admin.Route("POST", "/api/v2/alerts", [this](const AdminRequest& r) {
    std::string error = PostAlerts(r.body);
    if (!error.empty()) return admin::Json(400, nlohmann::json(error).dump());
    return admin::Json(200, "");
  });
  admin.Route("GET", "/api/v2/silences",
              [this](const AdminRequest&) { return admin::Json(200, SilencesJson()); });
  admin.Route("POST", "/api/v2/silences", [this](const AdminRequest& r) {
    std::string error;
    std::string id = PostSilence(r.body, &error);
    if (!error.empty()) return admin::Json(400, nlohmann::json(error).dump());
    return admin::Json(200, nlohmann::json{{"silenceID", id}}.dump());
  });
  admin.Route("DELETE", "/api/v2/silence/{id}", [this](const AdminRequest& r) {
    if (!ExpireSilence(r.params[0])) {
      return admin::Json(
          404,
          nlohmann::json(StrCat("silence ", r.params[0], " not found or already expired")).dump());
    }
    return admin::Json(200, "");
  });
}

}  // namespace bulwark::observe
