// Runs a template tree on data: Go text/template's evaluation (fields, variables, if, range,
// pipelines) with Prometheus's and Alertmanager's functions.
#include <re2/re2.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <vector>

#include "core/strings.h"
#include "observe/go_strings.h"
#include "observe/promql/engine.h"
#include "observe/promql/parser.h"
#include "observe/template/internal.h"
#include "observe/model/duration.h"

namespace bulwark::observe::tmpl {
namespace internal {
namespace {

class Executor {
 public:
  Executor(const TValue& root, const std::vector<std::pair<std::string, TValue>>& vars)
      : dot_(root) {
    vars_.push_back({"$", root});
    for (const auto& v : vars) vars_.push_back(v);
  }

  void Run(const Template::Node& n, std::string* out) {
    switch (n.kind) {
      case Template::Node::Kind::kList:
        for (const auto& c : n.list) Run(*c, out);
        break;
      case Template::Node::Kind::kText:
        *out += n.text;
        break;
      case Template::Node::Kind::kAction: {
        TValue v = EvalPipeline(n.pipe);
        if (n.pipe.decl.empty()) *out += Print(v);
        break;
      }
      case Template::Node::Kind::kIf: {
        size_t mark = vars_.size();
        bool cond = Truth(EvalPipeline(n.pipe));
        Run(*n.list[cond ? 0 : 1], out);
        vars_.resize(mark);
        break;
      }
      case Template::Node::Kind::kRange: {
        size_t mark = vars_.size();
        Pipeline p = n.pipe;
        std::string index_var = p.decl2.empty() ? "" : p.decl;
        std::string elem_var = p.decl2.empty() ? p.decl : p.decl2;
        p.decl.clear();
        p.decl2.clear();
        TValue over = EvalPipeline(p);
        std::vector<std::pair<TValue, TValue>> items;  // (index or key, element)
        if (over.kind == TValue::Kind::kList) {
          for (size_t k = 0; k < over.list->size(); ++k) {
            items.emplace_back(TValue::Int(static_cast<int64_t>(k)), (*over.list)[k]);
          }
        } else if (over.kind == TValue::Kind::kMap) {
          for (const auto& [k, v] : *over.m) items.emplace_back(TValue::Str(k), TValue::Str(v));
        } else if (over.kind != TValue::Kind::kNil) {
          Throw(StrCat("range can't iterate over ", Print(over)));
        }
        if (items.empty()) {
          Run(*n.list[1], out);
          break;
        }
        TValue saved = dot_;
        for (auto& [key, elem] : items) {
          if (++iterations_ > 100000) Throw("range: more than 100000 iterations");
          vars_.resize(mark);
          if (!index_var.empty()) vars_.push_back({index_var, key});
          if (!elem_var.empty()) vars_.push_back({elem_var, elem});
          dot_ = elem;
          Run(*n.list[0], out);
        }
        dot_ = saved;
        vars_.resize(mark);
        break;
      }
    }
  }

 private:
  static TValue Pairs(const TValue::Map& m, int which) {
    std::vector<TValue> out;
    for (const auto& [k, v] : m) {
      if (which == 0) {
        out.push_back(TValue::ObjectOf({{"Name", TValue::Str(k)}, {"Value", TValue::Str(v)}}));
      } else {
        out.push_back(TValue::Str(which == 1 ? k : v));
      }
    }
    return TValue::ListOf(std::move(out));
  }

  TValue Field(const TValue& base, const std::string& f) {
    if (base.kind == TValue::Kind::kMap) {
      // Alertmanager's KV methods come before the map's keys, as Go templates look them up.
      if (f == "SortedPairs") return Pairs(*base.m, 0);
      if (f == "Names") return Pairs(*base.m, 1);
      if (f == "Values") return Pairs(*base.m, 2);
      auto it = base.m->find(f);
      return TValue::Str(it == base.m->end() ? "" : it->second);  // missingkey=zero
    }
    if (base.kind == TValue::Kind::kObject) {
      auto it = base.object->find(f);
      if (it == base.object->end()) Throw(StrCat("can't evaluate field ", f));
      return it->second;
    }
    if (base.kind == TValue::Kind::kList && (f == "Firing" || f == "Resolved")) {
      // Alertmanager's Alerts.Firing() / Alerts.Resolved().
      std::vector<TValue> out;
      for (const TValue& a : *base.list) {
        if (a.kind != TValue::Kind::kObject) continue;
        auto st = a.object->find("Status");
        if (st != a.object->end() && st->second.s == (f == "Firing" ? "firing" : "resolved")) {
          out.push_back(a);
        }
      }
      return TValue::ListOf(std::move(out));
    }
    Throw(StrCat("can't evaluate field ", f, " in type ", GoTypeName(base)));
  }

