// bulwark as a service, without systemd: the test holds the notification socket and the
// listening sockets systemd would, renames log files as logrotate does, and runs the `reload`
// and `status` commands an operator types.
#include <fcntl.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <map>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/net.h"
#include "core/strings.h"
#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

std::string Cfg(int port, int admin, const std::string& extra = "") {
  return extra + "workers: 2\n" + "admin: {listen: 127.0.0.1:" + std::to_string(admin) + "}\n" +
         "listeners:\n  - listen: 127.0.0.1:" + std::to_string(port) +
         "\n    routes: [{prefix: /, return: {status: 200, body: \"up\\n\"}}]\n";
}

// The receiving end of $NOTIFY_SOCKET: one datagram per notification.
class NotifySocket {
 public:
  NotifySocket() {
    path_ = MakeTempDir() + "/notify";
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path_.c_str());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)), 0);
  }
  ~NotifySocket() { close(fd_); }
  const std::string& path() const { return path_; }
  // The next datagram, or "" after `ms`.
  std::string Next(int ms) {
    timeval tv{ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, n) : "";
  }
  // Reads datagrams until one starts with `prefix` (within `ms` in all).
  std::string Await(const std::string& prefix, int ms) {
    int64_t until = MonotonicMs() + ms;
    while (MonotonicMs() < until) {
      std::string m = Next(static_cast<int>(std::max<int64_t>(1, until - MonotonicMs())));
      if (m.rfind(prefix, 0) == 0) return m;
    }
    return "";
  }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST(Service, TellsSystemdWhenReadyReloadingAndStoppingAndFeedsTheWatchdog) {
  NotifySocket notify;
  int port = FreePort(), admin = FreePort();
  Bulwark b(Cfg(port, admin), {{"NOTIFY_SOCKET", notify.path()}, {"WATCHDOG_USEC", "400000"}});
  std::string ready = notify.Await("READY=1", 10000);
  ASSERT_NE(ready, "") << b.log();
  // READY=1 comes once the listeners are bound: the port answers now.
  EXPECT_EQ(HttpGet(port, "/").status, 200);
  EXPECT_NE(ready.find("STATUS=configuration generation 1; ready"), std::string::npos) << ready;
  // WATCHDOG=1 at half of WATCHDOG_USEC.
  int64_t first = 0, last = 0;
  int kicks = 0;
  while (kicks < 4) {
    std::string m = notify.Next(3000);
    ASSERT_NE(m, "") << "no watchdog kick\n" << b.log();
    if (m != "WATCHDOG=1") continue;
    last = MonotonicMs();
    if (kicks++ == 0) first = last;
  }
  EXPECT_GE(last - first, 3 * 150);  // three intervals of 200 ms, less scheduling slack

  b.process().Signal(SIGHUP);
  std::string reloading = notify.Await("RELOADING=1", 10000);
  ASSERT_NE(reloading, "") << b.log();
  // MONOTONIC_USEC is CLOCK_MONOTONIC, which this process shares.
  size_t at = reloading.find("MONOTONIC_USEC=");
  ASSERT_NE(at, std::string::npos) << reloading;
  int64_t usec = std::stoll(reloading.substr(at + 15));
  EXPECT_LE(usec, MonotonicNs() / 1000);
  EXPECT_GE(usec, MonotonicNs() / 1000 - 30'000'000);
  std::string again = notify.Await("READY=1", 10000);
  EXPECT_NE(again.find("generation 2"), std::string::npos) << again;

  b.process().Signal(SIGTERM);
  EXPECT_NE(notify.Await("STOPPING=1", 10000), "") << b.log();
  EXPECT_EQ(b.process().Wait(20000), 0);
}

