// The vault's admin API: the catalog, manual runs, drills and recovery reports.
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "vault/scheduler.h"

namespace bulwark::vault {

void Scheduler::RegisterAdminRoutes(admin::AdminServer& admin) {
  using admin::AdminRequest;
  admin.Route("GET", "/api/v1/backups", [this](const AdminRequest& r) {
    return admin::Json(200, ListJson(admin::QueryParam(r.query, "plan").value_or("")));
  });
  admin.Route("POST", "/api/v1/backups/run", [this](const AdminRequest& r) {
    auto plan = admin::QueryParam(r.query, "plan");
    if (!plan || !RunNow(*plan)) {
      return admin::Json(400, R"({"error":"?plan= names no plan under vault.plans"})");
    }
    return admin::Json(202, nlohmann::json{{"queued", *plan}}.dump());
  });
  admin.Route("GET", "/api/v1/backups/{id}", [this](const AdminRequest& r) {
    int64_t id = 0;
    std::string j = absl::SimpleAtoi(r.params[0], &id) ? GetJson(id) : "";
    if (j.empty()) return admin::Json(404, R"({"error":"no such backup in the catalog"})");
    return admin::Json(200, j);
  });
  admin.Route("GET", "/api/v1/drills", [this](const AdminRequest& r) {
    return admin::Json(200, ReportsJson("drill", admin::QueryParam(r.query, "drill").value_or("")));
  });
  admin.Route("POST", "/api/v1/drills/run", [this](const AdminRequest& r) {
    auto drill = admin::QueryParam(r.query, "drill");
    if (!drill || !RunDrill(*drill)) {
      return admin::Json(400, R"({"error":"?drill= names no drill under vault.drills"})");
    }
    return admin::Json(202, nlohmann::json{{"queued", *drill}}.dump());
  });
  admin.Route("GET", "/api/v1/restores",
              [this](const AdminRequest&) { return admin::Json(200, ReportsJson("restore", "")); });
  admin.Route("GET", "/api/v1/recovery", [this](const AdminRequest& r) {
    return admin::Json(200, ReportsJson("plan", admin::QueryParam(r.query, "plan").value_or("")));
  });
}

}  // namespace bulwark::vault
