// The query API's engine room: /api/v1/query and /api/v1/query_range run here, on threads of
// their own, never on the control thread that also runs health checks, the admin API and rule
// evaluation.
//
// Limits are Prometheus's: samples held by one query across all its steps, its result included
// (--query.max-samples), a timeout from arrival (--query.timeout) and a number of queries
// running at once (--query.max-concurrency; the others wait, their wait counting against the
// timeout).
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/mutex.h"
#include "observe/config.h"
#include "observe/tsdb/store.h"

namespace bulwark::observe {

// Keeps query threads and the series store's one writer (the control thread) apart, without
// ever making the control thread wait: queries read one step at a time; the writer only tries,
// and when a step is running it asks new steps to hold off and tries again a moment later.
// Thread-safe.
class StoreGate {
 public:
  void ReadLock();  // waits while the writer is inside or has asked for its turn
  void ReadUnlock();
  bool TryWriteLock();  // never waits; on false, new readers hold off until the next try
  void WriteUnlock();
  void CancelWriteRequest();  // the writer stopped trying (shutdown)

 private:
  Mutex mu_;
  CondVar cv_;
  int readers_ ABSL_GUARDED_BY(mu_) = 0;
  bool writer_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_waiting_ ABSL_GUARDED_BY(mu_) = false;
};

struct QueryRequest {
  bool range = false;
  std::string query;
  // As the client sent them (seconds, RFC 3339, or for step a Prometheus duration).
  std::string time, start, end, step;
  QueryLimitsConfig limits;
  int64_t default_subquery_step_ms = 60000;
  int64_t now_ms = 0;  // "time" when the client gave none
};

struct QueryAnswer {
  int status = 200;  // Prometheus's: 400 bad_data, 422 execution, 503 timeout
  std::string body;  // the whole JSON document
};

// Evaluates one query against `store` under `gate` (thread-safe as the gate makes it).
// `cancel` (may be null) stops it early.
QueryAnswer RunQuery(const QueryRequest& q, int64_t deadline_ns, const tsdb::Store& store,
                     StoreGate* gate, const std::atomic<bool>* cancel = nullptr);

// Threads for queries, made as needed up to the concurrency limit in force, and a queue for the
// rest. Submit is thread-safe; `done` runs on the query thread (the caller posts it on).
class QueryService {
 public:
  QueryService(const tsdb::Store* store, StoreGate* gate) : store_(store), gate_(gate) {}
  ~QueryService();  // stops taking work, lets running queries finish their step, joins

  void Submit(QueryRequest q, std::function<void(QueryAnswer)> done);
  int running() const;
  int waiting() const;

 private:
  struct Job {
    QueryRequest q;
    int64_t deadline_ns;
    std::function<void(QueryAnswer)> done;
  };
  void Work();

  const tsdb::Store* store_;
  StoreGate* gate_;
  mutable Mutex mu_;
  CondVar cv_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> stopping_{false};
};

}  // namespace bulwark::observe
