#include "observe/rules/rule_file.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/config_reader.h"
#include "core/files.h"
#include "core/strings.h"
#include "observe/promql/parser.h"
#include "yaml-cpp/yaml.h"
#include "observe/model/duration.h"

namespace bulwark::observe::rules {
namespace {

constexpr size_t kMaxRuleFileBytes = 16 * 1024 * 1024;

const std::vector<std::string>& AlertmanagerKeys() {
  static const std::vector<std::string> kKeys = {
      "global",    "route",          "receivers",          "inhibit_rules",
      "templates", "time_intervals", "mute_time_intervals"};
  return kKeys;
}

class Loader {
 public:
  Loader(ConfigContext& ctx, const RuleFileOptions& options) : ctx_(ctx), options_(options) {}

  void Error(const YAML::Mark& mark, const std::string& msg) { ctx_.Error(mark, msg); }

  // Keys of `node` not in `known`: refused as Go's strict YAML decoding refuses them.
  void CheckKeys(const YAML::Node& node, const std::vector<std::string>& known,
                 std::string_view type, const std::vector<std::string>& also_allowed = {}) {
    for (const auto& kv : node) {
      std::string key = kv.first.Scalar();
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      if (std::find(also_allowed.begin(), also_allowed.end(), key) != also_allowed.end()) continue;
      std::string hint = Suggest(key, known);
      Error(kv.first.Mark(), StrCat("field ", key, " not found in type ", type,
                                    hint.empty() ? "" : StrCat(" (did you mean \"", hint, "\"?)")));
    }
  }

  bool Scalar(const YAML::Node& n, std::string_view what, std::string* out) {
    if (!n.IsScalar()) {
      Error(n.Mark(), StrCat(what, ": expected a string"));
      return false;
    }
    *out = n.Scalar();
    return true;
  }

  bool Duration(const YAML::Node& n, std::string_view what, int64_t* ms) {
    std::string s;
    if (!Scalar(n, what, &s)) return false;
    auto d = observe::ParseDurationMs(s);
    if (!d.ok()) {
      Error(n.Mark(), StrCat("not a valid duration string: \"", s, "\""));
      return false;
    }
    *ms = *d;
    return true;
  }

  bool StringMap(const YAML::Node& n, std::string_view what, Labels* out) {
    if (n.IsNull()) return true;
    if (!n.IsMap()) {
      Error(n.Mark(), StrCat(what, ": expected a mapping"));
      return false;
    }
    for (const auto& kv : n) {
      std::string k = kv.first.Scalar(), v;
      if (!kv.second.IsScalar() && !kv.second.IsNull()) {
        Error(kv.second.Mark(), StrCat(what, " \"", k, "\": expected a string"));
        continue;
      }
      v = kv.second.IsNull() ? "" : kv.second.Scalar();
      out->emplace_back(k, v);
    }
    std::sort(out->begin(), out->end());
    return true;
  }

