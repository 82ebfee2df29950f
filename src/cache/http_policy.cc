#include "cache/http_policy.h"

#include <time.h>

#include <algorithm>
#include <cctype>

#include "cache/le_bytes.h"
#include "core/strings.h"

namespace bulwark::cache {
namespace {

bool IEquals(std::string_view a, std::string_view b) { return EqualsIgnoreCase(a, b); }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// delta-seconds (RFC 9111 §1.2.2): digits only; too large saturates at 2^31 as the RFC says.
int64_t DeltaSeconds(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.empty()) return -1;
  int64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return -1;
    n = std::min<int64_t>(n * 10 + (c - '0'), int64_t{1} << 31);
  }
  return n;
}

int Month(std::string_view m) {
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i) {
    if (m == kMonths[i]) return i;
  }
  return -1;
}

bool Num(std::string_view s, int* out) {
  if (s.empty() || s.size() > 4) return false;
  int n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  *out = n;
  return true;
}

bool Clock(std::string_view s, struct tm* tm) {
  // HH:MM:SS
  if (s.size() != 8 || s[2] != ':' || s[5] != ':') return false;
  return Num(s.substr(0, 2), &tm->tm_hour) && Num(s.substr(3, 2), &tm->tm_min) &&
         Num(s.substr(6, 2), &tm->tm_sec) && tm->tm_hour < 24 && tm->tm_min < 60 &&
         tm->tm_sec <= 60;
}

constexpr char kObjectVersion = 1;

}  // namespace

void ParseCacheControl(std::string_view value, CacheControl* cc) {
  // Directives are comma-separated token[=value], value a token or a quoted string.
  size_t i = 0;
  while (i < value.size()) {
    size_t end = i;
    bool quoted = false;
    while (end < value.size() && (quoted || value[end] != ',')) {
      if (value[end] == '"') quoted = !quoted;
      if (quoted && value[end] == '\\' && end + 1 < value.size()) ++end;
      ++end;
    }
    std::string_view item = TrimOws(value.substr(i, end - i));
    i = end + 1;
    if (item.empty()) continue;
    std::string_view name = item, arg;
    if (size_t eq = item.find('='); eq != std::string_view::npos) {
      name = TrimOws(item.substr(0, eq));
      arg = TrimOws(item.substr(eq + 1));
    }
    if (IEquals(name, "no-store")) {
      cc->no_store = true;
    } else if (IEquals(name, "no-cache")) {
      // no-cache="field" (qualified) only forbids reusing those fields; bulwark, which does not
      // rewrite stored headers, treats it like the unqualified form (stricter).
      cc->no_cache = true;
    } else if (IEquals(name, "private")) {
      cc->private_ = true;
    } else if (IEquals(name, "public")) {
      cc->public_ = true;
    } else if (IEquals(name, "must-revalidate")) {
      cc->must_revalidate = true;
    } else if (IEquals(name, "proxy-revalidate")) {
      cc->proxy_revalidate = true;
    } else if (IEquals(name, "max-age")) {
      cc->max_age = DeltaSeconds(arg);
    } else if (IEquals(name, "s-maxage")) {
      cc->s_maxage = DeltaSeconds(arg);
    } else if (IEquals(name, "stale-while-revalidate")) {
      cc->stale_while_revalidate = DeltaSeconds(arg);
    } else if (IEquals(name, "stale-if-error")) {
      cc->stale_if_error = DeltaSeconds(arg);
    }
  }
}

int64_t ParseHttpDate(std::string_view s) {
  s = TrimOws(s);
  if (s.size() > 64) return -1;
  struct tm tm {};
  std::vector<std::string> parts = Split(s, ' ', /*skip_empty=*/true);
  if (parts.size() == 6 && parts[0].size() == 4 && parts[0][3] == ',' && parts[5] == "GMT") {
    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    int mon = Month(parts[2]);
    if (parts[1].size() != 2 || !Num(parts[1], &tm.tm_mday) || mon < 0 || parts[3].size() != 4 ||
        !Num(parts[3], &tm.tm_year) || !Clock(parts[4], &tm))
      return -1;
    tm.tm_mon = mon;
    tm.tm_year -= 1900;
  } else if (parts.size() == 4 && parts[0].back() == ',' && parts[3] == "GMT") {
    // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT (two-digit years within 50 years, §5.6.7)
    std::vector<std::string> d = Split(parts[1], '-');
    int year = 0;
    if (d.size() != 3 || d[0].size() != 2 || !Num(d[0], &tm.tm_mday) || Month(d[1]) < 0 ||
        d[2].size() != 2 || !Num(d[2], &year) || !Clock(parts[2], &tm))
      return -1;
    tm.tm_mon = Month(d[1]);
    tm.tm_year = year < 70 ? year + 100 : year;
  } else if (parts.size() == 5) {
    // asctime: Sun Nov  6 08:49:37 1994
    int mon = Month(parts[1]);
    if (mon < 0 || !Num(parts[2], &tm.tm_mday) || !Clock(parts[3], &tm) || parts[4].size() != 4 ||
        !Num(parts[4], &tm.tm_year))
      return -1;
    tm.tm_mon = mon;
    tm.tm_year -= 1900;
  } else {
    return -1;
  }
  if (tm.tm_mday < 1 || tm.tm_mday > 31) return -1;
  return static_cast<int64_t>(timegm(&tm));
}

