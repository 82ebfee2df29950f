// Resource exhaustion: bulwark out of file descriptors (the gateway stops at its share, the
// admin listener, given too small a reserve, runs out for real).
//
// Built only without sanitizers: UBSan checks a virtual call by reading the object through a
// pipe(), which cannot be made when the process has no descriptors left, so every virtual call
// would be reported as a bad vptr. scripts/test runs this in the release build.
#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

using namespace std::chrono_literals;

// CPU seconds (user + system) a process has used so far.
double CpuSeconds(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

// Per-thread CPU ticks ("name tid" -> ticks), to say which thread spins when one does.
std::map<std::string, long> ThreadTicks(pid_t pid) {
  std::map<std::string, long> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(dir.c_str()), closedir);
  if (!d) return out;
  while (dirent* e = readdir(d.get())) {
    if (e->d_name[0] == '.') continue;
    std::string base = dir + "/" + e->d_name;
    std::string comm = ReadFile(base + "/comm");
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    std::string stat = ReadFile(base + "/stat");
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream in(stat.substr(close + 2));
    std::string field;
    long ticks = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
      if (i == 14 || i == 15) ticks += std::stol(field);
    }
    out[comm + " " + e->d_name] = ticks;
  }
  return out;
}

TEST(Limits, OutOfDescriptorsIsCountedDoesNotSpinAndRecovers) {
  Backend a([](const Backend::Request&) { return Backend::Reply(200, "A"); });
  int port = FreePort(), admin = FreePort();
  std::string prlimit = FindProgram("prlimit");
  ASSERT_FALSE(prlimit.empty()) << "prlimit (util-linux) is missing";
  // A reserve far too small for the admin listener's own cap (64 connections): the gateway
  // stops at its share, the admin listener runs out of descriptors for real.
  Bulwark b(
      "workers: 1\nreserved_descriptors: 16\nhttp: {max_connections: 1000}\nadmin: {listen: 127.0.0.1:" + std::to_string(admin) +
          "}\naccess_log: {enabled: false}\nlisteners: [{listen: '127.0.0.1:" +
          std::to_string(port) +
          "', routes: [{prefix: /, upstream: app}]}]\nupstreams: {app: {servers: ['127.0.0.1:" +
          std::to_string(a.port()) + "']}}\n",
      {}, {prlimit, "--nofile=64", "--"});
  ASSERT_TRUE(b.Ready(port, admin)) << b.log();
  // More idle connections than descriptors: the kernel completes the handshakes, bulwark cannot
  // accept them all.
  std::vector<std::unique_ptr<Client>> hogs;
  for (int i = 0; i < 100; ++i) hogs.push_back(std::make_unique<Client>(port, 1000));
  // The worker stops at its share of the descriptors (counted) before the admin port's flood
  // takes the rest: on a loaded machine the control thread accepted first, the worker then met
  // a real EMFILE and the share was never reached.
  std::string share;
  EXPECT_TRUE(WaitFor(
      [&] {
        share = Metric(HttpGet(admin, "/metrics").body,
                       "bulwark_http_connections_limited_total{reason=\"descriptors\"}");
        return !share.empty() && share != "0";
      },
      10000))
      << share << b.log();
  // And as many at the admin port: the control thread runs out of descriptors and must not spin
  // on the connections it cannot accept.
  for (int i = 0; i < 100; ++i) hogs.push_back(std::make_unique<Client>(admin, 1000));
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(b.process().running()) << b.log();
  // CPU per wall-clock second, so a loaded machine that oversleeps does not skew it.
  double cpu0 = CpuSeconds(b.process().pid());
  auto threads0 = ThreadTicks(b.process().pid());
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(1000ms);
  double cpu = CpuSeconds(b.process().pid()) - cpu0;
  auto threads1 = ThreadTicks(b.process().pid());
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string per_thread;
  for (const auto& [name, ticks] : threads1) {
    per_thread += " " + name + "=" + std::to_string(ticks - threads0[name]);
  }
  EXPECT_LT(cpu / wall, 0.3) << "the worker spins while out of descriptors: " << cpu
                             << " s of CPU in " << wall << " s; ticks per thread:" << per_thread;
  hogs.clear();  // descriptors come back
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(HttpGet(port, "/").body, "A");
  Response m = HttpGet(admin, "/metrics");
  std::string limited =
      Metric(m.body, "bulwark_http_connections_limited_total{reason=\"descriptors\"}");
  ASSERT_FALSE(limited.empty()) << m.body;
  EXPECT_NE(limited, "0") << b.log();
  EXPECT_NE(b.log().find("admin accept: Too many open files (raise the open files limit)"),
            std::string::npos)
      << b.log();
}

}  // namespace
}  // namespace bulwark::testing
