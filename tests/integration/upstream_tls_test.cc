// TLS to upstream servers, against nginx serving HTTPS with certificates from a test CA: the
// certificate verified (a wrong name refused), SNI sent, a client certificate when nginx
// requires one, sessions resumed across pooled connections, health checks over TLS.
#include <string>
#include <vector>

#include "core/strings.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

// nginx on `port` over HTTPS with the server certificate; `extra` goes in its server block.
// Answers with the SNI it saw, whether the session was resumed, and the client's certificate.
class HttpsNginx {
 public:
  HttpsNginx(const std::string& pki, int port, const std::string& extra = "") {
    dir_ = MakeTempDir();
    WriteFile(
        dir_ + "/nginx.conf",
        StrCat("daemon off; worker_processes 1; pid ", dir_, "/nginx.pid; error_log ", dir_,
               "/error.log;\nevents { worker_connections 256; }\n"
               "http { access_log off; client_body_temp_path ",
               dir_, "; proxy_temp_path ", dir_, "; fastcgi_temp_path ", dir_, "; uwsgi_temp_path ",
               dir_, "; scgi_temp_path ", dir_,
               ";\n  ssl_session_cache shared:s:1m;\n  server { listen 127.0.0.1:", port,
               " ssl; ssl_certificate ", pki, "/server.crt; ssl_certificate_key ", pki,
               "/server.key;\n", extra, "    location /big { alias ", dir_,
               "/big; }\n"
               "    location / { return 200 \"sni=$ssl_server_name reused=$ssl_session_reused "
               "client=$ssl_client_s_dn\"; } } }\n"));
    std::string big;
    for (int i = 0; big.size() < 1 << 20; ++i) big += StrCat("line ", i, "\n");
    WriteFile(dir_ + "/big", big);
    std::string bin = FindProgram("nginx");
    EXPECT_FALSE(bin.empty()) << "nginx is not installed: run scripts/deps --test";
    proc_ = std::make_unique<Process>(
        std::vector<std::string>{bin, "-p", dir_, "-c", dir_ + "/nginx.conf"},
        std::map<std::string, std::string>{}, dir_ + "/nginx.out");
    ok_ = WaitForPort(port, 5000);
  }
  bool ok() const { return ok_; }
  std::string big() const { return ReadFile(dir_ + "/big"); }
  std::string log() const { return ReadFile(dir_ + "/nginx.out") + ReadFile(dir_ + "/error.log"); }

 private:
  std::string dir_;
  bool ok_ = false;
  std::unique_ptr<Process> proc_;
};

std::string Cfg(int port, int admin, const std::string& servers, const std::string& tls,
                const std::string& extra = "") {
  return StrCat("workers: 1\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:", admin,
                "}\nlisteners:\n  - listen: 127.0.0.1:", port,
                "\n    routes: [{prefix: /, upstream: app}]\nupstreams:\n  app:\n    servers: [",
                servers, "]\n    tls: ", tls, "\n", extra);
}

