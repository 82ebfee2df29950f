#include "app/config.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <filesystem>
#include <map>

#include "core/config_reader.h"
#include "core/strings.h"
#include "gtest/gtest.h"
#include "tests/unit/fake_env.h"

namespace bulwark {
namespace {

using testing::FakeEnv;

ConfigLoad Load(const std::string& text, std::map<std::string, std::string> env = {}) {
  return LoadConfigText(text, "t.yml", FakeEnv(std::move(env)));
}

constexpr const char* kGood = R"(
workers: 2
admin: {listen: 127.0.0.1:9901, token: secret-secret-secret}
http: {client_max_body_size: 10M, keepalive_timeout: 65s}
trusted_proxies: [10.0.0.0/8, "::1"]
listeners:
  - name: public
    listen: 127.0.0.1:8080
    routes:
      - {name: health, exact: /health, return: {status: 200, body: "healthy\n"}}
      - {name: api, prefix: /api/, upstream: api, methods: [get, post]}
upstreams:
  api:
    balance: hash
    hash: {key: "header:X-User", algorithm: maglev}
    connect_timeout: 5s
    servers:
      - 127.0.0.1:3000
      - {address: 127.0.0.1:3001, weight: 3, max_fails: 3, fail_timeout: 30s}
    health_check: {path: /healthz, interval: 2s, rise: 3, fall: 2, expect_status: 200-299}
)";

TEST(Config, ParsesAFullFile) {
  ConfigLoad l = Load(kGood);
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const Config& c = *l.config;
  EXPECT_EQ(c.workers, 2);
  EXPECT_EQ(c.admin.token, "secret-secret-secret");
  EXPECT_EQ(c.gateway->http.client_max_body_size, 10 * 1024 * 1024);
  EXPECT_EQ(c.gateway->http.keepalive_timeout_ms, 65000);
  EXPECT_EQ(c.gateway->trusted_proxies.size(), 2u);
  const auto& u = c.gateway->upstreams.at(0);
  EXPECT_EQ(u.balance, gateway::BalanceKind::kHash);
  EXPECT_EQ(u.hash_key, gateway::HashKeyKind::kHeader);
  EXPECT_EQ(u.hash_key_name, "x-user");
  EXPECT_EQ(u.hash_algorithm, gateway::HashAlgorithm::kMaglev);
  EXPECT_EQ(u.servers[1].weight, 3);
  EXPECT_EQ(u.servers[1].fail_timeout_ms, 30000);
  EXPECT_EQ(u.servers[0].max_fails, 1);  // nginx default
  EXPECT_TRUE(u.health_check.enabled);
  EXPECT_EQ(u.health_check.expect_max, 299);
  const auto& routes = c.gateway->listeners.at(0).routes;
  EXPECT_EQ(routes[1].methods, (std::vector<std::string>{"GET", "POST"}));
  EXPECT_EQ(routes[0].ret->body, "healthy\n");
}

// Every "name: {...}" section reads its names the same way (ForEachNamed): a key that is a list
// or a mapping is refused with its line instead of becoming an empty name.
TEST(Config, SectionNamesMustBePlainStrings) {
  for (const char* section :
       {"upstreams", "limit_req_zones", "limit_conn_zones", "cache_zones", "jwt_providers"}) {
    std::string text = StrCat("listeners: [{listen: ':8080', routes: [{return: 204}]}]\n", section,
                              ":\n  [a, b]: {}\n");
    ConfigLoad l = Load(text);
    ASSERT_FALSE(l.errors.empty()) << section;
    EXPECT_NE(Join(l.errors, "\n")
                  .find(StrCat("t.yml:3:3: ", section, ": each name must be a plain string")),
              std::string::npos)
        << Join(l.errors, "\n");
  }
  ConfigLoad l =
      Load("listeners: [{listen: ':8080', routes: [{return: 204}]}]\nupstreams: [{name: a}]\n");
  ASSERT_FALSE(l.errors.empty());
  EXPECT_NE(Join(l.errors, "\n")
                .find("upstreams: expected a mapping of upstream names to their settings"),
            std::string::npos)
      << Join(l.errors, "\n");
}

// Files the configuration names are taken from its own directory (ConfigContext::Resolve).
TEST(Config, RelativePathsAreTakenFromTheConfigFilesDirectory) {
  EXPECT_EQ(ConfigContext::ResolveConfigPath("/etc/bulwark", "certs/a.pem"),
            "/etc/bulwark/certs/a.pem");
  EXPECT_EQ(ConfigContext::ResolveConfigPath("/etc/bulwark", "/abs/a.pem"), "/abs/a.pem");
  EXPECT_EQ(ConfigContext::ResolveConfigPath("", "a.pem"), "a.pem");
  ConfigContext ctx("/etc/bulwark/bulwark.yml", FakeEnv({}));
  EXPECT_EQ(ctx.Resolve("rules/x.yml"), "/etc/bulwark/rules/x.yml");
  ConfigContext bare("bulwark.yml", FakeEnv({}));
  EXPECT_EQ(bare.Resolve("rules/x.yml"), "rules/x.yml");
}

TEST(Config, Defaults) {
  ConfigLoad l = Load("listeners: [{listen: ':8080', routes: [{return: 204}]}]\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  EXPECT_EQ(l.config->workers, 0);
  EXPECT_EQ(l.config->gateway->http.client_header_timeout_ms, 60000);
  EXPECT_EQ(l.config->gateway->http.client_max_body_size, 1024 * 1024);
  EXPECT_TRUE(l.config->gateway->access_log.enabled);
  EXPECT_EQ(l.config->admin.listen, "127.0.0.1:9901");
}

TEST(Config, PathSettings) {
  ConfigLoad l = Load("listeners: [{listen: ':8080', routes: [{return: 204}]}]\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const gateway::HttpConfig& d = l.config->gateway->http;
  EXPECT_TRUE(d.path.merge_slashes);
  EXPECT_EQ(d.path.escaped_slashes, http::EscapedSlashes::kDecode);
  EXPECT_EQ(d.upstream_path, gateway::UpstreamPath::kNormalized);
  l = Load(
      "http: {merge_slashes: false, escaped_slashes: reject, upstream_path: original}\n"
      "listeners: [{listen: ':8080', routes: [{return: 204}]}]\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const gateway::HttpConfig& h = l.config->gateway->http;
  EXPECT_FALSE(h.path.merge_slashes);
  EXPECT_EQ(h.path.escaped_slashes, http::EscapedSlashes::kReject);
  EXPECT_EQ(h.upstream_path, gateway::UpstreamPath::kOriginal);
  l = Load(
      "http: {escaped_slashes: decoded}\nlisteners: [{listen: ':8080', routes: [{return: "
      "204}]}]\n");
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_EQ(l.errors[0],
            "t.yml:1:25: http.escaped_slashes: unknown value \"decoded\" (did you mean "
            "\"decode\"?); expected one of: decode, keep, reject");
}

TEST(Config, ProxySetHeaderAndHideHeaderAsNginx) {
  ConfigLoad l = Load(
      "listeners:\n"
      "  - listen: ':8080'\n"
      "    proxy_set_header: {X-Tenant: $http_x_tenant_id, X-Url: "
      "'$${scheme}://$host$request_uri'}\n"
      "    proxy_hide_header: [X-Powered-By]\n"
      "    routes:\n"
      "      - {prefix: /a, upstream: app}\n"
      "      - {prefix: /b, upstream: app, proxy_set_header: {Accept-Encoding: ''},\n"
      "         proxy_hide_header: [Server]}\n"
      "upstreams: {app: {servers: ['127.0.0.1:1']}}\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const auto& routes = l.config->gateway->listeners[0].routes;
  // nginx inheritance: a level with none of its own takes the enclosing level's, all of them.
  ASSERT_EQ(routes[0].set_headers.size(), 2u);
  EXPECT_EQ(routes[0].set_headers[0].name, "X-Tenant");
  using Var = gateway::VarTemplate::Var;
  ASSERT_EQ(routes[0].set_headers[0].value.parts.size(), 1u);
  EXPECT_EQ(routes[0].set_headers[0].value.parts[0].var, Var::kHttp);
  EXPECT_EQ(routes[0].set_headers[0].value.parts[0].text, "x-tenant-id");
  const auto& url = routes[0].set_headers[1].value.parts;
  ASSERT_EQ(url.size(), 4u);
  EXPECT_EQ(url[0].var, Var::kScheme);
  EXPECT_EQ(url[1].text, "://");
  EXPECT_EQ(url[2].var, Var::kHost);
  EXPECT_EQ(url[3].var, Var::kRequestUri);
  EXPECT_EQ(routes[0].hide_headers, std::vector<std::string>{"x-powered-by"});
  ASSERT_EQ(routes[1].set_headers.size(), 1u);
  EXPECT_TRUE(routes[1].set_headers[0].value.empty());
  EXPECT_EQ(routes[1].hide_headers, std::vector<std::string>{"server"});
  l = Load(
      "listeners:\n"
      "  - listen: ':8080'\n"
      "    routes:\n"
      "      - {prefix: /a, upstream: app, proxy_set_header: {X-A: $remote_adr}}\n"
      "      - {prefix: /b, upstream: app, proxy_set_header: {Content-Length: '1', X-B: 'a$'}}\n"
      "      - {prefix: /c, return: 204, proxy_hide_header: [Server]}\n"
      "      - {prefix: /d, upstream: app, proxy_set_header: [X-D], proxy_hide_header: "
      "['bad:name']}\n"
      "upstreams: {app: {servers: ['127.0.0.1:1']}}\n");
  ASSERT_EQ(l.errors.size(), 6u) << Join(l.errors, "\n");
  EXPECT_EQ(l.errors[0],
            "t.yml:4:61: listeners[0].routes[0].proxy_set_header.X-A: unknown variable "
            "\"$remote_adr\" (did you mean $remote_addr?); known: $host, $http_host, "
            "$remote_addr, $scheme, $request_uri, $uri, $args, $is_args, $request_method, "
            "$request_id, $proxy_add_x_forwarded_for, $upstream_request_uri, $http_NAME, "
            "$cookie_NAME");
  EXPECT_EQ(l.errors[1],
            "t.yml:5:56: listeners[0].routes[1].proxy_set_header: \"Content-Length\" is "
            "bulwark's to set");
  EXPECT_EQ(l.errors[2],
            "t.yml:5:82: listeners[0].routes[1].proxy_set_header.X-B: \"a$\": '$' without a "
            "variable name (nginx has no escape for it)");
  EXPECT_EQ(l.errors[3],
            "t.yml:6:54: listeners[0].routes[2]: proxy_set_header and proxy_hide_header need an "
            "upstream; this route answers with `return`");
}

TEST(Config, RouteBodyLimitAndTimeouts) {
  ConfigLoad l = Load(
      "listeners:\n"
      "  - listen: ':8080'\n"
      "    client_max_body_size: 5m\n"
      "    read_timeout: 5s\n"
      "    routes:\n"
      "      - {prefix: /a, upstream: app}\n"
      "      - {prefix: /b, upstream: app, client_max_body_size: 0, connect_timeout: 1s,\n"
      "         send_timeout: 2s, read_timeout: 3s}\n"
      "upstreams: {app: {servers: ['127.0.0.1:1']}}\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const auto& routes = l.config->gateway->listeners[0].routes;
  EXPECT_EQ(routes[0].client_max_body_size, 5 << 20);
  EXPECT_EQ(routes[0].read_timeout_ms, 5000);
  EXPECT_EQ(routes[0].connect_timeout_ms, 0);    // the upstream's
  EXPECT_EQ(routes[1].client_max_body_size, 0);  // no limit, as nginx
  EXPECT_EQ(routes[1].connect_timeout_ms, 1000);
  EXPECT_EQ(routes[1].send_timeout_ms, 2000);
  EXPECT_EQ(routes[1].read_timeout_ms, 3000);
  l = Load(
      "listeners:\n"
      "  - listen: ':8080'\n"
      "    routes:\n"
      "      - {prefix: /a, upstream: app, read_timeout: 0s}\n"
      "      - {prefix: /b, return: 204, send_timeout: 1s}\n"
      "upstreams: {app: {servers: ['127.0.0.1:1']}}\n");
  ASSERT_EQ(l.errors.size(), 2u) << Join(l.errors, "\n");
  EXPECT_EQ(l.errors[0],
            "t.yml:4:51: listeners[0].routes[0].read_timeout: must be between 1ms and 7d");
  EXPECT_EQ(l.errors[1],
            "t.yml:5:9: listeners[0].routes[1]: connect_timeout, send_timeout and read_timeout "
            "need an upstream; this route answers with `return`");
}

TEST(Config, RewriteRulesAsNginx) {
  ConfigLoad l = Load(
      "listeners:\n"
      "  - listen: ':8080'\n"
      "    rewrite: ['^/a/(.*)$ /b/$1 last', {regex: ^/c$, replacement: 'https://$host/d'}]\n"
      "    routes: [{prefix: /, upstream: app, rewrite: ['^/x(.*) /y$1?z=1 break']}]\n"
      "upstreams: {app: {servers: ['127.0.0.1:1']}}\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const auto& lc = l.config->gateway->listeners[0];
  ASSERT_EQ(lc.rewrites.size(), 2u);
  EXPECT_EQ(lc.rewrites[0].flag, gateway::RewriteRule::Flag::kLast);
  EXPECT_FALSE(lc.rewrites[0].redirects);
  EXPECT_TRUE(lc.rewrites[1].redirects);  // an absolute replacement redirects, as nginx
  ASSERT_EQ(lc.routes[0].rewrites.size(), 1u);
  EXPECT_EQ(lc.routes[0].rewrites[0].flag, gateway::RewriteRule::Flag::kBreak);
  l = Load(
      "listeners:\n"
      "  - listen: ':8080'\n"
      "    rewrite: ['^/a/(.*$ /b', '^/a /b sometimes', '^/a b', '^/a', '^/a /b/$10x']\n"
      "    routes: [{prefix: /, return: 204}]\n");
  ASSERT_EQ(l.errors.size(), 4u) << Join(l.errors, "\n");
  EXPECT_NE(l.errors[0].find("t.yml:3:15: listeners[0].rewrite[0]: regex \"^/a/(.*$\": "),
            std::string::npos)
      << l.errors[0];
  EXPECT_EQ(l.errors[1],
            "t.yml:3:30: listeners[0].rewrite[1]: flag \"sometimes\": expected last, break, "
            "redirect or permanent");
  EXPECT_EQ(l.errors[2],
            "t.yml:3:50: listeners[0].rewrite[2]: replacement \"b\" must start with '/', a "
            "capture, http://, https:// or $scheme");
  EXPECT_EQ(l.errors[3],
            "t.yml:3:59: listeners[0].rewrite[3]: expected \"REGEX REPLACEMENT [FLAG]\"");
}

TEST(Config, Http2SettingsAndLimits) {
  ConfigLoad l = Load("listeners: [{listen: ':8080', routes: [{return: 204}]}]\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const gateway::Http2Config& d = l.config->gateway->http.http2;
  EXPECT_FALSE(l.config->gateway->listeners[0].http2);  // off unless asked, as nginx
  EXPECT_EQ(d.max_concurrent_streams, 100);
  EXPECT_EQ(d.initial_window_size, 65535);
  EXPECT_EQ(d.header_table_size, 4096);
  EXPECT_EQ(d.max_continuations, 8);
  l = Load(
      "http:\n  http2: {max_concurrent_streams: 10, initial_window_size: 1m, header_table_size: 0,"
      " max_continuations: 2, reset_burst: 5, reset_rate: 2, control_burst: 7, control_rate: 3}\n"
      "listeners: [{listen: ':8080', http2: true, routes: [{return: 204}]}]\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const gateway::Http2Config& h = l.config->gateway->http.http2;
  EXPECT_TRUE(l.config->gateway->listeners[0].http2);
  EXPECT_EQ(h.max_concurrent_streams, 10);
  EXPECT_EQ(h.initial_window_size, 1 << 20);
  EXPECT_EQ(h.header_table_size, 0);
  EXPECT_EQ(h.max_continuations, 2);
  EXPECT_EQ(h.reset_burst, 5);
  EXPECT_EQ(h.reset_rate, 2);
  EXPECT_EQ(h.control_burst, 7);
  EXPECT_EQ(h.control_rate, 3);
  l = Load(
      "http:\n  http2: {initial_window_size: 100, max_concurrent_streams: 0, window: 1}\n"
      "listeners: [{listen: ':8080', http2: yes please, routes: [{return: 204}]}]\n");
  ASSERT_EQ(l.errors.size(), 4u) << Join(l.errors, "\n");
  EXPECT_EQ(l.errors[0],
            "t.yml:2:61: http.http2.max_concurrent_streams: 0 is out of range [1, 10000]");
  EXPECT_EQ(l.errors[1], "t.yml:2:32: http.http2.initial_window_size: must be between 1k and 16m");
  EXPECT_NE(l.errors[2].find("http.http2: unknown key \"window\""), std::string::npos)
      << l.errors[2];
  EXPECT_NE(l.errors[3].find("listeners[0].http2"), std::string::npos) << l.errors[3];
}

TEST(Config, ConnectionLimits) {
  ConfigLoad l = Load(R"(http: {max_connections: 500}
limit_conn_zones:
  perip: {key: client_ip, size: 1m}
listeners:
  - listen: 127.0.0.1:8080
    limit_conn: {zone: perip, max: 10}
    limit_conn_status: 503
    routes:
      - {prefix: /, return: 204}
      - {prefix: /dl/, return: 204, limit_conn: [{zone: perip, max: 2}], limit_conn_dry_run: true}
)");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const gateway::GatewayConfig& g = *l.config->gateway;
  EXPECT_EQ(g.http.max_connections, 500);
  ASSERT_EQ(g.conn_zones.size(), 1u);
  EXPECT_EQ(g.conn_zones[0].size_bytes, 1 << 20);
  const auto& root = g.listeners[0].routes[0].limit_conn;  // inherited from the listener
  ASSERT_EQ(root.rules.size(), 1u);
  EXPECT_EQ(root.rules[0].max, 10);
  EXPECT_EQ(root.status, 503);
  const auto& dl = g.listeners[0].routes[1].limit_conn;
  ASSERT_EQ(dl.rules.size(), 1u);
  EXPECT_EQ(dl.rules[0].max, 2);
  EXPECT_TRUE(dl.dry_run);
  EXPECT_EQ(dl.status, 503);

  l = Load(R"(limit_conn_zones: {perip: {}}
listeners:
  - listen: 127.0.0.1:8080
    routes:
      - {prefix: /, return: 204, limit_conn: {zone: preip, max: 0}}
)");
  ASSERT_EQ(l.errors.size(), 2u) << Join(l.errors, "\n");
  EXPECT_EQ(l.errors[0],
            "t.yml:5:53: listeners[0].routes[0].limit_conn.zone: no zone named \"preip\" in "
            "limit_conn_zones (did you mean \"perip\"?)");
  EXPECT_NE(l.errors[1].find("limit_conn.max"), std::string::npos) << l.errors[1];
}

TEST(Config, EnvInterpolation) {
  ConfigLoad l = Load(
      "workers: ${W:-auto}\nlisteners: [{listen: '127.0.0.1:${P}', routes: [{return: 204}]}]\n",
      {{"P", "81"}});
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  EXPECT_EQ(l.config->gateway->listeners[0].address.port(), 81);
  l = Load("listeners: [{listen: '127.0.0.1:${P}', routes: [{return: 204}]}]\n");
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_EQ(l.errors[0],
            "t.yml:1:22: listeners[0].listen: environment variable P is not set (write "
            "${P:-default} to give a default)");
}

TEST(Config, ErrorsNameLineAndSuggest) {
  ConfigLoad l = Load(R"(listeners:
  - listen: 127.0.0.1:8080
    routes:
      - prefix: /
        upstream: ap
upstreams:
  app:
    balance: round_robbin
    servers: [127.0.0.1:3000]
    keepalve: 4
)");
  ASSERT_EQ(l.errors.size(), 3u) << Join(l.errors, "\n");
  EXPECT_EQ(l.errors[0],
            "t.yml:8:14: upstreams.app.balance: unknown value \"round_robbin\" (did you mean "
            "\"round_robin\"?); expected one of: round_robin, least_conn, p2c, hash");
  EXPECT_EQ(l.errors[1],
            "t.yml:10:5: upstreams.app: unknown key \"keepalve\" (did you mean \"keepalive\"?)");
  EXPECT_EQ(l.errors[2],
            "t.yml:4:9: listeners[0].routes[0].upstream: no upstream named \"ap\" (did you mean "
            "\"app\"?)");
}

TEST(Config, SemanticErrors) {
  for (const char* text : {
           "listeners: [{listen: 'nohost:80', routes: [{return: 204}]}]\n",
           "listeners: [{listen: ':80', routes: []}]\n",
           "listeners: [{listen: ':80', routes: [{prefix: /}]}]\n",
           "listeners: [{listen: ':80', routes: [{regex: '(', return: 204}]}]\n",
           "listeners: [{listen: ':80', routes: [{return: 204}]}]\nupstreams: {a: {servers: []}}\n",
           "listeners: [{listen: ':80', routes: [{return: 204}]}]\nupstreams: {a: {servers: "
           "[1.2.3.4:0]}}\n",
           "listeners: [{listen: ':80', routes: [{return: 204}]}]\nupstreams: {a: {servers: "
           "['1.1.1.1:1', '1.1.1.1:1']}}\n",
           "listeners: [{listen: ':80', routes: [{return: 204}]}]\nupstreams: {a: {balance: hash, "
           "servers: [{address: '1.1.1.1:1', backup: true}]}}\n",
           "workers: lots\nlisteners: [{listen: ':80', routes: [{return: 204}]}]\n",
           "",
           "a: [\n",
       }) {
    ConfigLoad l = Load(text);
    EXPECT_FALSE(l.errors.empty()) << text;
    EXPECT_EQ(l.config, nullptr);
    for (const auto& e : l.errors) EXPECT_EQ(e.rfind("t.yml:", 0), 0u) << e;
  }
}

// Servers may be written with host names (resolved off the request path, see resolver:);
// what is not a name or an address is refused at its line.
TEST(Config, ServersByHostName) {
  ConfigLoad l = Load(
      "resolver: {servers: ['127.0.0.1:5353', '::1'], min_ttl: 1s, max_ttl: 30s, timeout: 1s,\n"
      "           attempts: 3, retry: 2s, required_at_start: true}\n"
      "listeners: [{listen: ':80', routes: [{prefix: /, upstream: a}]}]\n"
      "upstreams: {a: {servers: ['IAM-api-1:3000', {address: 'db.internal.:5432'}, "
      "'10.0.0.1:80', 'localhost:81']}}\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const auto& s = l.config->gateway->upstreams[0].servers;
  EXPECT_EQ(s[0].host, "iam-api-1");  // names are case-insensitive
  EXPECT_EQ(s[0].port, 3000);
  EXPECT_FALSE(s[0].resolved);
  EXPECT_EQ(s[0].address_text, "IAM-api-1:3000");
  EXPECT_EQ(s[0].where, "t.yml:4:27");
  EXPECT_EQ(s[1].host, "db.internal.");
  EXPECT_TRUE(s[2].host.empty());
  EXPECT_TRUE(s[2].resolved);
  EXPECT_EQ(s[2].address.ToString(), "10.0.0.1:80");
  EXPECT_TRUE(s[3].host.empty());  // localhost is 127.0.0.1, as for listeners
  const ResolverOptions& r = l.config->resolver;
  EXPECT_EQ(r.servers, (std::vector<std::string>{"127.0.0.1:5353", "::1"}));
  EXPECT_EQ(r.min_ttl_ms, 1000);
  EXPECT_EQ(r.max_ttl_ms, 30000);
  EXPECT_EQ(r.timeout_ms, 1000);
  EXPECT_EQ(r.attempts, 3);
  EXPECT_EQ(r.retry_ms, 2000);
  EXPECT_TRUE(l.config->resolver_required_at_start);

  const std::string head = "listeners: [{listen: ':80', routes: [{prefix: /, upstream: a}]}]\n";
  for (const auto& [text, error] : std::vector<std::pair<std::string, std::string>>{
           {head + "upstreams: {a: {servers: ['bad_name!:80']}}\n",
            "t.yml:2:27: upstreams.a.servers[0].address: invalid address \"bad_name!:80\": "
            "\"bad_name!\" is neither an IP address nor a host name"},
           {head + "upstreams: {a: {servers: ['app.test']}}\n", "expected HOST:PORT"},
           {head + "upstreams: {a: {servers: ['app.test:0']}}\n", "port 1-65535"},
           {head + "upstreams: {a: {servers: ['-app.test:80']}}\n", "nor a host name"},
           {head + "upstreams: {a: {servers: ['" + std::string(64, 'a') + ".test:80']}}\n",
            "nor a host name"},
           {head + "upstreams: {a: {servers: ['app.test:80', 'app.test:80']}}\n", "listed twice"},
           {"resolver: {servers: [dns.example]}\n" + head +
                "upstreams: {a: {servers: ['a.test:80']}}\n",
            "t.yml:1:21: resolver.servers: \"dns.example\" is not IP"},
           {"resolver: {min_ttl: 10s, max_ttl: 1s}\n" + head +
                "upstreams: {a: {servers: ['a.test:80']}}\n",
            "max_ttl between min_ttl and 1d"},
           {"resolver: {hold: 10s}\n" + head + "upstreams: {a: {servers: ['a.test:80']}}\n",
            "resolver: unknown key \"hold\""},
       }) {
    ConfigLoad bad = Load(text);
    EXPECT_NE(Join(bad.errors, "\n").find(error), std::string::npos) << text << "\n"
                                                                     << Join(bad.errors, "\n");
  }
}

// etcd endpoints, scrape targets and Alertmanager URLs take host names too; their syntax is
// checked at load, each error at its own line.
TEST(Config, ClientUrlsAndTargetsByHostName) {
  const std::string head =
      "listeners: [{listen: ':80', routes: [{prefix: /, upstream: a}]}]\n"
      "upstreams: {a: {servers: ['127.0.0.1:80']}}\n";
  ConfigLoad l =
      Load(head +
           "cluster: {etcd: {endpoints: ['etcd-1.internal:2379', 'http://10.0.0.2:2379/']}}\n"
           "observe:\n"
           "  alertmanager: {forward: ['http://am.internal:9093/']}\n"
           "  scrape: [{job: pg, targets: ['pg-exporter:9187', '[::1]:9100']}]\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  EXPECT_EQ(l.config->cluster.etcd_endpoints,
            (std::vector<std::string>{"http://etcd-1.internal:2379", "http://10.0.0.2:2379"}));
  EXPECT_EQ(l.config->cluster.etcd_where[1], "t.yml:3:54");
  EXPECT_EQ(l.config->observe->forward_where[0], "t.yml:5:28");
  EXPECT_EQ(l.config->observe->scrape[0].targets_where[1], "t.yml:6:52");
  for (const auto& [text, error] : std::vector<std::pair<std::string, std::string>>{
           {"cluster: {etcd: {endpoints: ['etcd_1!:2379']}}\n",
            "t.yml:3:30: cluster.etcd.endpoints: \"http://etcd_1!:2379\" is not a URL"},
           {"cluster: {etcd: {endpoints: ['https://e:2379'], username: root}}\n",
            "t.yml:3:17: cluster.etcd: username and password go together (etcd auth)"},
           {"cluster: {etcd: {endpoints: ['https://e:2379'], tls: {ca_file: /nonexistent/ca}}}\n",
            "t.yml:3:64: cluster.etcd.tls.ca_file: cannot read /nonexistent/ca: No such file"},
           {"cluster: {etcd: {endpoints: ['https://e:2379'], tls: {cert: /etc/hostname}}}\n",
            "t.yml:3:54: cluster.etcd.tls: cert and key go together"},
           {"observe: {scrape: [{job: x, targets: ['ok:1', 'nope']}]}\n",
            "t.yml:3:47: observe.scrape job \"x\": target \"nope\": "},
           {"observe: {alertmanager: {forward: ['ftp://am:21']}}\n",
            "t.yml:3:36: observe.alertmanager.forward: \"ftp://am:21\" is not an http(s) URL"},
       }) {
    ConfigLoad bad = Load(head + text);
    EXPECT_NE(Join(bad.errors, "\n").find(error), std::string::npos) << text << "\n"
                                                                     << Join(bad.errors, "\n");
  }
}

// What a TLS connection to each server sends as SNI and checks the certificate for.
TEST(Config, UpstreamTlsPeers) {
  ConfigLoad l = Load(
      "listeners: [{listen: ':80', routes: [{prefix: /, upstream: a}]}]\n"
      "upstreams:\n"
      "  a: {servers: ['api.internal:443', '10.0.0.1:443'], tls: true}\n"
      "  b: {servers: ['10.0.0.2:443'], tls: {sni: api.example, session_reuse: false, "
      "protocols: [TLSv1.3]}}\n"
      "  c: {servers: ['10.0.0.3:443'], tls: {verify_name: 10.0.0.3, verify: true}}\n"
      "  d: {servers: ['10.0.0.4:443'], tls: false}\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const auto& u = l.config->gateway->upstreams;
  ASSERT_TRUE(u[0].tls.enabled);
  ASSERT_NE(u[0].tls.client, nullptr);
  gateway::TlsPeer named = gateway::TlsPeerFor(u[0].tls, u[0].servers[0]);
  EXPECT_EQ(named.sni, "api.internal");
  EXPECT_EQ(named.verify_name, "api.internal");
  gateway::TlsPeer by_ip = gateway::TlsPeerFor(u[0].tls, u[0].servers[1]);
  EXPECT_EQ(by_ip.sni, "");  // no SNI for an IP (RFC 6066)
  EXPECT_EQ(by_ip.verify_name, "10.0.0.1");
  EXPECT_NE(named.session_key, by_ip.session_key);
  gateway::TlsPeer b = gateway::TlsPeerFor(u[1].tls, u[1].servers[0]);
  EXPECT_EQ(b.sni, "api.example");
  EXPECT_EQ(b.verify_name, "api.example");
  EXPECT_FALSE(u[1].tls.settings.session_reuse);
  EXPECT_EQ(u[1].tls.settings.min_version, 0x0304);
  EXPECT_EQ(gateway::TlsPeerFor(u[2].tls, u[2].servers[0]).verify_name, "10.0.0.3");
  EXPECT_FALSE(u[3].tls.enabled);
  EXPECT_EQ(u[3].tls.client, nullptr);
}

// The gateway's Redis over TLS takes an upstream's tls keys with their meaning: SNI is `sni`,
// the certificate is checked for `verify_name` (else `sni`).
TEST(Config, RedisTlsNamesAsAnUpstreams) {
  ConfigLoad l = Load(
      "listeners: [{listen: ':80', routes: [{prefix: /, return: {status: 200}}]}]\n"
      "redis: {address: '10.0.0.9:6380', username: bulwark, password: x,\n"
      "        tls: {sni: redis.internal, verify_name: redis-1.internal}}\n");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  RedisOptions o = gateway::ToRedisOptions(l.config->gateway->redis, 100);
  ASSERT_NE(o.tls, nullptr);
  EXPECT_EQ(o.username, "bulwark");
  EXPECT_EQ(o.tls_sni, "redis.internal");
  EXPECT_EQ(o.tls_verify_name, "redis-1.internal");
  ConfigLoad sni_only = Load(
      "listeners: [{listen: ':80', routes: [{prefix: /, return: {status: 200}}]}]\n"
      "redis: {address: '10.0.0.9:6380', tls: {sni: redis.internal}}\n");
  ASSERT_TRUE(sni_only.errors.empty()) << Join(sni_only.errors, "\n");
  o = gateway::ToRedisOptions(sni_only.config->gateway->redis, 100);
  EXPECT_EQ(o.tls_sni, "redis.internal");
  EXPECT_EQ(o.tls_verify_name, "redis.internal");
}

// The gateway's `redis:` takes the cache library's Sentinel and Cluster keys, and names.
TEST(Config, RedisSentinelClusterAndNames) {
  const std::string head =
      "listeners: [{listen: ':80', routes: [{prefix: /, return: {status: 200}}]}]\n";
  ConfigLoad s = Load(head +
                      "redis:\n  sentinel:\n    master_name: mymaster\n"
                      "    nodes: [{host: sentinel-1, port: 26379}, '10.0.0.2:26379']\n"
                      "  password: x\n");
  ASSERT_TRUE(s.errors.empty()) << Join(s.errors, "\n");
  const RedisServers& ss = s.config->gateway->redis.servers;
  EXPECT_EQ(ss.mode, RedisServers::Mode::kSentinel);
  EXPECT_EQ(ss.sentinel_master, "mymaster");
  ASSERT_EQ(ss.nodes.size(), 2u);
  EXPECT_EQ(ss.nodes[0].host, "sentinel-1");
  EXPECT_EQ(ss.nodes[1].port, 26379);
  // Where a node is written, for check-config's errors on a name that does not resolve.
  EXPECT_NE(ss.nodes[0].where.find(":5:13"), std::string::npos) << ss.nodes[0].where;
  // The upstreams' names are the gateway's to watch; Redis names are the Redis links' own.
  EXPECT_TRUE(gateway::NamedServers(*s.config->gateway).empty());

  ConfigLoad c = Load(head +
                      "redis: {cluster: {enabled: true, password: x, nodes: ['r1:7000', "
                      "{host: r2, port: 7001}]}}\n");
  ASSERT_TRUE(c.errors.empty()) << Join(c.errors, "\n");
  EXPECT_EQ(c.config->gateway->redis.servers.mode, RedisServers::Mode::kCluster);
  EXPECT_EQ(c.config->gateway->redis.password, "x");
  EXPECT_EQ(c.config->gateway->redis.servers.nodes.size(), 2u);

  ConfigLoad n = Load(head + "redis: {address: 'redis.internal:6380'}\n");
  ASSERT_TRUE(n.errors.empty()) << Join(n.errors, "\n");
  EXPECT_EQ(n.config->gateway->redis.servers.nodes[0].host, "redis.internal");

  auto error_of = [&](const std::string& redis) {
    ConfigLoad l = Load(head + redis);
    return Join(l.errors, "\n");
  };
  EXPECT_NE(error_of("redis: {cluster: {nodes: ['r1:7000']}, db: 2}\n")
                .find(":2:44: redis.db: Redis Cluster has only database 0"),
            std::string::npos)
      << error_of("redis: {cluster: {nodes: ['r1:7000']}, db: 2}\n");
  EXPECT_NE(error_of("redis: {sentinel: {nodes: ['s:1']}}\n")
                .find("redis.sentinel: missing required key \"master_name\""),
            std::string::npos)
      << error_of("redis: {sentinel: {nodes: ['s:1']}}\n");
  EXPECT_NE(error_of("redis: {timeout: 1s}\n").find("redis: needs address, cluster or sentinel"),
            std::string::npos);
  EXPECT_NE(error_of("redis: {address: 'bad_name!:6379'}\n")
                .find("redis.address: \"bad_name!\" is neither an address nor a host name"),
            std::string::npos)
      << error_of("redis: {address: 'bad_name!:6379'}\n");
  // Several shared zones on one route are one script over several keys: not on a cluster.
  ConfigLoad multi = Load(
      "redis: {cluster: {nodes: ['r1:7000']}}\n"
      "limit_req_zones: {a: {key: client_ip, rate: 1r/s, shared: true},\n"
      "                  b: {key: 'header:X', rate: 1r/s, shared: true}}\n"
      "listeners: [{listen: ':80', routes: [{prefix: /, return: {status: 200},\n"
      "             limit_req: [{zone: a}, {zone: b}]}]}]\n");
  EXPECT_NE(Join(multi.errors, "\n")
                .find(":5:37: listeners[0].routes[0].limit_req: several shared zones"),
            std::string::npos)
      << Join(multi.errors, "\n");
  EXPECT_NE(error_of("redis: {cluster: {nodes: ['r1:7000']}, sentinel: {master_name: m, nodes: "
                     "['s:1']}}\n")
                .find("redis: use either cluster or sentinel, not both"),
            std::string::npos);
}

// Automatic failover with no etcd lease must be declared the only instance: two bulwarks
// promoting on their own would split the brain.
TEST(Config, FailoverWithoutEtcdNeedsSingleInstance) {
  const std::string pg =
      "pg:\n  users: [{name: app, password: x}]\n  databases: {app: {servers: ['127.0.0.1:5432', "
      "'127.0.0.1:5433']}}\n";
  ConfigLoad bad = Load(pg + "  failover: {enabled: true}\n");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_EQ(bad.errors[0].rfind("t.yml:4:", 0), 0u) << bad.errors[0];
  EXPECT_NE(bad.errors[0].find("needs `single_instance: true`"), std::string::npos);
  ConfigLoad one = Load(pg +
                        "  failover: {enabled: true, single_instance: true, "
                        "maximum_lag_on_failover: 4MB, fence_command: [fence, db1], "
                        "fence_timeout: 5s}\n");
  ASSERT_TRUE(one.errors.empty()) << one.errors[0];
  EXPECT_EQ(one.config->pg->failover.maximum_lag_on_failover, 4 << 20);
  EXPECT_EQ(one.config->pg->failover.fence_command, (std::vector<std::string>{"fence", "db1"}));
  EXPECT_EQ(one.config->pg->failover.fence_timeout_ms, 5000);
  EXPECT_EQ(Load(pg + "  failover: {enabled: true, maximum_lag_on_failover: 1MB}\n").errors.size(),
            1u);
  ConfigLoad leased = Load("cluster: {etcd: {endpoints: ['127.0.0.1:2379']}}\n" + pg +
                           "  failover: {enabled: true}\n");
  EXPECT_TRUE(leased.errors.empty()) << leased.errors[0];
  EXPECT_TRUE(Load(pg + "  failover: {enabled: false}\n").errors.empty());
}

TEST(Config, ProtectionSettings) {
  ConfigLoad l = Load(R"(
limit_req_zones:
  api_limit: {key: $binary_remote_addr, rate: 10r/s, size: 10m}
  tenant: {key: [client_ip, "header:X-Tenant"], rate: 30r/m}
bans: {max_entries: 1000, never_ban: [10.0.0.0/8], status: 429}
listeners:
  - listen: 127.0.0.1:8080
    access: [allow 10.0.0.0/8, "deny all"]
    limit_req: {zone: api_limit, burst: 20, nodelay: true}
    limit_req_status: 503
    routes:
      - {prefix: /a, upstream: app}
      - prefix: /b
        upstream: app
        access: []
        limit_req: [{zone: api_limit, burst: 5, delay: 2}, {zone: tenant}]
        limit_req_dry_run: true
        ban: {on: [rate_limited, 401], maxretry: 3, findtime: 1m, bantime: 1h}
upstreams:
  app: {servers: [127.0.0.1:3000]}
)");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const auto& g = *l.config->gateway;
  ASSERT_EQ(g.limit_zones.size(), 2u);
  EXPECT_EQ(g.limit_zones[0].rate_milli, 10000);
  EXPECT_EQ(g.limit_zones[0].key.parts[0].kind, gateway::KeyPartKind::kClientIp);
  EXPECT_EQ(g.limit_zones[1].rate_milli, 500);
  ASSERT_EQ(g.limit_zones[1].key.parts.size(), 2u);
  EXPECT_EQ(g.limit_zones[1].key.parts[1].name, "x-tenant");
  EXPECT_EQ(g.bans.status, 429);
  const auto& a = g.listeners[0].routes[0];
  const auto& b = g.listeners[0].routes[1];
  // /a inherits everything from the listener.
  ASSERT_EQ(a.limit_req.rules.size(), 1u);
  EXPECT_EQ(a.limit_req.rules[0].burst, 20000);
  EXPECT_GT(a.limit_req.rules[0].delay, a.limit_req.rules[0].burst);  // nodelay
  EXPECT_EQ(a.limit_req.status, 503);
  EXPECT_EQ(a.access.rules.size(), 2u);
  EXPECT_FALSE(a.ban.set);
  // /b has its own rules and keeps the inherited status.
  ASSERT_EQ(b.limit_req.rules.size(), 2u);
  EXPECT_EQ(b.limit_req.rules[0].delay, 2000);
  EXPECT_EQ(b.limit_req.rules[1].zone_index, 1);
  EXPECT_EQ(b.limit_req.status, 503);
  EXPECT_TRUE(b.limit_req.dry_run);
  EXPECT_TRUE(b.access.set);
  EXPECT_TRUE(b.access.rules.empty());
  EXPECT_TRUE(b.ban.on_rate_limited);
  EXPECT_EQ(b.ban.statuses, std::vector<int>{401});
  EXPECT_EQ(b.ban.bantime_ms, 3600000);

  IpAddress ten = *IpAddress::Parse("10.1.2.3");
  IpAddress other = *IpAddress::Parse("::ffff:192.0.2.1");  // folded to IPv4
  EXPECT_EQ(other.family, AF_INET);
  EXPECT_TRUE(a.access.Allows(ten));
  EXPECT_FALSE(a.access.Allows(other));
}

TEST(Config, ProtectionErrors) {
  ConfigLoad l = Load(R"(limit_req_zones:
  api: {rate: 10r/h}
  login: {rate: 5r/s, key: cookie:sid}
listeners:
  - listen: 127.0.0.1:8080
    access: [permit 10.0.0.0/8, deny 10.0.0.0/33]
    routes:
      - prefix: /
        return: 204
        limit_req: {zone: logn, burst: 2, nodelay: true, delay: 1}
        ban: {maxretry: 0}
)");
  std::string all = Join(l.errors, "\n");
  EXPECT_NE(all.find("t.yml:2:15: limit_req_zones.api.rate: invalid rate \"10r/h\""),
            std::string::npos)
      << all;
  EXPECT_EQ(l.errors.size(), 8u) << all;
  EXPECT_NE(all.find("t.yml:3:28: limit_req_zones.login.key: unknown key part \"cookie:sid\""),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("t.yml:6:14: listeners[0].access: \"permit 10.0.0.0/8\" is not a rule"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("prefix > 32"), std::string::npos) << all;
  EXPECT_NE(all.find("no zone named \"logn\" in limit_req_zones (did you mean \"login\"?)"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("use either nodelay or delay"), std::string::npos) << all;
  EXPECT_NE(all.find("expected `on:`"), std::string::npos) << all;
  EXPECT_NE(all.find("maxretry: 0 is out of range"), std::string::npos) << all;
}

TEST(Config, ResilienceStickyGzipAndHeaders) {
  ConfigLoad l = Load(R"(
redis: {address: 127.0.0.1:6379}
listeners:
  - listen: 127.0.0.1:8080
    gzip: on
    add_header: [{name: X-Frame-Options, value: DENY}, {name: Strict-Transport-Security, value: max-age=1, always: true}]
    routes:
      - {prefix: /, upstream: app}
      - {prefix: /pay, upstream: app, retry_non_idempotent: true, gzip: off, add_header: []}
upstreams:
  app:
    circuit_breaker: {failures: 5, statuses: [500, 503], open_time: 1s, max_open_time: 1m, half_open_requests: 2, successes: 2}
    outlier_detection: {consecutive_5xx: 7, base_ejection_time: 10s, max_ejection_percent: 50, panic_threshold: 0}
    retry: {on: [connect_failure, 502], per_try_timeout: 2s, backoff: {base: 10ms}, budget: {percent: 30, min_retry_concurrency: 1}}
    sticky: {cookie: srv, secret: x, max_age: 1h, session_cookie: SID, ttl: 5m}
    servers: [127.0.0.1:3000]
)");
  ASSERT_TRUE(l.errors.empty()) << Join(l.errors, "\n");
  const auto& u = l.config->gateway->upstreams[0];
  EXPECT_TRUE(u.breaker.enabled);
  EXPECT_EQ(u.breaker.statuses, (std::vector<int>{500, 503}));
  EXPECT_EQ(u.breaker.max_open_time_ms, 60000);
  EXPECT_EQ(u.outlier.consecutive_5xx, 7);
  EXPECT_EQ(u.outlier.panic_threshold, 0);
  EXPECT_TRUE(u.retry.on_connect_failure);
  EXPECT_FALSE(u.retry.on_timeout);
  EXPECT_EQ(u.retry.statuses, std::vector<int>{502});
  EXPECT_EQ(u.retry.backoff_max_ms, 100);  // 10 x base, as Envoy
  EXPECT_EQ(u.sticky.session_cookie, "SID");
  const auto& r0 = l.config->gateway->listeners[0].routes[0];
  const auto& r1 = l.config->gateway->listeners[0].routes[1];
  EXPECT_TRUE(r0.gzip.enabled);
  EXPECT_EQ(r0.add_header_block, "X-Frame-Options: DENY\r\n");
  EXPECT_EQ(r0.add_header_always_block, "Strict-Transport-Security: max-age=1\r\n");
  EXPECT_FALSE(r0.retry_non_idempotent.has_value());
  EXPECT_FALSE(r1.gzip.enabled);
  EXPECT_TRUE(r1.add_header_block.empty());
  EXPECT_TRUE(*r1.retry_non_idempotent);

  ConfigLoad bad = Load(R"(listeners: [{listen: ':80', routes: [{return: 204}]}]
upstreams:
  a:
    circuit_breaker: {open_time: 10s, max_open_time: 1s}
    retry: {on: [timeout, 404]}
    sticky: {secret: x, session_cookie: SID, same_site: None}
    servers: [1.1.1.1:1]
)");
  std::string all = Join(bad.errors, "\n");
  EXPECT_NE(all.find("need 0 < open_time <= max_open_time"), std::string::npos) << all;
  EXPECT_NE(all.find("\"404\" is not one of connect_failure"), std::string::npos) << all;
  EXPECT_NE(all.find("same_site None needs secure: true"), std::string::npos) << all;
  EXPECT_NE(all.find("sticky.session_cookie: needs a `redis:` section"), std::string::npos) << all;
}

// A throwaway self-signed P-256 certificate for examples that terminate TLS.
std::pair<std::string, std::string> TestCertificate() {
  char tmpl[] = "/tmp/bulwark-cert-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("example.test"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  std::string cert_path = dir + "/cert.pem", key_path = dir + "/key.pem";
  FILE* f = fopen(cert_path.c_str(), "w");
  PEM_write_X509(f, cert);
  fclose(f);
  f = fopen(key_path.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
  return {cert_path, key_path};
}

TEST(Config, ShippedExamplesAreValid) {
  auto [cert, key] = TestCertificate();
  for (const char* f :
       {"/config/examples/minimal.yml", "/config/examples/api-gateway.yml",
        "/config/examples/blue-green.yml", "/config/examples/sticky-sessions.yml",
        "/config/examples/pg.yml", "/config/examples/observe.yml", "/config/examples/vault.yml",
        "/config/examples/cluster.yml", "/config/examples/all-in-one.yml", "/config/demo.yml",
        "/packaging/bulwark.yml"}) {
    ConfigLoad l = LoadConfigFile(std::string(BULWARK_SOURCE_DIR) + f,
                                  FakeEnv({{"LISTEN_PORT", "1"},
                                           {"UPSTREAM_PORT", "2"},
                                           {"ADMIN_PORT", "3"},
                                           {"DEMO_ORIGIN_1", "127.0.0.1:1"},
                                           {"DEMO_ORIGIN_2", "127.0.0.1:2"},
                                           {"DEMO_ORIGIN_3", "127.0.0.1:3"},
                                           {"TLS_CERT", cert},
                                           {"TLS_KEY", key},
                                           {"APP_PASSWORD", "secret"},
                                           {"BULWARK_BACKUP_KEY", std::string(64, 'a')}}));
    EXPECT_TRUE(l.errors.empty()) << f << "\n" << Join(l.errors, "\n");
  }
  std::filesystem::remove_all(std::filesystem::path(cert).parent_path());  // nothing left in /tmp
}

}  // namespace
}  // namespace bulwark
