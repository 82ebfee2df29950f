// The pg proxy's admin API and the settings only a restart applies.
#include "core/log.h"
#include "pg/proxy.h"

namespace bulwark::pg {

void Proxy::RegisterAdminRoutes(admin::AdminServer& admin) {
  admin.Route("GET", "/api/v1/pg",
              [this](const admin::AdminRequest&) { return admin::Json(200, StatusJson()); });
  admin.Route("POST", "/api/v1/pg/readd", [this](const admin::AdminRequest& r) {
    auto server = admin::QueryParam(r.query, "server");
    if (!server || !Readd(*server)) {
      return admin::Json(404, R"({"error":"no such server; use ?server=<address as configured>"})");
    }
    return admin::Json(200, R"({"readded":true})");
  });
}

std::vector<std::string> Proxy::KeepRestartSettings(const PgConfig& running, PgConfig* next) {
  if (next->enabled == running.enabled &&
      (!next->enabled || next->listen_text == running.listen_text) &&
      next->client_tls_sslmode == running.client_tls_sslmode) {
    return {};
  }
  next->enabled = running.enabled;
  next->listen_text = running.listen_text;
  next->listen = running.listen;
  next->client_tls_sslmode = running.client_tls_sslmode;
  next->client_tls = running.client_tls;
  return {"pg.enabled/listen/client_tls: take effect after a restart"};
}

}  // namespace bulwark::pg
