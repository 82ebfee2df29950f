// check_layering <docs/architecture.md> <src dir>: prints every include against the layers
// table as file:line: message and exits 1 if there is one.
#include <fstream>
#include <iostream>
#include <sstream>

#include "tools/layering.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: check_layering docs/architecture.md src\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  std::stringstream md;
  md << in.rdbuf();
  bulwark::tools::LayerRules rules;
  std::string error;
  if (!in || !bulwark::tools::ParseLayerRules(md.str(), &rules, &error)) {
    std::cerr << argv[1] << ": " << (in ? error : "cannot read") << "\n";
    return 2;
  }
  auto violations = bulwark::tools::CheckTree(rules, argv[2]);
  for (const auto& v : violations) {
    std::cerr << "src/" << v.file << ":" << v.line << ": " << v.message << "\n";
  }
  if (!violations.empty()) return 1;
  std::cout << "layering: every include follows docs/architecture.md\n";
  return 0;
}
