#include "observe/rules/test_runner.h"

#include <glob.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>

#include "core/config_reader.h"
#include "core/strings.h"
#include "observe/promql/engine.h"
#include "observe/promql/parser.h"
#include "observe/promql/series_notation.h"
#include "observe/rules/group.h"
#include "observe/rules/rule_file.h"
#include "observe/tsdb/store.h"
#include "yaml-cpp/yaml.h"
#include "observe/model/duration.h"

namespace bulwark::observe::rules {
namespace {

using observe::Labels;

// Go's strconv.FormatFloat(v, 'E', -1, 64), which promtool prints values with.
std::string FormatE(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string s(buf, r.ptr);
  size_t e = s.find('e');
  int exp = std::atoi(s.c_str() + e + 1);
  char tail[16];
  std::snprintf(tail, sizeof(tail), "E%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  return s.substr(0, e) + tail;
}

struct InputSeries {
  Labels labels;
  std::vector<promql::SeriesValue> values;
  size_t next = 0;  // first value not loaded yet
};

struct ExpAlert {
  Labels labels;
  Labels annotations;
  bool operator<(const ExpAlert& o) const {
    return labels != o.labels ? labels < o.labels : annotations < o.annotations;
  }
  bool operator==(const ExpAlert& o) const {
    return labels == o.labels && annotations == o.annotations;
  }
};

struct AlertTest {
  int64_t eval_time = 0;
  std::string alertname;
  std::vector<ExpAlert> expected;
};

struct ExprTest {
  std::string expr;
  int64_t eval_time = 0;
  std::vector<std::pair<Labels, double>> expected;
};

class Failure {
 public:
  std::vector<std::string> lines;
};

std::string DurationText(int64_t ms) { return observe::FormatDurationMs(ms); }

std::string AlertsText(const std::vector<ExpAlert>& alerts) {
  std::string out = "[\n";
  for (size_t i = 0; i < alerts.size(); ++i) {
    StrAppend(&out, "            ", i,
              ":\n              Labels:", promql::LabelsString(alerts[i].labels),
              "\n              Annotations:", promql::LabelsString(alerts[i].annotations), "\n");
  }
  return out + "            ]";
}

std::string SamplesText(const std::vector<std::pair<Labels, double>>& samples) {
  if (samples.empty()) return "nil";
  std::vector<std::string> parts;
  for (const auto& [l, v] : samples) parts.push_back(promql::LabelsString(l) + " " + FormatE(v));
  return Join(parts, ", ");
}

bool Duration(const YAML::Node& n, int64_t* ms, std::string* err) {
  if (!n) return true;
  auto d = observe::ParseDurationMs(n.Scalar());
  if (!d.ok()) {
    *err =
        StrCat("line ", n.Mark().line + 1, ": not a valid duration string: \"", n.Scalar(), "\"");
    return false;
  }
  *ms = *d;
  return true;
}

Labels StringMap(const YAML::Node& n) {
  Labels out;
  if (!n || !n.IsMap()) return out;
  for (const auto& kv : n)
    out.emplace_back(kv.first.Scalar(), kv.second.IsNull() ? "" : kv.second.Scalar());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> ResolveRuleFiles(const std::string& dir, const YAML::Node& list,
                                          std::string* err) {
  std::vector<std::string> out;
  if (!list) return out;
  for (const YAML::Node& f : list) {
    std::string pattern = f.Scalar();
    pattern = ConfigContext::ResolveConfigPath(dir, pattern);
    glob_t g;
    int rc = glob(pattern.c_str(), 0, nullptr, &g);
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
    } else if (rc == GLOB_NOMATCH && pattern.find_first_of("*?[") == std::string::npos) {
      out.push_back(pattern);  // reported when it fails to open
    } else if (rc != GLOB_NOMATCH) {
      *err = StrCat("bad rule file pattern \"", f.Scalar(), "\"");
    }
    globfree(&g);
  }
  return out;
}

// One entry of `tests`. Returns the failure lines (empty on success).
std::vector<std::string> RunTestGroup(const YAML::Node& tg, const std::vector<RuleGroup>& groups,
                                      int64_t eval_interval) {
  std::vector<std::string> errs;
  std::string err;
  int64_t interval = eval_interval;
  if (!Duration(tg["interval"], &interval, &err)) return {err};
  if (interval <= 0) return {"interval must be positive"};

  std::vector<InputSeries> inputs;
  for (const YAML::Node& s : tg["input_series"]) {
    auto labels = promql::ParseSeriesDesc(s["series"].Scalar());
    if (!labels.ok()) {
      errs.push_back(std::string(labels.status().message()));
      continue;
    }
    auto values = promql::ParseSeriesValues(s["values"] ? s["values"].Scalar() : "");
    if (!values.ok()) {
      errs.push_back(std::string(values.status().message()));
      continue;
    }
    inputs.push_back({std::move(*labels), std::move(*values)});
  }
  if (!errs.empty()) return errs;

  std::vector<AlertTest> alert_tests;
  for (const YAML::Node& a : tg["alert_rule_test"]) {
    AlertTest t;
    if (!Duration(a["eval_time"], &t.eval_time, &err)) return {err};
    t.alertname = a["alertname"].Scalar();
    for (const YAML::Node& e : a["exp_alerts"]) {
      ExpAlert x;
      x.labels = StringMap(e["exp_labels"]);
      bool has = false;
      for (auto& [k, v] : x.labels) has = has || k == "alertname";
      if (!has) {
        x.labels.emplace_back("alertname", t.alertname);
        std::sort(x.labels.begin(), x.labels.end());
      }
      x.annotations = StringMap(e["exp_annotations"]);
      t.expected.push_back(std::move(x));
    }
    alert_tests.push_back(std::move(t));
  }
  std::vector<ExprTest> expr_tests;
  for (const YAML::Node& p : tg["promql_expr_test"]) {
    ExprTest t;
    t.expr = p["expr"].Scalar();
    if (!Duration(p["eval_time"], &t.eval_time, &err)) return {err};
    for (const YAML::Node& s : p["exp_samples"]) {
      Labels l;
      if (s["labels"] && !s["labels"].Scalar().empty()) {
        auto parsed = promql::ParseSeriesDesc(s["labels"].Scalar());
        if (!parsed.ok())
          return {StrCat("    expr: ", promql::GoQuote(t.expr), ", time: ",
                         DurationText(t.eval_time), ", err: ", parsed.status().message())};
        l = std::move(*parsed);
      }
      double v = 0;
      if (s["value"]) {
        std::string text = s["value"].Scalar();
        char* end = nullptr;
        v = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size()) {
          return {StrCat("line ", s["value"].Mark().line + 1, ": value \"", text,
                         "\" is not a number")};
        }
      }
      t.expected.emplace_back(std::move(l), v);
    }
    expr_tests.push_back(std::move(t));
  }

  int64_t maxt = 0;
  for (const AlertTest& t : alert_tests) maxt = std::max(maxt, t.eval_time);
  for (const ExprTest& t : expr_tests) maxt = std::max(maxt, t.eval_time);

  EvalContext ctx;
  for (const auto& [k, v] : StringMap(tg["external_labels"])) ctx.external_labels[k] = v;
  if (tg["external_url"]) ctx.external_url = tg["external_url"].Scalar();
  tsdb::Store::Options so;
  so.retention_ms = std::numeric_limits<int64_t>::max() / 4;
  so.max_samples = std::numeric_limits<size_t>::max();
  tsdb::Store store(so);
  std::vector<int32_t> refs;
  for (const InputSeries& in : inputs) refs.push_back(store.Ref(in.labels));

  std::vector<std::unique_ptr<GroupEvaluator>> evaluators;
  for (const RuleGroup& g : groups) evaluators.push_back(std::make_unique<GroupEvaluator>(&g));

  std::vector<AlertTest*> pending;
  for (AlertTest& t : alert_tests) pending.push_back(&t);
  std::stable_sort(pending.begin(), pending.end(), [](const AlertTest* a, const AlertTest* b) {
    return a->eval_time < b->eval_time;
  });
  size_t next_alert = 0;
  int64_t loaded_until = 0;
  auto load_till = [&](int64_t ts) {
    for (size_t i = 0; i < inputs.size(); ++i) {
      InputSeries& in = inputs[i];
      while (in.next < in.values.size() && static_cast<int64_t>(in.next) * interval <= ts) {
        const promql::SeriesValue& v = in.values[in.next];
        int64_t t = static_cast<int64_t>(in.next) * interval;
        if (v.kind == promql::SeriesValue::Kind::kValue) {
          store.Append(refs[i], t, v.value);
        } else if (v.kind == promql::SeriesValue::Kind::kStale) {
          store.Append(refs[i], t, tsdb::StaleNaN());
        }
        ++in.next;
      }
    }
    loaded_until = ts;
  };

  for (int64_t ts = 0; ts <= maxt; ts += eval_interval) {
    load_till(ts);
    ctx.query.max_visible_ms = ts;
    std::vector<std::string> eval_errs;
    for (auto& ev : evaluators) {
      ev->Eval(ts, &store, ctx);
      for (size_t i = 0; i < ev->states().size(); ++i) {
        if (!ev->states()[i].last_error.empty()) {
          eval_errs.push_back(StrCat("    rule: ", ev->group().rules[i].name, ", time: ",
                                     DurationText(ts), ", err: ", ev->states()[i].last_error));
        }
      }
    }
    if (!eval_errs.empty()) {
      errs.insert(errs.end(), eval_errs.begin(), eval_errs.end());
      return errs;
    }
    // Alert tests whose eval_time falls in [ts, ts + eval_interval) are checked now.
    while (next_alert < pending.size() && pending[next_alert]->eval_time >= ts &&
           pending[next_alert]->eval_time < ts + eval_interval) {
      AlertTest& t = *pending[next_alert];
      std::vector<ExpAlert> got;
      for (auto& ev : evaluators) {
        for (size_t i = 0; i < ev->states().size(); ++i) {
          const Rule& r = ev->group().rules[i];
          if (r.kind != Rule::Kind::kAlert || r.name != t.alertname) continue;
          for (const auto& [h, a] : ev->states()[i].active) {
            if (a.state == AlertState::kFiring) got.push_back({a.labels, a.annotations});
          }
        }
      }
      std::vector<ExpAlert> exp = t.expected;
      std::sort(got.begin(), got.end());
      std::sort(exp.begin(), exp.end());
      if (got != exp) {
        errs.push_back(StrCat("    alertname: ", t.alertname, ", time: ", DurationText(t.eval_time),
                              ", \n        exp:", exp.empty() ? "[]" : AlertsText(exp),
                              ", \n        got:", got.empty() ? "[]" : AlertsText(got)));
      }
      ++next_alert;
    }
  }

  promql::EvalOptions qopts;
  qopts.max_visible_ms = loaded_until;
  for (const ExprTest& t : expr_tests) {
    auto parsed = promql::Parse(t.expr);
    promql::QueryResult res;
    absl::Status st =
        parsed.ok() ? promql::Evaluate(**parsed, t.eval_time, store, qopts, &res) : parsed.status();
    if (st.ok() && res.type != promql::ValueType::kVector &&
        res.type != promql::ValueType::kScalar) {
      st = absl::InvalidArgumentError("rule result is not a vector or scalar");
    }
    if (!st.ok()) {
      errs.push_back(StrCat("    expr: ", promql::GoQuote(t.expr),
                            ", time: ", DurationText(t.eval_time), ", err: ", st.message()));
      continue;
    }
    std::vector<std::pair<Labels, double>> got;
    if (res.type == promql::ValueType::kScalar) {
      got.emplace_back(Labels{}, res.scalar);
    } else {
      for (const promql::Sample& s : res.vector) got.emplace_back(*s.labels, s.v);
    }
    std::vector<std::pair<Labels, double>> exp = t.expected;
    auto by_labels = [](const auto& a, const auto& b) { return a.first < b.first; };
    std::sort(got.begin(), got.end(), by_labels);
    std::sort(exp.begin(), exp.end(), by_labels);
    // Exact comparison, as promtool's reflect.DeepEqual (NaN never equals NaN).
    bool same = got.size() == exp.size();
    for (size_t i = 0; same && i < got.size(); ++i) {
      same = got[i].first == exp[i].first && got[i].second == exp[i].second;
    }
    if (!same) {
      errs.push_back(
          StrCat("    expr: ", promql::GoQuote(t.expr), ", time: ", DurationText(t.eval_time),
                 ",\n        exp: ", SamplesText(exp), "\n        got: ", SamplesText(got)));
    }
  }
  return errs;
}

bool RunFile(const std::string& path, std::ostream& out) {
  out << "Unit Testing:  " << path << "\n";
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    out << "  FAILED:\n    " << e.what() << "\n\n";
    return false;
  }
  static const std::vector<std::string> kKeys = {"rule_files", "evaluation_interval",
                                                 "group_eval_order", "tests"};
  for (const auto& kv : root) {
    std::string k = kv.first.Scalar();
    if (std::find(kKeys.begin(), kKeys.end(), k) == kKeys.end()) {
      out << "  FAILED:\n    " << path << ":" << kv.first.Mark().line + 1 << ": field " << k
          << " not found in type main.unitTestFile\n\n";
      return false;
    }
  }
  int64_t eval_interval = 60000;
  std::string err;
  if (!Duration(root["evaluation_interval"], &eval_interval, &err) || eval_interval <= 0) {
    out << "  FAILED:\n    " << (err.empty() ? "evaluation_interval must be positive" : err)
        << "\n\n";
    return false;
  }
  std::string dir = ".";
  if (size_t slash = path.rfind('/'); slash != std::string::npos) dir = path.substr(0, slash);
  std::vector<std::string> files = ResolveRuleFiles(dir, root["rule_files"], &err);
  if (!err.empty()) {
    out << "  FAILED:\n    " << err << "\n\n";
    return false;
  }
  // Groups in file order, or in group_eval_order when given.
  std::vector<RuleFile> loaded;
  std::vector<std::string> load_errs;
  for (const std::string& f : files) {
    RuleFileOptions opts;
    opts.allow_alertmanager = true;
    auto rf = LoadRuleFile(f, opts);
    if (!rf.ok()) {
      load_errs.push_back(std::string(rf.status().message()));
    } else {
      loaded.push_back(std::move(*rf));
    }
  }
  if (!load_errs.empty()) {
    out << "  FAILED:\n";
    for (const std::string& e : load_errs) out << "    " << e << "\n";
    out << "\n";
    return false;
  }
  std::vector<RuleGroup> groups;
  for (RuleFile& rf : loaded) {
    for (RuleGroup& g : rf.groups) groups.push_back(std::move(g));
  }
  if (YAML::Node order = root["group_eval_order"]) {
    std::vector<std::string> names;
    for (const YAML::Node& n : order) names.push_back(n.Scalar());
    for (const std::string& n : names) {
      if (std::none_of(groups.begin(), groups.end(),
                       [&](const RuleGroup& g) { return g.name == n; })) {
        out << "  FAILED:\n    group name provided in group_eval_order not present in loaded rule "
               "files: "
            << n << "\n\n";
        return false;
      }
    }
    auto rank = [&](const RuleGroup& g) {
      auto it = std::find(names.begin(), names.end(), g.name);
      return it == names.end() ? static_cast<size_t>(0) : static_cast<size_t>(it - names.begin());
    };
    std::stable_sort(groups.begin(), groups.end(),
                     [&](const RuleGroup& a, const RuleGroup& b) { return rank(a) < rank(b); });
  }
  std::vector<std::string> errs;
  size_t i = 0;
  for (const YAML::Node& tg : root["tests"]) {
    std::vector<std::string> e = RunTestGroup(tg, groups, eval_interval);
    if (!e.empty()) {
      std::string name = tg["name"] ? tg["name"].Scalar() : "";
      if (!name.empty()) errs.push_back(StrCat("    name: ", name, ","));
      errs.insert(errs.end(), e.begin(), e.end());
    }
    ++i;
  }
  if (errs.empty()) {
    out << "  SUCCESS\n\n";
    return true;
  }
  out << "  FAILED:\n";
  for (const std::string& e : errs) out << e << "\n";
  out << "\n";
  return false;
}

}  // namespace

bool RunRuleTests(const std::vector<std::string>& files, std::ostream& out) {
  bool ok = true;
  for (const std::string& f : files) {
    try {
      ok = RunFile(f, out) && ok;
    } catch (const YAML::Exception& e) {
      out << "  FAILED:\n    " << f << ": " << e.what() << "\n\n";
      ok = false;
    }
  }
  return ok;
}

bool CheckRuleFiles(const std::vector<std::string>& files, std::ostream& out) {
  bool ok = true;
  for (const std::string& f : files) {
    out << "Checking " << f << "\n";
    RuleFileOptions opts;
    opts.allow_alertmanager = true;
    auto rf = LoadRuleFile(f, opts);
    if (!rf.ok()) {
      out << "  FAILED:\n" << rf.status().message() << "\n\n";
      ok = false;
      continue;
    }
    size_t rules = 0;
    for (const RuleGroup& g : rf->groups) rules += g.rules.size();
    out << "  SUCCESS: " << rules << " rules found\n\n";
  }
  return ok;
}

}  // namespace bulwark::observe::rules
