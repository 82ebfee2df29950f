#include "security/jwt.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

namespace bulwark::security {
namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef";

JwtVerifier Hs(JwtPolicy policy = {}) {
  JwtKey k;
  k.alg = JwtAlg::kHS256;
  k.secret = kSecret;
  return JwtVerifier({k}, policy);
}

std::string Part(const std::string& json) { return Base64UrlEncode(json); }

// Signs header.payload with `key` (RS256 or ES256, JWS encoding).
std::string SignAsym(EVP_PKEY* key, bool ec, const std::string& header, const std::string& payload) {
  std::string input = Part(header) + "." + Part(payload);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(input.data()), input.size());
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  if (ec) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
    unsigned char raw[64] = {};
    BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
    ECDSA_SIG_free(es);
    sig.assign(reinterpret_cast<char*>(raw), 64);
  }
  return input + "." + Base64UrlEncode(sig);
}

std::string PublicPem(EVP_PKEY* key) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(b, key);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(b);
  return pem;
}

std::string BnParam(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(key, name, &bn);
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return Base64UrlEncode(out);
}

TEST(Base64Url, RoundTripsAndRefusesJunk) {
  for (std::string s : std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar",
                                                std::string("\0\xff\xfe", 3)}) {
    std::string back;
    ASSERT_TRUE(Base64UrlDecode(Base64UrlEncode(s), &back));
    EXPECT_EQ(back, s);
  }
  std::string out;
  EXPECT_FALSE(Base64UrlDecode("a", &out));
  EXPECT_FALSE(Base64UrlDecode("ab+c", &out));  // standard alphabet is not base64url
  EXPECT_FALSE(Base64UrlDecode("ab==", &out));  // no padding in JWS
  EXPECT_FALSE(Base64UrlDecode("Zh", &out));    // non-zero leftover bits
}

TEST(Jwt, Hs256MintedTokensVerify) {
  nlohmann::json claims{{"sub", "billing"}, {"exp", 2000}, {"iss", "auth"}, {"aud", "api"}};
  std::string t = MintHs256(claims, kSecret);
  nlohmann::json out;
  EXPECT_EQ(Hs().Verify(t, 1000, &out), JwtFailure::kNone);
  EXPECT_EQ(out["sub"], "billing");
  // Issuer and audience (a string or one of an array).
  JwtPolicy p;
  p.issuers = {"auth"};
  p.audiences = {"api", "web"};
  EXPECT_EQ(Hs(p).Verify(t, 1000, nullptr), JwtFailure::kNone);
  p.issuers = {"other"};
  EXPECT_EQ(Hs(p).Verify(t, 1000, nullptr), JwtFailure::kIssuer);
  p.issuers = {};
  p.audiences = {"admin"};
  EXPECT_EQ(Hs(p).Verify(t, 1000, nullptr), JwtFailure::kAudience);
  p.audiences = {"web"};
  std::string multi = MintHs256({{"aud", {"x", "web"}}, {"exp", 2000}}, kSecret);
  EXPECT_EQ(Hs(p).Verify(multi, 1000, nullptr), JwtFailure::kNone);
}

TEST(Jwt, TimeChecksAllowTheLeeway) {
  std::string t = MintHs256({{"exp", 1000}, {"nbf", 500}}, kSecret);
  EXPECT_EQ(Hs().Verify(t, 1059, nullptr), JwtFailure::kNone);  // 60 s leeway
  EXPECT_EQ(Hs().Verify(t, 1060, nullptr), JwtFailure::kExpired);
  EXPECT_EQ(Hs().Verify(t, 440, nullptr), JwtFailure::kNone);
  EXPECT_EQ(Hs().Verify(t, 439, nullptr), JwtFailure::kNotYetValid);
  std::string no_exp = MintHs256({{"sub", "x"}}, kSecret);
  EXPECT_EQ(Hs().Verify(no_exp, 0, nullptr), JwtFailure::kExpired);
  JwtPolicy p;
  p.require_exp = false;
  EXPECT_EQ(Hs(p).Verify(no_exp, 0, nullptr), JwtFailure::kNone);
  EXPECT_EQ(Hs().Verify(MintHs256({{"exp", "soon"}}, kSecret), 0, nullptr), JwtFailure::kMalformed);
}

