#include "observe/rules/template.h"

#include <re2/re2.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <vector>

#include "core/strings.h"
#include "observe/promql/engine.h"
#include "observe/promql/parser.h"

namespace bulwark::observe::rules {

using promql::FormatGoFloat;

// ---------------------------------------------------------------------------------------------
// Prometheus's humanize family (web/template/template.go), in Go's %.4g.

std::string FormatGoG4(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

std::string Humanize(double v) {
  if (v == 0 || std::isnan(v) || std::isinf(v)) return FormatGoG4(v);
  static const char* kBig[] = {"k", "M", "G", "T", "P", "E", "Z", "Y"};
  static const char* kSmall[] = {"m", "u", "n", "p", "f", "a", "z", "y"};
  std::string prefix;
  if (std::fabs(v) >= 1) {
    for (const char* p : kBig) {
      if (std::fabs(v) < 1000) break;
      prefix = p;
      v /= 1000;
    }
    return FormatGoG4(v) + prefix;
  }
  for (const char* p : kSmall) {
    if (std::fabs(v) >= 1) break;
    prefix = p;
    v *= 1000;
  }
  return FormatGoG4(v) + prefix;
}

std::string Humanize1024(double v) {
  if (std::fabs(v) <= 1 || std::isnan(v) || std::isinf(v)) return FormatGoG4(v);
  static const char* kBig[] = {"ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"};
  std::string prefix;
  for (const char* p : kBig) {
    if (std::fabs(v) < 1024) break;
    prefix = p;
    v /= 1024;
  }
  return FormatGoG4(v) + prefix;
}

// Go's int64(f) on amd64: out-of-range values become the minimum int64.
int64_t GoInt64(double v) {
  if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) return INT64_MIN;
  return static_cast<int64_t>(v);
}

std::string HumanizeDuration(double v) {
  if (std::isnan(v) || std::isinf(v)) return FormatGoG4(v);
  if (v == 0) return FormatGoG4(v) + "s";
  if (std::fabs(v) >= 1) {
    std::string sign;
    if (v < 0) {
      sign = "-";
      v = -v;
    }
    int64_t d = GoInt64(v);
    int64_t seconds = d % 60, minutes = (d / 60) % 60, hours = (d / 60 / 60) % 24,
            days = d / 60 / 60 / 24;
    if (days != 0) return StrCat(sign, days, "d ", hours, "h ", minutes, "m ", seconds, "s");
    if (hours != 0) return StrCat(sign, hours, "h ", minutes, "m ", seconds, "s");
    if (minutes != 0) return StrCat(sign, minutes, "m ", seconds, "s");
    return StrCat(sign, FormatGoG4(v), "s");
  }
  static const char* kSmall[] = {"m", "u", "n", "p", "f", "a", "z", "y"};
  std::string prefix;
  for (const char* p : kSmall) {
    if (std::fabs(v) >= 1) break;
    prefix = p;
    v *= 1000;
  }
  return StrCat(FormatGoG4(v), prefix, "s");
}

std::string HumanizePercentage(double v) { return FormatGoG4(v * 100) + "%"; }

std::string GoTimeString(int64_t seconds, int64_t nanos) {
  time_t tt = static_cast<time_t>(seconds);
  struct tm tm;
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  std::string out = buf;
  if (nanos > 0) {
    char frac[32];
    std::snprintf(frac, sizeof(frac), ".%09lld", static_cast<long long>(nanos));
    std::string f = frac;
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  return out + " +0000 UTC";
}

namespace {

// humanizeTimestamp's argument: seconds with a fraction.
std::string GoTimeFromSeconds(double seconds) {
  double whole = std::floor(seconds);
  int64_t s = GoInt64(whole);
  int64_t nanos = static_cast<int64_t>(std::llround((seconds - whole) * 1e9));
  if (nanos >= 1000000000) {
    ++s;
    nanos -= 1000000000;
  }
  return rules::GoTimeString(s, nanos);
}

// ---------------------------------------------------------------------------------------------
// Values.

using TValue = TemplateValue;

const char* GoTypeName(const TValue& v) {
  switch (v.kind) {
    case TValue::Kind::kString:
      return "string";
    case TValue::Kind::kFloat:
      return "float64";
    case TValue::Kind::kInt:
      return "int";
    case TValue::Kind::kBool:
      return "bool";
    case TValue::Kind::kMap:
      return "template.KV";
    case TValue::Kind::kObject:
      return "template.Data";
    case TValue::Kind::kList:
      return "[]interface {}";
    default:
      return "<nil>";
  }
}

std::string Print(const TValue& v) {
  switch (v.kind) {
    case TValue::Kind::kString:
      return v.s;
    case TValue::Kind::kFloat:
      return FormatGoFloat(v.f);
    case TValue::Kind::kInt:
      return std::to_string(v.i);
    case TValue::Kind::kBool:
      return v.b ? "true" : "false";
    case TValue::Kind::kMap: {
      std::string out = "map[";
      bool first = true;
      for (const auto& [k, val] : *v.m) {
        if (!first) out += " ";
        first = false;
        StrAppend(&out, k, ":", val);
      }
      return out + "]";
    }
    case TValue::Kind::kObject: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, val] : *v.object) {
        if (!first) out += " ";
        first = false;
        out += Print(val);
      }
      return out + "}";
    }
    case TValue::Kind::kList: {
      std::string out = "[";
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k > 0) out += " ";
        out += Print((*v.list)[k]);
      }
      return out + "]";
    }
    default:
      return "<no value>";
  }
}

