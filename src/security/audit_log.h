// The audit log: one JSON line per admin mutation — who (peer address and token id, never the
// token), what (action and arguments), when, and how it ended — in a 0600 file, as Kubernetes
// audit logs record API requests. Thread-safe (LogFile appends each line with one write).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/log_file.h"

namespace bulwark::security {

struct AuditEvent {
  std::string_view peer;      // "ip:port"
  std::string_view token_id;  // "" when no valid token was presented
  std::string_view action;    // "POST /api/v1/reload"
  std::string_view arguments; // the request body (JSON or text), cut at 4 KiB
  int status = 0;             // the HTTP status answered
};

class AuditLog {
 public:
  enum Result { kOk = 0, kError, kDenied };
  static constexpr int kResults = 3;
  static const char* ResultName(int r);  // ok, error, denied

  // Opens (creates) the file with mode 0600 whatever it was before.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(LogFileConfig cfg);

  void Record(const AuditEvent& e);
  uint64_t count(int result) const { return counts_[result].load(std::memory_order_relaxed); }
  LogFile* file() { return file_.get(); }

 private:
  explicit AuditLog(std::unique_ptr<LogFile> f) : file_(std::move(f)) {}
  std::unique_ptr<LogFile> file_;
  std::array<std::atomic<uint64_t>, kResults> counts_{};
};

}  // namespace bulwark::security
