#include "core/config_reader.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/strings.h"
#include "core/units.h"

namespace bulwark {

EnvLookup ProcessEnv() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

absl::Status Interpolate(std::string_view in, const EnvLookup& env, std::string* out) {
  out->clear();
  out->reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    char c = in[i];
    if (c != '$') {
      out->push_back(c);
      ++i;
      continue;
    }
    if (i + 1 < in.size() && in[i + 1] == '$') {  // "$$" is a literal '$'
      out->push_back('$');
      i += 2;
      continue;
    }
    if (i + 1 >= in.size() || in[i + 1] != '{') {
      out->push_back('$');
      ++i;
      continue;
    }
    size_t close = in.find('}', i + 2);
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(StrCat("unterminated \"${\" in \"", in, "\""));
    }
    std::string_view expr = in.substr(i + 2, close - i - 2);
    std::string_view name = expr;
    std::optional<std::string_view> fallback;
    bool empty_counts_as_unset = false;
    size_t op = expr.find_first_of(":-");
    if (op != std::string_view::npos) {
      name = expr.substr(0, op);
      if (expr[op] == ':') {
        if (op + 1 >= expr.size() || expr[op + 1] != '-') {
          return absl::InvalidArgumentError(
              StrCat("unsupported expansion \"${", expr,
                     "}\": use ${VAR}, ${VAR:-default} or ${VAR-default}"));
        }
        empty_counts_as_unset = true;
        fallback = expr.substr(op + 2);
      } else {
        fallback = expr.substr(op + 1);
      }
    }
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char ch) {
          return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
        })) {
      return absl::InvalidArgumentError(StrCat("invalid variable name in \"${", expr, "}\""));
    }
    std::optional<std::string> value = env(name);
    if (value.has_value() && !(empty_counts_as_unset && value->empty())) {
      out->append(*value);
    } else if (fallback.has_value()) {
      out->append(*fallback);
    } else {
      return absl::InvalidArgumentError(StrCat("environment variable ", name,
                                               " is not set (write ${", name,
                                               ":-default} to give a default)"));
    }
    i = close + 1;
  }
  return absl::OkStatus();
}

int EditDistance(std::string_view a, std::string_view b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

void ForEachNamed(ConfigContext& ctx, const YAML::Node& node, std::string_view what,
                  std::string_view shape,
                  const std::function<void(const std::string&, const YAML::Node&)>& each) {
  if (!node.IsDefined()) return;
  if (!node.IsMap()) {
    ctx.Error(node.Mark(), StrCat(what, ": ", shape));
    return;
  }
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      ctx.Error(kv.first.Mark(), StrCat(what, ": each name must be a plain string"));
      continue;
    }
    each(kv.first.Scalar(), kv.second);
  }
}

