// Server-side TLS with OpenSSL: certificates picked by SNI, protocol and cipher settings, and
// counters for handshakes. Built once per configuration; new connections use the newest.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <string_view>
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

  // Counters: handshakes by protocol (the names in kProtocols) and failures.
  static constexpr std::array<const char*, 2> kProtocols = {"TLSv1.2", "TLSv1.3"};
  void CountHandshake(SSL* ssl);
  void CountFailure() { failures_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t handshakes(std::string_view protocol) const {
    return (protocol == "TLSv1.3" ? tls13_ : tls12_).load(std::memory_order_relaxed);
  }
  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
  uint64_t resumed() const { return resumed_.load(std::memory_order_relaxed); }

 private:
  static int OnServerName(SSL* ssl, int* alert, void* arg);
  SSL_CTX* Pick(std::string_view host) const;

  std::vector<SSL_CTX*> ctxs_;
  std::vector<std::vector<std::string>> names_;  // per context: DNS names (lower case)
  std::atomic<uint64_t> tls12_{0}, tls13_{0}, failures_{0}, resumed_{0};
};

// One server-side TLS session over a non-blocking socket, read and written the way the socket
// itself is: the gateway's and the pg proxy's client connections both use it. It counts the
// handshake, or its failure, once in its server's counters, and keeps that server alive (a
// reload may replace the listener's).
class TlsStream {
 public:
  TlsStream() = default;
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;
  ~TlsStream() { End(); }

  // Starts a session on `fd`; false when OpenSSL could not allocate one.
  bool Start(std::shared_ptr<TlsServer> server, int fd);
  bool active() const { return ssl_ != nullptr; }
  bool handshake_done() const { return done_; }
  // Like recv(2): > 0 bytes; 0 when the peer ended the session (close_notify, or a plain close
  // without a protocol error); -1 with errno EAGAIN when the socket must become readable, or
  // writable when read_wants_write() (a handshake or key update in progress), or EPROTO after
  // a protocol error (failure_reason() says which).
  ssize_t Recv(char* buf, size_t n);
  // Like send(2): > 0 bytes; -1 with errno EAGAIN (readable first when write_wants_read()) or
  // EPIPE.
  ssize_t Send(const char* buf, size_t n);
  bool read_wants_write() const { return read_wants_write_; }
  bool write_wants_read() const { return write_wants_read_; }
  // OpenSSL's reason for the last failed handshake or read, for a log line.
  const char* failure_reason() const { return failure_reason_; }
  // Sends close_notify when the handshake had finished (if the socket takes it; no waiting for
  // the peer's), frees the session and lets the server go. Idempotent.
  void End();

 private:
  void Handshaken();

  SSL* ssl_ = nullptr;
  std::shared_ptr<TlsServer> server_;
  bool done_ = false;
  bool read_wants_write_ = false;
  bool write_wants_read_ = false;
  const char* failure_reason_ = "";
};

// "TLSv1.2" -> 0x0303, "TLSv1.3" -> 0x0304; 0 for anything else.
int TlsVersionFromName(std::string_view name);

}  // namespace bulwark
