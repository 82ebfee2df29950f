// One fetch per key at a time; the others wait for it and get its result (Go's singleflight,
// nginx's proxy_cache_lock). Used by the cache library's loads and the gateway's HTTP cache.
// Thread-safe; the waiter type is the caller's (how to answer it on its own loop).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/mutex.h"

namespace bulwark::cache {

template <typename Waiter>
class SingleFlight {
 public:
  // Queues `w` on the flight for `key`, starting the flight when none runs: true then (the
  // caller leads it, and `w` is answered with the others at Finish).
  bool Join(std::string_view key, Waiter w) {
    MutexLock lock(&mu_);
    auto it = flights_.find(key);
    bool lead = it == flights_.end();
    if (lead) it = flights_.emplace(std::string(key), std::vector<Waiter>{}).first;
    it->second.push_back(std::move(w));
    return lead;
  }
  // Starts the flight for `key` when none runs: true then (the caller leads it and answers
  // itself); otherwise queues `*w` (when given) behind the running one.
  bool LeadOrWait(std::string_view key, const Waiter* w) {
    MutexLock lock(&mu_);
    auto it = flights_.find(key);
    if (it == flights_.end()) {
      flights_.emplace(std::string(key), std::vector<Waiter>{});
      return true;
    }
    if (w != nullptr) it->second.push_back(*w);
    return false;
  }
  // Starts a flight with nobody waiting when none runs (a background refresh must not make
  // callers wait): false when one already runs.
  bool StartIfIdle(std::string_view key) { return LeadOrWait(key, nullptr); }
  bool InFlight(std::string_view key) const {
    MutexLock lock(&mu_);
    return flights_.find(key) != flights_.end();
  }
  // Ends the flight for `key` and returns who waited for it.
  std::vector<Waiter> Finish(std::string_view key) {
    MutexLock lock(&mu_);
    auto it = flights_.find(key);
    if (it == flights_.end()) return {};
    std::vector<Waiter> w = std::move(it->second);
    flights_.erase(it);
    return w;
  }
  size_t size() const {
    MutexLock lock(&mu_);
    return flights_.size();
  }

 private:
  mutable Mutex mu_;
  std::map<std::string, std::vector<Waiter>, std::less<>> flights_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bulwark::cache
