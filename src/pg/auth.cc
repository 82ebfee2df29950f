#include "pg/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/md5.h>
#include <openssl/sha.h>

#include <cstdio>
#include <map>

#include "core/base64.h"
#include "core/strings.h"

namespace bulwark::pg {
namespace {

std::string Md5Hex(std::string_view s) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), d, &n, EVP_md5(), nullptr);
  return HexLower(d, n);
}

std::string Hmac(std::string_view key, std::string_view msg) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), d, &n);
  return std::string(reinterpret_cast<char*>(d), n);
}

std::string Sha256(std::string_view s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  return std::string(reinterpret_cast<char*>(d), sizeof(d));
}

std::string SaltedPassword(std::string_view password, std::string_view salt, int iterations) {
  unsigned char out[32];
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), iterations, EVP_sha256(), sizeof(out), out);
  return std::string(reinterpret_cast<char*>(out), sizeof(out));
}

std::string Xor(std::string_view a, std::string_view b) {
  std::string out(a);
  for (size_t i = 0; i < out.size() && i < b.size(); ++i) out[i] = static_cast<char>(out[i] ^ b[i]);
  return out;
}

// "a=1,b=2" -> {a: 1, b: 2}; values may contain '=' (base64).
std::map<char, std::string> Attributes(std::string_view msg) {
  std::map<char, std::string> out;
  for (const std::string& part : Split(msg, ',')) {
    if (part.size() >= 2 && part[1] == '=') out[part[0]] = part.substr(2);
  }
  return out;
}

}  // namespace

std::string Md5Response(std::string_view user, std::string_view password, std::string_view salt) {
  return Md5ResponseFromHash(StrCat("md5", Md5Hex(StrCat(password, user))), salt);
}

std::string Md5ResponseFromHash(std::string_view md5_hash, std::string_view salt) {
  std::string_view hex = md5_hash.substr(3);  // after "md5"
  return StrCat("md5", Md5Hex(StrCat(hex, salt)));
}

absl::StatusOr<ScramVerifier> ParseScramVerifier(std::string_view text) {
  // SCRAM-SHA-256$<iter>:<salt>$<stored>:<server>
  auto bad = [] { return absl::InvalidArgumentError("not a SCRAM-SHA-256 verifier"); };
  if (!StartsWith(text, "SCRAM-SHA-256$")) return bad();
  std::vector<std::string> parts = Split(text.substr(14), '$');
  if (parts.size() != 2) return bad();
  std::vector<std::string> a = Split(parts[0], ':'), b = Split(parts[1], ':');
  if (a.size() != 2 || b.size() != 2) return bad();
  ScramVerifier v;
  if (!ParseInt(a[0], &v.iterations) || v.iterations < 1) return bad();
  auto salt = Base64Decode(a[1]);
  auto stored = Base64Decode(b[0]);
  auto server = Base64Decode(b[1]);
  if (!salt.ok() || !stored.ok() || !server.ok() || stored->size() != 32 || server->size() != 32) {
    return bad();
  }
  v.salt = *salt;
  v.stored_key = *stored;
  v.server_key = *server;
  return v;
}

ScramVerifier MakeScramVerifier(std::string_view password, std::string_view salt, int iterations) {
  ScramVerifier v;
  v.iterations = iterations;
  v.salt = std::string(salt);
  std::string salted = SaltedPassword(password, salt, iterations);
  v.stored_key = Sha256(Hmac(salted, "Client Key"));
  v.server_key = Hmac(salted, "Server Key");
  return v;
}

std::string FormatScramVerifier(const ScramVerifier& v) {
  return StrCat("SCRAM-SHA-256$", v.iterations, ":", Base64Encode(v.salt), "$",
                Base64Encode(v.stored_key), ":", Base64Encode(v.server_key));
}

absl::StatusOr<std::string> ScramServer::ServerFirst(std::string_view client_first,
                                                     std::string_view nonce_bytes) {
  // gs2 header: "n,," (no channel binding) or "y,," (client could but thinks we cannot).
  if (!(StartsWith(client_first, "n,,") || StartsWith(client_first, "y,,"))) {
    return absl::InvalidArgumentError("unsupported SCRAM channel binding");
  }
  client_first_bare_ = std::string(client_first.substr(3));
  auto attrs = Attributes(client_first_bare_);
  if (!attrs.count('r') || attrs['r'].empty())
    return absl::InvalidArgumentError("malformed SCRAM message");
  nonce_ = attrs['r'] + Base64Encode(nonce_bytes);
  server_first_ = StrCat("r=", nonce_, ",s=", Base64Encode(v_.salt), ",i=", v_.iterations);
  return server_first_;
}

