// JSON Web Tokens (RFC 7519) signed with HS256, RS256 or ES256: verification with the checks a
// gateway needs, and minting for service-to-service tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_mac_ctx_st EVP_MAC_CTX;

namespace bulwark::security {

enum class JwtAlg { kHS256, kRS256, kES256 };
const char* JwtAlgName(JwtAlg a);

// One verification key. Its algorithm is fixed: a token naming another algorithm is refused,
// which is what stops algorithm confusion (an RSA public key used as an HMAC secret).
struct JwtKey {
  JwtAlg alg = JwtAlg::kHS256;
  std::string kid;     // empty: matches any token kid
  std::string secret;  // HS256
  std::shared_ptr<EVP_PKEY> pkey;  // RS256 / ES256
};

// HMAC-SHA256 with a fixed key, keyed once: each use copies a prepared context instead of
// looking the algorithm up again (OpenSSL 3's one-shot HMAC() costs microseconds for that).
// Thread-safe.
class HmacSha256Key {
 public:
  explicit HmacSha256Key(std::string_view key);
  ~HmacSha256Key();
  HmacSha256Key(const HmacSha256Key&) = delete;
  HmacSha256Key& operator=(const HmacSha256Key&) = delete;
  bool Sign(std::string_view data, unsigned char out[32]) const;

 private:
  EVP_MAC_CTX* tmpl_ = nullptr;
};

// Reads a PEM public key (or certificate) for RS256/ES256; the algorithm follows the key type.
absl::StatusOr<JwtKey> JwtKeyFromPem(std::string_view pem, std::string kid = "");
// Reads an RFC 7517 key set ({"keys": [...]}, RSA and P-256 EC keys).
absl::StatusOr<std::vector<JwtKey>> JwtKeysFromJwks(std::string_view json);

enum class JwtFailure {
  kNone = 0,
  kMissing,      // no token
  kMalformed,    // not three base64url parts of JSON, or too large
  kAlgorithm,    // alg none, unknown, or not the key's
  kUnknownKey,   // no key with the token's kid
  kSignature,
  kExpired,
  kNotYetValid,
  kIssuer,
  kAudience,
};
constexpr int kJwtFailures = 10;
// The metric label: missing, malformed, algorithm, unknown_key, signature, expired, ...
const char* JwtFailureName(JwtFailure f);

struct JwtPolicy {
  std::vector<std::string> issuers;    // accepted `iss` (empty: any)
  std::vector<std::string> audiences;  // one must be in `aud` (empty: not checked)
  int64_t leeway_s = 60;               // clock skew allowed on exp / nbf
  bool require_exp = true;
  size_t max_token_bytes = 8192;
};

// Verifies tokens against a fixed set of keys. Immutable and thread-safe.
class JwtVerifier {
 public:
  JwtVerifier(std::vector<JwtKey> keys, JwtPolicy policy);
  // On success fills `claims` with the payload.
  JwtFailure Verify(std::string_view token, int64_t now_s, nlohmann::json* claims) const;
  // The time checks alone, for a token verified before (exp and nbf from its claims).
  JwtFailure CheckTimes(const nlohmann::json& claims, int64_t now_s) const;
  const JwtPolicy& policy() const { return policy_; }

 private:
  std::vector<JwtKey> keys_;
  std::vector<std::shared_ptr<HmacSha256Key>> hmacs_;  // per key (HS256 only)
  JwtPolicy policy_;
};

// Signs `claims` with an HS256 secret.
std::string MintHs256(const nlohmann::json& claims, std::string_view secret);

// base64url without padding (RFC 7515 section 2).
std::string Base64UrlEncode(std::string_view in);
bool Base64UrlDecode(std::string_view in, std::string* out);

}  // namespace bulwark::security
