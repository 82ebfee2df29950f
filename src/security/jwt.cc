#include "security/jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/strings.h"

namespace bulwark::security {
namespace {

std::shared_ptr<EVP_PKEY> Wrap(EVP_PKEY* k) { return std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free); }

int B64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

bool HmacSha256(std::string_view key, std::string_view data, unsigned char out[32]) {
  unsigned int len = 0;
  return HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len) !=
             nullptr &&
         len == 32;
}

bool VerifyRs256(EVP_PKEY* key, std::string_view data, std::string_view sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// JWS ES256 signatures are R || S (32 bytes each); OpenSSL wants DER.
bool VerifyEs256(EVP_PKEY* key, std::string_view data, std::string_view sig) {
  if (sig.size() != 64) return false;
  ECDSA_SIG* es = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()) + 32, 32, nullptr);
  if (es == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(es, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return false;
  }
  unsigned char* der = nullptr;
  int der_len = i2d_ECDSA_SIG(es, &der);
  ECDSA_SIG_free(es);
  if (der_len <= 0) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, der, static_cast<size_t>(der_len),
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  OPENSSL_free(der);
  return ok;
}

bool ParseB64Json(std::string_view part, nlohmann::json* out) {
  std::string raw;
  if (!Base64UrlDecode(part, &raw)) return false;
  *out = nlohmann::json::parse(raw, nullptr, false);
  return !out->is_discarded() && out->is_object();
}

bool NumericClaim(const nlohmann::json& claims, const char* name, int64_t* v, bool* present) {
  *present = false;
  auto it = claims.find(name);
  if (it == claims.end()) return true;
  if (!it->is_number()) return false;
  *present = true;
  *v = it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(it->get<double>());
  return true;
}

std::shared_ptr<EVP_PKEY> RsaFromJwk(const nlohmann::json& k) {
  std::string n, e;
  if (!k.contains("n") || !k.contains("e") || !k["n"].is_string() || !k["e"].is_string() ||
      !Base64UrlDecode(k["n"].get<std::string>(), &n) ||
      !Base64UrlDecode(k["e"].get<std::string>(), &e))
    return nullptr;
  BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()), nullptr);
  BIGNUM* be = BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY* pkey = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  if (bn && be && bld && ctx && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) &&
      (params = OSSL_PARAM_BLD_to_param(bld)) != nullptr && EVP_PKEY_fromdata_init(ctx) == 1) {
    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  }
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX_free(ctx);
  BN_free(bn);
  BN_free(be);
  return pkey ? Wrap(pkey) : nullptr;
}

std::shared_ptr<EVP_PKEY> EcFromJwk(const nlohmann::json& k) {
  std::string x, y;
  if (k.value("crv", std::string()) != "P-256" || !k.contains("x") || !k.contains("y") ||
      !k["x"].is_string() || !k["y"].is_string() ||
      !Base64UrlDecode(k["x"].get<std::string>(), &x) ||
      !Base64UrlDecode(k["y"].get<std::string>(), &y) || x.size() != 32 || y.size() != 32)
    return nullptr;
  std::string point = "\x04" + x + y;
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY* pkey = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  if (bld && ctx &&
      OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
      OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) &&
      (params = OSSL_PARAM_BLD_to_param(bld)) != nullptr && EVP_PKEY_fromdata_init(ctx) == 1) {
    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  }
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX_free(ctx);
  return pkey ? Wrap(pkey) : nullptr;
}

}  // namespace

HmacSha256Key::HmacSha256Key(std::string_view key) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) return;
  tmpl_ = EVP_MAC_CTX_new(mac);
  EVP_MAC_free(mac);
  if (tmpl_ == nullptr) return;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_END};
  if (EVP_MAC_init(tmpl_, reinterpret_cast<const unsigned char*>(key.data()), key.size(), params) != 1) {
    EVP_MAC_CTX_free(tmpl_);
    tmpl_ = nullptr;
  }
}

HmacSha256Key::~HmacSha256Key() { EVP_MAC_CTX_free(tmpl_); }

bool HmacSha256Key::Sign(std::string_view data, unsigned char out[32]) const {
  if (tmpl_ == nullptr) return false;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(tmpl_);
  if (ctx == nullptr) return false;
  size_t len = 0;
  bool ok = EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1 &&
            EVP_MAC_final(ctx, out, &len, 32) == 1 && len == 32;
  EVP_MAC_CTX_free(ctx);
  return ok;
}

