#include "tools/layering.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace bulwark::tools {
namespace {

constexpr char kTable[] = R"(# Architecture
## Layers
```layers
core:
metrics: core   # observe/metrics.h
admin: core
observe: core metrics admin
gateway: core metrics admin
app: core metrics admin observe gateway
```
)";

LayerRules Rules() {
  LayerRules rules;
  std::string error;
  EXPECT_TRUE(ParseLayerRules(kTable, &rules, &error)) << error;
  return rules;
}

const std::set<std::string> kFolders = {"core", "observe", "admin", "gateway", "app"};

TEST(Layering, ReadsTheTableOfTheArchitecturePage) {
  LayerRules rules = Rules();
  ASSERT_EQ(rules.size(), 6u);
  EXPECT_EQ(rules["core"], (std::set<std::string>{"core"}));
  EXPECT_EQ(rules["gateway"], (std::set<std::string>{"core", "metrics", "admin", "gateway"}));
  std::string error;
  EXPECT_FALSE(ParseLayerRules("no table here", &rules, &error));
  EXPECT_FALSE(ParseLayerRules("```layers\ncore: nowhere\n```\n", &rules, &error));
  EXPECT_NE(error.find("nowhere"), std::string::npos) << error;
}

TEST(Layering, TheMetricsLeafIsALayerOfItsOwn) {
  EXPECT_EQ(LayerOf("observe/metrics.h"), "metrics");
  EXPECT_EQ(LayerOf("observe/promql/engine.h"), "observe");
  EXPECT_EQ(LayerOf("gateway/proxy.cc"), "gateway");
}

TEST(Layering, AnIncludeAgainstTheDirectionIsReportedWithItsLine) {
  LayerRules rules = Rules();
  // A plane may include the metrics leaf and the admin server...
  EXPECT_TRUE(CheckFile(rules, kFolders, "gateway/gateway.cc",
                        "#include \"gateway/gateway.h\"\n#include \"observe/metrics.h\"\n"
                        "#include \"admin/admin_server.h\"\n#include \"absl/status/status.h\"\n")
                  .empty());
  // ...but not another plane's headers, and core includes no plane.
  auto v = CheckFile(rules, kFolders, "gateway/proxy.cc",
                     "#include \"gateway/proxy.h\"\n\n#include \"observe/promql/ast.h\"\n");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].file, "gateway/proxy.cc");
  EXPECT_EQ(v[0].line, 3);
  EXPECT_NE(v[0].message.find("layer gateway may not depend on observe"), std::string::npos)
      << v[0].message;
  v = CheckFile(rules, kFolders, "core/log.cc", "  #include \"gateway/worker.h\"  // why\n");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].line, 1);
  // A folder the table does not name is refused too: a new layer needs its line.
  v = CheckFile(rules, kFolders, "newplane/x.cc", "#include \"core/log.h\"\n");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].message.find("no line"), std::string::npos);
}

TEST(Layering, TheCheckFailsOnADeliberatelyWrongIncludeInATree) {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("layering_test_" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "core");
  fs::create_directories(root / "gateway");
  std::ofstream(root / "core" / "log.h") << "#pragma once\n";
  std::ofstream(root / "gateway" / "gateway.cc") << "#include \"core/log.h\"\n";
  LayerRules rules = Rules();
  EXPECT_TRUE(CheckTree(rules, root.string()).empty());
  std::ofstream(root / "core" / "event_loop.cc")
      << "#include \"core/log.h\"\n#include \"gateway/gateway.h\"\n";
  auto v = CheckTree(rules, root.string());
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].file, "core/event_loop.cc");
  EXPECT_EQ(v[0].line, 2);
  fs::remove_all(root);
}

// The real tree follows the real table (scripts/test runs the same check on it as a tool).
TEST(Layering, TheSourceTreeFollowsDocsArchitecture) {
  std::ifstream in(std::string(BULWARK_SOURCE_DIR) + "/docs/architecture.md");
  std::stringstream md;
  md << in.rdbuf();
  LayerRules rules;
  std::string error;
  ASSERT_TRUE(ParseLayerRules(md.str(), &rules, &error)) << error;
  auto v = CheckTree(rules, std::string(BULWARK_SOURCE_DIR) + "/src");
  for (const auto& x : v) ADD_FAILURE() << "src/" << x.file << ":" << x.line << ": " << x.message;
}

}  // namespace
}  // namespace bulwark::tools
