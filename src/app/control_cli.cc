#include "app/control_cli.h"

#include <curl/curl.h>

#include <cstdio>
#include <memory>

#include "app/config.h"
#include "app/state.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace bulwark {
namespace {

constexpr int kNotRunning = 3;

size_t Collect(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() + size * n > (16u << 20)) return 0;
  s->append(data, size * n);
  return size * n;
}

struct Answer {
  int status = 0;
  std::string body;
};

// Where the admin API answers this host: an any-address listener through loopback.
std::string AdminBase(const Config& cfg) {
  const SocketAddress& a = cfg.admin.address;
  std::string ip = a.IpString();
  if (ip == "0.0.0.0") ip = "127.0.0.1";
  if (ip == "::") ip = "::1";
  if (a.family() == AF_INET6) ip = StrCat("[", ip, "]");
  return StrCat("http://", ip, ":", a.port());
}

absl::StatusOr<Answer> Call(const std::string& method, const std::string& url,
                            const std::string& token) {
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return absl::InternalError("curl_easy_init failed");
  CURL* c = curl.get();
  Answer a;
  curl_slist* headers = nullptr;
  if (!token.empty())
    headers = curl_slist_append(headers, StrCat("Authorization: Bearer ", token).c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
  }
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);  // a reload that resolves names may take a while
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &a.body);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) return absl::UnavailableError(curl_easy_strerror(rc));
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  a.status = static_cast<int>(code);
  return a;
}

// The configuration, with its admin API enabled and a token to call it with.
struct Target {
  std::unique_ptr<Config> cfg;
  std::string base, token;
};

absl::StatusOr<Target> Load(const std::string& path, std::vector<std::string>* errors) {
  ConfigLoad load = LoadConfigFile(path, ProcessEnv());
  if (!load.errors.empty()) {
    *errors = load.errors;
    return absl::InvalidArgumentError("invalid configuration");
  }
  Target t;
  t.cfg = std::move(load.config);
  if (!t.cfg->admin.enabled) {
    return absl::FailedPreconditionError(StrCat(
        path, ": admin is disabled, so there is no admin API to talk to (send SIGHUP instead)"));
  }
  t.base = AdminBase(*t.cfg);
  if (absl::StatusOr<AdminToken> token = FindAdminToken(*t.cfg); token.ok()) t.token = token->token;
  return t;
}

}  // namespace

int RunReloadCommand(const std::string& config_path) {
  std::vector<std::string> errors;
  absl::StatusOr<Target> t = Load(config_path, &errors);
  if (!t.ok()) {
    for (const std::string& e : errors) fprintf(stderr, "%s\n", e.c_str());
    if (errors.empty())
      fprintf(stderr, "bulwark: %s\n", std::string(t.status().message()).c_str());
    else
      fprintf(stderr, "%zu error%s; nothing was reloaded\n", errors.size(),
              errors.size() == 1 ? "" : "s");
    return 1;
  }
  absl::StatusOr<Answer> a = Call("POST", t->base + "/api/v1/reload", t->token);
  if (!a.ok()) {
    fprintf(stderr, "bulwark: no bulwark answers on %s (%s)\n", t->base.c_str(),
            std::string(a.status().message()).c_str());
    return kNotRunning;
  }
  nlohmann::json j = nlohmann::json::parse(a->body, nullptr, false);
  if (a->status == 200 && j.is_object() && j.value("reloaded", false)) {
    printf("reloaded %s (configuration generation %lld)\n", config_path.c_str(),
           static_cast<long long>(j.value("generation", int64_t{0})));
    return 0;
  }
  if (j.is_object() && j.contains("errors")) {
    for (const auto& e : j["errors"]) fprintf(stderr, "%s\n", e.get<std::string>().c_str());
  } else {
    fprintf(stderr, "bulwark: reload: HTTP %d: %s\n", a->status, a->body.c_str());
  }
  fprintf(stderr, "reload refused; the running configuration stays\n");
  return 1;
}

int RunStatusCommand(const std::string& config_path, bool json) {
  std::vector<std::string> errors;
  absl::StatusOr<Target> t = Load(config_path, &errors);
  if (!t.ok()) {
    for (const std::string& e : errors) fprintf(stderr, "%s\n", e.c_str());
    if (errors.empty()) fprintf(stderr, "bulwark: %s\n", std::string(t.status().message()).c_str());
    return kNotRunning;
  }
  absl::StatusOr<Answer> ready = Call("GET", t->base + "/ready", "");
  if (!ready.ok()) {
    if (json) {
      printf("%s\n", nlohmann::json{{"running", false}, {"admin", t->base}}.dump().c_str());
    } else {
      printf("bulwark on %s: not running (%s)\n", t->base.c_str(),
             std::string(ready.status().message()).c_str());
    }
    return kNotRunning;
  }
  bool is_ready = ready->status == 200;
  std::string why(Trim(ready->body));
  absl::StatusOr<Answer> ups = Call("GET", t->base + "/api/v1/upstreams", t->token);
  nlohmann::json upstreams = nlohmann::json::array();
  if (ups.ok() && ups->status == 200) {
    nlohmann::json j = nlohmann::json::parse(ups->body, nullptr, false);
    if (j.is_object() && j.contains("upstreams")) upstreams = j["upstreams"];
  }
  if (json) {
    printf("%s\n", nlohmann::json{{"running", true},
                                  {"admin", t->base},
                                  {"ready", is_ready},
                                  {"readiness", why},
                                  {"upstreams", upstreams}}
                       .dump()
                       .c_str());
    return is_ready ? 0 : 1;
  }
  printf("bulwark on %s: running, %s\n", t->base.c_str(), why.c_str());
  for (const auto& u : upstreams) {
    int up = 0, all = 0;
    for (const auto& s : u.value("servers", nlohmann::json::array())) {
      ++all;
      if (s.value("state", "") == "up") ++up;
    }
    printf("  upstream %s: %d of %d servers up\n", u.value("name", "?").c_str(), up, all);
  }
  return is_ready ? 0 : 1;
}

}  // namespace bulwark