bool Truth(const TValue& v) {
  switch (v.kind) {
    case TValue::Kind::kString:
      return !v.s.empty();
    case TValue::Kind::kFloat:
      return v.f != 0;
    case TValue::Kind::kInt:
      return v.i != 0;
    case TValue::Kind::kBool:
      return v.b;
    case TValue::Kind::kMap:
      return !v.m->empty();
    case TValue::Kind::kObject:
      return true;
    case TValue::Kind::kList:
      return !v.list->empty();
    default:
      return false;
  }
}

struct TemplateError {
  std::string message;
};
[[noreturn]] void Throw(std::string m) { throw TemplateError{std::move(m)}; }

// Prometheus converts its functions' argument with convertToFloat: floats, ints and numeric
// strings.
double ToFloat(const TValue& v, std::string_view fn) {
  switch (v.kind) {
    case TValue::Kind::kFloat:
      return v.f;
    case TValue::Kind::kInt:
      return static_cast<double>(v.i);
    case TValue::Kind::kString: {
      std::string s = v.s;
      char* end = nullptr;
      double d = std::strtod(s.c_str(), &end);
      if (s.empty() || end != s.c_str() + s.size()) {
        Throw(StrCat("error calling ", fn, ": strconv.ParseFloat: parsing ", promql::GoQuote(s),
                     ": invalid syntax"));
      }
      return d;
    }
    default:
      Throw(StrCat("error calling ", fn, ": can't convert ", GoTypeName(v), " to float"));
  }
}

