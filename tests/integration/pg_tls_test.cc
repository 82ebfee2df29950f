// TLS from the PostgreSQL proxy to its servers (PgBouncer's server_tls_*), against PostgreSQL
// with `ssl = on` and a pg_hba.conf that takes TCP logins over TLS only (hostssl).
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "core/strings.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

// PostgreSQL with the test PKI's server certificate, taking TCP logins only over TLS.
struct TlsDatabase {
  std::string pki = MakeTempDir();
  std::unique_ptr<PostgresServer> pg;
  void Start() {
    ASSERT_NO_FATAL_FAILURE(MakeTestPki(pki));
    // The server reads its key as postgres and refuses one others can read.
    chmod(pki.c_str(), 0755);
    ASSERT_EQ(system(StrCat("chown postgres ", pki, "/server.key ", pki,
                            "/server.crt && chmod 600 ", pki, "/server.key")
                         .c_str()),
              0);
    pg = std::make_unique<PostgresServer>(
        std::vector<std::string>{"ssl = on", StrCat("ssl_cert_file = '", pki, "/server.crt'"),
                                 StrCat("ssl_key_file = '", pki, "/server.key'")});
    ASSERT_TRUE(pg->ok()) << pg->log();
    WriteFile(pg->dir() + "/data/pg_hba.conf",
              "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n");
    ASSERT_EQ(system(StrCat("chown postgres ", pg->dir(), "/data/pg_hba.conf").c_str()), 0);
    pg->Psql("SELECT pg_reload_conf()");
    pg->Psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE app LOGIN PASSWORD 'secret'");
    pg->Psql("CREATE DATABASE app OWNER app");
  }
};

std::string PgCfg(int port, int admin, int pg_port, const std::string& tls) {
  return StrCat("admin: {listen: 127.0.0.1:", admin, "}\npg:\n  listen: 127.0.0.1:", port,
                "\n  pool_mode: transaction\n  server_login_retry: 200ms\n", tls,
                "  users: [{name: app, password: secret}]\n"
                "  databases:\n    app: {servers: ['127.0.0.1:",
                pg_port, "']}\n");
}

std::string PsqlThrough(int port, const std::string& sql) {
  std::string out;
  RunProgram({"psql", "-X", "-At", "-h", "127.0.0.1", "-p", std::to_string(port), "-U", "app", "-d",
              "app", "-c", sql},
             {{"PGPASSWORD", "secret"}, {"PGSSLMODE", "disable"}}, &out, 60000);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(PgTls, ServerConnectionsUseTlsAsSslmodeSays) {
  TlsDatabase db;
  ASSERT_NO_FATAL_FAILURE(db.Start());
  // PgBouncer's default, prefer: TLS because the server offers it (the hba takes nothing else).
  int port = FreePort(), admin = FreePort();
  Bulwark prefer(PgCfg(port, admin, db.pg->port(), ""));
  ASSERT_TRUE(prefer.Ready(port, admin)) << prefer.log();
  EXPECT_EQ(PsqlThrough(port, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), "t")
      << prefer.log() << db.pg->log();

  // disable: plain, which this server's hba refuses; the client hears why.
  int port2 = FreePort(), admin2 = FreePort();
  Bulwark disable(PgCfg(port2, admin2, db.pg->port(), "  server_tls_sslmode: disable\n"));
  ASSERT_TRUE(disable.Ready(port2, admin2)) << disable.log();
  std::string out = PsqlThrough(port2, "SELECT 1");
  EXPECT_NE(out.find("no encryption"), std::string::npos) << out << disable.log();

  // verify-full with the CA that signed the server's certificate, for 127.0.0.1 (its IP SAN).
  int port3 = FreePort(), admin3 = FreePort();
  Bulwark full(PgCfg(port3, admin3, db.pg->port(),
                     StrCat("  server_tls_sslmode: verify-full\n  server_tls_ca_file: ", db.pki,
                            "/ca.crt\n  server_tls_protocols: tlsv1.3\n")));
  ASSERT_TRUE(full.Ready(port3, admin3)) << full.log();
  EXPECT_EQ(PsqlThrough(port3, "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
            "TLSv1.3")
      << full.log();

  // verify-ca with a CA that did not sign it: refused, the reason in the log and the pool's error.
  int port4 = FreePort(), admin4 = FreePort();
  Bulwark untrusted(PgCfg(port4, admin4, db.pg->port(),
                          StrCat("  server_tls_sslmode: verify-ca\n  server_tls_ca_file: ", db.pki,
                                 "/other-ca.crt\n")));
  ASSERT_TRUE(untrusted.Ready(port4, admin4)) << untrusted.log();
  out = PsqlThrough(port4, "SELECT 1");
  EXPECT_NE(out.find("certificate verify failed"), std::string::npos) << out;
  EXPECT_NE(untrusted.log().find("TLS handshake: certificate verify failed: unable to get local "
                                 "issuer certificate"),
            std::string::npos)
      << untrusted.log();
}

TEST(PgTls, RequireRefusesAServerWithoutTls) {
  PostgresServer plain;  // ssl off
  ASSERT_TRUE(plain.ok()) << plain.log();
  plain.Psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE app LOGIN PASSWORD 'secret'");
  plain.Psql("CREATE DATABASE app OWNER app");
  int port = FreePort(), admin = FreePort();
  Bulwark require(PgCfg(port, admin, plain.port(), "  server_tls_sslmode: require\n"));
  ASSERT_TRUE(require.Ready(port, admin)) << require.log();
  std::string out = PsqlThrough(port, "SELECT 1");
  EXPECT_NE(out.find("the server does not support TLS (server_tls_sslmode require)"),
            std::string::npos)
      << out << require.log();
  // prefer falls back to plain with such a server.
  int port2 = FreePort(), admin2 = FreePort();
  Bulwark prefer(PgCfg(port2, admin2, plain.port(), "  server_tls_sslmode: prefer\n"));
  ASSERT_TRUE(prefer.Ready(port2, admin2)) << prefer.log();
  EXPECT_EQ(PsqlThrough(port2, "SELECT 40 + 2"), "42") << prefer.log();
}

TEST(PgTls, ConfigErrors) {
  std::string dir = MakeTempDir();
  std::string path = dir + "/bulwark.yml";
  std::string out;
  for (const auto& [tls, error] : std::vector<std::pair<std::string, std::string>>{
           {"  server_tls_sslmode: allow\n", "allow is not supported"},
           {"  server_tls_sslmode: require\n  server_tls_ca_file: /x.pem\n",
            "server_tls_ca_file is only used with server_tls_sslmode verify-ca or verify-full"},
           {"  server_tls_sslmode: verify-ca\n  server_tls_ca_file: /nonexistent.pem\n",
            "pg.server_tls: /nonexistent.pem"},
           {"  server_tls_protocols: tlsv1.1\n",
            "\"tlsv1.1\" is not secure, all, tlsv1.2 or tlsv1.3"},
           {"  server_tls_cert_file: /x.pem\n",
            "server_tls_cert_file and server_tls_key_file go together"},
       }) {
    WriteFile(path, PgCfg(1, 2, 3, tls));
    EXPECT_EQ(RunBulwark({"check-config", path}, &out), 1) << tls;
    EXPECT_NE(out.find(error), std::string::npos) << tls << "\n" << out;
  }
}

}  // namespace
}  // namespace bulwark::testing
