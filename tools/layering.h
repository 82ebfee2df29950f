// The include-direction check: every #include "dir/..." in src/ must name a layer its own layer
// may depend on, as the "layers" table in docs/architecture.md says. scripts/test runs it
// (tools/check_layering.cc); a wrong include fails the build's checks with file:line.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::tools {

// layer -> the layers it may include (itself always).
using LayerRules = std::map<std::string, std::set<std::string>>;

// Reads the first ```layers block of a Markdown text: one "layer: dep dep ..." line each.
// Returns false with `error` set when there is no block or a line is malformed.
bool ParseLayerRules(std::string_view markdown, LayerRules* rules, std::string* error);

// The layer of a path under src/: its first folder, except the metrics leaf
// (observe/metrics.h and .cc), a layer of its own.
std::string LayerOf(std::string_view path);

struct Violation {
  std::string file;  // path under src/
  int line = 0;
  std::string message;
};

// Checks one file's includes. `folders`: the folders under src/ (an include of one of them is
// a project include; anything else, such as "absl/..." or "nlohmann/...", is a library's).
std::vector<Violation> CheckFile(const LayerRules& rules, const std::set<std::string>& folders,
                                 std::string_view path, std::string_view text);

// Every .h and .cc under `src_dir`; an I/O error is reported as a violation of the tree itself.
std::vector<Violation> CheckTree(const LayerRules& rules, const std::string& src_dir);

}  // namespace bulwark::tools
