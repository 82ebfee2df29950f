// The observe plane's admin API, on Prometheus's and Alertmanager's own paths.
#include <nlohmann/json.hpp>

#include "core/strings.h"
#include "observe/observer.h"

namespace bulwark::observe {

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
