// Host names for the clients that speak through libcurl (etcd, scrape targets, Alertmanager
// and the other alert receivers) and for the gateway's Redis links: looked up by the Resolver like
// every other name bulwark takes — resolver.servers, the TTL bounds, the last good answer kept
// while DNS fails (HAProxy `hold valid`), the bulwark_resolver_* metrics — and handed to curl as
// CURLOPT_RESOLVE pins, so curl never asks the system resolver on a thread of its own.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "core/mutex.h"
#include "core/net.h"
#include "core/resolver.h"

struct curl_slist;

namespace bulwark {

// Thread-safe.
class HostPins {
 public:
  // `resolver` may be null: then no name is pinned and curl resolves as it would alone.
  explicit HostPins(Resolver* resolver);
  ~HostPins();
  HostPins(const HostPins&) = delete;
  HostPins& operator=(const HostPins&) = delete;

  // The CURLOPT_RESOLVE entry for `url` ("HOST:PORT:ADDR[,ADDR...]"), or "" when its host is a
  // literal address (or there is no resolver). A name is watched from its first use on, which
  // waits for its first answer (at most the resolver's timeout x attempts); a name that has
  // never resolved is an error naming it. Names unused for `idle_ms` stop being watched.
  absl::StatusOr<std::string> EntryFor(const std::string& url);

  // The addresses of a host name now (for clients that connect by themselves, as the Redis
  // links do before each attempt): watched from its first use on, as EntryFor; with `wait`, the
  // first use waits for the first answer, without it the call never blocks and a name not yet
  // answered is an error.
  absl::StatusOr<std::vector<IpAddress>> Addresses(const std::string& name, bool wait);
  // Names currently watched (tests).
  size_t watched() const;

  static constexpr int64_t kIdleMs = 10 * 60 * 1000;

 private:
  struct Name {
    uint64_t watch = 0;
    std::vector<IpAddress> addresses;
    int64_t first_wait_until_ms = 0;  // callers wait this long for the first answer
    int64_t used_ms = 0;
  };
  void OnChange(const std::string& name, const std::vector<IpAddress>& addresses);

  Resolver* const resolver_;
  mutable Mutex mu_;
  CondVar cv_;
  std::map<std::string, Name> names_ ABSL_GUARDED_BY(mu_);
};

// Pins a URL's host on one curl handle (CURLOPT_RESOLVE) for as long as it lives.
class CurlPin {
 public:
  CurlPin() = default;
  ~CurlPin();
  CurlPin(const CurlPin&) = delete;
  CurlPin& operator=(const CurlPin&) = delete;
  // `curl` is a CURL*. `pins` may be null (nothing pinned). An error when the name has never
  // resolved: the transfer should not be tried.
  absl::Status Apply(HostPins* pins, void* curl, const std::string& url);

 private:
  curl_slist* list_ = nullptr;
};

// The host and port a URL connects to (the scheme's default port when it has none); the host
// as written, brackets removed from an IPv6 literal.
absl::StatusOr<HostPort> UrlHostPort(const std::string& url);

}  // namespace bulwark
