// Server-side TLS with OpenSSL: certificates picked by SNI, protocol and cipher settings, and
// counters for handshakes. Built once per configuration; new connections use the newest.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace bulwark {

struct TlsCertificate {
  std::string cert_file;  // PEM chain: the certificate first, then intermediates
  std::string key_file;
};

struct TlsSettings {
  std::vector<TlsCertificate> certificates;  // the first is the default (no or unknown SNI)
  int min_version = 0x0303;                  // TLS 1.2 (TLS1_2_VERSION)
  int max_version = 0x0304;                  // TLS 1.3
  std::string ciphers = "HIGH:!aNULL:!MD5";  // TLS 1.2 ciphers: nginx's default
  int64_t session_timeout_s = 300;           // nginx ssl_session_timeout default 5m
  bool session_cache = true;
};

// A TlsServer owns one SSL_CTX per certificate. Thread-safe once built (OpenSSL contexts are).
class TlsServer {
 public:
  static absl::StatusOr<std::shared_ptr<TlsServer>> Build(const TlsSettings& s);
  ~TlsServer();

  // A server-side SSL for an accepted socket, or null on allocation failure.
  SSL* NewSsl(int fd) const;
  // The names the certificates answer for (for logs and the admin API).
  const std::vector<std::vector<std::string>>& names() const { return names_; }

  // Counters: handshakes by protocol (TLSv1.2, TLSv1.3) and failures.
  void CountHandshake(SSL* ssl);
  void CountFailure() { failures_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t handshakes_tls12() const { return tls12_.load(std::memory_order_relaxed); }
  uint64_t handshakes_tls13() const { return tls13_.load(std::memory_order_relaxed); }
  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
  uint64_t resumed() const { return resumed_.load(std::memory_order_relaxed); }

 private:
  static int OnServerName(SSL* ssl, int* alert, void* arg);
  SSL_CTX* Pick(std::string_view host) const;

  std::vector<SSL_CTX*> ctxs_;
  std::vector<std::vector<std::string>> names_;  // per context: DNS names (lower case)
  std::atomic<uint64_t> tls12_{0}, tls13_{0}, failures_{0}, resumed_{0};
};

// "TLSv1.2" -> 0x0303, "TLSv1.3" -> 0x0304; 0 for anything else.
int TlsVersionFromName(std::string_view name);

}  // namespace bulwark
