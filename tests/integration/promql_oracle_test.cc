// The PromQL parser against Prometheus's own: every expression in data/promql_exprs.txt (valid
// and invalid ones, the tricky corners of the grammar) is checked by Debian's `promtool check
// rules` (Prometheus 2.42) and by bulwark; both must accept or refuse it, and a refusal must say
// the same thing.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "observe/promql/parser.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

std::string JsonQuote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

TEST(PromqlOracle, ParserAgreesWithPromtool) {
  std::string promtool = FindProgram("promtool");
  ASSERT_FALSE(promtool.empty()) << "promtool is not installed: run scripts/deps";
  std::ifstream in(std::string(BULWARK_SOURCE_DIR) + "/tests/integration/data/promql_exprs.txt");
  ASSERT_TRUE(in.good());
  std::vector<std::string> exprs;
  for (std::string line; std::getline(in, line);) exprs.push_back(line);
  ASSERT_GT(exprs.size(), 100u);

  std::string dir = MakeTempDir();
  std::vector<std::string> argv = {promtool, "check", "rules"};
  for (size_t i = 0; i < exprs.size(); ++i) {
    std::string f = dir + "/q" + std::to_string(i) + ".yml";
    WriteFile(
        f, "groups:\n- name: g\n  rules:\n  - record: r\n    expr: " + JsonQuote(exprs[i]) + "\n");
    argv.push_back(f);
  }
  Process p(argv, {}, dir + "/out");
  p.Wait(60000);
  std::string out = ReadFile(dir + "/out");
  // "Checking F\n  SUCCESS: ..." or "Checking F\n  FAILED:\nF: 5:11: ...: could not parse
  // expression: MESSAGE".
  std::map<size_t, std::string> verdict;  // "" = accepted
  std::istringstream lines(out);
  size_t current = SIZE_MAX;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("Checking ", 0) == 0) {
      size_t q = line.rfind("/q");
      current = std::stoul(line.substr(q + 2));
      verdict[current] = "?";
    } else if (current != SIZE_MAX && line.find("SUCCESS") != std::string::npos) {
      verdict[current] = "";
    } else if (current != SIZE_MAX) {
      const std::string marker = "could not parse expression: ";
      size_t m = line.find(marker);
      if (m != std::string::npos) verdict[current] = line.substr(m + marker.size());
    }
  }
  ASSERT_EQ(verdict.size(), exprs.size()) << out;
  int accepted = 0, refused = 0;
  for (size_t i = 0; i < exprs.size(); ++i) {
    const std::string& want = verdict[i];
    ASSERT_NE(want, "?") << exprs[i] << "\n" << out;
    auto got = observe::promql::Parse(exprs[i]);
    if (want.empty()) {
      ++accepted;
      EXPECT_TRUE(got.ok()) << "promtool accepts `" << exprs[i] << "`, bulwark says "
                            << got.status().message();
    } else {
      ++refused;
      EXPECT_FALSE(got.ok()) << "promtool refuses `" << exprs[i] << "` (" << want
                             << "), bulwark accepts it";
      if (!got.ok()) {
        EXPECT_EQ(std::string(got.status().message()), want) << exprs[i];
      }
    }
  }
  EXPECT_GT(accepted, 50);
  EXPECT_GT(refused, 30);
  std::string cmd = "rm -rf " + dir;
  [[maybe_unused]] int r = system(cmd.c_str());
}

}  // namespace
}  // namespace bulwark::testing