JwtVerifier::JwtVerifier(std::vector<JwtKey> keys, JwtPolicy policy)
    : keys_(std::move(keys)), policy_(std::move(policy)) {
  for (const auto& k : keys_) {
    hmacs_.push_back(k.alg == JwtAlg::kHS256 ? std::make_shared<HmacSha256Key>(k.secret) : nullptr);
  }
}

const char* JwtAlgName(JwtAlg a) {
  switch (a) {
    case JwtAlg::kHS256:
      return "HS256";
    case JwtAlg::kRS256:
      return "RS256";
    case JwtAlg::kES256:
      return "ES256";
  }
  return "HS256";
}

const char* JwtFailureName(JwtFailure f) {
  static const char* kNames[] = {"none",        "missing",   "malformed", "algorithm",
                                 "unknown_key", "signature", "expired",   "not_yet_valid",
                                 "issuer",      "audience"};
  return kNames[static_cast<int>(f)];
}

std::string Base64UrlEncode(std::string_view in) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                 static_cast<uint8_t>(in[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (i + 1 == in.size()) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (i + 2 == in.size()) {
    uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

bool Base64UrlDecode(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = B64Value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero (a canonical encoding).
  return (acc & ((1u << bits) - 1)) == 0;
}

absl::StatusOr<JwtKey> JwtKeyFromPem(std::string_view pem, std::string kid) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return absl::InternalError("out of memory");
  EVP_PKEY* pkey = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  if (pkey == nullptr) {
    BIO_reset(bio);
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    if (cert != nullptr) {
      pkey = X509_get_pubkey(cert);
      X509_free(cert);
    }
  }
  BIO_free(bio);
  if (pkey == nullptr)
    return absl::InvalidArgumentError("not a PEM public key or certificate");
  JwtKey k;
  k.kid = std::move(kid);
  k.pkey = Wrap(pkey);
  int type = EVP_PKEY_get_base_id(pkey);
  if (type == EVP_PKEY_RSA) {
    if (EVP_PKEY_get_bits(pkey) < 2048)
      return absl::InvalidArgumentError("RSA keys shorter than 2048 bits are refused");
    k.alg = JwtAlg::kRS256;
  } else if (type == EVP_PKEY_EC) {
    char group[64] = {};
    size_t len = 0;
    EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &len);
    if (std::string_view(group) != "prime256v1")
      return absl::InvalidArgumentError("EC keys must be on P-256 (ES256)");
    k.alg = JwtAlg::kES256;
  } else {
    return absl::InvalidArgumentError("only RSA (RS256) and P-256 EC (ES256) keys are supported");
  }
  return k;
}

absl::StatusOr<std::vector<JwtKey>> JwtKeysFromJwks(std::string_view json) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("keys") || !j["keys"].is_array())
    return absl::InvalidArgumentError("expected a JWK set: {\"keys\": [...]}");
  std::vector<JwtKey> out;
  for (const auto& k : j["keys"]) {
    if (!k.is_object()) continue;
    std::string use = k.value("use", std::string("sig"));
    if (use != "sig") continue;
    JwtKey key;
    key.kid = k.value("kid", std::string());
    std::string kty = k.value("kty", std::string());
    if (kty == "RSA") {
      key.alg = JwtAlg::kRS256;
      key.pkey = RsaFromJwk(k);
    } else if (kty == "EC") {
      key.alg = JwtAlg::kES256;
      key.pkey = EcFromJwk(k);
    } else {
      continue;  // oct keys do not belong in a published set; others are not supported
    }
    if (key.pkey == nullptr)
      return absl::InvalidArgumentError(StrCat("key \"", key.kid, "\" is not a valid ", kty, " key"));
    std::string alg = k.value("alg", std::string(JwtAlgName(key.alg)));
    if (alg != JwtAlgName(key.alg))
      return absl::InvalidArgumentError(StrCat("key \"", key.kid, "\": alg ", alg, " does not fit a ", kty, " key"));
    out.push_back(std::move(key));
  }
  if (out.empty()) return absl::InvalidArgumentError("the key set has no RSA or EC signing key");
  return out;
}

