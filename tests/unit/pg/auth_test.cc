#include "pg/auth.h"

#include <gtest/gtest.h>

namespace bulwark::pg {
namespace {

TEST(PgAuth, Md5AsPostgresComputesIt) {
  // pg_authid's md5 form for postgres/postgres is md5 + md5("postgrespostgres").
  EXPECT_EQ(Md5Response("postgres", "postgres", "abcd"), "md50800ba833a175e428fc0110c29998942");
  EXPECT_EQ(Md5ResponseFromHash("md53175bce1d3201d16594cebf9d7eb3f9d", "abcd"),
            "md50800ba833a175e428fc0110c29998942");
}

TEST(PgAuth, ScramRoundTripAndWrongPassword) {
  ScramVerifier v = MakeScramVerifier("s3cret", "0123456789abcdef");
  auto parsed = ParseScramVerifier(FormatScramVerifier(v));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->stored_key, v.stored_key);
  EXPECT_EQ(parsed->iterations, 4096);
  for (const char* password : {"s3cret", "wrong"}) {
    ScramServer server(v);
    ScramClient client(password, "client-nonce-123");
    auto first = server.ServerFirst(client.ClientFirst(), "server-nonce-456");
    ASSERT_TRUE(first.ok()) << first.status();
    auto final_msg = client.ClientFinal(*first);
    ASSERT_TRUE(final_msg.ok()) << final_msg.status();
    auto server_final = server.ServerFinal(*final_msg);
    if (std::string(password) == "s3cret") {
      ASSERT_TRUE(server_final.ok()) << server_final.status();
      EXPECT_TRUE(client.Verify(*server_final).ok());
      EXPECT_FALSE(client.Verify("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").ok());
    } else {
      EXPECT_EQ(server_final.status().message(), "password authentication failed");
    }
  }
  EXPECT_FALSE(ParseScramVerifier("md5abc").ok());
  EXPECT_FALSE(ParseScramVerifier("SCRAM-SHA-256$x:abc$def:ghi").ok());
}

TEST(PgAuth, Rfc7677ClientProof) {
  // RFC 7677's example, with PostgreSQL's empty user name in place of "user" changing only the
  // first message; the server side is checked against the RFC's values through the verifier.
  ScramVerifier v = MakeScramVerifier("pencil", *Base64Decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
  ScramServer server(v);
  auto first = server.ServerFirst("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", "x");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->substr(0, 24), "r=rOprNGfwEbeRWgbNEkqOeA");  // the client's nonce, extended
  EXPECT_NE(first->find(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), std::string::npos);
}

}  // namespace
}  // namespace bulwark::pg
