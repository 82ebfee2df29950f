#include "app/demo.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "app/app.h"
#include "core/event_loop.h"
#include "core/log.h"
#include "core/strings.h"
#include "http/parser.h"

namespace bulwark {

const char* DemoConfigText() {
  return
#include "app/demo_config.inc"
      ;
}

struct DemoOrigin::Impl {
  struct Conn : IoHandler {
    Impl* o;
    int fd;
    std::string in, out;
    Conn(Impl* owner, int f) : o(owner), fd(f) {}
    ~Conn() override { close(fd); }
    void OnIo(uint32_t) override {
      char buf[8192];
      for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
          in.append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          o->Drop(this);
          return;
        }
        if (errno == EAGAIN) break;
      }
      for (;;) {
        http::RequestHead req;
        http::ParseError err;
        http::Limits limits;
        http::ParseStatus st = http::ParseRequest(in.data(), in.size(), limits, &req, &err);
        if (st != http::ParseStatus::kDone) {
          if (st == http::ParseStatus::kError) o->Drop(this);
          return;
        }
        size_t total =
            req.head_len + (req.body == http::BodyKind::kLength ? req.content_length : 0);
        if (in.size() < total) return;
        std::string body =
            nlohmann::json{
                {"origin", o->name}, {"path", std::string(req.path)}, {"served", ++o->served}}
                .dump() +
            "\n";
        out = StrCat("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ",
                     body.size(), "\r\n\r\n", body);
        in.erase(0, total);
        [[maybe_unused]] ssize_t w = write(fd, out.data(), out.size());
      }
    }
  };
  struct Acceptor : IoHandler {
    Impl* o;
    explicit Acceptor(Impl* owner) : o(owner) {}
    void OnIo(uint32_t) override {
      for (;;) {
        int fd = accept4(o->lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        auto c = std::make_unique<Conn>(o, fd);
        if (!o->loop.Add(fd, EPOLLIN | EPOLLRDHUP | EPOLLET, c.get()).ok()) continue;
        o->conns.push_back(std::move(c));
      }
    }
  };
  void Drop(Conn* c) {
    loop.Remove(c->fd);
    loop.Defer([this, c] { std::erase_if(conns, [c](const auto& p) { return p.get() == c; }); });
  }

  std::string name;
  SocketAddress addr;
  EventLoop loop;
  std::thread thread;
  int lfd = -1;
  Acceptor acceptor{this};
  std::vector<std::unique_ptr<Conn>> conns;
  std::atomic<bool> running{false};
  uint64_t served = 0;
};

DemoOrigin::DemoOrigin(std::string name, SocketAddress addr) : impl_(std::make_unique<Impl>()) {
  impl_->name = std::move(name);
  impl_->addr = addr;
}

DemoOrigin::~DemoOrigin() {
  if (impl_->thread.joinable()) {
    impl_->loop.Stop();
    impl_->thread.join();
  }
}

absl::Status DemoOrigin::Start() {
  if (!impl_->thread.joinable()) {
    absl::Status s = impl_->loop.Init();
    if (!s.ok()) return s;
    impl_->thread = std::thread([this] { impl_->loop.Run(); });
  }
  absl::Status result;
  std::atomic<bool> done{false};
  impl_->loop.Post([&] {
    if (impl_->lfd < 0) {
      auto fd = ListenTcp(impl_->addr, false);
      if (!fd.ok()) {
        result = fd.status();
      } else {
        impl_->lfd = *fd;
        result = impl_->loop.Add(impl_->lfd, EPOLLIN, &impl_->acceptor);
        impl_->running = true;
      }
    }
    done = true;
  });
  while (!done) std::this_thread::yield();
  return result;
}

void DemoOrigin::Stop() {
  std::atomic<bool> done{false};
  impl_->loop.Post([&] {
    if (impl_->lfd >= 0) {
      impl_->loop.Remove(impl_->lfd);
      close(impl_->lfd);
      impl_->lfd = -1;
    }
    for (auto& c : impl_->conns) impl_->loop.Remove(c->fd);
    impl_->conns.clear();
    impl_->running = false;
    done = true;
  });
  while (!done) std::this_thread::yield();
}

bool DemoOrigin::running() const { return impl_->running; }
const std::string& DemoOrigin::name() const { return impl_->name; }
std::string DemoOrigin::address() const { return impl_->addr.ToString(); }

