#include "core/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <mutex>

#include "core/net.h"
#include "core/strings.h"

namespace bulwark {
namespace {

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

std::vector<std::string> CertNames(SSL_CTX* ctx) {
  std::vector<std::string> out;
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (cert == nullptr) return out;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type != GEN_DNS) continue;
      const unsigned char* d = ASN1_STRING_get0_data(n->d.dNSName);
      out.push_back(AsciiLower(std::string(reinterpret_cast<const char*>(d),
                                           static_cast<size_t>(ASN1_STRING_length(n->d.dNSName)))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (out.empty()) {
    // No subjectAltName: fall back to the common name, as browsers once did.
    char cn[256] = {};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) > 0)
      out.push_back(AsciiLower(cn));
  }
  return out;
}

bool NameMatches(std::string_view pattern, std::string_view host) {
  if (pattern == host) return true;
  // "*.example.com" covers exactly one more label.
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    size_t dot = host.find('.');
    return dot != std::string_view::npos && dot > 0 && host.substr(dot) == pattern.substr(1);
  }
  return false;
}

int OnAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
           unsigned int inlen, void* arg) {
  // The server's preference decides (RFC 7301 3.2): h2 when the listener speaks it and the
  // client offers it, else http/1.1, else no ALPN at all (a client without ALPN gets HTTP/1.1).
  const bool http2 = arg != nullptr;
  const unsigned char* h1 = nullptr;
  for (unsigned int i = 0; i < inlen;) {
    unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    std::string_view proto(reinterpret_cast<const char*>(in + i + 1), len);
    if (http2 && proto == "h2") {
      *out = in + i + 1;
      *outlen = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    if (proto == "http/1.1") h1 = in + i + 1;
    i += 1 + len;
  }
  if (h1 == nullptr) return SSL_TLSEXT_ERR_NOACK;
  *out = h1;
  *outlen = 8;
  return SSL_TLSEXT_ERR_OK;
}

// OpenSSL fills a certificate's extension cache (key identifiers, flags) the first time a
// verification touches it, under the certificate's own lock, but later verifications read those
// fields without it. Certificates in a context are shared by every worker and the health
// checker, so the caches are filled here, once, before any thread can use the context.
void FillCertificateCaches(SSL_CTX* ctx) {
  if (X509_STORE* store = SSL_CTX_get_cert_store(ctx); store != nullptr) {
    STACK_OF(X509_OBJECT)* objects = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objects); ++i) {
      X509* x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objects, i));
      if (x != nullptr) X509_check_purpose(x, -1, 0);
    }
  }
  for (int r = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_FIRST); r == 1;
       r = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_NEXT)) {
    if (X509* x = SSL_CTX_get0_certificate(ctx); x != nullptr) X509_check_purpose(x, -1, 0);
    STACK_OF(X509)* chain = nullptr;
    SSL_CTX_get0_chain_certs(ctx, &chain);
    for (int i = 0; i < sk_X509_num(chain); ++i) X509_check_purpose(sk_X509_value(chain, i), -1, 0);
  }
}

}  // namespace

int TlsVersionFromName(std::string_view name) {
  if (name == "TLSv1.2") return TLS1_2_VERSION;
  if (name == "TLSv1.3") return TLS1_3_VERSION;
  return 0;
}

