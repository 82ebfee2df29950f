// HTTP/2 to clients: real clients (curl, h2load) over TLS with ALPN and in clear text with prior
// knowledge, and a raw frame client for what real clients never send: the defences (rapid reset,
// floods, CONTINUATION, header size, stream limits, stalls, timeouts) and the protocol's
// conformance cases (RFC 9113 framing, flow control, stream states, header validation).
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/h2_client.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

using namespace std::chrono_literals;

std::string P(int port) { return std::to_string(port); }

// An echo backend: the method, the body's size and the headers it was sent, or a big body.
std::string Echo(const Backend::Request& r, const std::string& big) {
  if (r.target == "/big") return Backend::Reply(200, big);
  if (r.target == "/chunked") {
    return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n"
           "Keep-Alive: timeout=5\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  }
  std::string out = r.method + " " + r.target + " body=" + std::to_string(r.body.size());
  for (const char* h : {"host", "cookie", "content-length", "transfer-encoding",
                        "x-forwarded-proto", "connection", "te"}) {
    auto it = r.headers.find(h);
    if (it != r.headers.end()) out += "\n" + std::string(h) + ": " + it->second;
  }
  return Backend::Reply(200, out + "\n", "Connection: keep-alive\r\nX-Mixed-Case: Yes\r\n");
}

struct Gateway {
  std::string dir = MakeTempDir();
  int port = FreePort(), tls_port = FreePort(), plain_port = FreePort(), admin = FreePort();
  std::unique_ptr<Bulwark> bw;
  explicit Gateway(int backend, const std::string& extra = "", const std::string& http2 = "",
                   const std::string& top = "", const std::string& routes = "") {
    MakeCert(dir, "a.test");
    std::string cfg =
        "workers: 1\nadmin: {listen: 127.0.0.1:" + P(admin) + "}\naccess_log: {path: " + dir +
        "/access.log}\nhttp:\n  client_max_body_size: 50m\n" + extra +
        (http2.empty() ? "" : "  http2:\n" + http2) + top +
        "listeners:\n"
        "  - {name: h2c, listen: 127.0.0.1:" +
        P(port) +
        ", http2: true,\n"
        "     routes: [{name: local, exact: /local, return: {status: 200, body: \"ok\\n\"}},\n" +
        routes +
        "              {prefix: /, upstream: app}]}\n"
        "  - {name: h2, listen: 127.0.0.1:" +
        P(tls_port) +
        ", http2: true,\n"
        "     tls: {cert: " +
        dir + "/a.test.crt, key: " + dir +
        "/a.test.key},\n"
        "     routes: [{prefix: /, upstream: app}]}\n"
        "  - {name: plain, listen: 127.0.0.1:" +
        P(plain_port) +
        ",\n"
        "     tls: {cert: " +
        dir + "/a.test.crt, key: " + dir +
        "/a.test.key},\n"
        "     routes: [{prefix: /, upstream: app}]}\n"
        "upstreams:\n  app: {servers: ['127.0.0.1:" +
        P(backend) + "']}\n";
    bw = std::make_unique<Bulwark>(cfg);
  }
  bool Ready() { return bw->Ready(port, admin) && WaitForPort(tls_port, 5000); }
  std::string Metrics() { return HttpGet(admin, "/metrics").body; }
};

TEST(H2, ServesRealClientsOverTlsAndCleartextLikeHttp11) {
  ASSERT_FALSE(FindProgram("h2load").empty()) << "h2load is not installed: run scripts/deps --test";
  std::string big(3 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 61) big[i] = static_cast<char>('a' + i % 26);
  Backend backend([&](const Backend::Request& r) { return Echo(r, big); });
  Gateway g(backend.port());
  ASSERT_TRUE(g.Ready()) << g.bw->log();
  std::string tls = "https://127.0.0.1:" + P(g.tls_port), h2c = "http://127.0.0.1:" + P(g.port);
  int st = 0;
  // ALPN picks h2 on an http2 listener, http/1.1 when the client asks for it or the listener
  // has no http2; in clear text, the preface starts HTTP/2 and anything else is HTTP/1.1.
  auto version = [&](const std::string& args) {
    return Shell("curl -sk -o /dev/null -w '%{http_version} %{http_code}' " + args);
  };
  EXPECT_EQ(version(tls + "/x"), "2 200");
  EXPECT_EQ(version("--http1.1 " + tls + "/x"), "1.1 200");
  EXPECT_EQ(version("https://127.0.0.1:" + P(g.plain_port) + "/x"), "1.1 200");
  EXPECT_EQ(version("--http2-prior-knowledge " + h2c + "/x"), "2 200");
  EXPECT_EQ(version(h2c + "/x"), "1.1 200");
  EXPECT_EQ(version("--http2-prior-knowledge " + h2c + "/local"), "2 200");

  // The request the server sees: Host from :authority, cookies joined with "; " (RFC 9113
  // 8.2.3), X-Forwarded-Proto from the connection; the response: lowercase names, no
  // connection-specific fields, a chunked upstream body as plain DATA.
  std::string out =
      Shell("curl -sk -i -H 'cookie: a=1' -H 'cookie: b=2' " + tls + "/echo?q=1", &st);
  EXPECT_EQ(st, 0) << out;
  EXPECT_NE(out.find("HTTP/2 200"), std::string::npos) << out;
  EXPECT_NE(out.find("GET /echo?q=1 body=0"), std::string::npos) << out;
  EXPECT_NE(out.find("host: 127.0.0.1:" + P(g.tls_port)), std::string::npos) << out;
  EXPECT_NE(out.find("cookie: a=1; b=2"), std::string::npos) << out;
  EXPECT_NE(out.find("x-forwarded-proto: https"), std::string::npos) << out;
  EXPECT_NE(out.find("x-mixed-case: Yes"), std::string::npos) << out;
  EXPECT_EQ(out.find("onnection:"), std::string::npos) << out;
  out = Shell("curl -sk -i " + tls + "/chunked", &st);
  EXPECT_NE(out.find("hello world"), std::string::npos) << out;
  EXPECT_EQ(out.find("transfer-encoding"), std::string::npos) << out;
  EXPECT_EQ(out.find("keep-alive"), std::string::npos) << out;

  // Bodies both ways, larger than every window: with a length, without one (chunked upstream),
  // and a 3 MiB download that arrives whole.
  WriteFile(g.dir + "/big", big);
  out = Shell("curl -sk --data-binary @" + g.dir + "/big " + tls + "/up", &st);
  EXPECT_NE(out.find("POST /up body=3145728\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\ncontent-length: 3145728\n"), std::string::npos) << out;
  out = Shell("curl -s --http2-prior-knowledge -T - " + h2c + "/up < " + g.dir + "/big", &st);
  EXPECT_NE(out.find("PUT /up body=3145728\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\ntransfer-encoding: chunked\n"), std::string::npos) << out;
  out = Shell("curl -sk " + tls + "/big | sha256sum");
  EXPECT_EQ(out.substr(0, 64), Shell("sha256sum " + g.dir + "/big").substr(0, 64));

  // Many streams on few connections, all answered.
  out = Shell("h2load -n 2000 -c 2 -m 50 " + h2c + "/local");
  EXPECT_NE(out.find("2000 succeeded, 0 failed"), std::string::npos) << out;
  out = Shell("h2load -n 1000 -c 2 -m 20 " + tls + "/echo");
  EXPECT_NE(out.find("1000 succeeded, 0 failed"), std::string::npos) << out;

  // The access log names the protocol and the stream.
  std::string log;
  ASSERT_TRUE(WaitFor(
      [&] {
        log = ReadFile(g.dir + "/access.log");
        return log.find("\"path\":\"/echo?q=1\",\"protocol\":\"HTTP/2.0\",\"stream\":1,") !=
               std::string::npos;
      },
      5000))
      << log;
  EXPECT_NE(log.find("\"path\":\"/x\",\"protocol\":\"HTTP/1.1\",\"route\""), std::string::npos);
  std::string m = g.Metrics();
  EXPECT_GE(std::stoll("0" + Metric(m, "bulwark_http2_connections_total")), 7) << m;
  EXPECT_GE(std::stoll("0" + Metric(m, "bulwark_http2_streams_total")), 3000) << m;
}

// Keeps a frame client's HEADERS for a request with a body it has not sent: an open stream.
H2Raw::Fields Post(int port, const std::string& path, size_t length) {
  H2Raw::Fields f = H2Raw::Get(path, port);
  f[0].second = "POST";
  f.push_back({"content-length", std::to_string(length)});
  return f;
}

// A chunked response's trailer section (how an HTTP/1.1 server sends gRPC's grpc-status) reaches
// an HTTP/2 client as trailing HEADERS that end the stream, without the fields RFC 9110 6.5.1
// keeps out of trailers; an HTTP/1.1 client gets the trailer section as it came.
TEST(H2, ChunkedTrailersEndTheStreamAsTrailingHeaders) {
  const std::string chunked =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n"
      "5\r\nhello\r\n0\r\nGrpc-Status: 0\r\ngrpc-message: all  good \r\n"
      "Content-Length: 5\r\nConnection: close\r\nbad name: x\r\n\r\n";
  Backend backend([&](const Backend::Request& r) {
    if (r.target == "/no-usable-trailers")
      return std::string(
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
          "2\r\nok\r\n0\r\nHost: x\r\n\r\n");
    return chunked;
  });
  Gateway g(backend.port());
  ASSERT_TRUE(g.Ready()) << g.bw->log();
  H2Raw c(g.port);
  c.Headers(1, H2Raw::Get("/t", g.port), true);
  H2Raw::Result r = c.Response(1);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
  EXPECT_TRUE(r.ended);
  EXPECT_EQ(r.trailers["grpc-status"], "0");
  EXPECT_EQ(r.trailers["grpc-message"], "all  good");
  EXPECT_EQ(r.trailers.count("content-length"), 0u);
  EXPECT_EQ(r.trailers.count("connection"), 0u);
  EXPECT_EQ(r.trailers.size(), 2u);
  // Nothing usable: the last DATA frame ends the stream.
  c.Headers(3, H2Raw::Get("/no-usable-trailers", g.port), true);
  r = c.Response(3);
  EXPECT_EQ(r.body, "ok");
  EXPECT_TRUE(r.ended);
  EXPECT_TRUE(r.trailers.empty());
  // HTTP/1.1: passed through as it came.
  Client h1(g.port);
  ASSERT_TRUE(h1.Send("GET /t HTTP/1.1\r\nHost: test\r\n\r\n"));
  char buf[4096];
  std::string raw;
  while (raw.find("bad name: x\r\n\r\n") == std::string::npos) {
    ssize_t n = recv(h1.fd(), buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  EXPECT_NE(raw.find("0\r\nGrpc-Status: 0\r\n"), std::string::npos) << raw;
}

TEST(H2, DefencesEndAbusiveConnectionsAndAreCounted) {
  Backend backend([&](const Backend::Request& r) { return Echo(r, ""); });
  Gateway g(backend.port(), "  client_header_timeout: 1s\n  send_timeout: 1s\n",
            "    reset_burst: 20\n    reset_rate: 1\n    control_burst: 50\n    control_rate: 1\n"
            "    max_concurrent_streams: 5\n");
  ASSERT_TRUE(g.Ready()) << g.bw->log();

  {  // Rapid reset (CVE-2023-44487): streams opened and cancelled at once.
    H2Raw c(g.port);
    uint32_t id = 1;
    int64_t code = -1;
    for (int i = 0; i < 100 && code < 0; ++i, id += 2) {
      c.Headers(id, H2Raw::Get("/local", g.port), true);
      c.Frame(kH2RstStream, 0, id, H2Raw::U32(8));  // CANCEL
      if (i % 10 == 9) code = c.UntilGoaway(300);
    }
    if (code < 0) code = c.UntilGoaway();
    EXPECT_EQ(code, 11) << "ENHANCE_YOUR_CALM";  // 0xb
  }
  {  // PING flood.
    H2Raw c(g.port);
    std::string pings;
    for (int i = 0; i < 200; ++i) pings += H2Raw::FrameBytes(kH2Ping, 0, 0, std::string(8, 'p'));
    c.Send(pings);
    EXPECT_EQ(c.UntilGoaway(), 11);
  }
  {  // CONTINUATION flood (CVE-2024-27316 class): a header block that never ends.
    H2Raw c(g.port);
    std::string block = H2Raw::Block(H2Raw::Get("/local", g.port));
    c.Frame(kH2Headers, kH2EndStream, 1, block);
    for (int i = 0; i < 50 && !c.eof; ++i)
      c.Frame(kH2Continuation, 0, 1, H2Raw::Block({{"x-pad", std::string(100, 'a')}}));
    int64_t code = c.UntilGoaway();
    EXPECT_NE(code, 0) << "the connection ends with an error";
  }
  {  // A header list over http.max_header_bytes is answered 431, the connection goes on.
    H2Raw c(g.port);
    H2Raw::Fields f = H2Raw::Get("/local", g.port);
    f.push_back({"x-big", std::string(40000, 'b')});
    std::string block = H2Raw::Block(f);
    c.Frame(kH2Headers, kH2EndStream, 1, block.substr(0, 16000));
    c.Frame(kH2Continuation, 0, 1, block.substr(16000, 16000));
    c.Frame(kH2Continuation, kH2EndHeaders, 1, block.substr(32000));
    EXPECT_EQ(c.Response(1).status, 431);
    c.Headers(3, H2Raw::Get("/local", g.port), true);
    EXPECT_EQ(c.Response(3).status, 200);
  }
  {  // max_concurrent_streams: five open streams are served; a sixth, once the client has
     // acknowledged the limit, ends the connection (nghttp2 treats it as a connection error).
    H2Raw c(g.port);
    c.Next(1000);  // the server's SETTINGS (acknowledged)
    for (uint32_t id = 1; id <= 9; id += 2) c.Headers(id, Post(g.port, "/echo", 10), false);
    c.Frame(kH2Data, kH2EndStream, 1, "0123456789");
    H2Raw::Result ok = c.Response(1);
    EXPECT_EQ(ok.status, 200);
    EXPECT_NE(ok.body.find("body=10"), std::string::npos) << ok.body;
    c.Headers(11, Post(g.port, "/echo", 10), false);  // the fifth open stream: allowed
    c.Headers(13, Post(g.port, "/echo", 10), false);  // the sixth
    EXPECT_EQ(c.UntilGoaway(), 1) << "PROTOCOL_ERROR";
  }
  {  // A header block that stops half-way is ended by client_header_timeout.
    H2Raw c(g.port);
    c.Next(1000);  // the server's SETTINGS, acknowledged now: nothing may follow the HEADERS
    auto start = std::chrono::steady_clock::now();
    c.Frame(kH2Headers, kH2EndStream, 1, H2Raw::Block(H2Raw::Get("/local", g.port)));
    int64_t code = c.UntilGoaway(10000);
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(code, 1) << "PROTOCOL_ERROR";
    EXPECT_GE(took, 900ms);
  }
  {  // A client that opens no window stalls its response: send_timeout resets the stream.
    H2Raw c(g.port);
    c.auto_window = false;
    c.Frame(kH2Settings, 0, 0, std::string("\x00\x04", 2) + H2Raw::U32(0));  // initial window 0
    auto start = std::chrono::steady_clock::now();
    c.Headers(1, H2Raw::Get("/echo", g.port), true);
    H2Raw::Result r = c.Response(1, 10000);
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.status, 200);  // the HEADERS need no window
    EXPECT_EQ(r.rst, 2) << "INTERNAL_ERROR after send_timeout; goaway " << r.goaway << " body "
                        << r.body.size() << " ended " << r.ended;
    EXPECT_GE(took, 900ms);
  }
  std::string m = g.Metrics();
  EXPECT_EQ(Metric(m, "bulwark_http2_rapid_resets_total"), "1") << m;
  EXPECT_EQ(Metric(m, "bulwark_http2_floods_total"), "1") << m;
  EXPECT_GE(std::stoll("0" + Metric(m, "bulwark_http2_protocol_errors_total")), 2) << m;
}

// A stream's window opens only as far as its exchange has taken the body: a request that
// limit_req delays holds its client at the initial window, and the window opens once the
// request goes on (flow control as back-pressure, not buffering).
TEST(H2, TheWindowOpensOnlyAsTheBodyIsForwarded) {
  Backend backend([&](const Backend::Request& r) { return Echo(r, ""); });
  Gateway g(backend.port(), "", "", "limit_req_zones: {slow: {rate: 1r/s}}\n",
            "              {prefix: /slow, upstream: app, limit_req: {zone: slow, burst: 5}},\n");
  ASSERT_TRUE(g.Ready()) << g.bw->log();
  H2Raw c(g.port);
  c.Next(1000);  // the server's SETTINGS
  auto t0 = std::chrono::steady_clock::now();
  c.Headers(1, H2Raw::Get("/slow", g.port), true);
  ASSERT_EQ(c.Response(1).status, 200);  // the zone's first request passes at once
  // The second is delayed by limit_req (1 s at 1r/s, counted from the first).
  const size_t total = 200000;
  H2Raw::Fields f = Post(g.port, "/slow", total);
  c.Headers(3, f, false);
  size_t sent = 0;
  const size_t window = 65535;
  while (sent < window) {
    size_t n = std::min<size_t>(16384, window - sent);
    c.Frame(kH2Data, 0, 3, std::string(n, 'd'));
    sent += n;
  }
  // Nothing more may be sent until the server opens the stream's window, which it does only
  // when the delay is over and the exchange forwards what it holds.
  int64_t credit = 0;
  std::chrono::steady_clock::time_point opened{};
  while (sent < total) {
    H2Raw::Frame_ fr = c.Next(10000);
    ASSERT_TRUE(fr.ok) << "no window update; sent " << sent;
    if (fr.type == kH2RstStream || fr.type == kH2Goaway) FAIL() << "stream ended: " << fr.code();
    if (fr.type != kH2WindowUpdate || fr.stream != 3) continue;
    if (opened == std::chrono::steady_clock::time_point{})
      opened = std::chrono::steady_clock::now();
    credit += fr.code() & 0x7fffffff;  // the increment
    while (credit > 0 && sent < total) {
      size_t n = std::min<size_t>({16384, static_cast<size_t>(credit), total - sent});
      sent += n;
      credit -= static_cast<int64_t>(n);
      c.Frame(kH2Data, sent == total ? kH2EndStream : 0, 3, std::string(n, 'd'));
    }
  }
  EXPECT_GE(opened - t0, 900ms) << "the window opened before limit_req let the request go";
  H2Raw::Result r = c.Response(3);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("POST /slow body=200000"), std::string::npos) << r.body;
}

TEST(H2, RefusesMalformedFramesAndHeadersAsRfc9113Says) {
  Backend backend([&](const Backend::Request& r) { return Echo(r, ""); });
  Gateway g(backend.port());
  ASSERT_TRUE(g.Ready()) << g.bw->log();
  // Malformed requests: the stream is reset with PROTOCOL_ERROR (RFC 9113 8.1.1), the
  // connection serves the next one.
  std::vector<std::pair<std::string, H2Raw::Fields>> bad = {
      {"an uppercase name",
       {{":method", "GET"},
        {":scheme", "http"},
        {":path", "/"},
        {":authority", "a"},
        {"X-Up", "1"}}},
      {"a connection-specific field",
       {{":method", "GET"},
        {":scheme", "http"},
        {":path", "/"},
        {":authority", "a"},
        {"connection", "keep-alive"}}},
      {"te other than trailers",
       {{":method", "GET"},
        {":scheme", "http"},
        {":path", "/"},
        {":authority", "a"},
        {"te", "gzip"}}},
      {"no :path", {{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}}},
      {"a pseudo-header after a field",
       {{":method", "GET"}, {":scheme", "http"}, {"x-a", "1"}, {":path", "/"}}},
      {"a duplicate :path",
       {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":path", "/x"}}},
      {"an unknown pseudo-header",
       {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":foo", "1"}}},
      {"a CR in a value",
       {{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {"x-a", "1\r\nx-b: 2"}}},
  };
  {
    H2Raw c(g.port);
    uint32_t id = 1;
    for (const auto& [what, fields] : bad) {
      c.Headers(id, fields, true);
      H2Raw::Result r = c.Response(id);
      EXPECT_EQ(r.rst, 1) << what;
      EXPECT_EQ(r.status, 0) << what;
      id += 2;
    }
    c.Headers(id, H2Raw::Get("/local", g.port), true);
    EXPECT_EQ(c.Response(id).status, 200);
    // More DATA than content-length said.
    id += 2;
    c.Headers(id, Post(g.port, "/echo", 3), false);
    c.Frame(kH2Data, kH2EndStream, id, "12345");
    EXPECT_EQ(c.Response(id).rst, 1);
  }
  // Connection errors: GOAWAY with the RFC's code.
  struct Case {
    const char* what;
    std::string bytes;
    int64_t code;
  };
  std::vector<Case> cases = {
      {"DATA on stream 0", H2Raw::FrameBytes(kH2Data, 0, 0, "x"), 1},
      {"HEADERS on an even stream",
       H2Raw::FrameBytes(kH2Headers, 5, 2, H2Raw::Block(H2Raw::Get("/"))), 1},
      {"a frame over SETTINGS_MAX_FRAME_SIZE",
       H2Raw::FrameBytes(kH2Ping, 0, 0, std::string(20000, 'x')), 6},
      {"a PING of the wrong size", H2Raw::FrameBytes(kH2Ping, 0, 0, "1234"), 6},
      {"a window over 2^31-1", H2Raw::FrameBytes(kH2WindowUpdate, 0, 0, H2Raw::U32(0x7fffffff)), 3},
      {"SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1",
       H2Raw::FrameBytes(kH2Settings, 0, 0, std::string("\x00\x04", 2) + H2Raw::U32(0x80000000)),
       3},
      {"CONTINUATION without HEADERS", H2Raw::FrameBytes(kH2Continuation, 4, 1, "x"), 1},
  };
  for (const auto& c : cases) {
    H2Raw raw(g.port);
    raw.Send(c.bytes);
    EXPECT_EQ(raw.UntilGoaway(), c.code) << c.what;
  }
  // The same port still speaks HTTP/1.1 to a client that does not start with the preface.
  Response r = HttpGet(g.port, "/local");
  EXPECT_EQ(r.status, 200);
  {  // A reload that changes the HTTP/2 settings: open connections get GOAWAY(NO_ERROR).
    H2Raw c(g.port);
    c.Headers(1, H2Raw::Get("/local", g.port), true);
    EXPECT_EQ(c.Response(1).status, 200);
    std::string cfg = ReadFile(g.bw->config_path());
    cfg.replace(cfg.find("http:\n"), 6, "http:\n  http2: {max_concurrent_streams: 50}\n");
    WriteFile(g.bw->config_path(), cfg);
    ASSERT_EQ(HttpPost(g.admin, "/api/v1/reload", "").status, 200) << g.bw->log();
    EXPECT_EQ(c.UntilGoaway(), 0);
    c.Next(5000);
    EXPECT_TRUE(c.eof);
  }
  std::string m = g.Metrics();
  EXPECT_GE(std::stoll("0" + Metric(m, "bulwark_http2_protocol_errors_total")), 7) << m;
}

