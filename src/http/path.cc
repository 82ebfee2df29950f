#include "http/path.h"

#include <cstring>

#include "core/strings.h"

namespace bulwark::http {
namespace {

bool Fail(ParseError* err, std::string_view reason) {
  err->status = 400;
  err->reason = reason;
  return false;
}

// Drops the last segment of a normalised path that ends in '/' ("/a/b/" -> "/a/"). False when
// only the root is left (`..` above it).
bool PopSegment(std::string* s) {
  if (s->size() <= 1) return false;
  size_t slash = s->rfind('/', s->size() - 2);
  s->resize(slash + 1);
  return true;
}

}  // namespace

bool PathIsNormal(std::string_view path, const PathOptions& opts) {
  if (path.empty() || path[0] != '/') return true;  // "*" and the like: nothing to normalise
  if (path.find('%') != std::string_view::npos) return false;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    if (path[i] != '/') continue;
    char next = path[i + 1];
    if (next == '/' && opts.merge_slashes) return false;
    if (next == '.') {
      // "/." or "/.." as a whole segment; "/.well-known" is fine.
      size_t end = i + 2;
      if (end < path.size() && path[end] == '.') ++end;
      if (end == path.size() || path[end] == '/') return false;
    }
  }
  return true;
}

bool NormalizePath(std::string_view path, const PathOptions& opts, std::string* decoded,
                   std::string* upstream, ParseError* err) {
  decoded->clear();
  upstream->clear();
  if (path.empty() || path[0] != '/') {
    decoded->assign(path);
    upstream->assign(path);
    return true;
  }
  decoded->push_back('/');
  upstream->push_back('/');
  // Both outputs end in '/' whenever a segment starts; the segment is appended, then judged at
  // the next separator or at the end.
  size_t dstart = 1, ustart = 1;
  auto end_segment = [&](bool separator) -> bool {
    std::string_view seg = std::string_view(*decoded).substr(dstart);
    if (seg == "." || seg == "..") {
      decoded->resize(dstart);
      upstream->resize(ustart);
      if (seg.size() == 2 && (!PopSegment(decoded) || !PopSegment(upstream))) {
        return Fail(err, "path goes above the root");
      }
    } else if (seg.empty()) {
      if (separator && !opts.merge_slashes) {
        decoded->push_back('/');
        upstream->push_back('/');
      }
    } else if (separator) {
      decoded->push_back('/');
      upstream->push_back('/');
    }
    dstart = decoded->size();
    ustart = upstream->size();
    return true;
  };
  for (size_t i = 1; i < path.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(path[i]);
    if (c == '/') {
      if (!end_segment(true)) return false;
      continue;
    }
    if (c != '%') {
      decoded->push_back(static_cast<char>(c));
      upstream->push_back(static_cast<char>(c));
      continue;
    }
    int hi = i + 2 < path.size() ? HexDigitValue(path[i + 1]) : -1;
    int lo = hi >= 0 ? HexDigitValue(path[i + 2]) : -1;
    if (lo < 0) return Fail(err, "malformed percent-encoding in path");
    i += 2;
    unsigned char b = static_cast<unsigned char>(hi * 16 + lo);
    if (b == 0) return Fail(err, "encoded NUL in path");
    if (b == '/') {
      if (opts.escaped_slashes == EscapedSlashes::kReject) {
        return Fail(err, "encoded slash in path");
      }
      if (opts.escaped_slashes == EscapedSlashes::kDecode) {
        if (!end_segment(true)) return false;
        continue;
      }
      decoded->append("%2F");  // kKeep: data, not a separator
      upstream->append("%2F");
      continue;
    }
    decoded->push_back(static_cast<char>(b));
    if (IsUriUnreserved(b)) {
      upstream->push_back(static_cast<char>(b));
    } else {
      AppendHexEscape(upstream, '%', b);
    }
  }
  return end_segment(false);
}

void EscapePath(std::string_view decoded, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : decoded) {
    bool plain =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        std::string_view("-._~!$&'()*+,;=:@/").find(static_cast<char>(c)) != std::string_view::npos;
    if (plain) {
      out->push_back(static_cast<char>(c));
    } else {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    }
  }
}

}  // namespace bulwark::http