TEST(Service, ServesOnTheListeningSocketsSystemdPasses) {
  // The socket systemd would bind from bulwark.socket (ListenStream=), passed as descriptor 3.
  int port = FreePort(), admin = FreePort();
  auto addr = ParseSocketAddress("127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(addr.ok());
  int lfd = socket(AF_INET, SOCK_STREAM, 0);  // inherited: no CLOEXEC
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ASSERT_EQ(bind(lfd, addr->sa(), addr->len), 0);
  ASSERT_EQ(listen(lfd, 128), 0);
  // Connections made before bulwark runs wait in the passed socket's queue, none refused.
  Client early(port);
  ASSERT_TRUE(early.connected());
  ASSERT_TRUE(early.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::string script = StrCat("exec 3<&", lfd, "; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"");
  Bulwark b(Cfg(port, admin), {}, {"sh", "-c", script});
  close(lfd);
  Response r = early.Read();
  EXPECT_EQ(r.status, 200) << r.error << b.log();
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(HttpGet(port, "/").body, "up\n");
  // bulwark did not bind a socket of its own: SO_REUSEPORT would have let it.
  std::string out;
  RunProgram({"ss", "-Hltn", StrCat("sport = :", port)}, {}, &out);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(b.log().find("no listener is configured"), std::string::npos) << b.log();
}

TEST(Service, Sigusr1ReopensTheLogFilesLogrotateMovedAway) {
  std::string logs = MakeTempDir();
  int port = FreePort(), admin = FreePort();
  Bulwark b(
      Cfg(port, admin,
          "log: {file: " + logs + "/bulwark.log}\naccess_log: {path: " + logs + "/access.log}\n"));
  ASSERT_TRUE(b.Ready(port, admin)) << ReadFile(logs + "/bulwark.log");
  HttpGet(port, "/before");
  ASSERT_TRUE(WaitFor(
      [&] { return ReadFile(logs + "/access.log").find("/before") != std::string::npos; }, 5000));
  // logrotate without copytruncate: rename, then signal.
  ASSERT_EQ(rename((logs + "/access.log").c_str(), (logs + "/access.log.1").c_str()), 0);
  ASSERT_EQ(rename((logs + "/bulwark.log").c_str(), (logs + "/bulwark.log.1").c_str()), 0);
  b.process().Signal(SIGUSR1);
  ASSERT_TRUE(WaitFor(
      [&] {
        return ReadFile(logs + "/bulwark.log").find("SIGUSR1: log files reopened") !=
               std::string::npos;
      },
      5000))
      << ReadFile(logs + "/bulwark.log.1");
  HttpGet(port, "/after");
  ASSERT_TRUE(WaitFor(
      [&] { return ReadFile(logs + "/access.log").find("/after") != std::string::npos; }, 5000));
  std::string old_access = ReadFile(logs + "/access.log.1");
  EXPECT_NE(old_access.find("/before"), std::string::npos);
  EXPECT_EQ(old_access.find("/after"), std::string::npos);
  EXPECT_EQ(ReadFile(logs + "/access.log").find("/before"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(stat((logs + "/access.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST(Service, LinesCarryTheirPriorityForJournald) {
  int port = FreePort(), admin = FreePort();
  // journald hands the service a stream and names it in JOURNAL_STREAM (device:inode).
  Bulwark b(Cfg(port, admin), {},
            {"sh", "-c", "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec \"$0\" \"$@\""});
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  std::string log = b.log();
  EXPECT_NE(log.find("<6>"), std::string::npos) << log;
  for (const std::string& line : Split(log, '\n')) {
    if (line.empty()) continue;
    EXPECT_TRUE(line.rfind("<6>", 0) == 0 || line.rfind("<4>", 0) == 0 || line.rfind("<3>", 0) == 0)
        << line;
  }
  // Without it, plain lines.
  int port2 = FreePort(), admin2 = FreePort();
  Bulwark plain(Cfg(port2, admin2));
  ASSERT_TRUE(plain.Ready(port2, admin2));
  EXPECT_EQ(plain.log().find("<6>"), std::string::npos) << plain.log();
}

// A port below 1024 nothing listens on, or 0.
int FreeLowPort() {
  for (int p = 980; p < 1024; ++p) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto a = ParseSocketAddress("127.0.0.1:" + std::to_string(p));
    bool ok = bind(fd, a->sa(), a->len) == 0;
    close(fd);
    if (ok) return p;
  }
  return 0;
}

TEST(Service, BecomesItsUserAfterBindingAndCanStillBindLowPortsOnReload) {
  ASSERT_EQ(geteuid(), 0u) << "the integration tests run as root (scripts/test)";
  passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  // Everything the unprivileged process reads later is readable by it.
  std::string dir = MakeTempDir();
  chmod(dir.c_str(), 0755);
  int port = FreePort(), admin = FreePort(), low = FreeLowPort();
  ASSERT_NE(low, 0);
  std::string head = "user: nobody\nstate_dir: " + dir + "/state\n";
  Bulwark b(Cfg(port, admin, head), {{"STATE_DIRECTORY", dir + "/state"}});
  chmod(b.dir().c_str(), 0755);
  chmod(b.config_path().c_str(), 0644);
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  ASSERT_TRUE(
      WaitFor([&] { return b.log().find("running as user nobody") != std::string::npos; }, 5000))
      << b.log();
  std::string status = ReadFile("/proc/" + std::to_string(b.process().pid()) + "/status");
  std::string uid_line = status.substr(
      status.find("Uid:"), status.find('\n', status.find("Uid:")) - status.find("Uid:"));
  std::string want = std::to_string(nobody->pw_uid);
  EXPECT_EQ(uid_line, "Uid:\t" + want + "\t" + want + "\t" + want + "\t" + want) << status;
  struct stat st {};
  ASSERT_EQ(stat((dir + "/state/admin.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, nobody->pw_uid);  // the state directory went with it
  EXPECT_EQ(HttpGet(port, "/").status, 200);
  // A reload adding a listener on a port below 1024: CAP_NET_BIND_SERVICE was kept.
  std::string text = Cfg(port, admin, head) + "  - listen: 127.0.0.1:" + std::to_string(low) +
                     "\n    routes: [{prefix: /, return: {status: 200, body: \"low\\n\"}}]\n";
  WriteFile(b.config_path(), text);
  Response r = HttpPost(admin, "/api/v1/reload", "");
  EXPECT_EQ(r.status, 200) << r.body << b.log();
  EXPECT_EQ(HttpGet(low, "/").body, "low\n");
  // The unknown user is refused at its line.
  std::string out;
  std::string bad = dir + "/bad.yml";
  WriteFile(bad, Cfg(port, admin, "user: no-such-user-here\n"));
  EXPECT_EQ(RunBulwark({"check-config", bad}, &out), 1);
  EXPECT_NE(out.find(bad + ":1:7: user: no user \"no-such-user-here\""), std::string::npos) << out;
}

TEST(Service, ReloadAndStatusCommandsTalkToTheRunningBulwark) {
  std::string dir = MakeTempDir();
  int port = FreePort(), admin = FreePort(), app = FreePort();
  std::string head = "state_dir: " + dir + "/state\n";
  std::string path = dir + "/bulwark.yml";
  auto cfg = [&](const std::string& upstream) {
    return head + "workers: 1\nadmin: {listen: 127.0.0.1:" + std::to_string(admin) + "}\n" +
           "listeners:\n  - listen: 127.0.0.1:" + std::to_string(port) +
           "\n    routes: [{prefix: /, upstream: app}]\nupstreams:\n  app:\n    servers: [" +
           upstream + "]\n";
  };
  WriteFile(path, cfg("'127.0.0.1:" + std::to_string(app) + "'"));
  std::string out;
  // Nothing running yet: LSB's "not running".
  EXPECT_EQ(RunBulwark({"status", "-c", path}, &out), 3) << out;
  EXPECT_NE(out.find("not running"), std::string::npos) << out;

  Backend backend([](const Backend::Request&) { return Backend::Reply(200, "app"); }, app);
  Bulwark b(ReadFile(path), {{"STATE_DIRECTORY", dir + "/state"}});
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  path = b.config_path();  // the file the running bulwark reloads
  EXPECT_EQ(RunBulwark({"status", "-c", path}, &out), 0) << out;
  EXPECT_NE(out.find("running, ready"), std::string::npos) << out;
  EXPECT_NE(out.find("upstream app: 1 of 1 servers up"), std::string::npos) << out;

  // A broken file is refused before the running bulwark is asked: it keeps serving.
  WriteFile(path, cfg("'127.0.0.1:0'"));
  EXPECT_EQ(RunBulwark({"reload", "-c", path}, &out), 1) << out;
  EXPECT_NE(out.find(path + ":"), std::string::npos) << out;
  EXPECT_EQ(HttpGet(port, "/").body, "app");
  // A good one is applied.
  WriteFile(path, cfg("'127.0.0.1:" + std::to_string(app) +
                      "', '127.0.0.1:" + std::to_string(FreePort()) + "'"));
  EXPECT_EQ(RunBulwark({"reload", "-c", path}, &out), 0) << out << b.log();
  EXPECT_NE(out.find("configuration generation 2"), std::string::npos) << out;
  EXPECT_NE(b.log().find("configuration reloaded (generation 2)"), std::string::npos);
}

// The shipped example configurations, one per plane, each pass `bulwark check-config` with
// the variables their header comments set; the packaged default passes as it is.
TEST(Examples, EveryShippedConfigurationPassesCheckConfig) {
  std::string dir = MakeTempDir();
  std::map<std::string, std::string> env{
      {"APP_PASSWORD", "secret"}, {"BULWARK_BACKUP_KEY", std::string(64, 'a')},
      {"BACKUP_DIR", dir},        {"LISTEN_PORT", "8080"},
      {"UPSTREAM_PORT", "3000"},  {"ADMIN_PORT", "9901"}};
  for (const char* f : {"pg", "observe", "vault", "cluster", "all-in-one", "minimal"}) {
    std::string path = StrCat(BULWARK_SOURCE_DIR, "/config/examples/", f, ".yml");
    std::string out;
    EXPECT_EQ(RunProgram({BULWARK_BINARY, "check-config", path}, env, &out), 0) << path << "\n"
                                                                                << out;
    // Each says how to try it.
    EXPECT_NE(ReadFile(path).find("bulwark "), std::string::npos) << path;
  }
  std::string out;
  EXPECT_EQ(RunProgram({BULWARK_BINARY, "check-config",
                        StrCat(BULWARK_SOURCE_DIR, "/packaging/bulwark.yml")},
                       {}, &out),
            0)
      << out;
}

}  // namespace
}  // namespace bulwark::testing