int RunDemo() {
  App::BlockSignals();
  EnvLookup env = ProcessEnv();
  auto port_of = [&](const char* var, int def) {
    int p = def;
    if (auto v = env(var)) ParseInt(*v, &p);
    return p;
  };
  // The demo config reads its ports from the environment, with defaults, like any bulwark config.
  int origin_base = port_of("DEMO_ORIGIN_BASE_PORT", 9101);
  std::vector<std::unique_ptr<DemoOrigin>> origins;
  for (int i = 0; i < 3; ++i) {
    auto addr = ParseSocketAddress(StrCat("127.0.0.1:", origin_base + i));
    origins.push_back(std::make_unique<DemoOrigin>(StrCat("origin-", i + 1), *addr));
    absl::Status s = origins.back()->Start();
    if (!s.ok()) {
      fprintf(stderr, "bulwark demo: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  auto demo_env = [env, origin_base](std::string_view name) -> std::optional<std::string> {
    if (auto v = env(name)) return v;
    if (name == "DEMO_ORIGIN_1") return StrCat("127.0.0.1:", origin_base);
    if (name == "DEMO_ORIGIN_2") return StrCat("127.0.0.1:", origin_base + 1);
    if (name == "DEMO_ORIGIN_3") return StrCat("127.0.0.1:", origin_base + 2);
    return std::nullopt;
  };
  ConfigLoad load = LoadConfigText(DemoConfigText(), "config/demo.yml (embedded)", demo_env);
  if (!load.errors.empty()) {
    for (const auto& e : load.errors) fprintf(stderr, "%s\n", e.c_str());
    return 1;
  }
  std::string listen = load.config->gateway->listeners[0].listen_text;
  std::string admin = load.config->admin.listen;
  App server(std::move(load.config), [demo_env] {
    return LoadConfigText(DemoConfigText(), "config/demo.yml (embedded)", demo_env);
  });
  absl::Status s = server.Start();
  if (!s.ok()) {
    fprintf(stderr, "bulwark demo: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  server.admin()->Route("GET", "/api/v1/demo/origins", [&origins](const admin::AdminRequest&) {
    nlohmann::json j = nlohmann::json::array();
    for (size_t i = 0; i < origins.size(); ++i) {
      j.push_back({{"id", i + 1},
                   {"name", origins[i]->name()},
                   {"address", origins[i]->address()},
                   {"running", origins[i]->running()}});
    }
    return admin::Json(200, j.dump());
  });
  auto toggle = [&origins](const admin::AdminRequest& r, bool start) {
    int id = 0;
    if (!ParseInt(r.params[0], &id) || id < 1 || id > static_cast<int>(origins.size())) {
      return admin::Json(404, R"({"error":"origins are numbered 1 to 3"})");
    }
    if (start) {
      absl::Status st = origins[id - 1]->Start();
      if (!st.ok())
        return admin::Json(500, nlohmann::json{{"error", std::string(st.message())}}.dump());
    } else {
      origins[id - 1]->Stop();
    }
    LogInfo("demo: ", origins[id - 1]->name(), start ? " revived" : " stopped");
    return admin::Json(
        200, nlohmann::json{{"origin", origins[id - 1]->name()}, {"running", start}}.dump());
  };
  server.admin()->Route("POST", "/api/v1/demo/origins/{id}/stop",
                        [toggle](const admin::AdminRequest& r) { return toggle(r, false); });
  server.admin()->Route("POST", "/api/v1/demo/origins/{id}/start",
                        [toggle](const admin::AdminRequest& r) { return toggle(r, true); });

  // The admin API wants its token (generated in the state directory at first start).
  std::string token_file = server.admin_token().path.empty() ? "your admin.token"
                                                              : server.admin_token().path;
  printf(
      "\nbulwark demo is running.\n\n"
      "  gateway        http://%s/            (three origins behind it, round robin)\n"
      "  health         http://%s/health\n"
      "  dashboard      http://%s/               (live charts, upstreams, alerts; it asks for\n"
      "                                               the admin token in %s)\n"
      "  metrics        http://%s/metrics\n\n"
      "Watch failover: stop an origin, keep requesting, then revive it:\n"
      "  TOKEN=$(cat %s)\n"
      "  curl -s -XPOST -H \"Authorization: Bearer $TOKEN\" http://%s/api/v1/demo/origins/2/stop\n"
      "  for i in 1 2 3 4 5 6; do curl -s http://%s/; done\n"
      "  curl -s -H \"Authorization: Bearer $TOKEN\" http://%s/api/v1/upstreams\n"
      "  curl -s -XPOST -H \"Authorization: Bearer $TOKEN\" http://%s/api/v1/demo/origins/2/start\n\n"
      "Press Ctrl-C to stop.\n\n",
      listen.c_str(), admin.c_str(), admin.c_str(), token_file.c_str(), admin.c_str(),
      token_file.c_str(), admin.c_str(), listen.c_str(), admin.c_str(), admin.c_str());
  fflush(stdout);
  return server.Run();
}

}  // namespace bulwark
