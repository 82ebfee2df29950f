// Request smuggling and malformed input against a running bulwark: each case is refused with the
// right status, the connection is closed, and nothing reaches the backend.
#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

struct Case {
  const char* name;
  std::string raw;
  int status;
};

class Smuggling : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    backend_ = new Backend([](const Backend::Request&) { return Backend::Reply(200, "reached"); });
    port_ = FreePort();
    int admin = FreePort();
    bulwark_ = new Bulwark("workers: 1\naccess_log: {enabled: false}\nadmin: {listen: 127.0.0.1:" +
                           std::to_string(admin) +
                           "}\nhttp: {max_request_line: 1k, max_header_bytes: 4k, max_headers: 20, "
                           "client_max_body_size: 1k}\n"
                           "listeners: [{listen: '127.0.0.1:" +
                           std::to_string(port_) +
                           "', routes: [{prefix: /, upstream: app}]}]\n"
                           "upstreams: {app: {servers: ['127.0.0.1:" +
                           std::to_string(backend_->port()) + "']}}\n");
    ASSERT_TRUE(bulwark_->Ready(port_));
  }
  static void TearDownTestSuite() {
    delete bulwark_;
    delete backend_;
  }
  static Backend* backend_;
  static Bulwark* bulwark_;
  static int port_;
};
Backend* Smuggling::backend_ = nullptr;
Bulwark* Smuggling::bulwark_ = nullptr;
int Smuggling::port_ = 0;

TEST_F(Smuggling, EveryVectorIsRefusedAndNeverForwarded) {
  const std::vector<Case> cases = {
      {"CL.TE",
       "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: "
       "chunked\r\n\r\n0\r\n\r\nG",
       400},
      {"TE.CL",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: "
       "3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
       400},
      {"differing CL",
       "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
      {"TE with space before colon",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400},
      {"TE xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
       400},
      {"TE chunked then identity",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400},
      {"TE with vertical tab",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0b"
       "chunked\r\n\r\n0\r\n\r\n",
       400},
      {"TE twice",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
       "identity\r\n\r\n0\r\n\r\n",
       400},
      {"TE gzip,chunked",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
      {"invalid chunk size",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
       400},
      {"chunk size overflow",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
       "chunked\r\n\r\nfffffffffffffffff1\r\nab\r\n0\r\n\r\n",
       400},
      {"chunk bare LF",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n", 400},
      {"bare LF in head", "GET / HTTP/1.1\nHost: x\n\n", 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tcontinued\r\n\r\n", 400},
      {"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"request line too long", "GET /" + std::string(2000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n",
       414},
      {"too many headers",
       "GET / HTTP/1.1\r\nHost: x\r\n" +
           [] {
             std::string s;
             for (int i = 0; i < 30; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
             return s;
           }() +
           "\r\n",
       431},
      {"header bytes", "GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(5000, 'v') + "\r\n\r\n",
       431},
      {"body too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413},
      {"chunked body too large",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" +
           std::string(2048, 'z') + "\r\n0\r\n\r\n",
       413},
      {"HTTP/2.0 line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501},
  };
  for (const auto& c : cases) {
    int before = backend_->requests();
    Client client(port_);
    ASSERT_TRUE(client.connected());
    client.Send(c.raw);
    Response r = client.Read();
    EXPECT_EQ(r.status, c.status) << c.name;
    EXPECT_TRUE(client.WaitClosed(2000)) << c.name << ": connection must be closed";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    // The chunked-too-large case may have started forwarding before the limit was hit; all
    // others must never reach the backend at all.
    if (std::string(c.name) != "chunked body too large") {
      EXPECT_EQ(backend_->requests(), before) << c.name;
    }
  }
  // After all that, a normal request on a fresh connection still works.
  EXPECT_EQ(HttpGet(port_, "/").body, "reached");
}

}  // namespace
}  // namespace bulwark::testing
