#include "observe/query_service.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>

#include "absl/time/time.h"
#include "core/clock.h"
#include "core/strings.h"
#include "core/units.h"
#include "nlohmann/json.hpp"
#include "observe/promql/engine.h"
#include "observe/promql/parser.h"

namespace bulwark::observe {
namespace {

using json = nlohmann::json;

// Times the API accepts: within ±10^12 s (tens of thousands of years), so milliseconds, steps
// and their sums never come near int64's range.
constexpr double kMaxAbsSeconds = 1e12;

QueryAnswer Error(int status, std::string_view type, std::string_view message) {
  return {status, json{{"status", "error"}, {"errorType", type}, {"error", message}}.dump()};
}

// Float seconds, strictly (the whole string, finite, within kMaxAbsSeconds): 1 when `s` is
// one (and *ms set), 0 when it is something else, -1 when it is a number out of range.
int ParseFloatSeconds(const std::string& s, int64_t* ms) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) return 0;
  if (!std::isfinite(v) || std::fabs(v) > kMaxAbsSeconds) return -1;
  *ms = static_cast<int64_t>(std::llround(v * 1000));
  return 1;
}

// Prometheus's parseTime: float seconds, or RFC 3339.
bool ParseApiTime(const std::string& s, int64_t* ms) {
  if (int f = ParseFloatSeconds(s, ms); f != 0) return f > 0;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err)) return false;
  double secs = absl::ToDoubleSeconds(t - absl::UnixEpoch());
  if (!std::isfinite(secs) || std::fabs(secs) > kMaxAbsSeconds) return false;
  *ms = absl::ToUnixMillis(t);
  return true;
}

// Prometheus's parseDuration: float seconds, or a duration such as "15s" or "1m30s".
bool ParseApiDuration(const std::string& s, int64_t* ms) {
  if (int f = ParseFloatSeconds(s, ms); f != 0) return f > 0;
  auto d = ParseDurationMs(s);
  if (!d.ok() || *d > static_cast<int64_t>(kMaxAbsSeconds) * 1000) return false;
  *ms = *d;
  return true;
}

// Seconds as Prometheus writes a timestamp: whole seconds, then up to three decimals.
void AppendTimestamp(std::string* out, int64_t ms) {
  int64_t sec = ms / 1000, frac = ms % 1000;
  if (frac < 0) {
    frac += 1000;
    sec -= 1;
  }
  StrAppend(out, sec);
  if (frac == 0) return;
  char buf[8];
  snprintf(buf, sizeof(buf), ".%03d", static_cast<int>(frac));
  std::string_view f(buf);
  while (f.back() == '0') f.remove_suffix(1);
  out->append(f);
}

void AppendLabels(std::string* out, const observe::Labels& l) {
  json j = json::object();
  for (const auto& [k, v] : l) j[k] = v;
  out->append(j.dump(-1, ' ', false, json::error_handler_t::replace));
}

void AppendPoint(std::string* out, int64_t t_ms, double v) {
  out->push_back('[');
  AppendTimestamp(out, t_ms);
  out->append(",\"");
  out->append(promql::FormatGoFloat(v));
  out->append("\"]");
}

// Prometheus's API: a timeout and a cancellation are 503, everything else the engine refuses
// (too many samples included) is an execution error, 422.
QueryAnswer EvalFailed(const absl::Status& st) {
  std::string_view m = ToStd(st.message());
  if (st.code() == absl::StatusCode::kDeadlineExceeded) return Error(503, "timeout", m);
  if (st.code() == absl::StatusCode::kCancelled) return Error(503, "canceled", m);
  return Error(422, "execution", m);
}

