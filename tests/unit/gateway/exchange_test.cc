// The exchange driven without an HTTP/1.1 connection: a fake Downstream hands it a request head
// and collects the response, as an HTTP/2 stream will. Two exchanges run at once on one
// (fake) connection against a real upstream socket on loopback.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "app/config.h"
#include "core/clock.h"
#include "core/strings.h"
#include "gateway/proxy.h"
#include "gateway/snapshot.h"
#include "gateway/worker.h"
#include "gtest/gtest.h"
#include "tests/unit/fake_env.h"

namespace bulwark::gateway {
namespace {

// One request of a multiplexed connection: its head and body bytes in, its response out.
class FakeStream final : public Downstream {
 public:
  FakeStream(Worker* worker, std::string request) : worker_(worker), ex_(worker, this) {
    input_.Init(request.size() + 1024);
    std::memcpy(input_.write_ptr(), request.data(), request.size());
    input_.wpos = request.size();
    http::Limits limits;
    http::HeadScanner scanner;
    size_t end = 0;
    http::ParseError err;
    EXPECT_EQ(scanner.Scan(input_.read_ptr(), input_.readable(), limits, true, &end, &err),
              http::ParseStatus::kDone);
    EXPECT_EQ(http::ParseRequestHead(input_.read_ptr(), end, limits, &head_, &err),
              http::ParseStatus::kDone);
    timer_.set_callback([this] { ex_.OnTimeout(); });
  }

  // Worker thread.
  void Start() {
    ex_.request().start_us = MonotonicUs();
    ex_.request().start_ms = worker_->loop().now_ms();
    ex_.Begin();
  }
  void Stop() {
    worker_->loop().CancelTimer(&timer_);
    ex_.End();
  }
  std::future<std::string> result() { return done_.get_future(); }
  bool keep_alive() const { return keep_alive_; }
  bool aborted() const { return aborted_; }

  const http::RequestHead& request_head() const override { return head_; }
  Buffer& input() override { return input_; }
  void ResumeRead() override {}
  OutQueue& output() override { return output_; }
  void Write() override {
    sent_.append(output_.buf, output_.off, output_.pending());
    output_.Clear();
  }
  void ExchangeDone(bool keep_alive) override {
    Write();
    keep_alive_ = keep_alive;
    done_.set_value(sent_);
  }
  void Abort() override {
    aborted_ = true;
    done_.set_value(sent_);
  }
  bool open() const override { return !aborted_; }
  void StartTunnel() override { Abort(); }
  void Tunnel() override {}
  void ArmTimer(int64_t ms) override { worker_->loop().ArmTimer(&timer_, ms); }
  void CancelTimer() override { worker_->loop().CancelTimer(&timer_); }
  const SocketAddress& peer() const override { return peer_; }
  std::string_view peer_ip() const override { return "192.0.2.7"; }
  bool secure() const override { return true; }
  int listener_index() const override { return 0; }
  int requests() const override { return 1; }
  VerifiedToken& verified_token() override { return token_; }

 private:
  Worker* worker_;
  http::RequestHead head_;
  Buffer input_;
  OutQueue output_;
  std::string sent_;
  Timer timer_;
  SocketAddress peer_ = *ParseSocketAddress("192.0.2.7:40000");
  VerifiedToken token_;
  bool keep_alive_ = false;
  bool aborted_ = false;
  std::promise<std::string> done_;
  Exchange ex_;
};

// A worker with the gateway of `yaml` (its thread runs the loop).
struct Harness {
  explicit Harness(const std::string& yaml) {
    ConfigLoad load = LoadConfigText(yaml, "exchange.yml", testing::FakeEnv());
    EXPECT_TRUE(load.errors.empty()) << Join(load.errors, "\n");
    if (!load.config) return;
    auto snap = Snapshot::Build(load.config->gateway, 1, nullptr, &servers, &zones, &endpoints, 1);
    EXPECT_TRUE(snap.ok()) << snap.status();
    if (!snap.ok()) return;
    worker = std::make_unique<Worker>(0, WorkerShared{&endpoints, nullptr, nullptr, "t", "s"});
    EXPECT_TRUE(worker->Start(*snap).ok());
  }
  ~Harness() {
    if (worker) worker->Stop();
  }
  // Runs `fn` on the worker's thread and waits for it.
  void OnWorker(std::function<void()> fn) {
    std::promise<void> ran;
    worker->loop().Post([&] {
      fn();
      ran.set_value();
    });
    ran.get_future().wait();
  }

