#include "observe/alerting/notifier.h"

#include <curl/curl.h>

#include <chrono>
#include <cstring>
#include <memory>

#include "core/clock.h"
#include "core/strings.h"

namespace bulwark::observe::alerting {
namespace {

struct Answer {
  std::string* body;
  size_t max;
};

size_t Collect(char* data, size_t size, size_t n, void* out) {
  auto* a = static_cast<Answer*>(out);
  if (a->body->size() + size * n > a->max) return 0;  // over the cap: the transfer fails
  a->body->append(data, size * n);
  return size * n;
}

struct Upload {
  const std::string* data;
  size_t pos = 0;
};

size_t Read(char* buf, size_t size, size_t n, void* in) {
  auto* u = static_cast<Upload*>(in);
  size_t len = std::min(size * n, u->data->size() - u->pos);
  std::memcpy(buf, u->data->data() + u->pos, len);
  u->pos += len;
  return len;
}

void GlobalInit() {
  static bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

}  // namespace

Notifier::Notifier() : Notifier(Options{}) {}

Notifier::Notifier(Options options) : options_(options) {
  GlobalInit();
  thread_ = std::thread([this] { Run(); });
}

Notifier::~Notifier() {
  {
    MutexLock l(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
  // Jobs still queued are reported failed, so nothing waits for them forever.
  std::vector<Pending> left;
  {
    MutexLock l(&mu_);
    for (; !queue_.empty(); queue_.pop()) left.push_back(queue_.top());
  }
  for (Pending& p : left) {
    if (p.job->done) p.job->done(false, "shutting down", p.attempts);
  }
}

Notifier::Counters& Notifier::CountersFor(const std::string& integration) {
  auto& c = counters_[integration];
  if (!c) c = std::make_unique<Counters>();
  return *c;
}

std::map<std::string, const Notifier::Counters*> Notifier::counters() const {
  MutexLock l(&mu_);
  std::map<std::string, const Counters*> out;
  for (const auto& [k, v] : counters_) out[k] = v.get();
  return out;
}

size_t Notifier::queued() const {
  MutexLock l(&mu_);
  return queue_.size();
}

void Notifier::Submit(Job job) {
  auto shared = std::make_shared<Job>(std::move(job));
  bool full;
  {
    MutexLock l(&mu_);
    Counters& c = CountersFor(shared->integration);
    c.jobs.fetch_add(1, std::memory_order_relaxed);
    full = queue_.size() >= options_.max_queue;
    if (full) {
      c.failed.fetch_add(1, std::memory_order_relaxed);
    } else {
      queue_.push({MonotonicMs(), seq_++, 0, options_.initial_backoff_ms, shared});
    }
  }
  if (full) {
    if (shared->done) shared->done(false, "notification queue full", 0);
    return;
  }
  cv_.Signal();
}

bool Notifier::Attempt(const Job& job, bool* retry, std::string* error, std::string* answer_out) {
  *retry = true;
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    *error = "curl_easy_init failed";
    return false;
  }
  CURL* c = curl.get();
  std::string& answer = *answer_out;
  Answer sink{&answer, job.max_answer};
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, job.url.c_str());
  CurlPin pin;
  if (absl::Status s = pin.Apply(options_.pins, c, job.url); !s.ok()) {
    *error = std::string(s.message());
    return false;  // retried: the name may resolve by the next attempt
  }
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  long timeout =
      static_cast<long>(job.timeout_ms > 0 ? job.timeout_ms : options_.attempt_timeout_ms);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_slist* list = nullptr;
  Upload upload{&job.body};
  bool smtp = StartsWith(job.url, "smtp://") || StartsWith(job.url, "smtps://");
  if (smtp) {
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, job.mail_from.c_str());
    for (const std::string& r : job.rcpt) list = curl_slist_append(list, r.c_str());
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, list);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, Read);
    curl_easy_setopt(c, CURLOPT_READDATA, &upload);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    // require_tls: STARTTLS or fail, as Alertmanager; otherwise plain SMTP.
    curl_easy_setopt(
        c, CURLOPT_USE_SSL,
        job.require_tls ? static_cast<long>(CURLUSESSL_ALL) : static_cast<long>(CURLUSESSL_NONE));
    if (!job.user.empty()) {
      curl_easy_setopt(c, CURLOPT_USERNAME, job.user.c_str());
      curl_easy_setopt(c, CURLOPT_PASSWORD, job.password.c_str());
    }
  } else {
    list = curl_slist_append(list, "User-Agent: bulwark");
    if (job.get) {
      list = curl_slist_append(list, "Accept: text/plain;version=0.0.4");
      curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // gzip if the target offers it
    } else {
      list = curl_slist_append(list, ("Content-Type: " + job.content_type).c_str());
      curl_easy_setopt(c, CURLOPT_POST, 1L);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, job.body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(job.body.size()));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  }
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    *error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    return false;
  }
  if (smtp) return true;
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status / 100 != 2) {
    *error = StrCat("unexpected status code ", status, ": ", answer.substr(0, 200));
    *retry = status >= 500 || status == 429;
    return false;
  }
  if (job.check && !job.check(answer, error)) {
    *retry = false;
    return false;
  }
  return true;
}

void Notifier::Run() {
  mu_.Lock();
  while (!stop_) {
    if (queue_.empty()) {
      cv_.Wait(&mu_);
      continue;
    }
    int64_t now = MonotonicMs();
    if (queue_.top().due_ms > now) {
      cv_.WaitFor(&mu_, std::chrono::milliseconds(queue_.top().due_ms - now));
      continue;
    }
    Pending p = queue_.top();
    queue_.pop();
    Counters& counters = CountersFor(p.job->integration);
    mu_.Unlock();
    bool retry = false;
    std::string error, answer;
    counters.requests.fetch_add(1, std::memory_order_relaxed);
    bool ok = Attempt(*p.job, &retry, &error, &answer);
    if (ok && p.job->on_body) p.job->on_body(std::move(answer));
    ++p.attempts;
    if (!ok) counters.requests_failed.fetch_add(1, std::memory_order_relaxed);
    int64_t next = MonotonicMs() + p.backoff_ms;
    if (!ok && retry && p.job->deadline_ms > 0 && next < p.job->deadline_ms) {
      mu_.Lock();
      if (!stop_) {
        p.due_ms = next;
        p.seq = seq_++;
        p.backoff_ms = std::min(options_.max_backoff_ms, p.backoff_ms * 2);
        queue_.push(p);
        continue;
      }
      mu_.Unlock();
    }
    if (!ok) counters.failed.fetch_add(1, std::memory_order_relaxed);
    if (p.job->done) p.job->done(ok, error, p.attempts);
    mu_.Lock();
  }
  mu_.Unlock();
}

}  // namespace bulwark::observe::alerting