// Go's fmt.Sprintf for the verbs templates use.
std::string GoSprintf(const std::string& format, const std::vector<TValue>& args) {
  std::string out;
  size_t argi = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    char c = format[i];
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    size_t start = i;
    ++i;
    std::string flags;
    while (i < format.size() && std::string_view("+-# 0").find(format[i]) != std::string::npos) {
      flags.push_back(format[i++]);
    }
    std::string width, precision;
    bool has_precision = false;
    while (i < format.size() && std::isdigit(static_cast<unsigned char>(format[i]))) {
      width.push_back(format[i++]);
    }
    if (i < format.size() && format[i] == '.') {
      has_precision = true;
      ++i;
      while (i < format.size() && std::isdigit(static_cast<unsigned char>(format[i]))) {
        precision.push_back(format[i++]);
      }
      if (precision.empty()) precision = "0";
    }
    if (i >= format.size()) {
      out += "%!(NOVERB)";
      break;
    }
    char verb = format[i];
    if (verb == '%') {
      out.push_back('%');
      continue;
    }
    (void)start;
    if (argi >= args.size()) {
      StrAppend(&out, "%!", verb, "(MISSING)");
      continue;
    }
    const TValue& a = args[argi++];
    std::string spec = "%" + flags + width + (has_precision ? "." + precision : "");
    char buf[512];
    auto bad = [&]() { StrAppend(&out, "%!", verb, "(", GoTypeName(a), "=", Print(a), ")"); };
    auto pad = [&](std::string s) {
      size_t w = width.empty() ? 0 : std::stoul(width);
      if (s.size() < w) {
        if (flags.find('-') != std::string::npos) {
          s.append(w - s.size(), ' ');
        } else {
          s.insert(0, w - s.size(), ' ');
        }
      }
      out += s;
    };
    switch (verb) {
      case 'v':
        pad(Print(a));
        break;
      case 's':
        if (a.kind == TValue::Kind::kString) {
          std::string s = a.s;
          if (has_precision && s.size() > std::stoul(precision)) s.resize(std::stoul(precision));
          pad(s);
        } else if (a.kind == TValue::Kind::kMap || a.kind == TValue::Kind::kBool) {
          pad(Print(a));
        } else {
          bad();
        }
        break;
      case 'q':
        if (a.kind == TValue::Kind::kString) {
          pad(promql::GoQuote(a.s));
        } else {
          bad();
        }
        break;
      case 'd':
        if (a.kind == TValue::Kind::kInt) {
          std::snprintf(buf, sizeof(buf), (spec + "lld").c_str(), static_cast<long long>(a.i));
          out += buf;
        } else {
          bad();
        }
        break;
      case 'x':
      case 'X':
        if (a.kind == TValue::Kind::kInt) {
          std::snprintf(buf, sizeof(buf), (spec + "ll" + verb).c_str(),
                        static_cast<long long>(a.i));
          out += buf;
        } else if (a.kind == TValue::Kind::kString) {
          std::string hex;
          for (unsigned char ch : a.s) {
            std::snprintf(buf, sizeof(buf), verb == 'x' ? "%02x" : "%02X", ch);
            hex += buf;
          }
          pad(hex);
        } else {
          bad();
        }
        break;
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G':
        if (a.kind != TValue::Kind::kFloat) {
          bad();
          break;
        }
        if (std::isnan(a.f) || std::isinf(a.f)) {
          std::string s = std::isnan(a.f) ? "NaN" : (a.f > 0 ? "+Inf" : "-Inf");
          if (std::isinf(a.f) && a.f > 0 && flags.find('+') == std::string::npos) s = "+Inf";
          pad(s);
        } else if ((verb == 'g' || verb == 'G') && !has_precision) {
          std::string s = FormatGoFloat(a.f);
          if (flags.find('+') != std::string::npos && a.f >= 0) s = "+" + s;
          pad(s);
        } else {
          std::snprintf(buf, sizeof(buf), (spec + verb).c_str(), a.f);
          out += buf;
        }
        break;
      case 't':
        if (a.kind == TValue::Kind::kBool) {
          pad(Print(a));
        } else {
          bad();
        }
        break;
      default:
        StrAppend(&out, "%!", verb, "(", GoTypeName(a), "=", Print(a), ")");
    }
  }
  if (argi < args.size()) {
    out += "%!(EXTRA ";
    for (size_t k = argi; k < args.size(); ++k) {
      if (k > argi) out += ", ";
      StrAppend(&out, GoTypeName(args[k]), "=", Print(args[k]));
    }
    out += ")";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Syntax.

struct Pipeline;

struct Operand {
  enum class Kind { kFunc, kVar, kField, kString, kInt, kFloat, kBool, kNil, kPipe };
  Kind kind = Kind::kNil;
  std::string name;                 // function or variable name ("$" for the root)
  std::vector<std::string> fields;  // .A.B after the variable or the dot
  std::string str;
  double f = 0;
  int64_t i = 0;
  bool b = false;
  std::shared_ptr<Pipeline> pipe;
};

struct Command {
  std::vector<Operand> args;
};

struct Pipeline {
  std::string decl;   // "$x" for {{ $x := ... }}; the element in {{ range $i, $x := }}
  std::string decl2;  // {{ range $i, $x := ... }}: decl is $i, decl2 is $x
  bool assign = false;
  std::vector<Command> cmds;
};

}  // namespace