TEST(Jwt, AttacksAreRefused) {
  std::string good = MintHs256({{"sub", "a"}, {"exp", 2000}}, kSecret);
  std::string payload = good.substr(good.find('.') + 1, good.rfind('.') - good.find('.') - 1);
  // alg none, with or without a signature.
  std::string none = Part(R"({"alg":"none"})") + "." + payload + ".";
  EXPECT_EQ(Hs().Verify(none, 1000, nullptr), JwtFailure::kAlgorithm);
  EXPECT_EQ(Hs().Verify(Part(R"({"alg":"None"})") + "." + payload + ".", 1000, nullptr),
            JwtFailure::kAlgorithm);
  // A payload changed after signing.
  std::string forged = good.substr(0, good.find('.') + 1) +
                       Part(R"({"sub":"admin","exp":2000})") + good.substr(good.rfind('.'));
  EXPECT_EQ(Hs().Verify(forged, 1000, nullptr), JwtFailure::kSignature);
  // Signed with another secret.
  EXPECT_EQ(Hs().Verify(MintHs256({{"exp", 2000}}, std::string(32, 'x')), 1000, nullptr),
            JwtFailure::kSignature);
  // Junk.
  for (const char* bad : {"", "abc", "a.b", "a.b.c.d", "!!.e30.x", "e30.e30.e30"}) {
    JwtFailure f = Hs().Verify(bad, 1000, nullptr);
    EXPECT_NE(f, JwtFailure::kNone) << bad;
  }
  EXPECT_EQ(Hs().Verify("", 0, nullptr), JwtFailure::kMissing);
  EXPECT_EQ(Hs().Verify(std::string(9000, 'a'), 0, nullptr), JwtFailure::kMalformed);
}

TEST(Jwt, Rs256AndAlgorithmConfusion) {
  EVP_PKEY* rsa = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  ASSERT_NE(rsa, nullptr);
  std::string pem = PublicPem(rsa);
  auto key = JwtKeyFromPem(pem);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->alg, JwtAlg::kRS256);
  JwtVerifier v({*key}, {});
  std::string t = SignAsym(rsa, false, R"({"alg":"RS256","typ":"JWT"})", R"({"sub":"x","exp":2000})");
  EXPECT_EQ(v.Verify(t, 1000, nullptr), JwtFailure::kNone);
  // The classic confusion: HS256 "signed" with the RSA public key as the HMAC secret.
  std::string confused = MintHs256({{"sub", "admin"}, {"exp", 2000}}, pem);
  EXPECT_EQ(v.Verify(confused, 1000, nullptr), JwtFailure::kAlgorithm);
  // The same key from a JWK set, with a kid.
  std::string jwks = R"({"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":")" +
                     BnParam(rsa, OSSL_PKEY_PARAM_RSA_N) + R"(","e":")" +
                     BnParam(rsa, OSSL_PKEY_PARAM_RSA_E) + R"("}]})";
  auto keys = JwtKeysFromJwks(jwks);
  ASSERT_TRUE(keys.ok()) << keys.status();
  JwtVerifier vj(*keys, {});
  std::string with_kid = SignAsym(rsa, false, R"({"alg":"RS256","kid":"k1"})", R"({"exp":2000})");
  EXPECT_EQ(vj.Verify(with_kid, 1000, nullptr), JwtFailure::kNone);
  std::string other_kid = SignAsym(rsa, false, R"({"alg":"RS256","kid":"k2"})", R"({"exp":2000})");
  EXPECT_EQ(vj.Verify(other_kid, 1000, nullptr), JwtFailure::kUnknownKey);
  EVP_PKEY_free(rsa);
}

TEST(Jwt, Es256FromPemAndJwks) {
  EVP_PKEY* ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ASSERT_NE(ec, nullptr);
  auto key = JwtKeyFromPem(PublicPem(ec));
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->alg, JwtAlg::kES256);
  JwtVerifier v({*key}, {});
  std::string t = SignAsym(ec, true, R"({"alg":"ES256"})", R"({"sub":"x","exp":2000})");
  EXPECT_EQ(v.Verify(t, 1000, nullptr), JwtFailure::kNone);
  std::string tampered = t;
  tampered[tampered.size() - 3] = tampered[tampered.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(v.Verify(tampered, 1000, nullptr), JwtFailure::kSignature);
  // The public point as a JWK.
  unsigned char point[65];
  size_t len = 0;
  EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &len);
  ASSERT_EQ(len, 65u);
  std::string jwks = R"({"keys":[{"kty":"EC","crv":"P-256","x":")" +
                     Base64UrlEncode(std::string(reinterpret_cast<char*>(point) + 1, 32)) +
                     R"(","y":")" +
                     Base64UrlEncode(std::string(reinterpret_cast<char*>(point) + 33, 32)) +
                     R"("}]})";
  auto keys = JwtKeysFromJwks(jwks);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(JwtVerifier(*keys, {}).Verify(t, 1000, nullptr), JwtFailure::kNone);
  // An RS256 token cannot pass an EC key.
  EXPECT_EQ(v.Verify(Part(R"({"alg":"RS256"})") + ".e30.c2ln", 1000, nullptr), JwtFailure::kAlgorithm);
  EVP_PKEY_free(ec);
}

TEST(Jwt, BadKeysAreExplained) {
  EXPECT_FALSE(JwtKeyFromPem("not a key").ok());
  EXPECT_FALSE(JwtKeysFromJwks("{}").ok());
  EXPECT_FALSE(JwtKeysFromJwks(R"({"keys":[{"kty":"RSA","n":"AQAB"}]})").ok());
  EXPECT_FALSE(JwtKeysFromJwks(R"({"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]})").ok());
}

}  // namespace
}  // namespace bulwark::security
