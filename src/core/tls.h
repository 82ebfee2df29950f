// TLS with OpenSSL. Server side: certificates picked by SNI, protocol and cipher settings, and
// counters for handshakes. Client side (to upstream servers): verification, SNI, client
// certificates and session resumption. Built once per configuration; new connections use the
// newest.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "core/mutex.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

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
  // ALPN: offer "h2" before "http/1.1" (nginx `http2 on`, HAProxy `alpn h2,http/1.1`).
  bool http2 = false;
};

// What a TlsStream counts its handshake in: a TlsServer (client connections) or a TlsClient
// (connections to servers).
class TlsEndpoint {
 public:
  virtual ~TlsEndpoint() = default;
  virtual void CountHandshake(SSL* ssl) = 0;
  virtual void CountFailure(SSL* ssl) = 0;
};

// A TlsServer owns one SSL_CTX per certificate. Thread-safe once built (OpenSSL contexts are).
class TlsServer : public TlsEndpoint {
 public:
  static absl::StatusOr<std::shared_ptr<TlsServer>> Build(const TlsSettings& s);
  ~TlsServer();

  // A server-side SSL for an accepted socket, or null on allocation failure.
  SSL* NewSsl(int fd) const;
  // The names the certificates answer for (for logs and the admin API).
  const std::vector<std::vector<std::string>>& names() const { return names_; }

  // Counters: handshakes by protocol (the names in kProtocols) and failures.
  static constexpr std::array<const char*, 2> kProtocols = {"TLSv1.2", "TLSv1.3"};
  void CountHandshake(SSL* ssl) override;
  void CountFailure(SSL*) override { failures_.fetch_add(1, std::memory_order_relaxed); }
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

// TLS to servers (nginx's proxy_ssl_*, HAProxy's `server ... ssl`): certificates verified
// against the system's store or `ca_file` by default, the name checked, SNI sent, a client
// certificate when the server asks (mTLS), sessions kept per server and resumed on the next
// connection (proxy_ssl_session_reuse).
struct TlsClientSettings {
  bool verify = true;     // off: any certificate is accepted (nginx's default; not bulwark's)
  std::string ca_file;    // PEM bundle; "" = the system's store
  std::string cert_file;  // client certificate chain (mTLS), with key_file
  std::string key_file;
  int min_version = 0x0303;  // TLS 1.2
  int max_version = 0x0304;  // TLS 1.3
  std::string ciphers = "HIGH:!aNULL:!MD5";
  bool session_reuse = true;
  bool operator==(const TlsClientSettings&) const = default;
};

class TlsClient : public TlsEndpoint {
 public:
  static absl::StatusOr<std::shared_ptr<TlsClient>> Build(const TlsClientSettings& s);
  ~TlsClient() override;

  // A client-side SSL on a connected socket: `sni` sent when it is a host name (not for an IP),
  // the certificate checked against `verify_name` (a host name or an IP address), a session
  // saved under `session_key` resumed. Null on allocation failure.
  SSL* NewSsl(int fd, const std::string& sni, const std::string& verify_name,
              const std::string* session_key);

  void CountHandshake(SSL* ssl) override;
  void CountFailure(SSL* ssl) override;
  uint64_t handshakes() const { return handshakes_.load(std::memory_order_relaxed); }
  uint64_t resumed() const { return resumed_.load(std::memory_order_relaxed); }
  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
  uint64_t verify_failures() const { return verify_failures_.load(std::memory_order_relaxed); }

 private:
  explicit TlsClient(TlsClientSettings s) : settings_(std::move(s)) {}
  static int OnNewSession(SSL* ssl, SSL_SESSION* session);

  TlsClientSettings settings_;
  SSL_CTX* ctx_ = nullptr;
  // Sessions by key (the server): handed to the next connection there. A connection's
  // establishment takes the lock, never a request.
  mutable Mutex mu_;
  std::map<std::string, SSL_SESSION*> sessions_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> handshakes_{0}, resumed_{0}, failures_{0}, verify_failures_{0};
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
  // Starts the client side on a connected `fd` (see TlsClient::NewSsl); the handshake goes on
  // in Handshake(), or in the first Recv/Send.
  bool StartClient(std::shared_ptr<TlsClient> client, int fd, const std::string& sni,
                   const std::string& verify_name, std::string session_key);
  // Drives the handshake: 1 done, 0 not yet (errno EAGAIN: the socket's next event, readable
  // or writable, goes on with it), -1 failed (failure_reason() says why: a certificate that did
  // not verify names the reason).
  int Handshake();
  bool active() const { return ssl_ != nullptr; }
  bool handshake_done() const { return done_; }
  // Whether ALPN chose "h2" (known once the handshake is done).
  bool alpn_h2() const;
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

  void Failed();

  SSL* ssl_ = nullptr;
  std::shared_ptr<TlsEndpoint> server_;  // the TlsServer or TlsClient it counts in
  std::string session_key_;              // client side: where its session is kept
  std::string verify_error_;
  bool done_ = false;
  bool read_wants_write_ = false;
  bool write_wants_read_ = false;
  const char* failure_reason_ = "";
};

// send(2) / recv(2) on `fd`, through `tls` when it is active: what a connection that may or may
// not speak TLS reads and writes with.
ssize_t SendOn(TlsStream& tls, int fd, const char* data, size_t n);
ssize_t RecvOn(TlsStream& tls, int fd, char* data, size_t n);

// "TLSv1.2" -> 0x0303, "TLSv1.3" -> 0x0304; 0 for anything else.
int TlsVersionFromName(std::string_view name);

}  // namespace bulwark