struct Template::Node {
  enum class Kind { kList, kText, kAction, kIf, kRange };
  Kind kind = Kind::kList;
  std::string text;
  Pipeline pipe;
  std::vector<std::unique_ptr<Node>> list;  // kList; kIf: [then, else]
};

namespace {

const std::vector<std::string_view>& Functions() {
  static const std::vector<std::string_view> kFns = {"humanize",
                                                     "humanize1024",
                                                     "humanizeDuration",
                                                     "humanizePercentage",
                                                     "humanizeTimestamp",
                                                     "printf",
                                                     "print",
                                                     "println",
                                                     "toUpper",
                                                     "toLower",
                                                     "title",
                                                     "match",
                                                     "reReplaceAll",
                                                     "stripPort",
                                                     "eq",
                                                     "ne",
                                                     "lt",
                                                     "le",
                                                     "gt",
                                                     "ge",
                                                     "and",
                                                     "or",
                                                     "not",
                                                     "len",
                                                     "index",
                                                     "parseDuration",
                                                     "html",
                                                     "js",
                                                     "urlquery",
                                                     "safeHtml",
                                                     "stripDomain"};
  return kFns;
}

class Parser {
 public:
  Parser(std::string_view name, std::string_view text) : name_(name), text_(text) {}

  std::unique_ptr<Template::Node> Run() {
    auto root = std::make_unique<Template::Node>();
    std::string_view end_word;
    ParseList(root.get(), &end_word);
    if (!end_word.empty()) Error(StrCat("unexpected {{", end_word, "}}"));
    return root;
  }

 private:
  [[noreturn]] void Error(const std::string& msg) {
    Throw(StrCat("template: ", name_, ":", line_, ": ", msg));
  }

