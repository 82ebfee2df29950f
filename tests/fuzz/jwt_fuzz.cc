// Tokens come from anyone on the internet: verification must never crash or accept junk.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "security/jwt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bulwark::security::JwtVerifier* verifier = [] {
    bulwark::security::JwtKey k;
    k.alg = bulwark::security::JwtAlg::kHS256;
    k.secret = "0123456789abcdef0123456789abcdef";
    return new bulwark::security::JwtVerifier({k}, {});
  }();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  nlohmann::json claims;
  if (verifier->Verify(in, 1000, &claims) == bulwark::security::JwtFailure::kNone) {
    // Only a correctly signed token may pass; random bytes cannot produce one.
    __builtin_trap();
  }
  std::string out;
  bulwark::security::Base64UrlDecode(in, &out);
  return 0;
}