absl::StatusOr<std::shared_ptr<TlsServer>> TlsServer::Build(const TlsSettings& s) {
  if (s.certificates.empty()) return absl::InvalidArgumentError("no certificates");
  auto server = std::shared_ptr<TlsServer>(new TlsServer());
  static const unsigned char kSessionContext[] = "bulwark";
  for (const auto& c : s.certificates) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr) return absl::InternalError(OpenSslError());
    server->ctxs_.push_back(ctx);
    SSL_CTX_set_min_proto_version(ctx, s.min_version);
    SSL_CTX_set_max_proto_version(ctx, s.max_version);
    SSL_CTX_set_options(
        ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // (No SSL_MODE_RELEASE_BUFFERS: keep-alive connections would free and allocate their
    // buffers on every request. About 34 KiB per idle TLS connection is the price.)
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // Read whole socket buffers, not a record header and then its body: one read() per batch.
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set_cipher_list(ctx, s.ciphers.c_str()) != 1)
      return absl::InvalidArgumentError(StrCat("ciphers \"", s.ciphers, "\": ", OpenSslError()));
    if (SSL_CTX_use_certificate_chain_file(ctx, c.cert_file.c_str()) != 1)
      return absl::InvalidArgumentError(StrCat(c.cert_file, ": ", OpenSslError()));
    if (SSL_CTX_use_PrivateKey_file(ctx, c.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      std::string err = OpenSslError();
      if (err.find("key values mismatch") != std::string::npos)
        return absl::InvalidArgumentError(StrCat(c.key_file, " is not the key of ", c.cert_file));
      return absl::InvalidArgumentError(StrCat(c.key_file, ": ", err));
    }
    if (SSL_CTX_check_private_key(ctx) != 1)
      return absl::InvalidArgumentError(
          StrCat(c.key_file, " is not the key of ", c.cert_file, ": ", OpenSslError()));
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
    SSL_CTX_set_session_cache_mode(ctx,
                                   s.session_cache ? SSL_SESS_CACHE_SERVER : SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, static_cast<long>(s.session_timeout_s));
    if (!s.session_cache) SSL_CTX_set_num_tickets(ctx, 0);
    // The callback's argument only says whether h2 is offered (any non-null pointer).
    static char kHttp2;
    SSL_CTX_set_alpn_select_cb(ctx, OnAlpn, s.http2 ? &kHttp2 : nullptr);
    server->names_.push_back(CertNames(ctx));
  }
  for (SSL_CTX* ctx : server->ctxs_) FillCertificateCaches(ctx);
  SSL_CTX_set_tlsext_servername_callback(server->ctxs_[0], OnServerName);
  SSL_CTX_set_tlsext_servername_arg(server->ctxs_[0], server.get());
  return server;
}

TlsServer::~TlsServer() {
  for (SSL_CTX* c : ctxs_) SSL_CTX_free(c);
}

SSL_CTX* TlsServer::Pick(std::string_view host) const {
  std::string h = AsciiLower(std::string(host));
  for (size_t i = 0; i < ctxs_.size(); ++i) {
    for (const auto& n : names_[i]) {
      if (n == h) return ctxs_[i];
    }
  }
  for (size_t i = 0; i < ctxs_.size(); ++i) {
    for (const auto& n : names_[i]) {
      if (NameMatches(n, h)) return ctxs_[i];
    }
  }
  return ctxs_[0];
}

int TlsServer::OnServerName(SSL* ssl, int*, void* arg) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;
  auto* self = static_cast<TlsServer*>(arg);
  SSL_CTX* ctx = self->Pick(name);
  if (ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;
}