absl::StatusOr<std::string> ScramServer::ServerFinal(std::string_view client_final) {
  size_t p = client_final.rfind(",p=");
  if (p == std::string_view::npos) return absl::InvalidArgumentError("malformed SCRAM message");
  std::string without_proof(client_final.substr(0, p));
  auto attrs = Attributes(client_final);
  if (attrs['r'] != nonce_) return absl::InvalidArgumentError("SCRAM nonce mismatch");
  if (attrs['c'] != "biws" && attrs['c'] != "eSws") {
    return absl::InvalidArgumentError("SCRAM channel binding check failed");
  }
  auto proof = Base64Decode(attrs['p']);
  if (!proof.ok() || proof->size() != 32)
    return absl::InvalidArgumentError("malformed SCRAM proof");
  std::string auth_message = StrCat(client_first_bare_, ",", server_first_, ",", without_proof);
  std::string client_signature = Hmac(v_.stored_key, auth_message);
  std::string client_key = Xor(*proof, client_signature);
  std::string computed = Sha256(client_key);
  if (CRYPTO_memcmp(computed.data(), v_.stored_key.data(), 32) != 0) {
    return absl::PermissionDeniedError("password authentication failed");
  }
  client_key_ = client_key;
  return StrCat("v=", Base64Encode(Hmac(v_.server_key, auth_message)));
}

ScramClient::ScramClient(std::string password, std::string nonce_bytes)
    : password_(std::move(password)), nonce_(Base64Encode(nonce_bytes)) {}

ScramClient ScramClient::FromKeys(std::string client_key, std::string server_key,
                                  std::string nonce_bytes) {
  ScramClient c("", std::move(nonce_bytes));
  c.client_key_ = std::move(client_key);
  c.server_key_ = std::move(server_key);
  return c;
}

std::string ScramClient::ClientFirst() {
  client_first_bare_ = StrCat("n=,r=", nonce_);
  return StrCat("n,,", client_first_bare_);
}

absl::StatusOr<std::string> ScramClient::ClientFinal(std::string_view server_first) {
  auto attrs = Attributes(server_first);
  const std::string& r = attrs['r'];
  if (r.size() <= nonce_.size() || r.compare(0, nonce_.size(), nonce_) != 0) {
    return absl::InvalidArgumentError("the server's SCRAM nonce does not extend ours");
  }
  auto salt = Base64Decode(attrs['s']);
  int iterations = 0;
  if (!salt.ok() || !ParseInt(attrs['i'], &iterations) || iterations < 1) {
    return absl::InvalidArgumentError("malformed SCRAM server-first message");
  }
  std::string client_key = client_key_, server_key = server_key_;
  if (client_key.empty()) {
    std::string salted = SaltedPassword(password_, *salt, iterations);
    client_key = Hmac(salted, "Client Key");
    server_key = Hmac(salted, "Server Key");
  }
  std::string stored_key = Sha256(client_key);
  std::string without_proof = StrCat("c=biws,r=", r);
  std::string auth_message = StrCat(client_first_bare_, ",", server_first, ",", without_proof);
  std::string proof = Xor(client_key, Hmac(stored_key, auth_message));
  server_signature_ = Hmac(server_key, auth_message);
  return StrCat(without_proof, ",p=", Base64Encode(proof));
}

absl::Status ScramClient::Verify(std::string_view server_final) {
  auto attrs = Attributes(server_final);
  if (attrs.count('e'))
    return absl::PermissionDeniedError(StrCat("SCRAM error from the server: ", attrs['e']));
  auto v = Base64Decode(attrs['v']);
  if (!v.ok() || v->size() != server_signature_.size() ||
      CRYPTO_memcmp(v->data(), server_signature_.data(), v->size()) != 0) {
    return absl::PermissionDeniedError("the server's SCRAM signature is wrong");
  }
  return absl::OkStatus();
}

}  // namespace bulwark::pg
