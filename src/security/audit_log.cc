#include "security/audit_log.h"

#include <sys/time.h>

#include <cstdio>

#include "core/clock.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace bulwark::security {

const char* AuditLog::ResultName(int r) {
  switch (r) {
    case kOk:
      return "ok";
    case kError:
      return "error";
    default:
      return "denied";
  }
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(LogFileConfig cfg) {
  cfg.mode = 0600;
  auto f = LogFile::Open(cfg);
  if (!f.ok()) return f.status();
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(*f)));
}

void AuditLog::Record(const AuditEvent& e) {
  int result = e.status == 401 || e.status == 403 ? kDenied : e.status >= 400 ? kError : kOk;
  counts_[result].fetch_add(1, std::memory_order_relaxed);
  int64_t ms = WallMs();
  char millis[8];
  snprintf(millis, sizeof(millis), ".%03dZ", static_cast<int>(ms % 1000));
  nlohmann::json line = {
      {"time", FormatUtc(ms, "%Y-%m-%dT%H:%M:%S") + millis},
      {"peer", e.peer},
      {"token_id", e.token_id},
      {"action", e.action},
      {"status", e.status},
      {"result", ResultName(result)},
  };
  std::string_view args = e.arguments.substr(0, 4096);
  nlohmann::json parsed = nlohmann::json::parse(args, nullptr, false);
  if (!parsed.is_discarded() && args.size() == e.arguments.size()) {
    line["arguments"] = std::move(parsed);
  } else {
    // Kept as text (cut, or not JSON); invalid UTF-8 is replaced, never written raw.
    line["arguments"] = std::string(args);
  }
  file_->Write(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace bulwark::security
