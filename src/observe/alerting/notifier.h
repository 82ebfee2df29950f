// Deliveries: a thread that sends notifications (HTTP POST with libcurl, or SMTP), retrying
// with exponential backoff until each job's deadline, so a slow or failing receiver never
// holds up rule evaluation. As Alertmanager: 5xx answers, 429 and network errors are retried,
// other 4xx are not. Each attempt has its own timeout.
//
// Submit() is thread-safe; a job's `done` runs on the notifier thread (the caller posts it
// back to its own loop). The queue is bounded: over it, a job fails at once and is counted.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/host_pins.h"
#include "core/mutex.h"

namespace bulwark::observe::alerting {

class Notifier {
 public:
  struct Options {
    int64_t attempt_timeout_ms = 10000;
    int64_t initial_backoff_ms = 500;
    int64_t max_backoff_ms = 30000;
    size_t max_queue = 10000;
    HostPins* pins = nullptr;  // URLs written with host names resolve through it
  };

  struct Job {
    std::string integration;  // "webhook", "slack", "email", "dingtalk", "alertmanager"
    std::string url;          // http(s)://... or smtp(s)://host:port
    std::string body;
    std::string content_type = "application/json";
    bool get = false;        // a GET (scrapes) instead of a POST
    int64_t timeout_ms = 0;  // per attempt; 0: the notifier's default
    size_t max_answer = 64 * 1024;
    // Receives the answer's body after a successful attempt, before `done`.
    std::function<void(std::string body)> on_body;
    // SMTP
    std::string mail_from;
    std::vector<std::string> rcpt;
    std::string user, password;
    bool require_tls = false;
    // An extra check of a 2xx answer's body (DingTalk answers 200 with an error code).
    std::function<bool(const std::string& body, std::string* error)> check;
    int64_t deadline_ms = 0;  // steady-clock ms; 0 = one attempt
    std::function<void(bool ok, const std::string& error, int attempts)> done;
  };

  struct Counters {
    std::atomic<uint64_t> jobs{0}, failed{0}, requests{0}, requests_failed{0};
  };

  Notifier();
  explicit Notifier(Options options);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  void Submit(Job job);
  // Per integration (stable addresses; created on first use).
  std::map<std::string, const Counters*> counters() const;
  size_t queued() const;

 private:
  struct Pending {
    int64_t due_ms;
    uint64_t seq;
    int attempts;
    int64_t backoff_ms;
    std::shared_ptr<Job> job;
    bool operator>(const Pending& o) const {
      return due_ms != o.due_ms ? due_ms > o.due_ms : seq > o.seq;
    }
  };
  void Run();
  // One attempt: true on success; *retry says whether a failure may be retried.
  bool Attempt(const Job& job, bool* retry, std::string* error, std::string* answer);
  Counters& CountersFor(const std::string& integration) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Options options_;
  mutable Mutex mu_;
  CondVar cv_;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<Pending>> queue_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<Counters>> counters_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace bulwark::observe::alerting
