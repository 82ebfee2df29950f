#include "core/units.h"

#include <cctype>
#include <limits>
#include <string>

#include "core/strings.h"

namespace bulwark {
namespace {

constexpr int64_t kMaxValue = std::numeric_limits<int64_t>::max() / 1000;

// Reads an unsigned decimal at text[*pos]; false if none or overflow.
bool ReadNumber(std::string_view text, size_t* pos, int64_t* out) {
  size_t i = *pos;
  int64_t v = 0;
  if (i >= text.size() || !std::isdigit(static_cast<unsigned char>(text[i]))) return false;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    v = v * 10 + (text[i] - '0');
    if (v > kMaxValue) return false;
    ++i;
  }
  *pos = i;
  *out = v;
  return true;
}

}  // namespace

absl::StatusOr<int64_t> ParseDurationMs(std::string_view text) {
  if (text.empty())
    return absl::InvalidArgumentError("expected a duration such as 500ms, 30s or 5m");
  size_t pos = 0;
  int64_t total = 0;
  bool any = false;
  while (pos < text.size()) {
    if (text[pos] == ' ') {
      ++pos;
      continue;
    }
    int64_t n;
    if (!ReadNumber(text, &pos, &n)) {
      return absl::InvalidArgumentError(
          StrCat("invalid duration \"", text, "\": expected a number followed by ms, s, m, h, d"));
    }
    int64_t mult = 1000;  // bare number = seconds, as in nginx
    if (pos < text.size() && text[pos] != ' ') {
      std::string_view rest = text.substr(pos);
      if (rest.substr(0, 2) == "ms") {
        mult = 1;
        pos += 2;
      } else {
        switch (text[pos]) {
          case 's':
            mult = 1000;
            break;
          case 'm':
            mult = 60 * 1000;
            break;
          case 'h':
            mult = 3600 * 1000;
            break;
          case 'd':
            mult = 86400LL * 1000;
            break;
          case 'w':
            mult = 7 * 86400LL * 1000;
            break;
          case 'M':
            mult = 30 * 86400LL * 1000;
            break;
          case 'y':
            mult = 365 * 86400LL * 1000;
            break;
          default:
            return absl::InvalidArgumentError(
                StrCat("invalid duration \"", text, "\": unknown unit '", std::string(1, text[pos]),
                       "' (use ms, s, m, h, d, w)"));
        }
        ++pos;
      }
    }
    if (n > std::numeric_limits<int64_t>::max() / mult - total) {
      return absl::InvalidArgumentError(StrCat("duration \"", text, "\" is too large"));
    }
    total += n * mult;
    any = true;
  }
  if (!any) return absl::InvalidArgumentError("expected a duration such as 500ms, 30s or 5m");
  return total;
}

absl::StatusOr<int64_t> ParseSizeBytes(std::string_view text) {
  size_t pos = 0;
  int64_t n;
  if (!ReadNumber(text, &pos, &n)) {
    return absl::InvalidArgumentError(
        StrCat("invalid size \"", text, "\": expected a number with an optional k, m or g suffix"));
  }
  int64_t mult = 1;
  if (pos < text.size()) {
    switch (text[pos]) {
      case 'k':
      case 'K':
        mult = 1024;
        break;
      case 'm':
      case 'M':
        mult = 1024 * 1024;
        break;
      case 'g':
      case 'G':
        mult = 1024LL * 1024 * 1024;
        break;
      default:
        return absl::InvalidArgumentError(
            StrCat("invalid size \"", text, "\": unknown suffix (use k, m or g)"));
    }
    ++pos;
    // "10MB" and "10MiB" are common spellings of the same (binary) unit.
    if (pos + 1 < text.size() && text[pos] == 'i' &&
        (text[pos + 1] == 'B' || text[pos + 1] == 'b')) {
      ++pos;
    }
    if (pos < text.size() && (text[pos] == 'b' || text[pos] == 'B')) ++pos;
  }
  if (pos != text.size()) {
    return absl::InvalidArgumentError(StrCat("invalid size \"", text, "\": trailing characters"));
  }
  if (n > std::numeric_limits<int64_t>::max() / mult) {
    return absl::InvalidArgumentError(StrCat("size \"", text, "\" is too large"));
  }
  return n * mult;
}

absl::StatusOr<int64_t> ParseRateMilli(std::string_view text) {
  size_t pos = 0;
  int64_t n;
  auto bad = [&] {
    return absl::InvalidArgumentError(
        StrCat("invalid rate \"", text,
               "\": expected requests per second or minute, e.g. 10r/s or 600r/m"));
  };
  if (!ReadNumber(text, &pos, &n) || n == 0) return bad();
  std::string_view rest = text.substr(pos);
  if (rest == "r/s") return n * 1000;
  if (rest == "r/m") return n * 1000 / 60;
  return bad();
}

std::string FormatDurationMs(int64_t ms) {
  if (ms % 1000 != 0) return StrCat(ms, "ms");
  int64_t s = ms / 1000;
  if (s != 0 && s % 3600 == 0) return StrCat(s / 3600, "h");
  if (s != 0 && s % 60 == 0) return StrCat(s / 60, "m");
  return StrCat(s, "s");
}

}  // namespace bulwark