  void LoadRule(const YAML::Node& n, const RuleGroup& group, size_t index, Rule* rule) {
    CheckKeys(n, {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"},
              "rulefmt.RuleNode");
    rule->line = n.Mark().line + 1;
    YAML::Node record = n["record"], alert = n["alert"], expr = n["expr"];
    std::string name;
    if (record) Scalar(record, "record", &name);
    if (alert) Scalar(alert, "alert", &name);
    rule->name = name;
    auto where = [&](const YAML::Node& at) {
      return std::pair<YAML::Mark, std::string>(
          at ? at.Mark() : n.Mark(),
          StrCat("group \"", group.name, "\", rule ", index + 1, ", \"", name, "\": "));
    };
    auto fail = [&](const YAML::Node& at, const std::string& msg) {
      auto [mark, prefix] = where(at);
      Error(mark, prefix + msg);
    };
    if (record && alert) {
      fail(alert, "only one of 'record' and 'alert' must be set");
      return;
    }
    if (!record && !alert) {
      fail(YAML::Node(), "one of 'record' or 'alert' must be set");
      return;
    }
    rule->kind = record ? Rule::Kind::kRecord : Rule::Kind::kAlert;
    if (!expr || (expr.IsScalar() && expr.Scalar().empty())) {
      fail(YAML::Node(), "field 'expr' must be set in rule");
      return;
    }
    if (!Scalar(expr, "expr", &rule->expr_text)) return;
    auto parsed = promql::Parse(rule->expr_text);
    if (!parsed.ok()) {
      fail(expr, StrCat("could not parse expression: ", parsed.status().message()));
    } else if ((*parsed)->type() != promql::ValueType::kVector &&
               (*parsed)->type() != promql::ValueType::kScalar) {
      fail(expr, StrCat("could not parse expression: expression must evaluate to an instant "
                        "vector or scalar, got ",
                        promql::ValueTypeName((*parsed)->type())));
    } else {
      rule->expr = std::move(*parsed);
    }
    if (n["for"]) Duration(n["for"], "for", &rule->for_ms);
    if (n["keep_firing_for"])
      Duration(n["keep_firing_for"], "keep_firing_for", &rule->keep_firing_for_ms);
    if (n["labels"]) StringMap(n["labels"], "labels", &rule->labels);
    if (n["annotations"]) StringMap(n["annotations"], "annotations", &rule->annotations);
    if (rule->kind == Rule::Kind::kRecord) {
      if (!IsValidMetricName(name)) fail(record, StrCat("invalid recording rule name: ", name));
      if (n["annotations"]) fail(n["annotations"], "invalid field 'annotations' in recording rule");
      if (n["for"]) fail(n["for"], "invalid field 'for' in recording rule");
      if (n["keep_firing_for"]) {
        fail(n["keep_firing_for"], "invalid field 'keep_firing_for' in recording rule");
      }
    }
    for (const auto& [k, v] : rule->labels) {
      if (!IsValidLabelName(k) || k == "__name__") {
        fail(n["labels"], StrCat("invalid label name: ", k));
      }
    }
    for (const auto& [k, v] : rule->annotations) {
      if (!IsValidLabelName(k)) fail(n["annotations"], StrCat("invalid annotation name: ", k));
    }
    if (rule->kind == Rule::Kind::kAlert) {
      // Prometheus prepends the variable definitions to every template before parsing it.
      std::string tname = StrCat("__alert_", name);
      for (const auto& [k, v] : rule->labels) {
        auto t = Template::Parse(tname, v);
        if (!t.ok()) {
          fail(n["labels"], StrCat("label \"", k, "\": ", t.status().message()));
        } else {
          rule->label_templates.push_back(std::move(*t));
        }
      }
      for (const auto& [k, v] : rule->annotations) {
        auto t = Template::Parse(tname, v);
        if (!t.ok()) {
          fail(n["annotations"], StrCat("annotation \"", k, "\": ", t.status().message()));
        } else {
          rule->annotation_templates.push_back(std::move(*t));
        }
      }
    }
  }

  void Load(const YAML::Node& root, RuleFile* out) {
    if (root.IsNull()) return;  // an empty file has no groups
    if (!root.IsMap()) {
      Error(root.Mark(), "expected a mapping with `groups`");
      return;
    }
    CheckKeys(root, {"groups"}, "rulefmt.RuleGroups",
              options_.allow_alertmanager ? AlertmanagerKeys() : std::vector<std::string>{});
    YAML::Node groups = root["groups"];
    if (!groups || groups.IsNull()) return;
    if (!groups.IsSequence()) {
      Error(groups.Mark(), "groups: expected a list");
      return;
    }
    std::vector<std::string> names;
    for (const YAML::Node& g : groups) {
      if (!g.IsMap()) {
        Error(g.Mark(), "a group must be a mapping");
        continue;
      }
      CheckKeys(g, {"name", "interval", "limit", "rules"}, "rulefmt.RuleGroup");
      RuleGroup group;
      group.file = ctx_.file();
      if (g["name"]) Scalar(g["name"], "name", &group.name);
      if (group.name.empty()) {
        Error(g.Mark(), "Groupname must not be empty");
      } else if (std::find(names.begin(), names.end(), group.name) != names.end()) {
        Error(g["name"].Mark(),
              StrCat("groupname: \"", group.name, "\" is repeated in the same file"));
      }
      names.push_back(group.name);
      if (g["interval"]) Duration(g["interval"], "interval", &group.interval_ms);
      if (g["limit"]) {
        std::string s;
        int64_t lim = 0;
        if (Scalar(g["limit"], "limit", &s) && (!ParseInt(s, &lim) || lim < 0 || lim > 1 << 30)) {
          Error(g["limit"].Mark(), StrCat("limit: not a non-negative integer: \"", s, "\""));
        }
        group.limit = static_cast<int>(lim);
      }
      YAML::Node rules = g["rules"];
      if (rules && !rules.IsNull()) {
        if (!rules.IsSequence()) {
          Error(rules.Mark(), "rules: expected a list");
        } else {
          size_t i = 0;
          for (const YAML::Node& r : rules) {
            Rule rule;
            if (!r.IsMap()) {
              Error(r.Mark(), "a rule must be a mapping");
            } else {
              LoadRule(r, group, i, &rule);
            }
            group.rules.push_back(std::move(rule));
            ++i;
          }
        }
      }
      out->groups.push_back(std::move(group));
    }
  }

 private:
  ConfigContext& ctx_;
  RuleFileOptions options_;
};

// The Alertmanager part of a mixed file: its top-level blocks kept, every other line blanked,
// so a YAML parser sees the same line numbers.
std::string AlertmanagerPart(const std::string& text) {
  std::istringstream in(text);
  std::string line, out;
  bool keep = false, any = false;
  while (std::getline(in, line)) {
    bool top =
        !line.empty() && line[0] != ' ' && line[0] != '\t' && line[0] != '#' && line[0] != '-';
    if (top) {
      size_t colon = line.find(':');
      std::string key = colon == std::string::npos ? line : line.substr(0, colon);
      if (!key.empty() && (key.front() == '"' || key.front() == '\''))
        key = key.substr(1, key.size() - 2);
      const auto& am = AlertmanagerKeys();
      keep = std::find(am.begin(), am.end(), key) != am.end();
      any = any || keep;
    }
    if (keep) out += line;
    out += "\n";
  }
  return any ? out : std::string();
}

}  // namespace

absl::StatusOr<RuleFile> ParseRuleFile(const std::string& path, const std::string& text,
                                       const RuleFileOptions& options) {
  if (text.size() > kMaxRuleFileBytes) {
    return absl::InvalidArgumentError(StrCat(path, ": larger than 16 MiB"));
  }
  // Rule files take no ${VAR} interpolation (Prometheus reads them as they are).
  ConfigContext ctx(path,
                    [](std::string_view) -> std::optional<std::string> { return std::nullopt; });
  std::optional<YAML::Node> root = LoadYamlText(ctx, text);
  RuleFile out;
  if (root) {
    Loader loader(ctx, options);
    loader.Load(*root, &out);
  }
  if (!ctx.ok()) return absl::InvalidArgumentError(ctx.ErrorText());
  if (options.allow_alertmanager) out.alertmanager_yaml = AlertmanagerPart(text);
  return out;
}

absl::StatusOr<RuleFile> LoadRuleFile(const std::string& path, const RuleFileOptions& options) {
  auto text = ReadFileToString(path, kMaxRuleFileBytes);
  if (!text.ok()) return text.status();
  return ParseRuleFile(path, *text, options);
}

}  // namespace bulwark::observe::rules