  ServerRegistry servers;
  ZoneRegistry zones;
  observe::Interner endpoints;
  std::unique_ptr<Worker> worker;
};

std::string HexSize(size_t n) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%zx", n);
  return buf;
}

// Reads one request head from `fd` (5 s at most); empty on timeout or EOF.
std::string ReadHead(int fd) {
  std::string got;
  char buf[4096];
  while (got.find("\r\n\r\n") == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) return "";
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return "";
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

TEST(Exchange, AnswersAReturnRouteThroughItsDownstream) {
  Harness h(R"(
listeners:
  - listen: 127.0.0.1:0
    routes:
      - {name: moved, prefix: /, return: {status: 301, location: "$scheme://$host$request_uri"}}
)");
  ASSERT_NE(h.worker, nullptr);
  auto s = std::make_unique<FakeStream>(h.worker.get(),
                                        "GET /a?b=1 HTTP/1.1\r\nHost: Example.com:8443\r\n\r\n");
  auto answer = s->result();
  h.OnWorker([&] { s->Start(); });
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  std::string r = answer.get();
  EXPECT_EQ(r.substr(0, 13), "HTTP/1.1 301 ") << r;
  // $scheme comes from the carrier (secure), $host from the head, lower-cased without its port.
  EXPECT_NE(r.find("\r\nLocation: https://example.com/a?b=1\r\n"), std::string::npos) << r;
  EXPECT_TRUE(s->keep_alive());
  h.OnWorker([&] { s->Stop(); });
}

TEST(Exchange, TwoExchangesOfOneConnectionAreAtTheUpstreamAtOnce) {
  auto listening = ListenTcp(*ParseSocketAddress("127.0.0.1:0"), /*reuse_port=*/false, 16);
  ASSERT_TRUE(listening.ok()) << listening.status();
  int lfd = *listening;
  int port = LocalPort(lfd);
  // The server answers only once both requests are in: an exchange that waited for the other
  // one (one request at a time per connection) would never be answered.
  std::atomic<int> heads{0};
  std::thread server([&] {
    std::vector<int> conns;
    std::vector<std::string> paths;
    for (int i = 0; i < 2; ++i) {
      pollfd p{lfd, POLLIN, 0};
      if (poll(&p, 1, 10000) <= 0) break;
      int c = accept(lfd, nullptr, nullptr);
      std::string head = ReadHead(c);
      if (head.empty()) {
        close(c);
        break;
      }
      ++heads;
      conns.push_back(c);
      paths.push_back(head.substr(4, head.find(' ', 4) - 4));
    }
    for (size_t i = 0; i < conns.size(); ++i) {
      // Chunked with a trailer (as gRPC sends grpc-status): passed through as it came.
      std::string body = StrCat("served ", paths[i]);
      std::string resp =
          StrCat("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HexSize(body.size()),
                 "\r\n", body, "\r\n0\r\ngrpc-status: 0\r\n\r\n");
      send(conns[i], resp.data(), resp.size(), MSG_NOSIGNAL);
      close(conns[i]);
    }
  });
  Harness h(StrCat(R"(
listeners:
  - listen: 127.0.0.1:0
    routes:
      - {name: api, prefix: /, upstream: api}
upstreams:
  api:
    servers: ["127.0.0.1:)",
                   port, R"("]
)"));
  ASSERT_NE(h.worker, nullptr);
  auto a = std::make_unique<FakeStream>(h.worker.get(), "GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
  auto b = std::make_unique<FakeStream>(h.worker.get(), "GET /two HTTP/1.1\r\nHost: x\r\n\r\n");
  auto ra = a->result();
  auto rb = b->result();
  h.OnWorker([&] {
    a->Start();
    b->Start();
  });
  ASSERT_EQ(ra.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  ASSERT_EQ(rb.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  server.join();
  close(lfd);
  EXPECT_EQ(heads.load(), 2);
  std::string one = ra.get(), two = rb.get();
  EXPECT_EQ(one.substr(0, 13), "HTTP/1.1 200 ") << one;
  EXPECT_NE(one.find("served /one"), std::string::npos) << one;
  EXPECT_NE(two.find("served /two"), std::string::npos) << two;
  EXPECT_NE(one.find("0\r\ngrpc-status: 0\r\n\r\n"), std::string::npos) << one;
  EXPECT_FALSE(a->aborted());
  EXPECT_FALSE(b->aborted());
  h.OnWorker([&] {
    a->Stop();
    b->Stop();
  });
}

}  // namespace
}  // namespace bulwark::gateway
