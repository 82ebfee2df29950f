#include "vault/recovery.h"

#include <curl/curl.h>

#include <chrono>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "core/event_loop.h"
#include "core/strings.h"
#include "vault/database.h"
#include "core/process.h"

namespace bulwark::vault {
namespace {

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

std::string Tail(std::string s) {
  s = std::string(Trim(s));
  if (s.size() > 2000) s = "…" + s.substr(s.size() - 2000);
  return s;
}

}  // namespace

absl::StatusOr<int> HttpCall(const std::string& method, const std::string& url,
                             const std::string& body, int64_t timeout_ms,
                             const std::string& bearer) {
  CURL* c = curl_easy_init();
  if (c == nullptr) return absl::InternalError("curl_easy_init failed");
  curl_slist* headers = nullptr;
  if (!bearer.empty()) {
    headers = curl_slist_append(headers, StrCat("Authorization: Bearer ", bearer).c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  }
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(StrCat(method, " ", url, ": ", curl_easy_strerror(rc)));
  }
  return static_cast<int>(code);
}

absl::Status RecoveryRunner::Attempt(const StepConfig& s, std::string* output) {
  output->clear();
  if (s.action == "command") return RunCapture(s.command, {}, s.timeout_ms, output);
  if (s.action == "http" || s.action == "drain-upstream" || s.action == "undrain-upstream") {
    std::string method = s.method, url = s.url;
    if (s.action != "http") {
      // bulwark's own admin API (docs/operations.md): drain takes the server out of rotation.
      method = "POST";
      while (!url.empty() && url.back() == '/') url.pop_back();
      url += StrCat("/api/v1/upstreams/", s.upstream, "/servers/", s.server,
                    s.action == "drain-upstream" ? "/drain" : "/enable");
    }
    bool send_token = s.action != "http" || s.admin_token;
    auto code = HttpCall(method, url, s.body, s.timeout_ms, send_token ? admin_token_ : "");
    if (!code.ok()) return code.status();
    *output = StrCat("HTTP ", *code);
    bool good = s.expect_status > 0 ? *code == s.expect_status : *code >= 200 && *code < 300;
    if (!good) {
      return absl::FailedPreconditionError(
          StrCat(method, " ", url, " answered ", *code,
                 s.expect_status > 0 ? StrCat(", expected ", s.expect_status) : ""));
    }
    return absl::OkStatus();
  }
  if (s.action == "promote") {
    SourceConfig src;
    src.type = "pg_dump";
    src.host = s.host;
    src.port = s.port;
    src.user = s.user;
    src.password = s.password;
    DatabaseClient db(src);
    // pg_promote waits (up to 60 s) until the server accepts writes.
    auto r = db.Query("postgres", "SELECT pg_promote(true, 60)", s.timeout_ms);
    if (!r.ok()) return r.status();
    *output = "pg_promote: " + *r;
    if (*r != "t") return absl::AbortedError(StrCat(s.host, ":", s.port, " did not promote"));
    return absl::OkStatus();
  }
  if (s.action == "backup") {
    auto b = vault_->Backup(s.plan, "recovery");
    if (!b.ok()) return b.status();
    *output = StrCat("backup ", b->id);
    return b->status == "ok" ? absl::OkStatus() : absl::AbortedError(b->error);
  }
  if (s.action == "drill") {
    auto d = vault_->Drill(s.plan);
    if (!d.ok()) return d.status();
    *output = StrCat("drill report ", (*d)["id"].get<int64_t>());
    if ((*d)["status"] != "passed") {
      return absl::AbortedError(StrCat(
          "drill ", s.plan, " failed: ", d->contains("problems") ? (*d)["problems"].dump() : ""));
    }
    return absl::OkStatus();
  }
  if (s.action == "restore") {
    int64_t id = 0;
    if (s.backup == "latest") {
      auto all = vault_->catalog()->List(s.plan);
      if (!all.ok()) return all.status();
      for (const BackupRecord& b : *all) {
        if (b.status == "ok" && b.trigger != "safety" && b.trigger != "drill" &&
            b.verified != "failed") {
          id = b.id;
          break;
        }
      }
      if (id == 0) return absl::NotFoundError(StrCat("plan ", s.plan, " has no complete backup"));
    } else if (!absl::SimpleAtoi(s.backup, &id)) {
      return absl::InvalidArgumentError(
          StrCat("backup: \"", s.backup, "\" is not an id or latest"));
    }
    RestoreOptions o;
    o.backup_id = id;
    o.target = s.target;
    auto r = vault_->Restore(o);
    if (!r.ok()) return r.status();
    *output = r->ToJson().dump();
    if (r->status != "ok") return absl::AbortedError(StrCat("restore ", r->status, ": ", r->error));
    return absl::OkStatus();
  }
  return absl::UnimplementedError("unknown action " + s.action);
}

absl::Status RecoveryRunner::RunStep(const StepConfig& s, const std::string& phase) {
  absl::Status st;
  for (int attempt = 1; attempt <= s.retries + 1; ++attempt) {
    if (attempt > 1) std::this_thread::sleep_for(std::chrono::milliseconds(s.retry_delay_ms));
    int64_t start = vault_->now_ms();
    int64_t t0 = MonotonicMs();
    std::string output;
    st = Attempt(s, &output);
    nlohmann::json e = {{"phase", phase},           {"id", s.id},         {"name", s.name},
                        {"action", s.action},       {"attempt", attempt}, {"started_ms", start},
                        {"ms", MonotonicMs() - t0}, {"ok", st.ok()}};
    if (!output.empty()) e["output"] = Tail(output);
    if (!st.ok()) e["error"] = std::string(st.message());
    journal_.push_back(e);
    report_.detail = nlohmann::json{{"plan", report_.name}, {"journal", journal_}}.dump();
    (void)vault_->catalog()->UpdateReport(report_);
    if (on_step_) on_step_(e);
    if (st.ok()) return st;
  }
  return st;
}

absl::StatusOr<nlohmann::json> RecoveryRunner::Run(const std::string& name) {
  auto it = vault_->config().recovery.find(name);
  if (it == vault_->config().recovery.end()) {
    return absl::NotFoundError(StrCat("no recovery plan named \"", name, "\""));
  }
  const RecoveryPlanConfig& plan = it->second;
  report_ = Report();
  report_.kind = "plan";
  report_.name = name;
  report_.status = "running";
  report_.started_ms = vault_->now_ms();
  journal_ = nlohmann::json::array();
  auto id = vault_->catalog()->AddReport(report_);
  if (!id.ok()) return id.status();
  report_.id = *id;

  std::vector<const StepConfig*> done;
  std::string failed_step, error;
  for (const StepConfig& s : plan.steps) {
    absl::Status st = RunStep(s, "run");
    if (!st.ok()) {
      failed_step = s.id;
      error = StrCat("step ", s.id, " failed after ", s.retries + 1, " attempt",
                     s.retries == 0 ? "" : "s", ": ", st.message());
      break;
    }
    done.push_back(&s);
  }
  bool rollback_ok = true;
  if (!failed_step.empty()) {
    // Undo what was done, newest first, then the plan's own rollback list. A failing rollback
    // step is journaled and the others still run (the IAM design's executeRollbackPlan).
    for (auto d = done.rbegin(); d != done.rend(); ++d) {
      for (const StepConfig& u : (*d)->undo) {
        StepConfig named = u;
        named.id = (*d)->id;
        if (named.name == u.action) named.name = "undo " + (*d)->name;
        rollback_ok = RunStep(named, "undo").ok() && rollback_ok;
      }
    }
    for (const StepConfig& r : plan.rollback)
      rollback_ok = RunStep(r, "rollback").ok() && rollback_ok;
  }
  report_.status = failed_step.empty() ? "ok" : rollback_ok ? "rolled_back" : "failed";
  report_.finished_ms = vault_->now_ms();
  nlohmann::json j = {{"id", report_.id},
                      {"plan", name},
                      {"status", report_.status},
                      {"started_ms", report_.started_ms},
                      {"finished_ms", report_.finished_ms},
                      {"journal", journal_}};
  if (!error.empty()) {
    j["failed_step"] = failed_step;
    j["error"] = error;
  }
  report_.detail = j.dump();
  if (auto st = vault_->catalog()->UpdateReport(report_); !st.ok()) return st;
  return j;
}

}  // namespace bulwark::vault
