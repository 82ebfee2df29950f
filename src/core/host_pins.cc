#include "core/host_pins.h"

#include <curl/curl.h>

#include <chrono>
#include <memory>

#include "core/clock.h"
#include "core/strings.h"

namespace bulwark {

absl::StatusOr<HostPort> UrlHostPort(const std::string& url) {
  std::unique_ptr<CURLU, void (*)(CURLU*)> u(curl_url(), curl_url_cleanup);
  if (!u) return absl::InternalError("curl_url failed");
  if (curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK)
    return absl::InvalidArgumentError(StrCat("\"", url, "\" is not a URL"));
  char* host = nullptr;
  char* port = nullptr;
  if (curl_url_get(u.get(), CURLUPART_HOST, &host, 0) != CURLUE_OK)
    return absl::InvalidArgumentError(StrCat("\"", url, "\" has no host"));
  std::string h = host;
  curl_free(host);
  if (curl_url_get(u.get(), CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
    return absl::InvalidArgumentError(StrCat("\"", url, "\" has no port"));
  int p = atoi(port);
  curl_free(port);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  HostPort out;
  out.port = static_cast<uint16_t>(p);
  if (std::optional<IpAddress> ip = IpAddress::Parse(h)) {
    out.address = MakeSocketAddress(*ip, out.port);
  } else if (IsHostName(h)) {
    out.host = std::move(h);
  } else {
    return absl::InvalidArgumentError(StrCat("\"", url, "\": \"", h, "\" is not a host name"));
  }
  return out;
}

CurlPin::~CurlPin() { curl_slist_free_all(list_); }

absl::Status CurlPin::Apply(HostPins* pins, void* curl, const std::string& url) {
  if (pins == nullptr) return absl::OkStatus();
  absl::StatusOr<std::string> entry = pins->EntryFor(url);
  if (!entry.ok()) return entry.status();
  if (entry->empty()) return absl::OkStatus();
  list_ = curl_slist_append(list_, entry->c_str());
  curl_easy_setopt(static_cast<CURL*>(curl), CURLOPT_RESOLVE, list_);
  return absl::OkStatus();
}

HostPins::HostPins(Resolver* resolver) : resolver_(resolver) {}

HostPins::~HostPins() {
  std::vector<uint64_t> ids;
  {
    MutexLock l(&mu_);
    for (const auto& [name, n] : names_) ids.push_back(n.watch);
    names_.clear();
  }
  for (uint64_t id : ids) resolver_->Unwatch(id);
}

void HostPins::OnChange(const std::string& name, const std::vector<IpAddress>& addresses) {
  {
    MutexLock l(&mu_);
    auto it = names_.find(name);
    if (it == names_.end()) return;
    it->second.addresses = addresses;
  }
  cv_.SignalAll();
}

size_t HostPins::watched() const {
  MutexLock l(&mu_);
  return names_.size();
}

absl::StatusOr<std::string> HostPins::EntryFor(const std::string& url) {
  if (resolver_ == nullptr) return std::string();
  absl::StatusOr<HostPort> hp = UrlHostPort(url);
  if (!hp.ok()) return hp.status();
  if (hp->host.empty()) return std::string();
  absl::StatusOr<std::vector<IpAddress>> addresses = Addresses(hp->host, /*wait=*/true);
  if (!addresses.ok()) return addresses.status();
  std::string entry = StrCat(hp->host, ":", hp->port, ":");
  for (size_t i = 0; i < addresses->size(); ++i) {
    if (i > 0) entry += ",";
    const IpAddress& a = (*addresses)[i];
    entry += a.family == AF_INET6 ? StrCat("[", a.ToString(), "]") : a.ToString();
  }
  return entry;
}

absl::StatusOr<std::vector<IpAddress>> HostPins::Addresses(const std::string& name, bool wait) {
  if (resolver_ == nullptr) return absl::FailedPreconditionError("no resolver");
  int64_t now = MonotonicMs();
  std::vector<uint64_t> idle;
  bool is_new = false;
  {
    MutexLock l(&mu_);
    // Names nobody has asked for in a while (a target removed by a reload) stop being watched.
    for (auto it = names_.begin(); it != names_.end();) {
      if (it->first != name && now - it->second.used_ms > kIdleMs) {
        idle.push_back(it->second.watch);
        it = names_.erase(it);
      } else {
        ++it;
      }
    }
    auto [it, inserted] = names_.try_emplace(name);
    Name& n = it->second;
    n.used_ms = now;
    if (inserted) {
      is_new = true;
      n.first_wait_until_ms = now + resolver_->LookupBoundMs();
    }
  }
  if (is_new) {
    uint64_t id = resolver_->Watch(
        name, [this, name](const std::vector<IpAddress>& a) { OnChange(name, a); });
    MutexLock l(&mu_);
    names_[name].watch = id;
  }
  for (uint64_t id : idle) resolver_->Unwatch(id);
  MutexLock l(&mu_);
  for (;;) {
    auto it = names_.find(name);
    if (it == names_.end()) break;
    const Name& n = it->second;
    if (!n.addresses.empty()) return n.addresses;
    int64_t left = n.first_wait_until_ms - MonotonicMs();
    if (!wait || left <= 0) break;
    cv_.WaitFor(&mu_, std::chrono::milliseconds(left));
  }
  return absl::UnavailableError(StrCat("\"", name, "\" does not resolve (yet)"));
}

}  // namespace bulwark
