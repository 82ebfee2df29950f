// PostgreSQL's password authentication, both sides: md5 and SCRAM-SHA-256 (RFC 5802 / 7677,
// without channel binding, as PostgreSQL offers it to clients without SCRAM-SHA-256-PLUS).
// The proxy is a SCRAM server to its clients (checking against a stored verifier) and a SCRAM
// client to PostgreSQL.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/base64.h"

namespace bulwark::pg {

// "md5" + md5(md5(password + user) + salt), hex: what a client answers to AuthenticationMD5.
std::string Md5Response(std::string_view user, std::string_view password, std::string_view salt);
// The same from a stored "md5<hex>" (pg_authid's md5 form): md5(stored_hex + salt).
std::string Md5ResponseFromHash(std::string_view md5_hash, std::string_view salt);

// A verifier as pg_authid stores it: SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey
// b64>:<ServerKey b64>
struct ScramVerifier {
  int iterations = 0;
  std::string salt;  // raw bytes
  std::string stored_key, server_key;
};
absl::StatusOr<ScramVerifier> ParseScramVerifier(std::string_view text);
// Builds one from a plain password (for user lists given in clear), with `salt` of 16 bytes.
ScramVerifier MakeScramVerifier(std::string_view password, std::string_view salt,
                                int iterations = 4096);
std::string FormatScramVerifier(const ScramVerifier& v);

// The server side of one SCRAM exchange.
class ScramServer {
 public:
  explicit ScramServer(ScramVerifier v) : v_(std::move(v)) {}
  // Takes the client-first message (from SASLInitialResponse) and returns the server-first one.
  absl::StatusOr<std::string> ServerFirst(std::string_view client_first,
                                          std::string_view nonce_bytes);
  // Takes the client-final message; returns the server-final one ("v=...") if the proof holds,
  // an error (password authentication failed) if not.
  absl::StatusOr<std::string> ServerFinal(std::string_view client_final);
  // After a successful ServerFinal: the client's ClientKey, recovered from its proof. With the
  // verifier's ServerKey it logs in to a PostgreSQL holding the same verifier, without the
  // password (PgBouncer's SCRAM pass-through, used with auth_query).
  const std::string& client_key() const { return client_key_; }
  const ScramVerifier& verifier() const { return v_; }

 private:
  ScramVerifier v_;
  std::string client_first_bare_, server_first_, nonce_, client_key_;
};

// The client side, towards PostgreSQL.
class ScramClient {
 public:
  ScramClient(std::string password, std::string nonce_bytes);
  // Logs in with keys instead of a password (see ScramServer::client_key); works only when the
  // server's verifier has the same salt and iterations, as a verifier read from it does.
  static ScramClient FromKeys(std::string client_key, std::string server_key,
                              std::string nonce_bytes);
  std::string ClientFirst();  // "n,,n=,r=<nonce>"
  absl::StatusOr<std::string> ClientFinal(std::string_view server_first);
  // Checks the server's signature: a server that does not know the password cannot produce it.
  absl::Status Verify(std::string_view server_final);

 private:
  std::string password_, nonce_, client_first_bare_, server_signature_;
  std::string client_key_, server_key_;  // FromKeys
};

using bulwark::Base64Decode;
using bulwark::Base64Encode;

}  // namespace bulwark::pg
