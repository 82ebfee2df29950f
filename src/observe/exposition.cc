#include "observe/exposition.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/strings.h"

namespace bulwark::observe {
namespace {

bool NameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool NameChar(char c) { return NameStart(c) || (c >= '0' && c <= '9'); }

}  // namespace

absl::Status ParseExposition(std::string_view text, size_t sample_limit,
                             const std::function<void(ExpositionSample&)>& sample) {
  size_t line_no = 0, count = 0;
  ExpositionSample s;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(StrCat("line ", line_no, ": ", why));
    };
    if (line.size() > kMaxExpositionLine) return bad("longer than 64 KiB");
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t i = 0;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size() || line[i] == '#') continue;
    s.labels.clear();
    s.timestamp_ms.reset();
    size_t start = i;
    if (!NameStart(line[i])) return bad("expected a metric name");
    while (i < line.size() && NameChar(line[i])) ++i;
    s.labels.emplace_back("__name__", std::string(line.substr(start, i - start)));
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i < line.size() && line[i] == '{') {
      ++i;
      for (;;) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == ',')) ++i;
        if (i >= line.size()) return bad("unterminated label set");
        if (line[i] == '}') {
          ++i;
          break;
        }
        size_t ns = i;
        if (!NameStart(line[i]) || line[i] == ':') return bad("expected a label name");
        while (i < line.size() && NameChar(line[i]) && line[i] != ':') ++i;
        std::string name(line.substr(ns, i - ns));
        while (i < line.size() && line[i] == ' ') ++i;
        if (i >= line.size() || line[i] != '=') return bad("expected '=' after a label name");
        ++i;
        while (i < line.size() && line[i] == ' ') ++i;
        if (i >= line.size() || line[i] != '"') return bad("expected a quoted label value");
        ++i;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\' && i < line.size()) {
            char e = line[i++];
            value.push_back(e == 'n' ? '\n' : e);
          } else {
            value.push_back(c);
          }
        }
        if (!closed) return bad("unterminated label value");
        if (s.labels.size() > kMaxExpositionLabels) return bad("more than 64 labels");
        if (!value.empty()) s.labels.emplace_back(std::move(name), std::move(value));
      }
    }
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t vs = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (!observe::ParseGoFloat(line.substr(vs, i - vs), &s.value))
      return bad("expected a sample value");
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i < line.size()) {
      int64_t ts = 0;
      std::string_view t = line.substr(i);
      while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
      if (!ParseInt(t, &ts)) return bad("expected a timestamp in milliseconds");
      s.timestamp_ms = ts;
    }
    std::sort(s.labels.begin(), s.labels.end());
    for (size_t k = 1; k < s.labels.size(); ++k) {
      if (s.labels[k].first == s.labels[k - 1].first) {
        return bad(StrCat("label ", s.labels[k].first, " given twice"));
      }
    }
    if (++count > sample_limit) {
      return absl::ResourceExhaustedError(StrCat("more than ", sample_limit, " samples"));
    }
    sample(s);
  }
  return absl::OkStatus();
}

}  // namespace bulwark::observe