JwtFailure JwtVerifier::Verify(std::string_view token, int64_t now_s,
                               nlohmann::json* claims) const {
  if (token.empty()) return JwtFailure::kMissing;
  if (token.size() > policy_.max_token_bytes) return JwtFailure::kMalformed;
  size_t d1 = token.find('.');
  if (d1 == std::string_view::npos) return JwtFailure::kMalformed;
  size_t d2 = token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return JwtFailure::kMalformed;
  nlohmann::json header;
  if (!ParseB64Json(token.substr(0, d1), &header)) return JwtFailure::kMalformed;
  auto alg_it = header.find("alg");
  if (alg_it == header.end() || !alg_it->is_string()) return JwtFailure::kAlgorithm;
  std::string alg = alg_it->get<std::string>();
  // "none", and anything but the three supported algorithms, is refused outright.
  JwtAlg want;
  if (alg == "HS256") {
    want = JwtAlg::kHS256;
  } else if (alg == "RS256") {
    want = JwtAlg::kRS256;
  } else if (alg == "ES256") {
    want = JwtAlg::kES256;
  } else {
    return JwtFailure::kAlgorithm;
  }
  if (header.contains("crit")) return JwtFailure::kMalformed;  // no extensions are understood
  std::string kid = header.value("kid", std::string());
  std::string sig;
  if (!Base64UrlDecode(token.substr(d2 + 1), &sig)) return JwtFailure::kMalformed;
  std::string_view signed_part = token.substr(0, d2);
  bool any_key = false, alg_mismatch = false, verified = false;
  for (size_t ki = 0; ki < keys_.size(); ++ki) {
    const JwtKey& k = keys_[ki];
    if (!kid.empty() && !k.kid.empty() && k.kid != kid) continue;
    any_key = true;
    if (k.alg != want) {
      alg_mismatch = true;
      continue;
    }
    switch (k.alg) {
      case JwtAlg::kHS256: {
        unsigned char mac[32];
        verified = sig.size() == 32 && hmacs_[ki]->Sign(signed_part, mac) &&
                   CRYPTO_memcmp(mac, sig.data(), 32) == 0;
        break;
      }
      case JwtAlg::kRS256:
        verified = VerifyRs256(k.pkey.get(), signed_part, sig);
        break;
      case JwtAlg::kES256:
        verified = VerifyEs256(k.pkey.get(), signed_part, sig);
        break;
    }
    if (verified) break;
  }
  if (!any_key) return JwtFailure::kUnknownKey;
  if (!verified) return alg_mismatch ? JwtFailure::kAlgorithm : JwtFailure::kSignature;

  nlohmann::json payload;
  if (!ParseB64Json(token.substr(d1 + 1, d2 - d1 - 1), &payload)) return JwtFailure::kMalformed;
  JwtFailure times = CheckTimes(payload, now_s);
  if (times != JwtFailure::kNone) return times;
  if (!policy_.issuers.empty()) {
    auto it = payload.find("iss");
    if (it == payload.end() || !it->is_string() ||
        std::find(policy_.issuers.begin(), policy_.issuers.end(), it->get<std::string>()) ==
            policy_.issuers.end())
      return JwtFailure::kIssuer;
  }
  if (!policy_.audiences.empty()) {
    auto it = payload.find("aud");
    bool ok = false;
    auto match = [&](const nlohmann::json& a) {
      return a.is_string() && std::find(policy_.audiences.begin(), policy_.audiences.end(),
                                        a.get<std::string>()) != policy_.audiences.end();
    };
    if (it != payload.end()) {
      if (it->is_array()) {
        for (const auto& a : *it) ok |= match(a);
      } else {
        ok = match(*it);
      }
    }
    if (!ok) return JwtFailure::kAudience;
  }
  if (claims != nullptr) *claims = std::move(payload);
  return JwtFailure::kNone;
}

JwtFailure JwtVerifier::CheckTimes(const nlohmann::json& claims, int64_t now_s) const {
  int64_t exp = 0, nbf = 0;
  bool has_exp = false, has_nbf = false;
  if (!NumericClaim(claims, "exp", &exp, &has_exp) || !NumericClaim(claims, "nbf", &nbf, &has_nbf))
    return JwtFailure::kMalformed;
  if (has_exp ? now_s >= exp + policy_.leeway_s : policy_.require_exp) return JwtFailure::kExpired;
  if (has_nbf && now_s + policy_.leeway_s < nbf) return JwtFailure::kNotYetValid;
  return JwtFailure::kNone;
}

std::string MintHs256(const nlohmann::json& claims, std::string_view secret) {
  std::string token = Base64UrlEncode(R"({"alg":"HS256","typ":"JWT"})");
  token.push_back('.');
  token.append(Base64UrlEncode(claims.dump()));
  unsigned char mac[32];
  HmacSha256(secret, token, mac);
  token.push_back('.');
  token.append(Base64UrlEncode(std::string_view(reinterpret_cast<char*>(mac), 32)));
  return token;
}

}  // namespace bulwark::security
