// Leader election through an etcd lease (etcd v3's JSON gateway, over libcurl, on a thread of
// its own): the work that must happen once across bulwark instances — PostgreSQL failover,
// backup schedules — runs only where leader() is true.
//
// Campaign: grant a lease of `ttl`, then one transaction "if `key` was never created, put our
// name under it with the lease". The winner keeps the lease alive every ttl/3; the others watch
// the key and try again when it is gone (its holder stopped, crashed or lost etcd for a ttl).
// A leader that cannot reach etcd steps down by itself after 2/3 of the ttl, before its lease
// can expire and another instance take over: there is never a moment with two leaders.
#pragma once

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/host_pins.h"
#include "core/mutex.h"

namespace bulwark {

struct EtcdLeaseOptions {
  std::vector<std::string> endpoints;  // "http://127.0.0.1:2379"
  std::string key = "/bulwark/leader";
  std::string name;  // this instance, stored as the key's value
  int64_t ttl_ms = 10000;
  int64_t request_timeout_ms = 2000;
  HostPins* pins = nullptr;  // endpoints written with host names resolve through it
  // etcd's authentication: a token from /v3/auth/authenticate, sent with every request and asked
  // for again when etcd no longer takes it (its --auth-token-ttl, a restart).
  std::string username, password;
  // TLS for https:// endpoints: the CA that signed etcd's certificate (default: the system's)
  // and a client certificate for etcd's --client-cert-auth. The name is always verified.
  std::string ca_file, cert_file, key_file;
};

class EtcdLease {
 public:
  explicit EtcdLease(EtcdLeaseOptions o);
  ~EtcdLease();
  EtcdLease(const EtcdLease&) = delete;
  EtcdLease& operator=(const EtcdLease&) = delete;

  void Start();
  // Stops campaigning and gives the lease back (revoke), so another instance takes over now.
  void Stop();
  bool leader() const { return leader_.load(std::memory_order_acquire); }
  // Who holds the key, as last seen ("" when no one or unknown).
  std::string holder() const;
  const EtcdLeaseOptions& options() const { return o_; }

 private:
  void Run();
  // POSTs `body` to `path` on the first endpoint that answers; false when none does.
  bool Post(const std::string& path, const std::string& body, std::string* answer);
  // One request to `url`; the HTTP status (0: no answer).
  long PostOnce(const std::string& url, const std::string& body, const std::string& token,
                std::string* answer);
  // A token for the user, from the first endpoint that gives one.
  bool Authenticate();
  void SetLeader(bool v);

  EtcdLeaseOptions o_;
  std::atomic<bool> leader_{false};
  mutable Mutex mu_;
  CondVar cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::string holder_ ABSL_GUARDED_BY(mu_);
  int64_t lease_ = 0;  // the thread's own
  size_t endpoint_ = 0;
  std::string token_;  // the thread's own
  bool auth_warned_ = false;
  std::thread thread_;
};

}  // namespace bulwark
