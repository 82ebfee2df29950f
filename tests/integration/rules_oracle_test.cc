// Rule unit tests through both engines: every tests/rules/*.test.yml (the AlkaidSYS,
// cloud-phone platform and IAM rule files unchanged, and files covering PromQL and the alert state
// machine) must pass under Debian's `promtool test rules` (Prometheus 2.42) and under `bulwark
// rules test`. A copy with one wrong expectation must fail under both, with the same report.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

std::string RulesDir() { return std::string(BULWARK_SOURCE_DIR) + "/tests/rules"; }

std::vector<std::string> TestFiles() {
  std::vector<std::string> out;
  DIR* d = opendir(RulesDir().c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() > 9 && name.substr(name.size() - 9) == ".test.yml") {
      out.push_back(RulesDir() + "/" + name);
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// Runs a command; returns its exit code and output.
int RunCommand(std::vector<std::string> argv, std::string* out) {
  std::string dir = MakeTempDir();
  Process p(std::move(argv), {}, dir + "/out");
  int rc = p.Wait(120000);
  *out = ReadFile(dir + "/out");
  return rc;
}

int CountCases(const std::string& text) {
  int n = 0;
  for (size_t at = text.find("eval_time:"); at != std::string::npos;
       at = text.find("eval_time:", at + 1)) {
    ++n;
  }
  return n;
}

TEST(RulesOracle, PromtoolAndBulwarkPassEveryTestFile) {
  std::string promtool = FindProgram("promtool");
  ASSERT_FALSE(promtool.empty()) << "promtool is not installed: run scripts/deps";
  std::vector<std::string> files = TestFiles();
  ASSERT_GE(files.size(), 6u);
  int cases = 0;
  bool covered[3] = {false, false, false};  // the three rule files
  for (const std::string& f : files) {
    std::string text = ReadFile(f);
    cases += CountCases(text);
    covered[0] = covered[0] || text.find("seeds/000-alert-rules.yml") != std::string::npos;
    covered[1] = covered[1] || text.find("seeds/001-alert.rules.yml") != std::string::npos;
    covered[2] = covered[2] || text.find("seeds/002-cache-alerts.yml") != std::string::npos;
    std::string out;
    EXPECT_EQ(RunCommand({promtool, "test", "rules", f}, &out), 0) << "promtool on " << f << ":\n"
                                                                   << out;
    EXPECT_EQ(RunCommand({BULWARK_BINARY, "rules", "test", f}, &out), 0)
        << "bulwark on " << f << ":\n"
        << out;
  }
  EXPECT_GE(cases, 40);
  EXPECT_TRUE(covered[0] && covered[1] && covered[2])
      << "every design document's rule file is under test";
}

// Every alert of the AlkaidSYS, cloud-phone platform and IAM rule files has at least one test
// that expects it to fire.
TEST(RulesOracle, EveryDesignDocumentAlertHasATest) {
  std::string all;
  for (const std::string& f : TestFiles()) all += ReadFile(f);
  std::string fixtures = std::string(BULWARK_SOURCE_DIR) + "/../shared/fixtures/seeds/";
  for (const char* file : {"000-alert-rules.yml", "001-alert.rules.yml", "002-cache-alerts.yml"}) {
    std::string rules = ReadFile(fixtures + file);
    ASSERT_FALSE(rules.empty()) << file;
    std::regex alert_re(R"(- alert:\s*(\S+))");
    for (auto it = std::sregex_iterator(rules.begin(), rules.end(), alert_re);
         it != std::sregex_iterator(); ++it) {
      std::string name = (*it)[1];
      EXPECT_NE(all.find("alertname: " + name), std::string::npos)
          << name << " from " << file << " has no alert_rule_test";
    }
  }
}

TEST(RulesOracle, AWrongExpectationFailsInBoth) {
  std::string promtool = FindProgram("promtool");
  ASSERT_FALSE(promtool.empty());
  std::string dir = MakeTempDir();
  // One promql_expr_test and one alert_rule_test made wrong.
  std::string text = ReadFile(RulesDir() + "/promql_operators.test.yml");
  size_t at = text.find("value: 52");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 9, "value: 53");
  WriteFile(dir + "/empty.rules.yml", ReadFile(RulesDir() + "/empty.rules.yml"));
  WriteFile(dir + "/wrong.test.yml", text);
  std::string alerts = ReadFile(RulesDir() + "/alerting.test.yml");
  at = alerts.find("summary: Errors at 20% on api");
  ASSERT_NE(at, std::string::npos);
  alerts.replace(at, 29, "summary: Errors at 21% on api");
  WriteFile(dir + "/alerting.rules.yml", ReadFile(RulesDir() + "/alerting.rules.yml"));
  WriteFile(dir + "/wrong_alert.test.yml", alerts);
  for (const char* f : {"/wrong.test.yml", "/wrong_alert.test.yml"}) {
    std::string p_out, b_out;
    EXPECT_EQ(RunCommand({promtool, "test", "rules", dir + f}, &p_out), 1) << p_out;
    EXPECT_EQ(RunCommand({BULWARK_BINARY, "rules", "test", dir + f}, &b_out), 1) << b_out;
    // The same failure report, line for line, once blank lines are set aside.
    auto lines = [](const std::string& s) {
      std::vector<std::string> out;
      size_t start = 0;
      while (start < s.size()) {
        size_t nl = s.find('\n', start);
        std::string line =
            s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        if (line.find_first_not_of(" \t") != std::string::npos) out.push_back(line);
        if (nl == std::string::npos) break;
        start = nl + 1;
      }
      return out;
    };
    EXPECT_EQ(lines(p_out), lines(b_out)) << "promtool:\n" << p_out << "\nbulwark:\n" << b_out;
  }
}

// The AlkaidSYS alerts.yml mixes rule groups with an Alertmanager configuration: bulwark loads
// the groups and sets the rest aside; a broken rule is reported with file:line.
TEST(RulesOracle, MixedRuleAndAlertmanagerFileIsSplit) {
  std::string out;
  std::string alerts = std::string(BULWARK_SOURCE_DIR) + "/../shared/fixtures/seeds/000-alerts.yml";
  EXPECT_EQ(RunCommand({BULWARK_BINARY, "rules", "check", alerts}, &out), 0) << out;
  EXPECT_NE(out.find("SUCCESS: 9 rules found"), std::string::npos) << out;
  std::string dir = MakeTempDir();
  WriteFile(dir + "/bad.yml",
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x[5m] > 1\n"
            "route:\n  receiver: default\nreceivers:\n- name: default\n");
  EXPECT_EQ(RunCommand({BULWARK_BINARY, "rules", "check", dir + "/bad.yml"}, &out), 1) << out;
  EXPECT_NE(out.find("bad.yml:5:11: group \"g\", rule 1, \"A\": could not parse expression"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace bulwark::testing