  // Parses until {{end}} / {{else...}} (returned in *end_word) or the end of the text.
  void ParseList(Template::Node* list, std::string_view* end_word) {
    for (;;) {
      size_t open = text_.find("{{", pos_);
      std::string chunk(text_.substr(
          pos_, open == std::string_view::npos ? std::string_view::npos : open - pos_));
      bool trim_left = open != std::string_view::npos && open + 2 < text_.size() &&
                       text_[open + 2] == '-' && open + 3 < text_.size() &&
                       IsSpace(text_[open + 3]);
      if (trim_left) {
        while (!chunk.empty() && IsSpace(chunk.back())) chunk.pop_back();
      }
      if (trim_next_) {
        size_t k = 0;
        while (k < chunk.size() && IsSpace(chunk[k])) ++k;
        chunk.erase(0, k);
        trim_next_ = false;
      }
      for (char c :
           text_.substr(pos_, open == std::string_view::npos ? text_.size() - pos_ : open - pos_)) {
        if (c == '\n') ++line_;
      }
      if (!chunk.empty()) {
        auto n = std::make_unique<Template::Node>();
        n->kind = Template::Node::Kind::kText;
        n->text = chunk;
        list->list.push_back(std::move(n));
      }
      if (open == std::string_view::npos) {
        pos_ = text_.size();
        return;
      }
      pos_ = open + 2 + (trim_left ? 1 : 0);
      // The action's body up to "}}" (or " -}}").
      size_t close = FindClose();
      std::string_view body = text_.substr(pos_, close - pos_);
      bool trim_right = body.size() >= 2 && body.back() == '-' && IsSpace(body[body.size() - 2]);
      if (trim_right) body.remove_suffix(1);
      for (char c : body) {
        if (c == '\n') ++line_;
      }
      pos_ = close + 2;
      trim_next_ = trim_right;
      std::string_view b = Trim(body);
      if (StartsWith(b, "/*")) {
        if (!EndsWith(b, "*/")) Error("unclosed comment");
        continue;
      }
      toks_ = Lex(b);
      tok_ = 0;
      if (toks_.empty()) Error("missing value for command");
      const std::string& first = toks_[0].text;
      if (toks_[0].kind == Tok::kIdent && (first == "end" || first == "else")) {
        *end_word = first == "end" ? "end" : "else";
        return;
      }
      if (toks_[0].kind == Tok::kIdent && first == "if") {
        tok_ = 1;
        list->list.push_back(ParseIf());
        continue;
      }
      if (toks_[0].kind == Tok::kIdent && first == "range") {
        tok_ = 1;
        list->list.push_back(ParseRange());
        continue;
      }
      if (toks_[0].kind == Tok::kIdent &&
          (first == "with" || first == "define" || first == "template" || first == "block")) {
        Error(StrCat("{{", first, "}} is not supported in alert templates"));
      }
      auto n = std::make_unique<Template::Node>();
      n->kind = Template::Node::Kind::kAction;
      n->pipe = ParsePipeline(/*allow_decl=*/true);
      if (tok_ != toks_.size()) Error(StrCat("unexpected ", toks_[tok_].text, " in command"));
      list->list.push_back(std::move(n));
    }
  }

  std::unique_ptr<Template::Node> ParseRange() {
    if (++if_depth_ > 64) Error("{{range}} nested too deep");
    auto n = std::make_unique<Template::Node>();
    n->kind = Template::Node::Kind::kRange;
    // {{ range $i, $x := pipeline }} or {{ range $x := pipeline }} or {{ range pipeline }}
    if (tok_ + 3 < toks_.size() && toks_[tok_].kind == Tok::kVar &&
        toks_[tok_ + 1].kind == Tok::kComma && toks_[tok_ + 2].kind == Tok::kVar &&
        toks_[tok_ + 3].kind == Tok::kDecl) {
      n->pipe.decl = toks_[tok_].text;
      n->pipe.decl2 = toks_[tok_ + 2].text;
      tok_ += 4;
      Pipeline p = ParsePipeline(false);
      n->pipe.cmds = std::move(p.cmds);
    } else {
      n->pipe = ParsePipeline(/*allow_decl=*/true);
    }
    if (tok_ != toks_.size()) Error(StrCat("unexpected ", toks_[tok_].text, " in range"));
    auto body = std::make_unique<Template::Node>();
    std::string_view end_word;
    ParseList(body.get(), &end_word);
    auto else_list = std::make_unique<Template::Node>();
    if (end_word.empty()) Error("unexpected EOF");
    if (end_word == "else") {
      if (toks_.size() > 1) Error("unexpected tokens after else");
      std::string_view end2;
      ParseList(else_list.get(), &end2);
      if (end2 != "end") Error(end2.empty() ? "unexpected EOF" : "expected end; found else");
    }
    n->list.push_back(std::move(body));
    n->list.push_back(std::move(else_list));
    --if_depth_;
    return n;
  }