  TValue Lookup(const std::string& name) {
    for (auto it = vars_.rbegin(); it != vars_.rend(); ++it) {
      if (it->first == name) return it->second;
    }
    Throw(StrCat("undefined variable: ", name));
  }

  TValue EvalOperand(const Operand& o) {
    switch (o.kind) {
      case Operand::Kind::kVar:
      case Operand::Kind::kField: {
        TValue v = o.kind == Operand::Kind::kVar ? Lookup(o.name) : dot_;
        for (const std::string& f : o.fields) v = Field(v, f);
        return v;
      }
      case Operand::Kind::kString:
        return TValue::Str(o.str);
      case Operand::Kind::kInt:
        return TValue::Int(o.i);
      case Operand::Kind::kFloat:
        return TValue::Float(o.f);
      case Operand::Kind::kBool:
        return TValue::Bool(o.b);
      case Operand::Kind::kPipe:
        return EvalPipeline(*o.pipe);
      case Operand::Kind::kFunc:
        return Call(o.name, {});
      default:
        return TValue();
    }
  }

  TValue EvalPipeline(const Pipeline& p) {
    TValue v;
    bool have = false;
    for (const Command& c : p.cmds) {
      if (c.args[0].kind == Operand::Kind::kFunc) {
        std::vector<TValue> args;
        for (size_t i = 1; i < c.args.size(); ++i) args.push_back(EvalOperand(c.args[i]));
        if (have) args.push_back(v);
        v = Call(c.args[0].name, args);
      } else {
        if (c.args.size() > 1 || have) Throw("can't give argument to non-function");
        v = EvalOperand(c.args[0]);
      }
      have = true;
    }
    if (!p.decl.empty()) {
      if (p.assign) {
        for (auto it = vars_.rbegin(); it != vars_.rend(); ++it) {
          if (it->first == p.decl) {
            it->second = v;
            return v;
          }
        }
        Throw(StrCat("undefined variable: ", p.decl));
      }
      vars_.push_back({p.decl, v});
    }
    return v;
  }

  static int Compare(const TValue& a, const TValue& b, std::string_view fn) {
    auto num = [](const TValue& v) {
      return v.kind == TValue::Kind::kInt || v.kind == TValue::Kind::kFloat;
    };
    if (a.kind != b.kind && !(num(a) && num(b) && false)) {
      Throw(StrCat("error calling ", fn, ": incompatible types for comparison"));
    }
    switch (a.kind) {
      case TValue::Kind::kInt:
        return a.i < b.i ? -1 : (a.i > b.i ? 1 : 0);
      case TValue::Kind::kFloat:
        return a.f < b.f ? -1 : (a.f > b.f ? 1 : 0);
      case TValue::Kind::kString:
        return a.s < b.s ? -1 : (a.s > b.s ? 1 : 0);
      case TValue::Kind::kBool:
        if (fn == "eq" || fn == "ne") return a.b == b.b ? 0 : 1;
        [[fallthrough]];
      default:
        Throw(StrCat("error calling ", fn, ": invalid type for comparison"));
    }
  }

