#include "http/parser.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace bulwark::http {
namespace {

// The head holds views into the input, so the result owns a stable copy of it.
struct Result {
  std::unique_ptr<std::string> input;
  ParseStatus status;
  int error_status = 0;
  RequestHead head;
};

Result Parse(const std::string& s, Limits limits = {}) {
  Result r;
  r.input = std::make_unique<std::string>(s);
  ParseError err;
  r.status = ParseRequest(r.input->data(), r.input->size(), limits, &r.head, &err);
  if (r.status == ParseStatus::kError) r.error_status = err.status;
  return r;
}

TEST(RequestParser, SimpleGet) {
  std::string s = "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n";
  Result r = Parse(s);
  ASSERT_EQ(r.status, ParseStatus::kDone);
  EXPECT_EQ(r.head.method, Method::kGet);
  EXPECT_EQ(r.head.path, "/a/b");
  EXPECT_EQ(r.head.query, "x=1");
  EXPECT_EQ(r.head.host, "example.com");
  EXPECT_EQ(r.head.headers.size(), 2u);
  EXPECT_TRUE(r.head.keep_alive);
  EXPECT_EQ(r.head.body, BodyKind::kNone);
  EXPECT_EQ(r.head.head_len, s.size());
}

TEST(RequestParser, IncompleteNeedsMore) {
  std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (size_t i = 0; i < s.size(); ++i)
    EXPECT_EQ(Parse(s.substr(0, i)).status, ParseStatus::kNeedMore) << i;
}

TEST(RequestParser, ByteByByteScannerFindsEnd) {
  std::string s = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
  HeadScanner sc;
  Limits l;
  size_t end = 0;
  ParseError err;
  ParseStatus st = ParseStatus::kNeedMore;
  size_t i = 1;
  for (; i <= s.size() && st == ParseStatus::kNeedMore; ++i)
    st = sc.Scan(s.data(), i, l, true, &end, &err);
  ASSERT_EQ(st, ParseStatus::kDone);
  EXPECT_EQ(end, s.size() - 3);
}

TEST(RequestParser, ContentLengthBody) {
  Result r = Parse("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::kDone);
  EXPECT_EQ(r.head.body, BodyKind::kLength);
  EXPECT_EQ(r.head.content_length, 42u);
}

TEST(RequestParser, IdenticalDuplicateContentLengthAccepted) {
  Result r = Parse("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::kDone);
  EXPECT_EQ(r.head.content_length, 5u);
}

TEST(RequestParser, Http10DefaultsToClose) {
  Result r = Parse("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::kDone);
  EXPECT_FALSE(r.head.keep_alive);
  r = Parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_TRUE(r.head.keep_alive);
}

TEST(RequestParser, ConnectionCloseAndUpgrade) {
  Result r = Parse(
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: "
      "websocket\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::kDone);
  EXPECT_TRUE(r.head.connection_upgrade);
  EXPECT_EQ(r.head.upgrade, "websocket");
  r = Parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_FALSE(r.head.keep_alive);
}

TEST(RequestParser, AbsoluteFormTakesAuthorityAsHost) {
  Result r = Parse("GET http://other.example/p?q HTTP/1.1\r\nHost: ignored\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::kDone);
  EXPECT_EQ(r.head.host, "other.example");
  EXPECT_EQ(r.head.path, "/p");
  EXPECT_EQ(r.head.query, "q");
}

TEST(RequestParser, LeadingEmptyLineIgnored) {
  Result r = Parse("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::kDone);
  EXPECT_EQ(r.head.path, "/");
}

// Each smuggling vector must be refused with the right status, never parsed into a request.
struct BadCase {
  const char* name;
  std::string input;
  int status;
};

class RequestParserRejects : public ::testing::TestWithParam<BadCase> {};

TEST_P(RequestParserRejects, WithStatus) {
  Result r = Parse(GetParam().input);
  ASSERT_EQ(r.status, ParseStatus::kError) << GetParam().name;
  EXPECT_EQ(r.error_status, GetParam().status) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(
    Smuggling, RequestParserRejects,
    ::testing::Values(
        BadCase{
            "cl_and_te",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            400},
        BadCase{
            "te_and_cl",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
            400},
        BadCase{"differing_cl",
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
                400},
        BadCase{"cl_list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 5\r\n\r\n", 400},
        BadCase{"cl_sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n", 400},
        BadCase{"cl_hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400},
        BadCase{"cl_overflow",
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
        BadCase{"te_space_before_colon",
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
        BadCase{"te_vertical_tab",
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0b"
                "chunked\r\n\r\n",
                400},
        BadCase{"te_not_final",
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400},
        BadCase{"te_xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
                400},
        BadCase{"te_gzip_chunked",
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        BadCase{"te_duplicate",
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                "chunked\r\n\r\n",
                400},
        BadCase{"te_in_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        BadCase{"bare_lf_request_line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
        BadCase{"bare_lf_header", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400},
        BadCase{"bare_cr_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
        BadCase{"nul_in_value", std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35),
                400},
        BadCase{"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400},
        BadCase{"missing_host", "GET / HTTP/1.1\r\n\r\n", 400},
        BadCase{"double_host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        BadCase{"bad_version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        BadCase{"garbage_version", "GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"double_space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"space_in_target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        BadCase{"no_colon", "GET / HTTP/1.1\r\nHost: a\r\nBroken\r\n\r\n", 400},
        BadCase{"bad_target", "GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400}));

TEST(RequestParser, RequestLineLimitIs414) {
  Limits l;
  l.max_request_line = 64;
  Result r = Parse("GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", l);
  ASSERT_EQ(r.status, ParseStatus::kError);
  EXPECT_EQ(r.error_status, 414);
  // Even before the line ends.
  r = Parse("GET /" + std::string(100, 'a'), l);
  EXPECT_EQ(r.error_status, 414);
}

TEST(RequestParser, HeaderLimitsAre431) {
  Limits l;
  l.max_headers = 3;
  std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 5; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
  Result r = Parse(s + "\r\n", l);
  EXPECT_EQ(r.error_status, 431);
  Limits l2;
  l2.max_header_bytes = 256;
  r = Parse("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(400, 'v') + "\r\n\r\n", l2);
  EXPECT_EQ(r.error_status, 431);
}

TEST(ResponseParser, StatusAndFraming) {
  std::string s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  ResponseHead h;
  ParseError err;
  ASSERT_EQ(ParseResponse(s.data(), s.size(), Limits{}, Method::kGet, &h, &err),
            ParseStatus::kDone);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.reason, "OK");
  EXPECT_EQ(h.body, BodyKind::kLength);
  EXPECT_EQ(h.content_length, 5u);
}

TEST(ResponseParser, NoBodyCases) {
  ResponseHead h;
  ParseError err;
  std::string s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  ASSERT_EQ(ParseResponse(s.data(), s.size(), Limits{}, Method::kHead, &h, &err),
            ParseStatus::kDone);
  EXPECT_EQ(h.body, BodyKind::kNone);
  s = "HTTP/1.1 304 Not Modified\r\n\r\n";
  ASSERT_EQ(ParseResponse(s.data(), s.size(), Limits{}, Method::kGet, &h, &err),
            ParseStatus::kDone);
  EXPECT_EQ(h.body, BodyKind::kNone);
  s = "HTTP/1.1 200 OK\r\n\r\n";
  ASSERT_EQ(ParseResponse(s.data(), s.size(), Limits{}, Method::kGet, &h, &err),
            ParseStatus::kDone);
  EXPECT_EQ(h.body, BodyKind::kUntilClose);
  EXPECT_FALSE(h.keep_alive);
}

TEST(ResponseParser, RejectsSmugglingShapes) {
  ResponseHead h;
  ParseError err;
  std::string s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(ParseResponse(s.data(), s.size(), Limits{}, Method::kGet, &h, &err),
            ParseStatus::kError);
  EXPECT_EQ(err.status, 502);
  s = "HTTP/1.1 2OO OK\r\n\r\n";
  EXPECT_EQ(ParseResponse(s.data(), s.size(), Limits{}, Method::kGet, &h, &err),
            ParseStatus::kError);
}

TEST(Headers, HopByHop) {
  EXPECT_TRUE(IsHopByHop("Connection"));
  EXPECT_TRUE(IsHopByHop("keep-alive"));
  EXPECT_TRUE(IsHopByHop("Transfer-Encoding"));
  EXPECT_TRUE(IsHopByHop("TE"));
  EXPECT_FALSE(IsHopByHop("Content-Length"));
  EXPECT_TRUE(ListHasToken("keep-alive, Upgrade", "upgrade"));
  EXPECT_FALSE(ListHasToken("keep-alive", "close"));
}

}  // namespace
}  // namespace bulwark::http
