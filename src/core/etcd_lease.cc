#include "core/etcd_lease.h"

#include <curl/curl.h>

#include <chrono>

#include "core/base64.h"
#include "core/event_loop.h"
#include "core/log.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace bulwark {
namespace {

size_t Collect(char* p, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() + size * n > 1 << 20) return 0;  // etcd's answers here are tiny
  s->append(p, size * n);
  return size * n;
}

int64_t ToInt(const nlohmann::json& v) {
  // The gateway prints int64 fields as strings.
  if (v.is_string()) return std::strtoll(v.get<std::string>().c_str(), nullptr, 10);
  if (v.is_number_integer()) return v.get<int64_t>();
  return 0;
}

}  // namespace

EtcdLease::EtcdLease(EtcdLeaseOptions o) : o_(std::move(o)) {}

EtcdLease::~EtcdLease() { Stop(); }

void EtcdLease::Start() {
  thread_ = std::thread([this] { Run(); });
}

std::string EtcdLease::holder() const {
  MutexLock l(&mu_);
  return holder_;
}

void EtcdLease::SetLeader(bool v) {
  if (leader_.exchange(v, std::memory_order_acq_rel) != v) {
    if (v) {
      LogInfo("cluster: ", o_.name, " holds the etcd lease ", o_.key, ": this instance leads");
    } else {
      LogWarn("cluster: ", o_.name, " no longer holds the etcd lease ", o_.key);
    }
  }
}

long EtcdLease::PostOnce(const std::string& url, const std::string& body, const std::string& token,
                         std::string* answer) {
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return 0;
  CURL* c = curl.get();
  answer->clear();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  CurlPin pin;
  if (absl::Status s = pin.Apply(o_.pins, c, url); !s.ok()) {
    LogDebug("cluster: etcd ", url, ": ", s.message());
    return 0;
  }
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(o_.request_timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o_.request_timeout_ms));
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!o_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, o_.ca_file.c_str());
  if (!o_.cert_file.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, o_.cert_file.c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEY, o_.key_file.c_str());
  }
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_slist* h = curl_slist_append(nullptr, "Content-Type: application/json");
  // etcd's gateway takes the token as the header's whole value (no scheme).
  if (!token.empty()) h = curl_slist_append(h, ("Authorization: " + token).c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, answer);
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(h);
  if (rc != CURLE_OK) {
    LogDebug("cluster: etcd ", url, ": ", curl_easy_strerror(rc));
    return 0;
  }
  if (status != 200) LogDebug("cluster: etcd ", url, ": HTTP ", status, " ", *answer);
  return status;
}

bool EtcdLease::Authenticate() {
  std::string body = nlohmann::json{{"name", o_.username}, {"password", o_.password}}.dump();
  for (size_t tries = 0; tries < o_.endpoints.size(); ++tries) {
    const std::string& base = o_.endpoints[(endpoint_ + tries) % o_.endpoints.size()];
    std::string answer;
    long status = PostOnce(base + "/v3/auth/authenticate", body, "", &answer);
    if (status == 200) {
      auto j = nlohmann::json::parse(answer, nullptr, false);
      if (j.is_object() && j.contains("token") && j["token"].is_string()) {
        token_ = j["token"].get<std::string>();
        auth_warned_ = false;
        return true;
      }
    } else if (status != 0) {
      // Wrong credentials do not get better by retrying: said once, until a token is given.
      if (!auth_warned_)
        LogWarn("cluster: etcd refused user \"", o_.username, "\": HTTP ", status, " ",
                answer.substr(0, 200));
      auth_warned_ = true;
      return false;
    }
  }
  return false;
}

bool EtcdLease::Post(const std::string& path, const std::string& body, std::string* answer) {
  if (!o_.username.empty() && token_.empty() && !Authenticate()) return false;
  for (size_t tries = 0; tries < o_.endpoints.size(); ++tries) {
    const std::string& base = o_.endpoints[(endpoint_ + tries) % o_.endpoints.size()];
    long status = PostOnce(base + path, body, token_, answer);
    // An expired or unknown token (etcd's --auth-token-ttl, a restart): a new one, once.
    if (!o_.username.empty() && status != 200 && status != 0 &&
        answer->find("token") != std::string::npos) {
      token_.clear();
      if (!Authenticate()) return false;
      status = PostOnce(base + path, body, token_, answer);
    }
    if (status == 200) {
      endpoint_ = (endpoint_ + tries) % o_.endpoints.size();
      return true;
    }
  }
  return false;
}

void EtcdLease::Run() {
  using nlohmann::json;
  const std::string key64 = Base64Encode(o_.key);
  int64_t last_ok = MonotonicMs();
  for (;;) {
    int64_t wait = std::max<int64_t>(100, o_.ttl_ms / 3);
    {
      MutexLock l(&mu_);
      if (stop_) break;
    }
    std::string answer;
    if (lease_ == 0) {
      if (Post("/v3/lease/grant", json{{"TTL", std::max<int64_t>(1, o_.ttl_ms / 1000)}}.dump(),
               &answer)) {
        json j = json::parse(answer, nullptr, false);
        if (j.is_object()) lease_ = ToInt(j.value("ID", json()));
        if (lease_ != 0) last_ok = MonotonicMs();
      }
    } else if (Post("/v3/lease/keepalive", json{{"ID", std::to_string(lease_)}}.dump(), &answer)) {
      json j = json::parse(answer, nullptr, false);
      if (j.is_object() && j.contains("result") && ToInt(j["result"].value("TTL", json())) > 0) {
        last_ok = MonotonicMs();
      } else {
        lease_ = 0;  // expired: the key went with it; campaign again with a new lease
        SetLeader(false);
      }
    }
    if (leader() && MonotonicMs() - last_ok > o_.ttl_ms * 2 / 3) {
      SetLeader(false);  // etcd out of reach: step down before the lease can expire under us
      lease_ = 0;
    }
    if (lease_ != 0 && !leader()) {
      json txn = {
          {"compare",
           {{{"key", key64}, {"result", "EQUAL"}, {"target", "CREATE"}, {"create_revision", "0"}}}},
          {"success",
           {{{"request_put",
              {{"key", key64},
               {"value", Base64Encode(o_.name)},
               {"lease", std::to_string(lease_)}}}}}},
          {"failure", {{{"request_range", {{"key", key64}}}}}}};
      if (Post("/v3/kv/txn", txn.dump(), &answer)) {
        json j = json::parse(answer, nullptr, false);
        bool won = j.is_object() && j.value("succeeded", false);
        std::string who;
        if (won) {
          who = o_.name;
        } else if (j.is_object() && j.contains("responses")) {
          for (const json& r : j["responses"]) {
            const json& kvs = r.value("response_range", json::object()).value("kvs", json::array());
            if (!kvs.empty()) {
              auto v = Base64Decode(kvs[0].value("value", ""));
              if (v.ok()) who = *v;
            }
          }
        }
        {
          MutexLock l(&mu_);
          holder_ = who;
        }
        SetLeader(won);
      }
    }
    MutexLock l(&mu_);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait);
    while (!stop_ && cv_.WaitUntil(&mu_, deadline)) {
    }
  }
  if (lease_ != 0) {
    std::string answer;
    Post("/v3/lease/revoke", json{{"ID", std::to_string(lease_)}}.dump(), &answer);
    lease_ = 0;
  }
  SetLeader(false);
}

void EtcdLease::Stop() {
  {
    MutexLock l(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

}  // namespace bulwark
