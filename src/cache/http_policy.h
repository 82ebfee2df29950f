// What a shared HTTP cache may store and for how long: RFC 9111 (HTTP Caching) for a shared
// cache, with the RFC 5861 extensions, and the stored form of a response.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::cache {

// The directives of one or more Cache-Control header values. Unknown directives are ignored,
// as RFC 9111 §5.2 requires; a malformed number makes its directive absent.
struct CacheControl {
  bool no_store = false;
  bool no_cache = false;
  bool private_ = false;
  bool public_ = false;
  bool must_revalidate = false;
  bool proxy_revalidate = false;
  int64_t max_age = -1;  // seconds; -1 when absent
  int64_t s_maxage = -1;
  int64_t stale_while_revalidate = -1;
  int64_t stale_if_error = -1;
};

// Adds the directives of one header value (call once per Cache-Control line).
void ParseCacheControl(std::string_view value, CacheControl* cc);

// Parses an HTTP-date in any of the three formats RFC 9110 §5.6.7 requires recipients to
// accept (IMF-fixdate, RFC 850, asctime). Returns Unix seconds, or -1 if it is not a date.
int64_t ParseHttpDate(std::string_view text);

// What the cache learned from a request and its response.
struct ResponseFacts {
  int status = 0;
  CacheControl cc;
  bool has_set_cookie = false;
  bool vary_star = false;
  int64_t expires = -2;  // Unix seconds; -1 an invalid date (already expired); -2 absent
  int64_t date = -1;     // Unix seconds; -1 absent
  int64_t age = 0;       // seconds, from the Age header
  bool request_authorization = false;
  bool request_no_store = false;
};

// The route's settings.
struct HttpCacheRules {
  int64_t default_ttl_ms = 0;  // for responses without explicit freshness (0: do not store them)
  std::vector<int> statuses;   // statuses stored with the default TTL
  int64_t stale_while_revalidate_ms = 0;  // unless the response says otherwise
  int64_t stale_if_error_ms = 0;
  bool ignore_set_cookie = false;  // nginx proxy_ignore_headers Set-Cookie
};

struct StorageDecision {
  bool store = false;
  const char* reason = "";  // why not (for logs and tests)
  int64_t fresh_ms = 0;     // freshness left now (lifetime minus current age)
  int64_t stale_while_revalidate_ms = 0;
  int64_t stale_if_error_ms = 0;
};

// RFC 9111 §3 (storing) and §4.2 (freshness) for a shared cache:
// - never: request or response `no-store`, `private`, `Vary: *`, a request with Authorization
//   unless the response is `public`, has `s-maxage` or `must-revalidate` (§3.5), a response
//   with Set-Cookie (as nginx and Varnish refuse by default), statuses 206 and 304;
// - lifetime: s-maxage, else max-age, else Expires − Date, else the route's TTL for the listed
//   statuses; minus the response's current age (Age, and Date against now);
// - `no-cache` (and must-revalidate with no lifetime left) are stored with no freshness: used
//   only as stale-if-error, since bulwark does not revalidate.
StorageDecision DecideStorage(const ResponseFacts& facts, const HttpCacheRules& rules,
                              int64_t now_unix_s);

// The stored form of a response: status, the header lines to replay, the Vary request
// headers it was selected by, when it was stored, its tags, and the body. Documented in
// docs/formats/http_cache_object.md.
struct HttpObject {
  int status = 200;
  std::string head;  // "Name: value\r\n" lines, without hop-by-hop and framing headers
  std::vector<std::pair<std::string, std::string>> vary;  // lower-case name → request value
  int64_t stored_unix_s = 0;
  int64_t initial_age_s = 0;
  int64_t stale_while_revalidate_ms = 0;
  int64_t stale_if_error_ms = 0;
  std::vector<std::string> tags;
  std::string body;
};

std::string EncodeHttpObject(const HttpObject& o);

// A view into an encoded object (no copies): fails on anything malformed.
struct HttpObjectView {
  int status = 0;
  std::string_view head;
  std::vector<std::pair<std::string_view, std::string_view>> vary;
  int64_t stored_unix_s = 0;
  int64_t initial_age_s = 0;
  int64_t stale_while_revalidate_ms = 0;
  int64_t stale_if_error_ms = 0;
  std::vector<std::string_view> tags;
  std::string_view body;
};
bool DecodeHttpObject(std::string_view data, HttpObjectView* out);

// Limits on what is stored, so a hostile upstream cannot blow up one entry.
constexpr size_t kMaxVaryHeaders = 16;
constexpr size_t kMaxTags = 64;

}  // namespace bulwark::cache