  TValue Call(const std::string& fn, const std::vector<TValue>& args) {
    auto want = [&](size_t n) {
      if (args.size() != n) {
        Throw(StrCat("wrong number of args for ", fn, ": want ", n, " got ", args.size()));
      }
    };
    auto str_arg = [&](size_t i) -> const std::string& {
      if (args[i].kind != TValue::Kind::kString) {
        Throw(StrCat("wrong type for value; expected string; got ", GoTypeName(args[i])));
      }
      return args[i].s;
    };
    if (fn == "humanize" || fn == "humanize1024" || fn == "humanizeDuration" ||
        fn == "humanizePercentage" || fn == "humanizeTimestamp") {
      want(1);
      double v = ToFloat(args[0], fn);
      if (fn == "humanize") return TValue::Str(Humanize(v));
      if (fn == "humanize1024") return TValue::Str(Humanize1024(v));
      if (fn == "humanizeDuration") return TValue::Str(HumanizeDuration(v));
      if (fn == "humanizePercentage") return TValue::Str(HumanizePercentage(v));
      if (std::isnan(v) || std::isinf(v)) return TValue::Str(FormatGoG4(v));
      return TValue::Str(GoTimeFromSeconds(v));
    }
    if (fn == "printf") {
      if (args.empty()) Throw("wrong number of args for printf: want at least 1 got 0");
      std::vector<TValue> rest(args.begin() + 1, args.end());
      return TValue::Str(GoSprintf(str_arg(0), rest));
    }
    if (fn == "print" || fn == "println") {
      std::string out;
      for (size_t i = 0; i < args.size(); ++i) {
        // fmt.Sprint adds spaces between operands when neither is a string.
        if (i > 0 && (fn == "println" || (args[i].kind != TValue::Kind::kString &&
                                          args[i - 1].kind != TValue::Kind::kString))) {
          out += " ";
        }
        out += Print(args[i]);
      }
      if (fn == "println") out += "\n";
      return TValue::Str(out);
    }
    if (fn == "toUpper" || fn == "toLower") {
      want(1);
      return TValue::Str(fn == "toUpper" ? AsciiUpper(str_arg(0)) : AsciiLower(str_arg(0)));
    }
    if (fn == "title") {
      want(1);
      std::string s = str_arg(0);
      bool start = true;
      for (char& c : s) {
        bool letter = std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
                      static_cast<unsigned char>(c) >= 0x80;
        if (letter && start) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        start = !letter;
      }
      return TValue::Str(s);
    }
    if (fn == "join") {
      want(2);
      if (args[1].kind != TValue::Kind::kList) Throw("error calling join: expected a list");
      std::string out;
      for (size_t k = 0; k < args[1].list->size(); ++k) {
        if (k > 0) out += str_arg(0);
        out += Print((*args[1].list)[k]);
      }
      return TValue::Str(out);
    }
    if (fn == "safeHtml" || fn == "html" || fn == "js" || fn == "urlquery") {
      want(1);
      return TValue::Str(Print(args[0]));
    }
    if (fn == "match") {
      want(2);
      re2::RE2 re(str_arg(0));
      if (!re.ok()) Throw(StrCat("error calling match: ", re.error()));
      return TValue::Bool(re2::RE2::PartialMatch(str_arg(1), re));
    }
    if (fn == "reReplaceAll") {
      want(3);
      re2::RE2 re(str_arg(0));
      if (!re.ok()) Throw(StrCat("error calling reReplaceAll: ", re.error()));
      std::string text = str_arg(2);
      std::vector<re2::StringPiece> groups(1 + re.NumberOfCapturingGroups());
      std::string out;
      size_t pos = 0;
      while (pos <= text.size() && re.Match(text, pos, text.size(), re2::RE2::UNANCHORED,
                                            groups.data(), static_cast<int>(groups.size()))) {
        size_t ms = static_cast<size_t>(groups[0].data() - text.data());
        out.append(text, pos, ms - pos);
        out += promql::ExpandGoTemplate(re, str_arg(1), groups);
        size_t me = ms + groups[0].size();
        if (me == ms) {
          if (ms < text.size()) out.push_back(text[ms]);
          pos = ms + 1;
        } else {
          pos = me;
        }
      }
      if (pos < text.size()) out.append(text, pos, std::string::npos);
      return TValue::Str(out);
    }
    if (fn == "stripPort" || fn == "stripDomain") {
      want(1);
      std::string s = str_arg(0);
      if (fn == "stripPort") {
        size_t colon = s.rfind(':');
        if (!s.empty() && s[0] == '[') {
          size_t close = s.find(']');
          if (close != std::string::npos && close + 1 < s.size() && s[close + 1] == ':') {
            return TValue::Str(s.substr(1, close - 1));
          }
          return TValue::Str(s);
        }
        if (colon != std::string::npos && s.find(':') == colon)
          return TValue::Str(s.substr(0, colon));
        return TValue::Str(s);
      }
      return TValue::Str(s);
    }
    if (fn == "eq" || fn == "ne" || fn == "lt" || fn == "le" || fn == "gt" || fn == "ge") {
      if (args.size() < 2) Throw(StrCat("wrong number of args for ", fn));
      if (fn == "eq") {
        for (size_t i = 1; i < args.size(); ++i) {
          if (Compare(args[0], args[i], fn) == 0) return TValue::Bool(true);
        }
        return TValue::Bool(false);
      }
      want(2);
      int c = Compare(args[0], args[1], fn);
      if (fn == "ne") return TValue::Bool(c != 0);
      if (fn == "lt") return TValue::Bool(c < 0);
      if (fn == "le") return TValue::Bool(c <= 0);
      if (fn == "gt") return TValue::Bool(c > 0);
      return TValue::Bool(c >= 0);
    }
    if (fn == "and" || fn == "or") {
      if (args.empty()) Throw(StrCat("wrong number of args for ", fn));
      for (size_t i = 0; i + 1 < args.size(); ++i) {
        if (Truth(args[i]) != (fn == "and")) return args[i];
      }
      return args.back();
    }
    if (fn == "not") {
      want(1);
      return TValue::Bool(!Truth(args[0]));
    }
    if (fn == "len") {
      want(1);
      if (args[0].kind == TValue::Kind::kString)
        return TValue::Int(static_cast<int64_t>(args[0].s.size()));
      if (args[0].kind == TValue::Kind::kMap)
        return TValue::Int(static_cast<int64_t>(args[0].m->size()));
      Throw(StrCat("error calling len: len of type ", GoTypeName(args[0])));
    }
    if (fn == "index") {
      want(2);
      if (args[0].kind != TValue::Kind::kMap) Throw("error calling index: can't index item");
      return Field(args[0], str_arg(1));
    }
    if (fn == "parseDuration") {
      want(1);
      auto d = observe::ParseDurationMs(str_arg(0));
      if (!d.ok()) Throw(StrCat("error calling parseDuration: ", d.status().message()));
      return TValue::Float(static_cast<double>(*d) / 1000);
    }
    Throw(StrCat("function \"", fn, "\" not defined"));
  }