SSL* TlsServer::NewSsl(int fd) const {
  SSL* ssl = SSL_new(ctxs_[0]);
  if (ssl == nullptr) return nullptr;
  if (SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  return ssl;
}

void TlsServer::CountHandshake(SSL* ssl) {
  if (SSL_version(ssl) == TLS1_3_VERSION) {
    tls13_.fetch_add(1, std::memory_order_relaxed);
  } else {
    tls12_.fetch_add(1, std::memory_order_relaxed);
  }
  if (SSL_session_reused(ssl)) resumed_.fetch_add(1, std::memory_order_relaxed);
}

// TlsClient

namespace {
int g_client_index = -1;  // SSL ex_data: the TlsClient
int g_key_index = -1;     // SSL ex_data: the session key (a string the TlsStream owns)
std::once_flag g_indexes;
}  // namespace

absl::StatusOr<std::shared_ptr<TlsClient>> TlsClient::Build(const TlsClientSettings& s) {
  std::call_once(g_indexes, [] {
    g_client_index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    g_key_index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  });
  auto client = std::shared_ptr<TlsClient>(new TlsClient(s));
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return absl::InternalError(OpenSslError());
  client->ctx_ = ctx;
  SSL_CTX_set_min_proto_version(ctx, s.min_version);
  SSL_CTX_set_max_proto_version(ctx, s.max_version);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_read_ahead(ctx, 1);
  if (SSL_CTX_set_cipher_list(ctx, s.ciphers.c_str()) != 1)
    return absl::InvalidArgumentError(StrCat("ciphers \"", s.ciphers, "\": ", OpenSslError()));
  if (s.verify) {
    if (s.ca_file.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        return absl::InvalidArgumentError(StrCat("the system's CA store: ", OpenSslError()));
    } else if (SSL_CTX_load_verify_locations(ctx, s.ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError(StrCat(s.ca_file, ": ", OpenSslError()));
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!s.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, s.cert_file.c_str()) != 1)
      return absl::InvalidArgumentError(StrCat(s.cert_file, ": ", OpenSslError()));
    if (SSL_CTX_use_PrivateKey_file(ctx, s.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      return absl::InvalidArgumentError(
          StrCat(s.key_file, " is not the key of ", s.cert_file, ": ", OpenSslError()));
    }
  }
  static const unsigned char kAlpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof(kAlpn) - 1);
  if (s.session_reuse) {
    // Sessions (TLS 1.3 tickets arrive after the handshake) come to OnNewSession, which keeps
    // the newest per server.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, OnNewSession);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  FillCertificateCaches(ctx);
  return client;
}

TlsClient::~TlsClient() {
  MutexLock l(&mu_);
  for (auto& [key, session] : sessions_) SSL_SESSION_free(session);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

int TlsClient::OnNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TlsClient*>(SSL_get_ex_data(ssl, g_client_index));
  auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, g_key_index));
  if (self == nullptr || key == nullptr || key->empty()) return 0;
  MutexLock l(&self->mu_);
  SSL_SESSION*& slot = self->sessions_[*key];
  if (slot != nullptr) SSL_SESSION_free(slot);
  slot = session;
  return 1;  // we keep the reference
}

SSL* TlsClient::NewSsl(int fd, const std::string& sni, const std::string& verify_name,
                       const std::string* session_key) {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  if (SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_connect_state(ssl);
  SSL_set_ex_data(ssl, g_client_index, this);
  SSL_set_ex_data(ssl, g_key_index, const_cast<std::string*>(session_key));
  // SNI is for host names only (RFC 6066: not for IP literals).
  if (!sni.empty() && !IpAddress::Parse(sni).has_value())
    SSL_set_tlsext_host_name(ssl, sni.c_str());
  if (settings_.verify && !verify_name.empty()) {
    if (IpAddress::Parse(verify_name).has_value()) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), verify_name.c_str());
    } else {
      SSL_set1_host(ssl, verify_name.c_str());
    }
  }
  if (settings_.session_reuse && session_key != nullptr && !session_key->empty()) {
    MutexLock l(&mu_);
    auto it = sessions_.find(*session_key);
    if (it != sessions_.end()) SSL_set_session(ssl, it->second);
  }
  return ssl;
}

void TlsClient::CountHandshake(SSL* ssl) {
  handshakes_.fetch_add(1, std::memory_order_relaxed);
  if (SSL_session_reused(ssl)) resumed_.fetch_add(1, std::memory_order_relaxed);
}

void TlsClient::CountFailure(SSL* ssl) {
  failures_.fetch_add(1, std::memory_order_relaxed);
  if (ssl != nullptr && SSL_get_verify_result(ssl) != X509_V_OK)
    verify_failures_.fetch_add(1, std::memory_order_relaxed);
}