TEST(UpstreamTls, VerifiesTheServerSendsSniAndResumesSessions) {
  std::string pki = MakeTempDir();
  ASSERT_NO_FATAL_FAILURE(MakeTestPki(pki));
  int up = FreePort();
  HttpsNginx nginx(pki, up);
  ASSERT_TRUE(nginx.ok()) << nginx.log();
  // The server by IP, the certificate checked for the name it is known by (api.test), which
  // is also sent as SNI.
  int port = FreePort(), admin = FreePort();
  Bulwark b(Cfg(port, admin, StrCat("'127.0.0.1:", up, "'"),
                StrCat("{ca_file: ", pki, "/ca.crt, sni: api.test}"),
                "    keepalive: 0\n"));  // every request a new connection: resumption shows
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  Response r = HttpGet(port, "/");
  ASSERT_EQ(r.status, 200) << b.log() << nginx.log();
  EXPECT_NE(r.body.find("sni=api.test"), std::string::npos) << r.body;
  // The next connections resume the session the first one got (proxy_ssl_session_reuse).
  bool resumed = false;
  for (int i = 0; i < 5 && !resumed; ++i) {
    r = HttpGet(port, "/");
    ASSERT_EQ(r.status, 200);
    resumed = r.body.find("reused=r") != std::string::npos;
  }
  EXPECT_TRUE(resumed) << r.body;
  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_GE(std::atoi(Metric(m, "bulwark_upstream_tls_handshakes_total{upstream=\"app\"}").c_str()),
            2)
      << m;
  EXPECT_GE(std::atoi(Metric(m, "bulwark_upstream_tls_resumed_total{upstream=\"app\"}").c_str()), 1)
      << m;

  // Pooled: many requests over few TLS connections, and a 1 MiB body (many TLS records) intact.
  int port5 = FreePort(), admin5 = FreePort();
  Bulwark pooled(Cfg(port5, admin5, StrCat("'127.0.0.1:", up, "'"),
                     StrCat("{ca_file: ", pki, "/ca.crt, sni: api.test}")));
  ASSERT_TRUE(pooled.Ready(port5, admin5)) << pooled.log();
  Client c(port5);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
    ASSERT_EQ(c.Read().status, 200) << pooled.log();
  }
  ASSERT_TRUE(c.Send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n"));
  Response big = c.Read();
  EXPECT_EQ(big.status, 200);
  EXPECT_TRUE(big.body == nginx.big()) << big.body.size() << " bytes";
  m = HttpGet(admin5, "/metrics").body;
  EXPECT_LE(std::atoi(Metric(m, "bulwark_upstream_tls_handshakes_total{upstream=\"app\"}").c_str()),
            3)
      << m;

  // Without a CA that signed it: refused, the reason in the log, a 502 for the client.
  int port2 = FreePort(), admin2 = FreePort();
  Bulwark untrusted(Cfg(port2, admin2, StrCat("'127.0.0.1:", up, "'"),
                        StrCat("{ca_file: ", pki, "/other-ca.crt, sni: api.test}")));
  ASSERT_TRUE(untrusted.Ready(port2, admin2)) << untrusted.log();
  EXPECT_EQ(HttpGet(port2, "/").status, 502);
  EXPECT_NE(
      untrusted.log().find("certificate verify failed: unable to get local issuer certificate"),
      std::string::npos)
      << untrusted.log();
  m = HttpGet(admin2, "/metrics").body;
  EXPECT_GE(
      std::atoi(Metric(m, "bulwark_upstream_tls_verify_failures_total{upstream=\"app\"}").c_str()),
      1)
      << m;

  // A name the certificate does not carry: refused too.
  int port3 = FreePort(), admin3 = FreePort();
  Bulwark wrong(Cfg(port3, admin3, StrCat("'127.0.0.1:", up, "'"),
                    StrCat("{ca_file: ", pki, "/ca.crt, sni: other.test}")));
  ASSERT_TRUE(wrong.Ready(port3, admin3)) << wrong.log();
  EXPECT_EQ(HttpGet(port3, "/").status, 502);
  EXPECT_NE(wrong.log().find("certificate verify failed: hostname mismatch"), std::string::npos)
      << wrong.log();

  // By IP without a name: the certificate's IP SAN matches, and no SNI goes out.
  int port4 = FreePort(), admin4 = FreePort();
  Bulwark by_ip(
      Cfg(port4, admin4, StrCat("'127.0.0.1:", up, "'"), StrCat("{ca_file: ", pki, "/ca.crt}")));
  ASSERT_TRUE(by_ip.Ready(port4, admin4)) << by_ip.log();
  r = HttpGet(port4, "/");
  EXPECT_EQ(r.status, 200) << by_ip.log();
  EXPECT_NE(r.body.find("sni= "), std::string::npos) << r.body;
}