TEST(H2, DrainSendsGoawayAndStreamsInFlightFinish) {
  std::atomic<bool> release{false};
  Backend backend([&](const Backend::Request& r) {
    if (r.target == "/slow") {
      WaitFor([&] { return release.load(); }, 10000);
    }
    return Echo(r, "");
  });
  Gateway g(backend.port(), "  keepalive_timeout: 1s\n");
  ASSERT_TRUE(g.Ready()) << g.bw->log();
  {  // Idle: keepalive_timeout, then GOAWAY(NO_ERROR) and the end of the connection.
    H2Raw c(g.port);
    c.Headers(1, H2Raw::Get("/local", g.port), true);
    EXPECT_EQ(c.Response(1).status, 200);
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(c.UntilGoaway(10000), 0);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 900ms);
    c.Next(5000);
    EXPECT_TRUE(c.eof);
  }
  H2Raw c(g.port);
  c.Headers(1, H2Raw::Get("/slow", g.port), true);
  ASSERT_TRUE(WaitFor([&] { return backend.requests() >= 1; }, 5000));
  g.bw->process().Signal(SIGTERM);
  // GOAWAY names stream 1 as the last: it finishes; a new stream is not served.
  H2Raw::Frame_ f = c.Next(5000);
  while (f.ok && f.type != kH2Goaway) f = c.Next(5000);
  ASSERT_TRUE(f.ok);
  EXPECT_EQ(f.code(), 0u);
  EXPECT_EQ(H2Raw::U32(1), f.payload.substr(0, 4));
  release = true;
  H2Raw::Result r = c.Response(1);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("GET /slow"), std::string::npos);
}

}  // namespace
}  // namespace bulwark::testing