StorageDecision DecideStorage(const ResponseFacts& f, const HttpCacheRules& rules,
                              int64_t now_unix_s) {
  StorageDecision d;
  if (f.request_no_store || f.cc.no_store) {
    d.reason = "no-store";
    return d;
  }
  if (f.cc.private_) {
    d.reason = "private";
    return d;
  }
  if (f.vary_star) {
    d.reason = "Vary: *";
    return d;
  }
  if (f.status == 206 || f.status == 304 || f.status < 200) {
    d.reason = "status";
    return d;
  }
  if (f.request_authorization && !f.cc.public_ && f.cc.s_maxage < 0 && !f.cc.must_revalidate) {
    d.reason = "Authorization";
    return d;
  }
  if (f.has_set_cookie && !rules.ignore_set_cookie) {
    d.reason = "Set-Cookie";
    return d;
  }
  // Freshness lifetime (§4.2.1), shared cache: s-maxage first.
  int64_t lifetime_s = -1;
  bool explicit_lifetime = true;
  if (f.cc.s_maxage >= 0) {
    lifetime_s = f.cc.s_maxage;
  } else if (f.cc.max_age >= 0) {
    lifetime_s = f.cc.max_age;
  } else if (f.expires != -2) {
    int64_t date = f.date >= 0 ? f.date : now_unix_s;
    lifetime_s = f.expires < 0 ? 0 : std::max<int64_t>(0, f.expires - date);
  } else {
    explicit_lifetime = false;
  }
  int64_t lifetime_ms = 0;
  if (explicit_lifetime) {
    lifetime_ms = lifetime_s * 1000;
  } else {
    if (std::find(rules.statuses.begin(), rules.statuses.end(), f.status) == rules.statuses.end() ||
        rules.default_ttl_ms <= 0) {
      d.reason = "no freshness";
      return d;
    }
    lifetime_ms = rules.default_ttl_ms;
  }
  // Current age (§4.2.3): the larger of Age and how old Date says the response is.
  int64_t apparent = f.date >= 0 ? std::max<int64_t>(0, now_unix_s - f.date) : 0;
  int64_t age_s = std::max(apparent, f.age);
  d.fresh_ms = std::max<int64_t>(0, lifetime_ms - age_s * 1000);
  if (f.cc.no_cache) d.fresh_ms = 0;  // must be revalidated before every use
  d.stale_while_revalidate_ms = f.cc.stale_while_revalidate >= 0
                                    ? f.cc.stale_while_revalidate * 1000
                                    : rules.stale_while_revalidate_ms;
  d.stale_if_error_ms =
      f.cc.stale_if_error >= 0 ? f.cc.stale_if_error * 1000 : rules.stale_if_error_ms;
  // must-revalidate / proxy-revalidate / s-maxage forbid serving stale (§5.2.2.2, §5.2.2.8,
  // §5.2.2.10): RFC 5861's extensions yield to them.
  if (f.cc.must_revalidate || f.cc.proxy_revalidate || f.cc.s_maxage >= 0 || f.cc.no_cache) {
    d.stale_while_revalidate_ms = 0;
    if (f.cc.must_revalidate || f.cc.proxy_revalidate || f.cc.s_maxage >= 0) {
      d.stale_if_error_ms = 0;
    }
  }
  if (d.fresh_ms == 0 && d.stale_if_error_ms == 0 && d.stale_while_revalidate_ms == 0) {
    d.reason = "already stale";
    return d;
  }
  d.store = true;
  return d;
}

std::string EncodeHttpObject(const HttpObject& o) {
  std::string out;
  out.reserve(64 + o.head.size() + o.body.size());
  out.push_back(kObjectVersion);
  PutU16(&out, static_cast<size_t>(o.status));
  PutI64(&out, o.stored_unix_s);
  PutI64(&out, o.initial_age_s);
  PutI64(&out, o.stale_while_revalidate_ms);
  PutI64(&out, o.stale_if_error_ms);
  size_t nv = std::min(o.vary.size(), kMaxVaryHeaders);
  PutU16(&out, nv);
  for (size_t i = 0; i < nv; ++i) {
    PutStr16(&out, o.vary[i].first);
    PutStr16(&out, o.vary[i].second);
  }
  size_t nt = std::min(o.tags.size(), kMaxTags);
  PutU16(&out, nt);
  for (size_t i = 0; i < nt; ++i) PutStr16(&out, o.tags[i]);
  PutU32(&out, o.head.size());
  out.append(o.head);
  out.append(o.body);
  return out;
}

bool DecodeHttpObject(std::string_view data, HttpObjectView* out) {
  if (data.empty() || data[0] != kObjectVersion) return false;
  LeReader r(data.substr(1));
  size_t status = 0, nv = 0, nt = 0, head_len = 0;
  if (!r.U16(&status) || status < 100 || status > 999) return false;
  out->status = static_cast<int>(status);
  if (!r.I64(&out->stored_unix_s) || !r.I64(&out->initial_age_s) ||
      !r.I64(&out->stale_while_revalidate_ms) || !r.I64(&out->stale_if_error_ms))
    return false;
  if (!r.U16(&nv) || nv > kMaxVaryHeaders) return false;
  out->vary.clear();
  for (size_t i = 0; i < nv; ++i) {
    std::string_view n, v;
    if (!r.Str16(&n) || !r.Str16(&v)) return false;
    out->vary.emplace_back(n, v);
  }
  if (!r.U16(&nt) || nt > kMaxTags) return false;
  out->tags.clear();
  for (size_t i = 0; i < nt; ++i) {
    std::string_view t;
    if (!r.Str16(&t)) return false;
    out->tags.push_back(t);
  }
  if (!r.U32(&head_len) || !r.Bytes(head_len, &out->head)) return false;
  out->body = r.rest();
  return true;
}

}  // namespace bulwark::cache