bool TlsStream::StartClient(std::shared_ptr<TlsClient> client, int fd, const std::string& sni,
                            const std::string& verify_name, std::string session_key) {
  End();
  session_key_ = std::move(session_key);
  ssl_ = client->NewSsl(fd, sni, verify_name, &session_key_);
  if (ssl_ == nullptr) return false;
  server_ = std::move(client);
  done_ = read_wants_write_ = write_wants_read_ = false;
  failure_reason_ = "";
  return true;
}

int TlsStream::Handshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    Handshaken();
    return 1;
  }
  int e = SSL_get_error(ssl_, r);
  read_wants_write_ = e == SSL_ERROR_WANT_WRITE;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return 0;
  }
  Failed();
  return -1;
}

void TlsStream::Failed() {
  server_->CountFailure(ssl_);
  long v = SSL_get_verify_result(ssl_);
  if (v != X509_V_OK) {
    // "certificate verify failed" alone does not tell an operator what to fix.
    verify_error_ = StrCat("certificate verify failed: ", X509_verify_cert_error_string(v));
    failure_reason_ = verify_error_.c_str();
  } else {
    const char* why = ERR_reason_error_string(ERR_peek_error());
    failure_reason_ = why != nullptr ? why : "the peer closed the connection during the handshake";
  }
  ERR_clear_error();
  errno = EPROTO;
}

bool TlsStream::Start(std::shared_ptr<TlsServer> server, int fd) {
  End();
  ssl_ = server->NewSsl(fd);
  if (ssl_ == nullptr) return false;
  server_ = std::move(server);
  done_ = read_wants_write_ = write_wants_read_ = false;
  failure_reason_ = "";
  return true;
}

bool TlsStream::alpn_h2() const {
  if (ssl_ == nullptr) return false;
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl_, &p, &n);
  return n == 2 && p[0] == 'h' && p[1] == '2';
}

void TlsStream::Handshaken() {
  if (done_) return;
  done_ = true;
  server_->CountHandshake(ssl_);
}

ssize_t TlsStream::Recv(char* buf, size_t n) {
  ERR_clear_error();
  int r = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(n, INT32_MAX)));
  if (r > 0) {
    Handshaken();
    return r;
  }
  int e = SSL_get_error(ssl_, r);
  read_wants_write_ = e == SSL_ERROR_WANT_WRITE;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    if (SSL_is_init_finished(ssl_)) Handshaken();
    errno = EAGAIN;
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
    if (!done_) server_->CountFailure(ssl_);  // gave up in the middle of the handshake
    return 0;
  }
  if (!done_) {
    Failed();
    return -1;
  }
  const char* why = ERR_reason_error_string(ERR_peek_error());
  failure_reason_ = why != nullptr ? why : "error";
  ERR_clear_error();
  errno = EPROTO;
  return -1;
}

ssize_t TlsStream::Send(const char* buf, size_t n) {
  ERR_clear_error();
  int r = SSL_write(ssl_, buf, static_cast<int>(std::min<size_t>(n, INT32_MAX)));
  if (r > 0) {
    write_wants_read_ = false;
    return r;
  }
  int e = SSL_get_error(ssl_, r);
  write_wants_read_ = e == SSL_ERROR_WANT_READ;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  ERR_clear_error();
  errno = EPIPE;
  return -1;
}

void TlsStream::End() {
  if (ssl_ != nullptr) {
    if (done_) SSL_shutdown(ssl_);
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  server_.reset();
  done_ = read_wants_write_ = write_wants_read_ = false;
}

ssize_t SendOn(TlsStream& tls, int fd, const char* data, size_t n) {
  if (tls.active()) return tls.Send(data, n);
  return send(fd, data, n, MSG_NOSIGNAL);
}

ssize_t RecvOn(TlsStream& tls, int fd, char* data, size_t n) {
  if (tls.active()) return tls.Recv(data, n);
  return recv(fd, data, n, 0);
}

}  // namespace bulwark
