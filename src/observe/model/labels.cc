#include "observe/model/labels.h"

#include <re2/re2.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/strings.h"

namespace bulwark::observe {

const std::string* GetLabel(const Labels& labels, std::string_view name) {
  for (const auto& [n, v] : labels) {
    if (n == name) return &v;
  }
  return nullptr;
}

void SetLabel(Labels* l, std::string_view name, std::string_view value) {
  auto it = std::lower_bound(l->begin(), l->end(), name,
                             [](const auto& p, std::string_view n) { return p.first < n; });
  if (it != l->end() && it->first == name) {
    if (value.empty()) {
      l->erase(it);
    } else {
      it->second.assign(value);
    }
  } else if (!value.empty()) {
    l->emplace(it, std::string(name), std::string(value));
  }
}

namespace {
bool ValidName(std::string_view n, bool colon) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}
}  // namespace

bool IsValidLabelName(std::string_view name) { return ValidName(name, false); }
bool IsValidMetricName(std::string_view name) { return ValidName(name, true); }

bool ParseGoFloat(std::string_view s, double* out) {
  if (s.empty() || s.size() > 128) return false;
  std::string_view body = s;
  bool neg = false;
  if (body[0] == '+' || body[0] == '-') {
    neg = body[0] == '-';
    body.remove_prefix(1);
  }
  std::string lower = AsciiLower(body);
  if (lower == "inf" || lower == "infinity") {
    *out = neg ? -INFINITY : INFINITY;
    return true;
  }
  if (lower == "nan") {
    *out = NAN;
    return true;
  }
  for (char c : lower) {
    bool ok = (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'x' || c == 'p' || c == '+' ||
              c == '-' || (c >= 'a' && c <= 'f');
    if (!ok) return false;
  }
  std::string buf(s);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(buf.c_str(), &end);
  if (end != buf.c_str() + buf.size()) return false;
  *out = v;
  return true;
}

const char* MatcherOpName(Matcher::Op op) {
  switch (op) {
    case Matcher::Op::kEqual:
      return "=";
    case Matcher::Op::kNotEqual:
      return "!=";
    case Matcher::Op::kRegex:
      return "=~";
    case Matcher::Op::kNotRegex:
      return "!~";
  }
  return "?";
}

bool Matcher::Matches(std::string_view v) const {
  switch (op) {
    case Op::kEqual:
      return v == value;
    case Op::kNotEqual:
      return v != value;
    case Op::kRegex:
      return re != nullptr && re2::RE2::FullMatch(v, *re);
    case Op::kNotRegex:
      return re != nullptr && !re2::RE2::FullMatch(v, *re);
  }
  return false;
}

}  // namespace bulwark::observe
