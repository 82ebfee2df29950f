// Routes decide on the normalised path: every decision checked against a real nginx with the
// same locations, then the protections that used to be bypassed (access list, JWT, limit_req)
// and what reaches the server (Envoy normalize_path, or the original path).
#include <signal.h>

#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

// Status and body of one raw request line (paths a client library would clean up first).
std::pair<int, std::string> Raw(int port, const std::string& target) {
  Client c(port);
  c.Send("GET " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
  Response r = c.Read();
  return {r.status, r.status == 200 ? r.body : ""};
}

// The cases of issue 15 (//admin/, /%61dmin/, /x/../admin/, /api/auth//login), their
// combinations, and the edges nginx refuses or treats specially (fragments, encoded slashes,
// NUL, bad escapes, dot segments above the root).
const std::vector<std::string> kTargets = {
    "/admin/", "//admin/", "/%61dmin/", "/x/../admin/", "/api/auth//login", "/api/auth/login",
    "//%61dmin//x/./y/../", "/%2e/admin/", "/x/%2e%2e/admin/", "/x/..%2Fadmin/",
    "/%2F%2Fadmin/", "/admin%2Fx", "/a//..//admin/", "/api//auth/./login",
    "/api/auth/x/../login", "/API/auth/login", "/%61pi/auth//login?x=1", "/admin#frag",
    "/a#/../admin/", "/public/../admin/secret?x=/../y", "/exact", "//exact", "/exact/.",
    "/exact/../exact", "/%65xact", "/files/a.php", "/files//x/../a.php", "/files/a%2ephp",
    "/files/a.php%00", "/..", "/a/../..", "/%2e%2e/admin/", "/a/b/../../../", "/a%2F..%2F..",
    "/a%00b", "/a%zz", "/a%2", "/admin/..", "/admin/.", "/a%3Fb?c=1", "/a%25b", "/a%23b",
    "/a/...", "/.well-known/x", "/admin%0d%0ax"};

TEST(Paths, RoutesDecideOnTheNormalisedPathAsNginx) {
  std::string nginx_bin = FindProgram("nginx");
  ASSERT_FALSE(nginx_bin.empty()) << "nginx is not installed: run scripts/deps";
  std::string dir = MakeTempDir();
  int nginx_port = FreePort();
  WriteFile(dir + "/nginx.conf",
            "daemon off; worker_processes 1; pid " + dir + "/nginx.pid; error_log " + dir +
                "/error.log;\nevents {}\nhttp {\n  access_log off;\n  server {\n    listen "
                "127.0.0.1:" +
                std::to_string(nginx_port) +
                ";\n"
                "    location / { return 200 \"catch-all $uri\"; }\n"
                "    location /admin/ { return 200 \"admin $uri\"; }\n"
                "    location /api/auth/login { return 200 \"login $uri\"; }\n"
                "    location = /exact { return 200 \"exact $uri\"; }\n"
                "    location ~ ^/files/.*\\.php$ { return 200 \"php $uri\"; }\n"
                "  }\n}\n");
  Process nginx({nginx_bin, "-p", dir, "-c", dir + "/nginx.conf"}, {}, dir + "/nginx.out");
  ASSERT_TRUE(WaitForPort(nginx_port, 5000)) << ReadFile(dir + "/nginx.out");

  int port = FreePort(), admin = FreePort();
  Bulwark b("workers: 1\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" +
            std::to_string(admin) + "}\nlisteners:\n  - listen: 127.0.0.1:" +
            std::to_string(port) +
            "\n    routes:\n"
            "      - {prefix: /, return: {status: 200, body: 'catch-all $uri'}}\n"
            "      - {prefix: /admin/, return: {status: 200, body: 'admin $uri'}}\n"
            "      - {prefix: /api/auth/login, return: {status: 200, body: 'login $uri'}}\n"
            "      - {exact: /exact, return: {status: 200, body: 'exact $uri'}}\n"
            "      - {regex: '^/files/.*\\.php$', return: {status: 200, body: 'php $uri'}}\n");
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  int refused = 0;
  for (const std::string& t : kTargets) {
    auto theirs = Raw(nginx_port, t);
    auto ours = Raw(port, t);
    EXPECT_EQ(ours, theirs) << t;
    if (theirs.first == 400) ++refused;
  }
  EXPECT_GE(refused, 8);  // the list exercises nginx's refusals, not only its matches
  // Each refusal is counted.
  std::string m = HttpGet(admin, "/metrics").body;
  EXPECT_EQ(Metric(m, "bulwark_http_bad_paths_total"), std::to_string(refused)) << m;
  nginx.Signal(SIGQUIT);
  nginx.Wait(5000);
}

TEST(Paths, ProtectionsHoldForEveryEncodingOfTheProtectedPath) {
  std::mutex mu;
  std::vector<std::string> seen;
  Backend backend([&](const Backend::Request& r) {
    std::lock_guard<std::mutex> l(mu);
    seen.push_back(r.target);
    return Backend::Reply(200, "app " + r.target);
  });
  int port = FreePort(), admin = FreePort();
  Bulwark b("workers: 1\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" +
            std::to_string(admin) +
            "}\njwt_providers:\n  svc: {secret: 0123456789abcdef0123456789abcdef}\n"
            "limit_req_zones:\n  login: {key: client_ip, rate: 1r/m}\n"
            "listeners:\n  - listen: 127.0.0.1:" +
            std::to_string(port) +
            "\n    routes:\n"
            "      - {prefix: /, upstream: app}\n"
            "      - {prefix: /admin/, upstream: app, access: [deny all]}\n"
            "      - {prefix: /internal/, upstream: app, jwt: svc}\n"
            "      - {prefix: /api/auth/login, upstream: app, limit_req: {zone: login}}\n"
            "      - {prefix: /go/, return: {status: 302, location: 'https://example.com$uri'}}\n"
            "upstreams:\n  app: {servers: ['127.0.0.1:" +
            std::to_string(backend.port()) + "']}\n");
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  for (const char* t : {"/admin/x", "//admin/x", "/%61dmin/x", "/x/../admin/x", "/admin%2Fx",
                        "/%2e/admin/x", "/public/..%2Fadmin/x"}) {
    EXPECT_EQ(Raw(port, t).first, 403) << t;
  }
  for (const char* t : {"/internal/x", "//internal/x", "/%69nternal/x", "/y/../internal/x"}) {
    EXPECT_EQ(Raw(port, t).first, 401) << t;
  }
  // limit_req 1r/m with no burst: one login, then every spelling of the route is limited.
  EXPECT_EQ(Raw(port, "/api/auth/login").first, 200);
  for (const char* t : {"/api/auth//login", "/api/auth/login", "//api/auth/./login",
                        "/api/%61uth/login"}) {
    EXPECT_EQ(Raw(port, t).first, 429) << t;
  }
  {
    std::lock_guard<std::mutex> l(mu);
    ASSERT_EQ(seen, std::vector<std::string>{"/api/auth/login"});
    seen.clear();
  }
  // What goes upstream: the normalised path; escapes of reserved characters are kept, so
  // /a%3Fb stays one segment and never becomes /a?b.
  EXPECT_EQ(Raw(port, "//x/./y/../z%2fw?q=%2F..").second, "app /x/z/w?q=%2F..");
  EXPECT_EQ(Raw(port, "/a%3Fb?c=1").second, "app /a%3Fb?c=1");
  EXPECT_EQ(Raw(port, "/%7Euser/%c3%a9").second, "app /~user/%C3%A9");
  // A decoded CR LF in $uri cannot start a header of a redirect.
  {
    Client c(port);
    c.Send("GET /go/a%0d%0aSet-Cookie:%20x=1 HTTP/1.1\r\nHost: test\r\n\r\n");
    Response r = c.Read();
    EXPECT_EQ(r.status, 302);
    EXPECT_EQ(r.headers.count("set-cookie"), 0u);
    EXPECT_EQ(r.headers["location"], "https://example.com/go/a%0D%0ASet-Cookie:%20x=1");
  }
}

TEST(Paths, OriginalUpstreamPathAndEscapedSlashActions) {
  Backend backend([&](const Backend::Request& r) { return Backend::Reply(200, r.target); });
  auto config = [&](int port, int admin, const std::string& http) {
    return "workers: 1\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" +
           std::to_string(admin) + "}\nhttp: " + http + "\nlisteners:\n  - listen: 127.0.0.1:" +
           std::to_string(port) +
           "\n    routes:\n      - {prefix: /, upstream: app}\n"
           "      - {prefix: /admin/, upstream: app, access: [deny all]}\n"
           "upstreams:\n  app: {servers: ['127.0.0.1:" +
           std::to_string(backend.port()) + "']}\n";
  };
  {
    int port = FreePort(), admin = FreePort();
    Bulwark b(config(port, admin, "{upstream_path: original}"));
    ASSERT_TRUE(b.Ready(port, admin)) << b.log();
    EXPECT_EQ(Raw(port, "//x/./y%41?q=1").second, "//x/./y%41?q=1");
    EXPECT_EQ(Raw(port, "//admin/x").first, 403);  // routes still see the normalised path
  }
  {
    int port = FreePort(), admin = FreePort();
    Bulwark b(config(port, admin, "{escaped_slashes: keep}"));
    ASSERT_TRUE(b.Ready(port, admin)) << b.log();
    // Envoy KEEP_UNCHANGED: %2F is data, so /admin%2Fx is not under /admin/.
    EXPECT_EQ(Raw(port, "/admin%2fx").second, "/admin%2Fx");
    EXPECT_EQ(Raw(port, "/admin/x").first, 403);
  }
  {
    int port = FreePort(), admin = FreePort();
    Bulwark b(config(port, admin, "{escaped_slashes: reject, merge_slashes: false}"));
    ASSERT_TRUE(b.Ready(port, admin)) << b.log();
    EXPECT_EQ(Raw(port, "/a%2Fb").first, 400);
    EXPECT_EQ(Raw(port, "/a//b").second, "/a//b");
    EXPECT_EQ(Raw(port, "//admin/x").second, "//admin/x");  // not merged: not under /admin/
  }
}

}  // namespace
}  // namespace bulwark::testing