  std::unique_ptr<Template::Node> ParseIf() {
    if (++if_depth_ > 64) Error("{{if}} nested too deep");
    auto n = std::make_unique<Template::Node>();
    n->kind = Template::Node::Kind::kIf;
    n->pipe = ParsePipeline(/*allow_decl=*/false);
    if (tok_ != toks_.size()) Error(StrCat("unexpected ", toks_[tok_].text, " in if"));
    auto then_list = std::make_unique<Template::Node>();
    std::string_view end_word;
    ParseList(then_list.get(), &end_word);
    auto else_list = std::make_unique<Template::Node>();
    if (end_word.empty()) Error("unexpected EOF");
    if (end_word == "else") {
      // {{else if ...}} chains; {{else}} then the list to {{end}}.
      if (toks_.size() > 1 && toks_[1].kind == Tok::kIdent && toks_[1].text == "if") {
        tok_ = 2;
        else_list->list.push_back(ParseIf());
      } else {
        if (toks_.size() > 1) Error("unexpected tokens after else");
        std::string_view end2;
        ParseList(else_list.get(), &end2);
        if (end2 != "end") Error(end2.empty() ? "unexpected EOF" : "expected end; found else");
      }
    }
    n->list.push_back(std::move(then_list));
    n->list.push_back(std::move(else_list));
    --if_depth_;
    return n;
  }

  struct Tok {
    enum Kind {
      kIdent,
      kVar,
      kField,
      kString,
      kNumber,
      kPipe,
      kOpen,
      kClose,
      kDecl,
      kAssign,
      kComma
    };
    Kind kind;
    std::string text;
  };

  static bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  static bool IsWord(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

  size_t FindClose() {
    bool in_str = false, in_raw = false;
    for (size_t i = pos_; i + 1 < text_.size(); ++i) {
      char c = text_[i];
      if (in_str) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_str = false;
        }
        continue;
      }
      if (in_raw) {
        if (c == '`') in_raw = false;
        continue;
      }
      if (c == '"') {
        in_str = true;
      } else if (c == '`') {
        in_raw = true;
      } else if (c == '}' && text_[i + 1] == '}') {
        return i;
      }
    }
    Error("unclosed action");
  }

