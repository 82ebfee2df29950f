// Prometheus's template functions (humanize and friends, in Go's %.4g), Go's fmt for the
// verbs templates use, and what values mean (print, truth, numbers).
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

namespace bulwark::observe::tmpl {

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

namespace internal {

// humanizeTimestamp's argument: seconds with a fraction.
std::string GoTimeFromSeconds(double seconds) {
  double whole = std::floor(seconds);
  int64_t s = GoInt64(whole);
  int64_t nanos = static_cast<int64_t>(std::llround((seconds - whole) * 1e9));
  if (nanos >= 1000000000) {
    ++s;
    nanos -= 1000000000;
  }
  return GoTimeString(s, nanos);
}

// ---------------------------------------------------------------------------------------------
// Values.

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

}  // namespace internal

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

}  // namespace bulwark::observe::tmpl
