#include "tools/layering.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace bulwark::tools {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Takes the next line off `*text`, trimmed.
std::string_view NextLine(std::string_view* text) {
  size_t nl = text->find('\n');
  std::string_view line = Trim(text->substr(0, nl));
  *text = nl == std::string_view::npos ? std::string_view() : text->substr(nl + 1);
  return line;
}

std::vector<std::string> Words(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

bool ParseLayerRules(std::string_view markdown, LayerRules* rules, std::string* error) {
  rules->clear();
  size_t start = markdown.find("```layers\n");
  if (start == std::string_view::npos) {
    *error = "no ```layers block";
    return false;
  }
  std::string_view rest = markdown.substr(start + 10);
  size_t end = rest.find("```");
  if (end == std::string_view::npos) {
    *error = "the ```layers block is not closed";
    return false;
  }
  rest = rest.substr(0, end);
  int line_no = 0;
  while (!rest.empty()) {
    std::string_view line = NextLine(&rest);
    ++line_no;
    if (size_t hash = line.find('#'); hash != std::string_view::npos)
      line = Trim(line.substr(0, hash));
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      *error = "layers line " + std::to_string(line_no) + ": expected \"layer: dependency ...\"";
      return false;
    }
    std::string layer(Trim(line.substr(0, colon)));
    std::set<std::string>& deps = (*rules)[layer];
    deps.insert(layer);
    for (std::string& d : Words(line.substr(colon + 1))) deps.insert(std::move(d));
  }
  for (const auto& [layer, deps] : *rules) {
    for (const std::string& d : deps) {
      if (rules->count(d) == 0) {
        *error = "layer " + layer + " depends on " + d + ", which has no line";
        return false;
      }
    }
  }
  return true;
}

std::string LayerOf(std::string_view path) {
  if (path == "observe/metrics.h" || path == "observe/metrics.cc") return "metrics";
  return std::string(path.substr(0, path.find('/')));
}

std::vector<Violation> CheckFile(const LayerRules& rules, const std::set<std::string>& folders,
                                 std::string_view path, std::string_view text) {
  std::vector<Violation> out;
  std::string layer = LayerOf(path);
  auto it = rules.find(layer);
  if (it == rules.end()) {
    out.push_back(
        {std::string(path), 0,
         "layer \"" + layer + "\" has no line in the layers table of docs/architecture.md"});
    return out;
  }
  int line_no = 0;
  while (!text.empty()) {
    std::string_view line = NextLine(&text);
    ++line_no;
    if (!line.starts_with("#include \"")) continue;
    std::string_view inc = line.substr(10);
    inc = inc.substr(0, inc.find('"'));
    size_t slash = inc.find('/');
    if (slash == std::string_view::npos) continue;
    if (folders.count(std::string(inc.substr(0, slash))) == 0) continue;  // a library's header
    std::string target = LayerOf(inc);
    if (it->second.count(target) != 0) continue;
    out.push_back({std::string(path), line_no,
                   "includes \"" + std::string(inc) + "\": layer " + layer + " may not depend on " +
                       target + " (docs/architecture.md, Layers)"});
  }
  return out;
}

std::vector<Violation> CheckTree(const LayerRules& rules, const std::string& src_dir) {
  namespace fs = std::filesystem;
  std::vector<Violation> out;
  std::error_code ec;
  std::set<std::string> folders;
  for (const auto& e : fs::directory_iterator(src_dir, ec)) {
    if (e.is_directory()) folders.insert(e.path().filename().string());
  }
  if (ec || folders.empty()) return {{src_dir, 0, "cannot list the source folders"}};
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(src_dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::string ext = it->path().extension().string();
    if (it->is_regular_file() && (ext == ".h" || ext == ".cc")) {
      files.push_back(fs::relative(it->path(), src_dir).generic_string());
    }
  }
  if (ec) return {{src_dir, 0, "cannot read the tree: " + ec.message()}};
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) {
    std::ifstream in(fs::path(src_dir) / f);
    std::stringstream text;
    text << in.rdbuf();
    for (Violation& v : CheckFile(rules, folders, f, text.str())) out.push_back(std::move(v));
  }
  return out;
}

}  // namespace bulwark::tools
