// Host names, resolved off every request path: looked up at load, then kept current in the
// background by one resolver thread, as HAProxy's `resolvers` section, nginx's
// `server ... resolve` and PgBouncer's dns_max_ttl do. c-ares (the resolver Envoy, curl and gRPC
// use) reads /etc/hosts and /etc/resolv.conf unless servers are given.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "core/mutex.h"
#include "core/net.h"

namespace bulwark {

struct ResolverOptions {
  // Name servers ("IP" or "IP:PORT", "[V6]:PORT"); empty: the system's (/etc/resolv.conf).
  std::vector<std::string> servers;
  // A record's TTL is honoured within these bounds (HAProxy `hold valid`, PgBouncer
  // dns_max_ttl): a TTL of 0 is not a reason to ask on every tick, a TTL of a day is not a reason
  // to miss a change for a day.
  int64_t min_ttl_ms = 1000;
  int64_t max_ttl_ms = 60000;
  // One query's timeout and tries per server (resolv.conf's `timeout` and `attempts`).
  int64_t timeout_ms = 2000;
  int attempts = 2;
  // After a failed lookup, the next try (HAProxy `timeout retry`); the last good answer stays.
  int64_t retry_ms = 1000;
  bool operator==(const ResolverOptions&) const = default;
};

// The addresses of a name: A records before AAAA, each family in byte order (a stable set,
// whatever order the server rotates them in), and how long they may be kept.
struct Resolved {
  std::vector<IpAddress> addresses;
  int64_t ttl_ms = 0;
};

// Counters for metrics (monotonic).
struct ResolverStats {
  uint64_t lookups = 0;   // answers asked for
  uint64_t failures = 0;  // lookups that failed (the last good answer was kept)
  uint64_t changes = 0;   // watched names whose set of addresses changed
};

// One watched name's counters (summed over the watches of the same name).
struct NameStats {
  std::string name;
  uint64_t lookups = 0;
  uint64_t failures = 0;
  uint64_t changes = 0;
  bool failing = false;  // the last lookup failed (the last good addresses are in use)
  size_t addresses = 0;  // in the last good answer
};

// Thread-safe. Owns one thread while started.
class Resolver {
 public:
  explicit Resolver(ResolverOptions options);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  absl::Status Start();
  void Stop();

  // One lookup, waiting for its answer (loading a config, check-config): a literal address
  // answers itself. Needs no Start: it runs on the caller's thread with a channel of its own.
  absl::StatusOr<Resolved> Lookup(const std::string& name);
  // Several lookups at once, waiting for all of them (at most one query's timeout x attempts,
  // however many names): answers in the order of `names`.
  std::vector<absl::StatusOr<Resolved>> LookupAll(const std::vector<std::string>& names);

  // Keeps `name` resolved: `on_change` runs on the resolver's thread with the new addresses
  // each time the set changes, the first answer included. A failed lookup keeps the last good
  // set and is retried after retry_ms; it is counted, and logged once per change of outcome.
  using OnChange = std::function<void(const std::vector<IpAddress>&)>;
  uint64_t Watch(const std::string& name, OnChange on_change);
  // After Unwatch returns, the watch's callback is not running and will not run again.
  void Unwatch(uint64_t id);

  ResolverStats stats() const;
  // The longest one lookup can take: timeout x attempts, for each server.
  int64_t LookupBoundMs() const;
  // The watched names, by name.
  std::vector<NameStats> name_stats() const;

  // The bound a TTL is held within (exposed for tests).
  int64_t ClampTtl(int64_t ttl_ms) const;

 private:
  struct WatchState {
    std::string name;
    OnChange on_change;
    std::vector<IpAddress> last;
    bool have_last = false;
    bool failing = false;
    bool in_flight = false;
    int64_t due_ms = 0;
    uint64_t lookups = 0, failures = 0, changes = 0;
  };

  void Run();
  void Wake();
  // Resolver thread: starts the queries of the watches that are due; returns the next due time.
  int64_t StartDue(int64_t now_ms);
  void OnWatchAnswer(uint64_t id, absl::StatusOr<Resolved> r);

  const ResolverOptions options_;
  void* channel_ = nullptr;  // ares_channel, resolver thread only once started
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  mutable Mutex mu_;
  CondVar cv_;
  std::map<uint64_t, WatchState> watches_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t running_callback_ ABSL_GUARDED_BY(mu_) = 0;  // the watch whose on_change runs
  ResolverStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bulwark