  std::vector<Tok> Lex(std::string_view s) {
    std::vector<Tok> out;
    size_t i = 0;
    while (i < s.size()) {
      char c = s[i];
      if (IsSpace(c)) {
        ++i;
      } else if (c == ',') {
        out.push_back({Tok::kComma, ","});
        ++i;
      } else if (c == '|') {
        out.push_back({Tok::kPipe, "|"});
        ++i;
      } else if (c == '(') {
        out.push_back({Tok::kOpen, "("});
        ++i;
      } else if (c == ')') {
        out.push_back({Tok::kClose, ")"});
        ++i;
      } else if (c == ':' && i + 1 < s.size() && s[i + 1] == '=') {
        out.push_back({Tok::kDecl, ":="});
        i += 2;
      } else if (c == '=') {
        out.push_back({Tok::kAssign, "="});
        ++i;
      } else if (c == '"') {
        std::string v;
        ++i;
        for (; i < s.size() && s[i] != '"'; ++i) {
          if (s[i] == '\\' && i + 1 < s.size()) {
            char e = s[++i];
            switch (e) {
              case 'n':
                v.push_back('\n');
                break;
              case 't':
                v.push_back('\t');
                break;
              case 'r':
                v.push_back('\r');
                break;
              case '\\':
                v.push_back('\\');
                break;
              case '"':
                v.push_back('"');
                break;
              default:
                v.push_back('\\');
                v.push_back(e);
            }
          } else {
            v.push_back(s[i]);
          }
        }
        if (i >= s.size()) Error("unterminated quoted string");
        ++i;
        out.push_back({Tok::kString, v});
      } else if (c == '`') {
        size_t end = s.find('`', i + 1);
        if (end == std::string_view::npos) Error("unterminated raw quoted string");
        out.push_back({Tok::kString, std::string(s.substr(i + 1, end - i - 1))});
        i = end + 1;
      } else if (c == '$' || c == '.') {
        size_t j = i + 1;
        while (j < s.size() && (IsWord(s[j]) || s[j] == '.')) ++j;
        out.push_back({c == '$' ? Tok::kVar : Tok::kField, std::string(s.substr(i, j - i))});
        i = j;
      } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+') {
        size_t j = i + 1;
        while (j < s.size() &&
               (IsWord(s[j]) || s[j] == '.' ||
                ((s[j] == '+' || s[j] == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E')))) {
          ++j;
        }
        out.push_back({Tok::kNumber, std::string(s.substr(i, j - i))});
        i = j;
      } else if (IsWord(c)) {
        size_t j = i;
        while (j < s.size() && IsWord(s[j])) ++j;
        out.push_back({Tok::kIdent, std::string(s.substr(i, j - i))});
        i = j;
      } else {
        Error(StrCat("unexpected ", promql::GoQuote(std::string(1, c)), " in command"));
      }
    }
    return out;
  }

  Pipeline ParsePipeline(bool allow_decl) {
    Pipeline p;
    if (allow_decl && tok_ + 1 < toks_.size() && toks_[tok_].kind == Tok::kVar &&
        (toks_[tok_ + 1].kind == Tok::kDecl || toks_[tok_ + 1].kind == Tok::kAssign)) {
      p.decl = toks_[tok_].text;
      p.assign = toks_[tok_ + 1].kind == Tok::kAssign;
      if (p.decl.find('.') != std::string::npos) Error("bad variable name");
      tok_ += 2;
    }
    for (;;) {
      Command cmd;
      while (tok_ < toks_.size() && toks_[tok_].kind != Tok::kPipe &&
             toks_[tok_].kind != Tok::kClose) {
        cmd.args.push_back(ParseOperand());
      }
      if (cmd.args.empty()) Error("missing value for command");
      p.cmds.push_back(std::move(cmd));
      if (tok_ < toks_.size() && toks_[tok_].kind == Tok::kPipe) {
        ++tok_;
        continue;
      }
      break;
    }
    return p;
  }

  Operand ParseOperand() {
    const Tok& t = toks_[tok_++];
    Operand o;
    switch (t.kind) {
      case Tok::kOpen: {
        if (++depth_ > 64) Error("parentheses nested too deep");
        o.kind = Operand::Kind::kPipe;
        o.pipe = std::make_shared<Pipeline>(ParsePipeline(false));
        if (tok_ >= toks_.size() || toks_[tok_].kind != Tok::kClose) Error("unclosed left paren");
        ++tok_;
        --depth_;
        return o;
      }
      case Tok::kVar:
      case Tok::kField: {
        std::vector<std::string> parts = Split(t.text, '.');
        o.kind = t.kind == Tok::kVar ? Operand::Kind::kVar : Operand::Kind::kField;
        size_t from = 0;
        if (t.kind == Tok::kVar) {
          o.name = parts[0];
          from = 1;
        } else {
          from = 1;  // ".A.B" splits into "", "A", "B"
        }
        for (size_t k = from; k < parts.size(); ++k) {
          if (parts[k].empty()) {
            if (t.text == ".") break;
            Error(StrCat("bad field name in ", t.text));
          }
          o.fields.push_back(parts[k]);
        }
        if (t.kind == Tok::kVar && !vars_ok(o.name)) {
          Error(StrCat("undefined variable \"", o.name, "\""));
        }
        return o;
      }
      case Tok::kString:
        o.kind = Operand::Kind::kString;
        o.str = t.text;
        return o;
      case Tok::kNumber: {
        std::string s = t.text;
        char* end = nullptr;
        long long iv = std::strtoll(s.c_str(), &end, 0);
        if (end == s.c_str() + s.size()) {
          o.kind = Operand::Kind::kInt;
          o.i = iv;
          return o;
        }
        double d = std::strtod(s.c_str(), &end);
        if (end != s.c_str() + s.size()) Error(StrCat("bad number syntax: \"", s, "\""));
        o.kind = Operand::Kind::kFloat;
        o.f = d;
        return o;
      }
      case Tok::kIdent:
        if (t.text == "true" || t.text == "false") {
          o.kind = Operand::Kind::kBool;
          o.b = t.text == "true";
          return o;
        }
        if (t.text == "nil") {
          o.kind = Operand::Kind::kNil;
          return o;
        }
        if (std::find(Functions().begin(), Functions().end(), t.text) == Functions().end()) {
          Error(StrCat("function \"", t.text, "\" not defined"));
        }
        o.kind = Operand::Kind::kFunc;
        o.name = t.text;
        return o;
      default:
        Error(StrCat("unexpected \"", t.text, "\" in operand"));
    }
  }

  bool vars_ok(const std::string& name) {
    // Variables are declared by the prelude Prometheus adds and by {{ $x := }} actions; a
    // later use of an undeclared one is caught here only for the prelude's names' typos.
    (void)name;
    return true;
  }

  std::string name_;
  std::string_view text_;
  size_t pos_ = 0;
  int line_ = 1;
  bool trim_next_ = false;
  std::vector<Tok> toks_;
  size_t tok_ = 0;
  int depth_ = 0;
  int if_depth_ = 0;
};

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
      auto d = promql::ParseDurationMs(str_arg(0));
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

Template::~Template() = default;

absl::StatusOr<std::unique_ptr<Template>> Template::Parse(std::string_view name,
                                                          std::string_view text) {
  if (text.size() > 64 * 1024) {
    return absl::InvalidArgumentError(StrCat("template: ", name, ": longer than 64 KiB"));
  }
  std::unique_ptr<Template> t(new Template());
  t->name_ = std::string(name);
  try {
    Parser p(name, text);
    t->root_ = p.Run();
  } catch (const TemplateError& e) {
    return absl::InvalidArgumentError(e.message);
  }
  return t;
}

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
    Executor ex(root, vars);
    ex.Run(*root_, &out);
    if (out.size() > 1024 * 1024) Throw("output larger than 1 MiB");
  } catch (const TemplateError& e) {
    return absl::InvalidArgumentError(
        StrCat("template: ", name_, ": executing \"", name_, "\": ", e.message));
  }
  return out;
}