std::string Suggest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  int best_d = std::max<int>(2, static_cast<int>(word.size()) / 3) + 1;
  for (const auto& c : candidates) {
    int d = EditDistance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

void ConfigContext::Error(const YAML::Mark& mark, std::string_view message) {
  if (mark.line < 0) {
    Error(message);
    return;
  }
  errors_.push_back(StrCat(file_, ":", mark.line + 1, ":", mark.column + 1, ": ", message));
}

std::string ConfigContext::Where(const YAML::Mark& mark) const {
  if (mark.line < 0) return file_;
  return StrCat(file_, ":", mark.line + 1, ":", mark.column + 1);
}

void ConfigContext::Error(std::string_view message) {
  errors_.push_back(StrCat(file_, ": ", message));
}

std::string ConfigContext::ErrorText() const { return Join(errors_, "\n"); }

std::string ConfigContext::DirOf(std::string_view file) {
  size_t slash = file.rfind('/');
  return slash == std::string_view::npos ? std::string() : std::string(file.substr(0, slash));
}

std::string ConfigContext::ResolveConfigPath(std::string_view dir, std::string_view path) {
  if (path.empty() || path[0] == '/' || dir.empty()) return std::string(path);
  return StrCat(dir, "/", path);
}

bool ReadScalar(ConfigContext& ctx, const YAML::Node& node, std::string_view what,
                std::string* out) {
  if (!node.IsScalar()) {
    ctx.Error(node.Mark(), StrCat(what, ": expected a single value, got ",
                                  node.IsMap()        ? "a mapping"
                                  : node.IsSequence() ? "a list"
                                                      : "nothing"));
    return false;
  }
  absl::Status s = Interpolate(node.Scalar(), ctx.env(), out);
  if (!s.ok()) {
    ctx.Error(node.Mark(), StrCat(what, ": ", s.message()));
    return false;
  }
  return true;
}

MapReader::MapReader(ConfigContext& ctx, const YAML::Node& node, std::string what)
    : ctx_(ctx), node_(node), what_(std::move(what)) {
  if (!node.IsDefined() || node.IsNull()) {
    node_.reset(YAML::Node(YAML::NodeType::Map));  // reset() rebinds; operator= would write through
    valid_ = true;
    return;
  }
  if (!node.IsMap()) {
    ctx_.Error(node.Mark(), StrCat(what_, ": expected a mapping of keys to values"));
    return;
  }
  valid_ = true;
  // yaml-cpp keeps duplicate keys silently; a duplicate is almost always a mistake.
  std::vector<std::string> seen;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      ctx_.Error(kv.first.Mark(), StrCat(what_, ": keys must be plain names"));
      continue;
    }
    const std::string& k = kv.first.Scalar();
    if (std::find(seen.begin(), seen.end(), k) != seen.end()) {
      ctx_.Error(kv.first.Mark(), StrCat(what_, ": duplicate key \"", k, "\""));
    }
    seen.push_back(k);
  }
}

YAML::Node MapReader::Get(std::string_view key) {
  known_.emplace_back(key);
  if (!valid_) return YAML::Node(YAML::NodeType::Undefined);
  for (const auto& kv : node_) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) return kv.second;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

bool MapReader::Has(std::string_view key) { return Get(key).IsDefined(); }

bool MapReader::Require(std::string_view key) {
  if (Has(key)) return true;
  if (valid_) ctx_.Error(node_.Mark(), StrCat(what_, ": missing required key \"", key, "\""));
  return false;
}

bool MapReader::String(std::string_view key, std::string* out) {
  YAML::Node n = Get(key);
  if (!n.IsDefined()) return true;
  if (n.IsNull()) {
    out->clear();
    return true;
  }
  return ReadScalar(ctx_, n, StrCat(what_, ".", key), out);
}

bool MapReader::Int(std::string_view key, int64_t* out, int64_t min, int64_t max) {
  YAML::Node n = Get(key);
  if (!n.IsDefined()) return true;
  std::string s;
  if (!ReadScalar(ctx_, n, StrCat(what_, ".", key), &s)) return false;
  int64_t v;
  if (!ParseInt(s, &v)) {
    ctx_.Error(n.Mark(), StrCat(what_, ".", key, ": expected an integer, got \"", s, "\""));
    return false;
  }
  if (v < min || v > max) {
    ctx_.Error(n.Mark(),
               StrCat(what_, ".", key, ": ", v, " is out of range [", min, ", ", max, "]"));
    return false;
  }
  *out = v;
  return true;
}

bool MapReader::Int(std::string_view key, int* out, int min, int max) {
  int64_t v = *out;
  if (!Int(key, &v, min, max)) return false;
  *out = static_cast<int>(v);
  return true;
}

std::optional<bool> ParseBoolWord(std::string_view text) {
  std::string l = AsciiLower(std::string(text));
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  return std::nullopt;
}

bool MapReader::Bool(std::string_view key, bool* out) {
  YAML::Node n = Get(key);
  if (!n.IsDefined()) return true;
  std::string s;
  if (!ReadScalar(ctx_, n, StrCat(what_, ".", key), &s)) return false;
  std::optional<bool> b = ParseBoolWord(s);
  if (!b.has_value()) {
    ctx_.Error(n.Mark(), StrCat(what_, ".", key, ": expected true or false, got \"", s, "\""));
    return false;
  }
  *out = *b;
  return true;
}

