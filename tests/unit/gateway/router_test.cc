#include "gateway/router.h"

#include "gtest/gtest.h"

namespace bulwark::gateway {
namespace {

RouteConfig R(std::string name, PathMatch m, std::string path, std::vector<std::string> hosts = {},
              std::vector<std::string> methods = {}) {
  RouteConfig r;
  r.name = std::move(name);
  r.match = m;
  r.path = std::move(path);
  r.hosts = std::move(hosts);
  r.methods = std::move(methods);
  r.upstream = "app";
  return r;
}

std::string Match(const Router& router, std::string_view host, std::string_view path,
                  std::string_view method = "GET") {
  const Router::Route* r = router.Match(host, path, method);
  return r == nullptr ? "-" : r->cfg->name;
}

TEST(Router, NginxLocationPrecedence) {
  ListenerConfig l;
  l.routes = {R("root", PathMatch::kPrefix, "/"),
              R("api", PathMatch::kPrefix, "/api/"),
              R("login", PathMatch::kPrefix, "/api/auth/login"),
              R("health", PathMatch::kExact, "/health"),
              R("images", PathMatch::kRegex, "\\.(png|jpg)$"),
              R("v2", PathMatch::kRegex, "^/api/v2/")};
  uint32_t next = 0;
  Router router(l, {"app"}, [&](std::string_view) { return next++; });
  EXPECT_EQ(Match(router, "h", "/health"), "health");
  EXPECT_EQ(Match(router, "h", "/healthz"), "root");
  EXPECT_EQ(Match(router, "h", "/api/users"), "api");
  EXPECT_EQ(Match(router, "h", "/api/auth/login"), "login");  // longest prefix
  EXPECT_EQ(Match(router, "h", "/api/logo.png"), "images");   // regex beats a prefix
  EXPECT_EQ(Match(router, "h", "/api/v2/x"), "v2");
  EXPECT_EQ(Match(router, "h", "/x/y.jpg"), "images");  // first regex in order
  EXPECT_EQ(router.routes()[1].upstream_index, 0);
}

TEST(Router, HostAndMethodFilters) {
  ListenerConfig l;
  l.routes = {R("a", PathMatch::kPrefix, "/", {"api.example.com"}),
              R("b", PathMatch::kPrefix, "/", {"*.example.com"}),
              R("post", PathMatch::kPrefix, "/submit", {}, {"POST"})};
  Router router(l, {"app"}, [](std::string_view) { return 0u; });
  EXPECT_EQ(Match(router, "API.example.com:8080", "/"), "a");
  EXPECT_EQ(Match(router, "www.example.com", "/"), "b");
  EXPECT_EQ(Match(router, "example.com", "/"), "-");
  EXPECT_EQ(Match(router, "www.example.com", "/submit", "POST"), "post");
  EXPECT_EQ(Match(router, "www.example.com", "/submit", "GET"), "b");
}

}  // namespace
}  // namespace bulwark::gateway