QueryAnswer Instant(const QueryRequest& q, const promql::Expr& e, int64_t deadline_ns,
                    const tsdb::Store& store, StoreGate* gate, const std::atomic<bool>* cancel) {
  int64_t t = q.now_ms;
  if (!q.time.empty() && !ParseApiTime(q.time, &t)) {
    return Error(
        400, "bad_data",
        StrCat("invalid parameter \"time\": cannot parse \"", q.time, "\" to a valid timestamp"));
  }
  promql::EvalOptions opts;
  opts.default_subquery_step_ms = q.default_subquery_step_ms;
  opts.max_samples = q.limits.max_samples;
  opts.deadline_ns = deadline_ns;
  opts.cancel = cancel;
  promql::QueryResult r;
  std::string out = "{\"status\":\"success\",\"data\":{\"resultType\":\"";
  gate->ReadLock();  // the result points into the store until it is written out
  absl::Status st = promql::Evaluate(e, t, store, opts, &r);
  if (!st.ok()) {
    gate->ReadUnlock();
    return EvalFailed(st);
  }
  switch (r.type) {
    case promql::ValueType::kScalar:
      out.append("scalar\",\"result\":");
      AppendPoint(&out, t, r.scalar);
      break;
    case promql::ValueType::kString:
      out.append("string\",\"result\":[");
      AppendTimestamp(&out, t);
      out.append(",");
      out.append(json(r.str).dump(-1, ' ', false, json::error_handler_t::replace));
      out.append("]");
      break;
    case promql::ValueType::kVector:
      out.append("vector\",\"result\":[");
      for (size_t i = 0; i < r.vector.size(); ++i) {
        if (i > 0) out.push_back(',');
        out.append("{\"metric\":");
        AppendLabels(&out, *r.vector[i].labels);
        out.append(",\"value\":");
        AppendPoint(&out, t, r.vector[i].v);
        out.push_back('}');
      }
      out.push_back(']');
      break;
    default:
      out.append("matrix\",\"result\":[");
      for (size_t i = 0; i < r.matrix.size(); ++i) {
        if (i > 0) out.push_back(',');
        out.append("{\"metric\":");
        AppendLabels(&out, *r.matrix[i].labels);
        out.append(",\"values\":[");
        for (size_t j = 0; j < r.matrix[i].points.size(); ++j) {
          if (j > 0) out.push_back(',');
          AppendPoint(&out, r.matrix[i].points[j].t, r.matrix[i].points[j].v);
        }
        out.append("]}");
      }
      out.push_back(']');
  }
  gate->ReadUnlock();
  out.append("}}");
  return {200, std::move(out)};
}

QueryAnswer Range(const QueryRequest& q, const promql::Expr& e, int64_t deadline_ns,
                  const tsdb::Store& store, StoreGate* gate, const std::atomic<bool>* cancel) {
  int64_t start = 0, end = 0, step = 0;
  if (!ParseApiTime(q.start, &start)) {
    return Error(
        400, "bad_data",
        StrCat("invalid parameter \"start\": cannot parse \"", q.start, "\" to a valid timestamp"));
  }
  if (!ParseApiTime(q.end, &end)) {
    return Error(
        400, "bad_data",
        StrCat("invalid parameter \"end\": cannot parse \"", q.end, "\" to a valid timestamp"));
  }
  if (end < start) {
    return Error(400, "bad_data",
                 "invalid parameter \"end\": end timestamp must not be before start time");
  }
  if (!ParseApiDuration(q.step, &step)) {
    return Error(
        400, "bad_data",
        StrCat("invalid parameter \"step\": cannot parse \"", q.step, "\" to a valid duration"));
  }
  if (step <= 0) {
    return Error(400, "bad_data",
                 "invalid parameter \"step\": zero or negative query resolution step widths are "
                 "not accepted. Try a positive integer");
  }
  // Prometheus: at most 11,000 points per series.
  if ((end - start) / step > 11000) {
    return Error(400, "bad_data",
                 "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the "
                 "query resolution (?step=XX)");
  }
  if (e.type() != promql::ValueType::kVector && e.type() != promql::ValueType::kScalar) {
    return Error(400, "bad_data",
                 StrCat("invalid expression type \"",
                        e.type() == promql::ValueType::kMatrix ? "range vector" : "string",
                        "\" for range query, must be Scalar or instant Vector"));
  }
  int64_t steps = (end - start) / step + 1;
  // Samples across the whole query: the result kept so far plus what each step loads (every
  // step gets only the budget left). The result is kept compactly (16 bytes a point) and the
  // query stops as soon as its result would pass the limit at the rate it is growing, rather
  // than first holding tens of millions of points.
  size_t held = 0;
  std::map<observe::Labels, std::vector<tsdb::Point>> series;
  promql::EvalOptions opts;
  opts.default_subquery_step_ms = q.default_subquery_step_ms;
  opts.deadline_ns = deadline_ns;
  opts.cancel = cancel;
  promql::QueryResult r;
  int64_t done = 0;
  for (int64_t t = start; t <= end; t += step, ++done) {
    if (MonotonicNs() > deadline_ns) return Error(503, "timeout", promql::kQueryTimeout);
    if (cancel != nullptr && cancel->load()) return Error(503, "canceled", "query was canceled");
    opts.max_samples = q.limits.max_samples - held;
    gate->ReadLock();
    absl::Status st = promql::Evaluate(e, t, store, opts, &r);
    size_t n = 0;
    if (st.ok()) {
      if (r.type == promql::ValueType::kScalar) {
        series[{}].push_back({t, r.scalar});
        n = 1;
      } else {
        for (const promql::Sample& s : r.vector) series[*s.labels].push_back({t, s.v});
        n = r.vector.size();
      }
    }
    gate->ReadUnlock();
    if (!st.ok()) return EvalFailed(st);
    held += n;
    uint64_t projected = held + static_cast<uint64_t>(n) * static_cast<uint64_t>(steps - done - 1);
    if (held > q.limits.max_samples || projected > q.limits.max_samples) {
      return Error(422, "execution", promql::kTooManySamples);
    }
  }
  std::string out = "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[";
  bool first = true;
  for (const auto& [labels, points] : series) {
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"metric\":");
    AppendLabels(&out, labels);
    out.append(",\"values\":[");
    for (size_t j = 0; j < points.size(); ++j) {
      if (j > 0) out.push_back(',');
      AppendPoint(&out, points[j].t, points[j].v);
    }
    out.append("]}");
  }
  out.append("]}}");
  return {200, std::move(out)};
}

}  // namespace