namespace {
template <typename Fn>
bool ReadUnit(ConfigContext& ctx, MapReader& r, std::string_view key, int64_t* out, Fn parse) {
  YAML::Node n = r.Get(key);
  if (!n.IsDefined()) return true;
  std::string s;
  if (!ReadScalar(ctx, n, StrCat(r.what(), ".", key), &s)) return false;
  absl::StatusOr<int64_t> v = parse(s);
  if (!v.ok()) {
    ctx.Error(n.Mark(), StrCat(r.what(), ".", key, ": ", v.status().message()));
    return false;
  }
  *out = *v;
  return true;
}
}  // namespace

bool MapReader::Duration(std::string_view key, int64_t* ms) {
  return ReadUnit(ctx_, *this, key, ms, ParseDurationMs);
}
bool MapReader::Size(std::string_view key, int64_t* bytes) {
  return ReadUnit(ctx_, *this, key, bytes, ParseSizeBytes);
}
bool MapReader::Rate(std::string_view key, int64_t* milli) {
  return ReadUnit(ctx_, *this, key, milli, ParseRateMilli);
}

bool MapReader::Enum(std::string_view key, const std::vector<std::string_view>& choices,
                     std::string* out) {
  YAML::Node n = Get(key);
  if (!n.IsDefined()) return true;
  std::string s;
  if (!ReadScalar(ctx_, n, StrCat(what_, ".", key), &s)) return false;
  for (auto c : choices) {
    if (s == c) {
      *out = s;
      return true;
    }
  }
  std::vector<std::string> cands(choices.begin(), choices.end());
  std::string hint = Suggest(s, cands);
  ctx_.Error(n.Mark(), StrCat(what_, ".", key, ": unknown value \"", s, "\"",
                              hint.empty() ? "" : StrCat(" (did you mean \"", hint, "\"?)"),
                              "; expected one of: ", Join(cands, ", ")));
  return false;
}

bool MapReader::StringList(std::string_view key, std::vector<std::string>* out) {
  YAML::Node n = Get(key);
  if (!n.IsDefined() || n.IsNull()) return true;
  std::string what = StrCat(what_, ".", key);
  out->clear();
  if (n.IsScalar()) {  // a single value is accepted where a list is expected
    std::string s;
    if (!ReadScalar(ctx_, n, what, &s)) return false;
    out->push_back(std::move(s));
    return true;
  }
  if (!n.IsSequence()) {
    ctx_.Error(n.Mark(), StrCat(what, ": expected a list"));
    return false;
  }
  bool ok = true;
  for (const auto& item : n) {
    std::string s;
    if (ReadScalar(ctx_, item, what, &s)) {
      out->push_back(std::move(s));
    } else {
      ok = false;
    }
  }
  return ok;
}

void MapReader::Finish() {
  if (!valid_) return;
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar()) continue;
    const std::string& k = kv.first.Scalar();
    if (std::find(known_.begin(), known_.end(), k) != known_.end()) continue;
    std::string hint = Suggest(k, known_);
    ctx_.Error(kv.first.Mark(),
               StrCat(what_, ": unknown key \"", k, "\"",
                      hint.empty() ? "" : StrCat(" (did you mean \"", hint, "\"?)")));
  }
}

namespace {
std::optional<YAML::Node> LoadYaml(ConfigContext& ctx, const std::string& text) {
  try {
    YAML::Node root = YAML::Load(text);
    return root;
  } catch (const YAML::Exception& e) {
    // yaml-cpp's message is "yaml-cpp: error at line L, column C: msg"; keep just msg.
    ctx.Error(e.mark, StrCat("YAML syntax error: ", e.msg));
    return std::nullopt;
  }
}
}  // namespace

std::optional<YAML::Node> LoadYamlFile(ConfigContext& ctx, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ctx.Error("cannot open file");
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  // A config file is small; a huge one is a mistake (a log pointed at by accident).
  constexpr size_t kMaxConfigBytes = 16 * 1024 * 1024;
  if (text.size() > kMaxConfigBytes) {
    ctx.Error("file is larger than 16 MiB; refusing to parse it as configuration");
    return std::nullopt;
  }
  return LoadYaml(ctx, text);
}

std::optional<YAML::Node> LoadYamlText(ConfigContext& ctx, const std::string& text) {
  return LoadYaml(ctx, text);
}

}  // namespace bulwark