  TValue dot_;
  std::vector<std::pair<std::string, TValue>> vars_;
  int iterations_ = 0;
};

}  // namespace
}  // namespace internal

using internal::TValue;

absl::StatusOr<std::string> Template::Expand(const TemplateData& data) const {
  // Prometheus's alert data, and the variables it defines before every template.
  static const TemplateValue::Map kEmpty;
  TValue labels = TValue::MapRef(data.labels ? data.labels : &kEmpty);
  TValue external = TValue::MapRef(data.external_labels ? data.external_labels : &kEmpty);
  TValue root = TValue::ObjectOf({{"Labels", labels},
                                  {"ExternalLabels", external},
                                  {"ExternalURL", TValue::Str(data.external_url)},
                                  {"Value", TValue::Float(data.value)}});
  return ExpandValue(root, {{"$labels", labels},
                            {"$externalLabels", external},
                            {"$externalURL", TValue::Str(data.external_url)},
                            {"$value", TValue::Float(data.value)}});
}

absl::StatusOr<std::string> Template::ExpandValue(
    const TemplateValue& root,
    const std::vector<std::pair<std::string, TemplateValue>>& vars) const {
  std::string out;
  try {
    internal::Executor ex(root, vars);
    ex.Run(*root_, &out);
    if (out.size() > 1024 * 1024) internal::Throw("output larger than 1 MiB");
  } catch (const internal::TemplateError& e) {
    return absl::InvalidArgumentError(
        StrCat("template: ", name_, ": executing \"", name_, "\": ", e.message));
  }
  return out;
}

}  // namespace bulwark::observe::tmpl
