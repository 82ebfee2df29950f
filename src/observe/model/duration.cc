#include "observe/model/duration.h"

#include <cctype>
#include <cstdint>
#include <utility>

#include "core/strings.h"

namespace bulwark::observe {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

int64_t DurationUnitMs(std::string_view u) {
  if (u == "ms") return 1;
  if (u == "s") return 1000;
  if (u == "m") return 60 * 1000;
  if (u == "h") return 3600 * 1000;
  if (u == "d") return 24 * 3600 * 1000LL;
  if (u == "w") return 7 * 24 * 3600 * 1000LL;
  if (u == "y") return 365 * 24 * 3600 * 1000LL;
  return 0;
}

absl::StatusOr<int64_t> ParseDurationMs(std::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("empty duration string");
  if (text == "0") return 0;
  static const std::string_view kOrder[] = {"y", "w", "d", "h", "m", "s", "ms"};
  size_t p = 0;
  int last_unit = -1;
  int64_t total = 0;
  while (p < text.size()) {
    size_t q = p;
    while (q < text.size() && IsDigit(text[q])) ++q;
    if (q == p)
      return absl::InvalidArgumentError(StrCat("not a valid duration string: \"", text, "\""));
    size_t u = q;
    while (u < text.size() && std::isalpha(static_cast<unsigned char>(text[u]))) ++u;
    std::string_view unit = text.substr(q, u - q);
    int idx = -1;
    for (int i = 0; i < 7; ++i) {
      if (kOrder[i] == unit) idx = i;
    }
    if (idx < 0 || idx <= last_unit) {
      return absl::InvalidArgumentError(StrCat("not a valid duration string: \"", text, "\""));
    }
    last_unit = idx;
    int64_t n = 0;
    if (!ParseInt(text.substr(p, q - p), &n) || n > INT64_MAX / DurationUnitMs(unit)) {
      return absl::InvalidArgumentError(StrCat("duration out of range: \"", text, "\""));
    }
    int64_t add = n * DurationUnitMs(unit);
    if (total > INT64_MAX - add) {
      return absl::InvalidArgumentError(StrCat("duration out of range: \"", text, "\""));
    }
    total += add;
    p = u;
  }
  return total;
}

std::string FormatDurationMs(int64_t ms) {
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  static const std::pair<const char*, int64_t> kUnits[] = {{"y", 365 * 24 * 3600 * 1000LL},
                                                           {"w", 7 * 24 * 3600 * 1000LL},
                                                           {"d", 24 * 3600 * 1000LL},
                                                           {"h", 3600 * 1000LL},
                                                           {"m", 60 * 1000LL},
                                                           {"s", 1000LL},
                                                           {"ms", 1LL}};
  for (const auto& [unit, size] : kUnits) {
    if (ms >= size) {
      StrAppend(&out, ms / size, unit);
      ms %= size;
    }
  }
  return out;
}

}  // namespace bulwark::observe
