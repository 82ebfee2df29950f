// Request path normalisation: the one path that routes, access lists, JWT, rate-limit keys,
// cache keys and `$uri` decide on, and the path that goes upstream.
//
// Matching follows nginx (ngx_http_parse_complex_uri): every %XX is decoded once, `.` and `..`
// segments are resolved (`..` above the root is a 400), runs of slashes are merged
// (merge_slashes on), `%00` and a malformed escape are a 400. What goes upstream follows Envoy's
// normalize_path (RFC 3986 6.2.2): the same segments, but only unreserved characters are
// decoded, every other escape is kept (hex in upper case), so `/a%3Fb` never becomes `/a?b`.
// An encoded slash has Envoy's path_with_escaped_slashes_action: decoded into a separator (as
// nginx does), kept as data, or refused.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "http/parser.h"

namespace bulwark::http {

enum class EscapedSlashes : uint8_t { kDecode, kKeep, kReject };

struct PathOptions {
  bool merge_slashes = true;  // nginx merge_slashes (default on)
  EscapedSlashes escaped_slashes = EscapedSlashes::kDecode;
};

// True when `path` is already normal for `opts`: no escape, no dot segment, no run of slashes.
// Then both normal forms are `path` itself and NormalizePath need not run (the common case).
bool PathIsNormal(std::string_view path, const PathOptions& opts);

// Normalises an origin-form path (starting with '/'). `decoded` receives the matching form (every
// escape decoded; with EscapedSlashes::kKeep an encoded slash stays "%2F"), `upstream` the form
// sent upstream. Both are cleared first. Returns false with a 400 in *err on a malformed escape,
// an encoded NUL, an encoded slash under kReject, or a `..` above the root.
bool NormalizePath(std::string_view path, const PathOptions& opts, std::string* decoded,
                   std::string* upstream, ParseError* err);

// Appends a decoded path in the form a request line carries: every byte that is not a path
// character of RFC 3986 (unreserved, sub-delims, ':', '@', '/') as %XX (as nginx escapes a
// rewritten URI before it goes upstream).
void EscapePath(std::string_view decoded, std::string* out);

}  // namespace bulwark::http
