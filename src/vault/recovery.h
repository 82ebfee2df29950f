// Recovery plans (the IAM design's RecoveryPlan): steps run in dependency order, each with a
// timeout and retries; when a step fails for good, the completed steps' `undo` actions run newest
// first, then the plan's `rollback` list. Every attempt is journaled in the catalog as it
// happens, so `bulwark plan status` shows a run in progress too.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "vault/vault.h"

namespace bulwark::vault {

class RecoveryRunner {
 public:
  explicit RecoveryRunner(Vault* vault) : vault_(vault) {}
  // Called with each journal entry as it is written (the CLI prints them).
  void set_on_step(std::function<void(const nlohmann::json&)> f) { on_step_ = std::move(f); }
  // bulwark's admin token, sent by drain-upstream, undrain-upstream and http steps that ask.
  void set_admin_token(std::string t) { admin_token_ = std::move(t); }
  // Runs plan `name`; the report's status is ok, rolled_back (a step failed, every undo and
  // rollback step succeeded) or failed. An error status: no such plan, or no catalog.
  absl::StatusOr<nlohmann::json> Run(const std::string& name);

 private:
  absl::Status Attempt(const StepConfig& step, std::string* output);
  // Runs `step` with its retries, journaled under `phase` (run, undo, rollback).
  absl::Status RunStep(const StepConfig& step, const std::string& phase);

  Vault* vault_;
  std::function<void(const nlohmann::json&)> on_step_;
  std::string admin_token_;
  Report report_;
  nlohmann::json journal_;
};

// One HTTP request with libcurl; returns the status code. A non-empty `bearer` is sent as
// "Authorization: Bearer ...".
absl::StatusOr<int> HttpCall(const std::string& method, const std::string& url,
                             const std::string& body, int64_t timeout_ms,
                             const std::string& bearer = "");

}  // namespace bulwark::vault