TemplateValue TemplateValue::Str(std::string v) {
  TemplateValue t;
  t.kind = Kind::kString;
  t.s = std::move(v);
  return t;
}
TemplateValue TemplateValue::Float(double v) {
  TemplateValue t;
  t.kind = Kind::kFloat;
  t.f = v;
  return t;
}
TemplateValue TemplateValue::Int(int64_t v) {
  TemplateValue t;
  t.kind = Kind::kInt;
  t.i = v;
  return t;
}
TemplateValue TemplateValue::Bool(bool v) {
  TemplateValue t;
  t.kind = Kind::kBool;
  t.b = v;
  return t;
}
TemplateValue TemplateValue::MapOf(Map v) {
  TemplateValue t;
  t.kind = Kind::kMap;
  t.m = std::make_shared<const Map>(std::move(v));
  return t;
}
TemplateValue TemplateValue::MapRef(const Map* v) {
  TemplateValue t;
  t.kind = Kind::kMap;
  t.m = std::shared_ptr<const Map>(std::shared_ptr<const Map>(), v);  // not owning
  return t;
}
TemplateValue TemplateValue::ObjectOf(Object v) {
  TemplateValue t;
  t.kind = Kind::kObject;
  t.object = std::make_shared<const Object>(std::move(v));
  return t;
}
TemplateValue TemplateValue::ListOf(std::vector<TemplateValue> v) {
  TemplateValue t;
  t.kind = Kind::kList;
  t.list = std::make_shared<const std::vector<TemplateValue>>(std::move(v));
  return t;
}

}  // namespace bulwark::observe::rules
