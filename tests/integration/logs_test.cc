// The application log: JSON lines with time, level, component, message and the request id
// when a request caused the line; a separate error log with warnings and errors only; size
// rotation with gzipped old files.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

TEST(Logs, JsonLinesWithComponentRequestIdErrorLogAndRotation) {
  std::string dir = MakeTempDir();
  int port = FreePort(), admin = FreePort(), dead = FreePort();
  Bulwark b("admin: {listen: 127.0.0.1:" + std::to_string(admin) +
            "}\naccess_log: {enabled: false}\n"
            "log: {format: json, file: " +
            dir + "/bulwark.log, error_file: " + dir +
            "/error.log, max_size: 4k, max_files: 2}\n"
            "listeners: [{listen: '127.0.0.1:" +
            std::to_string(port) +
            "', routes: [{prefix: /, upstream: app}]}]\n"
            "upstreams:\n  app:\n    servers: [{address: '127.0.0.1:" +
            std::to_string(dead) + "', max_fails: 0}]\n");
  ASSERT_TRUE(b.Ready(port, admin));
  // Requests to a dead server: each logs an upstream failure with its request id.
  for (int i = 0; i < 40; ++i) {
    HttpGet(port, "/x", "X-Request-Id: req-" + std::to_string(i) + "\r\n");
  }
  // Rotation is checked once a second.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  std::string current = ReadFile(dir + "/bulwark.log");
  std::string rotated = GunzipFile(dir + "/bulwark.log.1.gz");
  ASSERT_FALSE(rotated.empty()) << "no rotated, compressed log; current:\n" << current;
  std::string all = rotated + current;
  std::istringstream lines(all);
  int infos = 0, upstream_warnings = 0;
  for (std::string line; std::getline(lines, line);) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    ASSERT_TRUE(j.contains("time") && j.contains("level") && j.contains("component") &&
                j.contains("msg"))
        << line;
    if (j["level"] == "info") ++infos;
    if (j["component"] == "upstream" && j["level"] == "warn") {
      ++upstream_warnings;
      EXPECT_EQ(j["request_id"].get<std::string>().rfind("req-", 0), 0u) << line;
    }
  }
  EXPECT_GT(infos, 0);  // start-up lines ("listening on ...")
  EXPECT_GE(upstream_warnings, 20);
  // The error log has the warnings and nothing below.
  std::istringstream errors(ReadFile(dir + "/error.log") + GunzipFile(dir + "/error.log.1.gz"));
  int error_lines = 0;
  for (std::string line; std::getline(errors, line);) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_TRUE(j["level"] == "warn" || j["level"] == "error") << line;
    ++error_lines;
  }
  EXPECT_GE(error_lines, 20);
}

}  // namespace
}  // namespace bulwark::testing