TEST(UpstreamTls, ClientCertificateWhenTheServerRequiresOne) {
  std::string pki = MakeTempDir();
  ASSERT_NO_FATAL_FAILURE(MakeTestPki(pki));
  int up = FreePort();
  HttpsNginx nginx(pki, up,
                   StrCat("    ssl_client_certificate ", pki, "/ca.crt; ssl_verify_client on;\n"));
  ASSERT_TRUE(nginx.ok()) << nginx.log();
  std::string tls = StrCat("{ca_file: ", pki, "/ca.crt, sni: api.test");
  // Without a client certificate nginx answers 400 ("No required SSL certificate was sent").
  int port = FreePort(), admin = FreePort();
  Bulwark without(Cfg(port, admin, StrCat("'127.0.0.1:", up, "'"), tls + "}"));
  ASSERT_TRUE(without.Ready(port, admin)) << without.log();
  EXPECT_EQ(HttpGet(port, "/").status, 400);
  int port2 = FreePort(), admin2 = FreePort();
  Bulwark with(Cfg(port2, admin2, StrCat("'127.0.0.1:", up, "'"),
                   StrCat(tls, ", cert: ", pki, "/client.crt, key: ", pki, "/client.key}"),
                   "    health_check: {path: /, interval: 200ms}\n"));
  ASSERT_TRUE(with.Ready(port2, admin2)) << with.log();
  Response r = HttpGet(port2, "/");
  EXPECT_EQ(r.status, 200) << with.log() << nginx.log();
  EXPECT_NE(r.body.find("client=CN=client"), std::string::npos) << r.body;
  // Health checks go over TLS with the same certificate (each a handshake of its own, no
  // request needed): the server stays up.
  auto handshakes = [&] {
    return std::atoi(Metric(HttpGet(admin2, "/metrics").body,
                            "bulwark_upstream_tls_handshakes_total{upstream=\"app\"}")
                         .c_str());
  };
  int before = handshakes();
  ASSERT_TRUE(WaitFor([&] { return handshakes() >= before + 3; }, 10000)) << with.log();
  std::string m = HttpGet(admin2, "/metrics").body;
  EXPECT_EQ(
      Metric(
          m,
          StrCat("bulwark_upstream_health_checks_failed_total{upstream=\"app\",server=\"127.0.0.1:",
                 up, "\"}")),
      "0")
      << m;
  EXPECT_EQ(with.log().find("is DOWN"), std::string::npos) << with.log();
}

TEST(UpstreamTls, HealthChecksOverTlsMarkAnUntrustedServerDown) {
  std::string pki = MakeTempDir();
  ASSERT_NO_FATAL_FAILURE(MakeTestPki(pki));
  int up = FreePort();
  HttpsNginx nginx(pki, up);
  ASSERT_TRUE(nginx.ok()) << nginx.log();
  int port = FreePort(), admin = FreePort();
  Bulwark b(Cfg(port, admin, StrCat("'127.0.0.1:", up, "'"),
                StrCat("{ca_file: ", pki, "/other-ca.crt, sni: api.test}"),
                "    health_check: {path: /, interval: 200ms, fall: 1}\n"));
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  ASSERT_TRUE(WaitFor(
      [&] {
        return b.log().find("is DOWN (TLS handshake: certificate verify failed") !=
               std::string::npos;
      },
      10000))
      << b.log();
}

TEST(UpstreamTls, ConfigErrorsNameTheirLine) {
  std::string dir = MakeTempDir();
  std::string path = dir + "/bulwark.yml";
  std::string out;
  WriteFile(path, Cfg(1080, 1081, "'127.0.0.1:1'", "{ca_file: /nonexistent/ca.pem}"));
  EXPECT_EQ(RunBulwark({"check-config", path}, &out), 1);
  EXPECT_NE(out.find(path + ":10:10: upstreams.app.tls: /nonexistent/ca.pem"), std::string::npos)
      << out;
  WriteFile(path, Cfg(1080, 1081, "'127.0.0.1:1'", "{verify: false, ca_file: /x.pem}"));
  EXPECT_EQ(RunBulwark({"check-config", path}, &out), 1);
  EXPECT_NE(out.find("ca_file with verify: false would not be used"), std::string::npos) << out;
  WriteFile(path, Cfg(1080, 1081, "'127.0.0.1:1'", "{cert: /x.pem}"));
  EXPECT_EQ(RunBulwark({"check-config", path}, &out), 1);
  EXPECT_NE(out.find("`cert` and `key` go together"), std::string::npos) << out;
  WriteFile(path, Cfg(1080, 1081, "'127.0.0.1:1'", "{sni: 'bad name'}"));
  EXPECT_EQ(RunBulwark({"check-config", path}, &out), 1);
  EXPECT_NE(out.find("neither a host name nor an IP address"), std::string::npos) << out;
  WriteFile(path, Cfg(1080, 1081, "'127.0.0.1:1'", "true"));
  EXPECT_EQ(RunBulwark({"check-config", path}, &out), 0) << out;  // the system's CA store
}

}  // namespace
}  // namespace bulwark::testing
