#include "cache/glob.h"

#include <cstddef>
#include <utility>

namespace bulwark::cache {
namespace {

// Matches one pattern token at `p` against character `c`; sets `*next` to the token's end.
bool MatchToken(std::string_view pat, size_t p, unsigned char c, size_t* next) {
  switch (pat[p]) {
    case '?':
      *next = p + 1;
      return true;
    case '\\':
      if (p + 1 < pat.size()) {
        *next = p + 2;
        return static_cast<unsigned char>(pat[p + 1]) == c;
      }
      *next = p + 1;  // a trailing backslash is itself
      return c == '\\';
    case '[': {
      size_t i = p + 1;
      bool negate = false;
      if (i < pat.size() && pat[i] == '^') {
        negate = true;
        ++i;
      }
      bool match = false;
      while (i < pat.size() && pat[i] != ']') {
        if (pat[i] == '\\' && i + 1 < pat.size()) {
          if (static_cast<unsigned char>(pat[i + 1]) == c) match = true;
          i += 2;
        } else if (i + 2 < pat.size() && pat[i + 1] == '-' && pat[i + 2] != ']') {
          unsigned char lo = static_cast<unsigned char>(pat[i]);
          unsigned char hi = static_cast<unsigned char>(pat[i + 2]);
          if (lo > hi) std::swap(lo, hi);
          if (c >= lo && c <= hi) match = true;
          i += 3;
        } else {
          if (static_cast<unsigned char>(pat[i]) == c) match = true;
          ++i;
        }
      }
      *next = i < pat.size() ? i + 1 : i;  // past ']' (or the end when unterminated)
      return match != negate;
    }
    default:
      *next = p + 1;
      return static_cast<unsigned char>(pat[p]) == c;
  }
}

}  // namespace

bool GlobMatch(std::string_view pat, std::string_view key) {
  size_t p = 0;
  size_t s = 0;
  size_t star_p = std::string_view::npos;  // pattern position after the last star
  size_t star_s = 0;                       // key position that star is currently matched up to
  while (s < key.size()) {
    if (p < pat.size() && pat[p] == '*') {
      while (p < pat.size() && pat[p] == '*') ++p;
      if (p == pat.size()) return true;  // a trailing star takes the rest
      star_p = p;
      star_s = s;
      continue;
    }
    size_t next = 0;
    if (p < pat.size() && MatchToken(pat, p, static_cast<unsigned char>(key[s]), &next)) {
      p = next;
      ++s;
      continue;
    }
    // Every token but '*' consumes exactly one character, so retrying from the last star with
    // one more character given to it is enough; earlier stars never need to take more.
    if (star_p == std::string_view::npos) return false;
    p = star_p;
    s = ++star_s;
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

std::string_view GlobLiteralPrefix(std::string_view pattern) {
  size_t i = 0;
  while (i < pattern.size() && pattern[i] != '*' && pattern[i] != '?' && pattern[i] != '[' &&
         pattern[i] != '\\') {
    ++i;
  }
  return pattern.substr(0, i);
}

std::string GlobEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

bool IsGlob(std::string_view pattern) {
  return GlobLiteralPrefix(pattern).size() != pattern.size();
}

}  // namespace bulwark::cache
