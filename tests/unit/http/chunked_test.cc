#include "http/chunked.h"

#include <string>

#include "gtest/gtest.h"
#include "http/parser.h"

namespace bulwark::http {
namespace {

struct Out {
  ChunkedDecoder::Result r;
  std::string data;
  size_t consumed;
};

Out Decode(const std::string& in, size_t step = 0) {
  ChunkedDecoder d;
  Out o{ChunkedDecoder::Result::kNeedMore, "", 0};
  if (step == 0) step = in.size();
  size_t pos = 0;
  while (pos < in.size()) {
    size_t n = std::min(step, in.size() - pos);
    size_t c = 0;
    o.r = d.Feed(in.data() + pos, n, &c, [&](const char* p, size_t len) { o.data.append(p, len); });
    pos += c;
    if (o.r != ChunkedDecoder::Result::kNeedMore) break;
  }
  o.consumed = pos;
  return o;
}

TEST(Chunked, DecodesWholeAndBytewise) {
  std::string in = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
  for (size_t step : {0, 1, 2, 7}) {
    Out o = Decode(in, step);
    EXPECT_EQ(o.r, ChunkedDecoder::Result::kDone) << step;
    EXPECT_EQ(o.data, "hello world") << step;
    EXPECT_EQ(in.substr(o.consumed), "NEXT") << step;
  }
}

TEST(Chunked, Trailers) {
  Out o = Decode("3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n");
  EXPECT_EQ(o.r, ChunkedDecoder::Result::kDone);
  EXPECT_EQ(o.data, "abc");
  // They are kept as their lines, whichever way the bytes arrive.
  for (size_t step : {1, 3, 100}) {
    ChunkedDecoder d;
    std::string in = "0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n";
    size_t pos = 0, c = 0;
    while (pos < in.size()) {
      size_t n = std::min(step, in.size() - pos);
      if (d.Feed(in.data() + pos, n, &c, [](const char*, size_t) {}) ==
          ChunkedDecoder::Result::kError)
        break;
      pos += c;
    }
    EXPECT_EQ(d.trailers(), "grpc-status: 0\r\ngrpc-message: ok\r\n") << step;
  }
  ChunkedDecoder none;
  size_t c = 0;
  none.Feed("0\r\n\r\n", 5, &c, [](const char*, size_t) {});
  EXPECT_EQ(none.trailers(), "");
}

TEST(Chunked, TrailerFieldsKeepWhatATrailerMayCarry) {
  auto f = TrailerFields(
      "Grpc-Status: 14\r\ngrpc-message:  unavailable \r\nContent-Length: 3\r\n"
      "Transfer-Encoding: chunked\r\nHost: a\r\nSet-Cookie: s=1\r\nbad name: 1\r\n"
      ": empty\r\nno-colon\r\nx-ctl: a\x01b\r\nX-Sum: abc\r\n");
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0], std::make_pair(std::string("grpc-status"), std::string("14")));
  EXPECT_EQ(f[1], std::make_pair(std::string("grpc-message"), std::string("unavailable")));
  EXPECT_EQ(f[2], std::make_pair(std::string("x-sum"), std::string("abc")));
  EXPECT_TRUE(TrailerFields("").empty());
}

TEST(Chunked, UpperCaseHexAndBws) {
  Out o = Decode("A \t;x\r\n0123456789\r\n0\r\n\r\n");
  EXPECT_EQ(o.r, ChunkedDecoder::Result::kDone);
  EXPECT_EQ(o.data, "0123456789");
}

TEST(Chunked, RejectsBadFraming) {
  for (const char* bad :
       {"x\r\n", "\r\n", "-1\r\n", "1000000000000000\r\n", "5\nhello\r\n", "3\r\nabcX\r\n",
        "3\r\nabc\n0\r\n\r\n", "0\r\n\n", "0\r\nX: y\n\r\n", "3;a\nb\r\nabc\r\n", "5 x\r\n"}) {
    EXPECT_EQ(Decode(bad).r, ChunkedDecoder::Result::kError) << bad;
  }
}

}  // namespace
}  // namespace bulwark::http
