#include "observe/go_strings.h"

#include <cstdio>

#include "core/strings.h"

namespace bulwark::observe {
namespace {

std::string IllegalIn(std::string_view s, size_t at) {
  if (at >= s.size()) return "escape sequence not terminated";
  return StrCat("illegal character ", GoRuneName(s[at]), " in escape sequence");
}

// One escape after its backslash (s[*pos] is the letter); appends its value.
bool ReadEscape(std::string_view s, size_t* pos, char quote, std::string* v, std::string* error) {
  if (*pos >= s.size()) {
    *error = "escape sequence not terminated";
    return false;
  }
  char e = s[(*pos)++];
  switch (e) {
    case 'a':
      v->push_back('\a');
      return true;
    case 'b':
      v->push_back('\b');
      return true;
    case 'f':
      v->push_back('\f');
      return true;
    case 'n':
      v->push_back('\n');
      return true;
    case 'r':
      v->push_back('\r');
      return true;
    case 't':
      v->push_back('\t');
      return true;
    case 'v':
      v->push_back('\v');
      return true;
    case '\\':
      v->push_back('\\');
      return true;
    case '"':
    case '\'':
      if (e != quote) break;
      v->push_back(e);
      return true;
    case 'x':
    case 'u':
    case 'U': {
      int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
      uint32_t cp = 0;
      for (int i = 0; i < n; ++i) {
        int h = *pos < s.size() ? HexDigitValue(s[*pos]) : -1;
        if (h < 0) {
          *error = IllegalIn(s, *pos);
          return false;
        }
        cp = cp * 16 + static_cast<uint32_t>(h);
        ++*pos;
      }
      if (e == 'x') {
        v->push_back(static_cast<char>(cp));
        return true;
      }
      if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) {
        *error = "escape sequence is an invalid Unicode code point";
        return false;
      }
      AppendUtf8(v, cp);
      return true;
    }
    default:
      if (e < '0' || e > '7') break;
      uint32_t cp = static_cast<uint32_t>(e - '0');
      for (int i = 0; i < 2; ++i) {
        if (*pos >= s.size() || s[*pos] < '0' || s[*pos] > '7') {
          *error = IllegalIn(s, *pos);
          return false;
        }
        cp = cp * 8 + static_cast<uint32_t>(s[(*pos)++] - '0');
      }
      if (cp > 255) {
        *error = "octal escape value > 255";
        return false;
      }
      v->push_back(static_cast<char>(cp));
      return true;
  }
  *error = StrCat("unknown escape sequence ", GoRuneName(e));
  return false;
}

}  // namespace

bool ReadGoString(std::string_view s, size_t* pos, std::string* out, std::string* error) {
  char quote = s[(*pos)++];
  for (;;) {
    if (*pos >= s.size()) {
      *error = "unterminated quoted string";
      return false;
    }
    char c = s[(*pos)++];
    if (c == quote) return true;
    if (quote == '`') {
      out->push_back(c);
      continue;
    }
    if (c == '\n') {
      *error = "unterminated quoted string";
      return false;
    }
    if (c != '\\') {
      out->push_back(c);
      continue;
    }
    if (!ReadEscape(s, pos, quote, out, error)) return false;
  }
}

bool GoUnquote(std::string_view quoted, std::string* out, std::string* error) {
  if (quoted.empty() || (quoted[0] != '"' && quoted[0] != '\'' && quoted[0] != '`')) {
    *error = "invalid syntax";
    return false;
  }
  size_t pos = 0;
  std::string v;
  if (!ReadGoString(quoted, &pos, &v, error)) return false;
  if (pos != quoted.size()) {
    *error = "invalid syntax";
    return false;
  }
  out->append(v);
  return true;
}

std::string GoQuote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\x%02x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

std::string GoRuneName(char c) {
  char buf[32];
  if (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f) {
    std::snprintf(buf, sizeof(buf), "U+%04X '%c'", static_cast<unsigned char>(c), c);
  } else {
    std::snprintf(buf, sizeof(buf), "U+%04X", static_cast<unsigned char>(c));
  }
  return buf;
}

void AppendUtf8(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace bulwark::observe