void StoreGate::ReadLock() {
  MutexLock l(&mu_);
  while (writer_ || writer_waiting_) cv_.Wait(&mu_);
  ++readers_;
}

void StoreGate::ReadUnlock() {
  MutexLock l(&mu_);
  --readers_;
}

bool StoreGate::TryWriteLock() {
  MutexLock l(&mu_);
  if (readers_ > 0) {
    writer_waiting_ = true;
    return false;
  }
  writer_ = true;
  writer_waiting_ = false;
  return true;
}

void StoreGate::WriteUnlock() {
  {
    MutexLock l(&mu_);
    writer_ = false;
  }
  cv_.SignalAll();
}

void StoreGate::CancelWriteRequest() {
  {
    MutexLock l(&mu_);
    writer_waiting_ = false;
  }
  cv_.SignalAll();
}

QueryAnswer RunQuery(const QueryRequest& q, int64_t deadline_ns, const tsdb::Store& store,
                     StoreGate* gate, const std::atomic<bool>* cancel) {
  if (q.query.empty()) return Error(400, "bad_data", "invalid parameter \"query\": missing");
  auto e = promql::Parse(q.query);
  if (!e.ok()) {
    return Error(400, "bad_data",
                 StrCat("invalid parameter \"query\": ", ToStd(e.status().message())));
  }
  return q.range ? Range(q, **e, deadline_ns, store, gate, cancel)
                 : Instant(q, **e, deadline_ns, store, gate, cancel);
}

QueryService::~QueryService() {
  std::vector<std::thread> threads;
  {
    MutexLock l(&mu_);
    stopping_ = true;
    for (Job& j : queue_) j.done(Error(503, "unavailable", "bulwark is shutting down"));
    queue_.clear();
    threads.swap(threads_);  // no more are made once stopping_ is set
  }
  cv_.SignalAll();
  for (std::thread& t : threads) t.join();
}

void QueryService::Submit(QueryRequest q, std::function<void(QueryAnswer)> done) {
  int64_t deadline = MonotonicNs() + q.limits.timeout_ms * 1000000;
  MutexLock l(&mu_);
  if (stopping_) {
    done(Error(503, "unavailable", "bulwark is shutting down"));
    return;
  }
  queue_.push_back(Job{std::move(q), deadline, std::move(done)});
  int limit = queue_.back().q.limits.max_concurrency;
  if (idle_ > 0) {
    cv_.SignalAll();
  } else if (static_cast<int>(threads_.size()) < limit + 1) {
    // One thread beyond the limit stays free to answer queries whose timeout passes while they
    // wait for a place: they get their 503 at their deadline, not when a place frees.
    threads_.emplace_back([this] { Work(); });
  }
}

void QueryService::Work() {
  mu_.Lock();
  for (;;) {
    ++idle_;
    // Run the first waiting query when there is a place (the limit in force is the query's
    // own: a reload may have lowered it); answer it when its deadline has passed.
    for (;;) {
      if (stopping_) {
        mu_.Unlock();
        return;
      }
      if (queue_.empty()) {
        cv_.Wait(&mu_);
        continue;
      }
      const Job& front = queue_.front();
      if (running_ < front.q.limits.max_concurrency || MonotonicNs() > front.deadline_ns) break;
      cv_.WaitUntil(&mu_, std::chrono::steady_clock::time_point(
                              std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::nanoseconds(front.deadline_ns + 1000000))));
    }
    --idle_;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    if (MonotonicNs() > job.deadline_ns) {
      mu_.Unlock();
      job.done(Error(503, "timeout", promql::kQueryTimeout));
      mu_.Lock();
      continue;
    }
    ++running_;
    mu_.Unlock();
    QueryAnswer a = RunQuery(job.q, job.deadline_ns, *store_, gate_, &stopping_);
    job.done(std::move(a));
    mu_.Lock();
    --running_;
    cv_.SignalAll();  // a place is free for a query that waited for one
  }
}

int QueryService::running() const {
  MutexLock l(&mu_);
  return running_;
}

int QueryService::waiting() const {
  MutexLock l(&mu_);
  return static_cast<int>(queue_.size());
}

}  // namespace bulwark::observe
