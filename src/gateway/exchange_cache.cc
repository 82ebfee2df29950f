// The exchange's HTTP cache phase: lookup (L1, then the zone's Redis level), single flight
// (proxy_cache_lock), stale answers, and the decision to store the response (RFC 9111).
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "cache/l2_record.h"
#include "core/log.h"
#include "core/strings.h"
#include "core/units.h"
#include "gateway/bans.h"
#include "gateway/proxy.h"
#include "gateway/proxy_internal.h"
#include "gateway/rate_limit.h"
#include "gateway/shared_limit.h"
#include "gateway/worker.h"

namespace bulwark::gateway {

namespace {

// Wait tokens: unique per wait in the process, so a pooled conn never takes a wake-up meant
// for the request it served before.
std::atomic<uint64_t> g_cache_wait_tokens{1};

bool IsStatusWithoutBody(int status) { return status == 204 || status == 304 || status < 200; }

}  // namespace

void DownstreamConn::ResetCacheState() {
  if (ex_.cache.zone != nullptr) CacheComplete(false);
  ex_.cache.zone = nullptr;
  ex_.cache.key.clear();
  ex_.cache.status = nullptr;
  ex_.cache.store = ex_.cache.capture = false;
  ex_.cache.stale.reset();
  ex_.cache.stale_until = 0;
  ex_.cache.handoff.reset();
  ex_.cache.obj.tags.clear();
  ex_.cache.obj.vary.clear();
  ex_.cache.obj.head.clear();
  // A large captured body is not kept around on an idle connection.
  if (ex_.cache.obj.body.capacity() > 64 * 1024) {
    std::string().swap(ex_.cache.obj.body);
  } else {
    ex_.cache.obj.body.clear();
  }
}

bool DownstreamConn::VaryMatches(const cache::HttpObjectView& v) const {
  for (const auto& [name, value] : v.vary) {
    const http::Header* h = req_.Find(name);
    std::string_view now = h != nullptr ? h->value : std::string_view();
    if (now != value) return false;
  }
  return true;
}

bool DownstreamConn::CacheLookup(bool first) {
  const RouteCacheConfig& cc = ex_.route->cfg->cache;
  HttpCacheZone* zone = ex_.view->snap->cache_zones[static_cast<size_t>(cc.zone_index)].get();
  ex_.cache.zone = zone;
  bool head = ex_.request.method == http::Method::kHead;
  bool allowed = false;
  for (const std::string& m : cc.methods) {
    if ((m == "GET" && ex_.request.method == http::Method::kGet) || (m == "HEAD" && head))
      allowed = true;
  }
  // RFC 9111 §3.5: a shared cache does not answer requests with credentials from a stored
  // response (Varnish passes them too); upgrades are never cached.
  if (!allowed || ex_.request.upgrade_requested || req_.Find("authorization") != nullptr) {
    ex_.cache.status = "BYPASS";
    zone->bypass.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (first) ex_.cache.key = ExpandVariables(cc.key);
  int64_t now = worker_->loop().now_ms();
  cache::Lookup l = zone->l1(worker_->index()).Get(ex_.cache.key, now);
  cache::HttpObjectView v;
  if (l.hit() && l.value != nullptr && cache::DecodeHttpObject(*l.value, &v) && VaryMatches(v)) {
    if (l.state == cache::Freshness::kFresh) {
      zone->hits.fetch_add(1, std::memory_order_relaxed);
      ServeCached(l.value, v, "HIT");
      return true;
    }
    if (now < l.fresh_until_ms + v.stale_if_error_ms) {
      ex_.cache.stale = l.value;
      ex_.cache.stale_until = l.fresh_until_ms + v.stale_if_error_ms;
    }
    // stale-while-revalidate, as nginx's proxy_cache_use_stale updating: while one request
    // refreshes the entry, the others get the stale copy at once.
    if (now < l.fresh_until_ms + v.stale_while_revalidate_ms &&
        zone->flights.InFlight(ex_.cache.key)) {
      zone->stale.fetch_add(1, std::memory_order_relaxed);
      ServeCached(l.value, v, "STALE");
      return true;
    }
  }
  ex_.cache.status = "MISS";
  // One outcome per request: a request that waits for another's fetch is counted when it
  // wakes (a hit, or a miss if it must go to the server after all), not here as well.
  auto miss = [zone] { zone->misses.fetch_add(1, std::memory_order_relaxed); };
  if (head || !first) {  // HEAD is answered from GET entries but not stored
    miss();
    return false;
  }
  ex_.cache.store = true;
  if (!cc.lock) {
    miss();
    return false;
  }
  ex_.cache.wait_token = g_cache_wait_tokens.fetch_add(1, std::memory_order_relaxed);
  HttpCacheZone::Waiter me{worker_, this, ex_.cache.wait_token};
  if (zone->flights.LeadOrWait(ex_.cache.key, &me)) {
    miss();
    ex_.cache.leader = true;
    RedisClient* redis = worker_->redis();
    if (zone->config().redis && redis != nullptr && redis->connected()) {
      // The second level, shared by the instances: asked once per key, by the leader.
      uint64_t seq = ++redis_seq_;
      state_ = State::kCacheL2;
      const GatewayConfig& gw = *ex_.view->snap->config;
      redis->Command(
          {"GET", HttpCacheRedisKey(gw.redis.key_prefix, zone->config().name, ex_.cache.key)},
          [this, seq](const RedisReply& r) { OnCacheL2(seq, r); });
      return true;
    }
    return false;
  }
  // Another request is fetching this key: wait for it (nginx proxy_cache_lock).
  zone->coalesced.fetch_add(1, std::memory_order_relaxed);
  ex_.cache.store = false;
  state_ = State::kCacheWait;
  ArmClientTimer(cc.lock_timeout_ms);
  return true;
}

void DownstreamConn::OnCacheL2(uint64_t seq, const RedisReply& r) {
  if (!open_ || state_ != State::kCacheL2 || seq != redis_seq_) return;  // the client left
  state_ = State::kHead;
  HttpCacheZone* zone = ex_.cache.zone;
  cache::L2Record rec;
  cache::HttpObjectView v;
  if (r.is_error()) zone->l2_errors.fetch_add(1, std::memory_order_relaxed);
  if (r.type == RedisReply::Type::kString && cache::DecodeL2Record(r.str, &rec) && !rec.negative &&
      cache::DecodeHttpObject(rec.payload, &v) && VaryMatches(v)) {
    int64_t fresh_until = rec.fresh_until_ms, stale_until = rec.stale_until_ms;
    int64_t wall = WallMicros() / 1000;
    int64_t now = worker_->loop().now_ms();
    auto value = std::make_shared<const std::string>(rec.payload);
    cache::HttpObjectView view;
    cache::DecodeHttpObject(*value, &view);
    if (fresh_until > wall) {
      zone->l2_hits.fetch_add(1, std::memory_order_relaxed);
      cache::PutOptions o;
      o.fresh_until_ms = now + (fresh_until - wall);
      o.stale_until_ms = now + (stale_until - wall);
      for (std::string_view t : view.tags) o.tags.emplace_back(t);
      zone->l1(worker_->index()).Put(ex_.cache.key, value, o, now);
      ex_.cache.handoff = value;
      ex_.cache.handoff_opts = o;
      ServeCached(value, view, "HIT");  // and wakes the requests waiting on this key
      return;
    }
    if (wall < fresh_until + view.stale_if_error_ms) {
      ex_.cache.stale = value;  // stale-if-error from the shared level
      ex_.cache.stale_until = now + (fresh_until + view.stale_if_error_ms - wall);
    }
  }
  zone->l2_misses.fetch_add(1, std::memory_order_relaxed);
  ProceedUpstream();
}

void DownstreamConn::OnCacheWake(uint64_t token, std::shared_ptr<const std::string> value,
                                 cache::PutOptions options) {
  if (!open_ || state_ != State::kCacheWait || token != ex_.cache.wait_token) return;
  worker_->loop().CancelTimer(&timer_);
  if (value != nullptr && ex_.cache.zone != nullptr && ex_.cache.zone->config().per_worker) {
    // This worker's own L1 gets the leader's copy (the deadlines are on the same clock).
    ex_.cache.zone->l1(worker_->index())
        .Put(ex_.cache.key, std::move(value), options, worker_->loop().now_ms());
  }
  state_ = State::kHead;
  // The fetch is over: a hit now, or (not storable, or it failed) straight to the server.
  if (CacheLookup(false)) return;
  ProceedUpstream();
}

void DownstreamConn::ServeCached(const std::shared_ptr<const std::string>& value,
                                 const cache::HttpObjectView& v, const char* status) {
  ex_.cache.status = status;
  if (ex_.cache.zone != nullptr) CacheComplete(false);
  if (worker_->draining()) ex_.request.keep_alive = false;
  if (ex_.request.has_body && !ex_.request.body_done)
    ex_.request.keep_alive = false;  // the request body is not read
  ex_.response.status = v.status;
  ex_.response.started = ex_.response.done = true;
  ex_.log.upstream.clear();
  std::string& o = out_.buf;
  o.append(ex_.request.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  StrAppend(&o, v.status, " ", http::StatusReason(v.status), "\r\n");
  o.append(v.head);
  int64_t age = std::max<int64_t>(0, WallMicros() / 1000000 - v.stored_unix_s) + v.initial_age_s;
  StrAppend(&o, "Age: ", age, "\r\nX-Cache: ", status, "\r\n");
  if (ex_.log.request_id_len > 0)
    AppendHeaderLine(&o, "X-Request-Id",
                     std::string_view(ex_.log.request_id, ex_.log.request_id_len));
  if (AddHeaderStatus(v.status)) o.append(ex_.route->cfg->add_header_block);
  o.append(ex_.route->cfg->add_header_always_block);
  if (!IsStatusWithoutBody(v.status)) StrAppend(&o, "Content-Length: ", v.body.size(), "\r\n");
  if (!ex_.request.keep_alive) {
    o.append("Connection: close\r\n");
  } else if (ex_.request.version_minor == 0) {
    o.append("Connection: keep-alive\r\n");
  }
  o.append("\r\n");
  if (ex_.request.method != http::Method::kHead && !IsStatusWithoutBody(v.status)) {
    o.append(v.body);
    ex_.response.bytes_out = v.body.size();
  }
  (void)value;  // the caller's reference keeps `v` valid until here
  if (!ex_.log.logged) LogAndCount(v.status);
  state_ = State::kLocal;
  close_after_ = close_after_ || !ex_.request.keep_alive;
  DoWrite();
}

bool DownstreamConn::ServeStaleOnError() {
  if (ex_.cache.stale == nullptr || worker_->loop().now_ms() >= ex_.cache.stale_until) return false;
  cache::HttpObjectView v;
  std::shared_ptr<const std::string> keep = ex_.cache.stale;
  if (!cache::DecodeHttpObject(*keep, &v)) return false;
  if (ex_.cache.zone != nullptr) ex_.cache.zone->stale.fetch_add(1, std::memory_order_relaxed);
  ServeCached(keep, v, "STALE");
  return true;
}

void DownstreamConn::CacheDecide() {
  const RouteCacheConfig& cc = ex_.route->cfg->cache;
  cache::ResponseFacts f;
  f.status = ex_.response.head.status;
  std::string_view vary_value;
  bool vary_seen = false;
  for (const auto& hd : ex_.response.head.headers) {
    if (http::EqualsLower(hd.name, "cache-control")) {
      cache::ParseCacheControl(hd.value, &f.cc);
    } else if (http::EqualsLower(hd.name, "expires")) {
      f.expires = cache::ParseHttpDate(hd.value);
    } else if (http::EqualsLower(hd.name, "date")) {
      f.date = cache::ParseHttpDate(hd.value);
    } else if (http::EqualsLower(hd.name, "age")) {
      int64_t a = 0;
      if (ParseInt(hd.value, &a) && a >= 0) f.age = a;
    } else if (http::EqualsLower(hd.name, "set-cookie")) {
      f.has_set_cookie = true;
    } else if (http::EqualsLower(hd.name, "vary")) {
      if (vary_seen) f.vary_star = true;  // two Vary lines: not worth merging, not stored
      vary_seen = true;
      vary_value = hd.value;
      if (hd.value.find('*') != std::string_view::npos) f.vary_star = true;
    }
  }
  cache::HttpCacheRules rules;
  rules.default_ttl_ms = cc.ttl_ms;
  rules.statuses = cc.statuses;
  rules.stale_while_revalidate_ms = cc.stale_while_revalidate_ms;
  rules.stale_if_error_ms = cc.stale_if_error_ms;
  rules.ignore_set_cookie = cc.ignore_set_cookie;
  int64_t now_s = WallMicros() / 1000000;
  ex_.cache.decision = cache::DecideStorage(f, rules, now_s);
  if (!ex_.cache.decision.store ||
      (ex_.response.head.body == http::BodyKind::kLength &&
       ex_.response.head.content_length > static_cast<uint64_t>(cc.max_object_bytes))) {
    if (ex_.cache.decision.store) ex_.cache.zone->too_big.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  ex_.cache.obj = cache::HttpObject{};
  ex_.cache.obj.status = ex_.response.head.status;
  for (const auto& hd : ex_.response.head.headers) {
    if (http::IsHopByHop(hd.name)) continue;
    if (!ex_.response.head.connection.empty() &&
        NamedInConnection(ex_.response.head.connection, hd.name))
      continue;
    if (http::EqualsLower(hd.name, "content-length") || http::EqualsLower(hd.name, "age") ||
        http::EqualsLower(hd.name, "x-request-id") || http::EqualsLower(hd.name, "x-cache") ||
        http::EqualsLower(hd.name, "set-cookie"))
      continue;
    AppendHeaderLine(&ex_.cache.obj.head, hd.name, hd.value);
    for (const std::string& tag_header : cc.tag_headers) {
      if (!http::EqualsLower(hd.name, tag_header)) continue;
      // Cache-Tag (comma-separated) and Surrogate-Key (space-separated) lists.
      for (std::string& part : Split(hd.value, ',', true)) {
        for (std::string& t : Split(part, ' ', true)) {
          if (ex_.cache.obj.tags.size() < cache::kMaxTags && t.size() <= 256)
            ex_.cache.obj.tags.push_back(std::move(t));
        }
      }
    }
  }
  for (std::string& name : Split(vary_value, ',', true)) {
    std::string n = AsciiLower(std::string(Trim(name)));
    if (n.empty()) continue;
    if (ex_.cache.obj.vary.size() >= cache::kMaxVaryHeaders) return;  // too many: not stored
    const http::Header* h = req_.Find(n);
    ex_.cache.obj.vary.emplace_back(n, h != nullptr ? std::string(h->value) : std::string());
  }
  int64_t apparent = f.date >= 0 ? std::max<int64_t>(0, now_s - f.date) : 0;
  ex_.cache.obj.stored_unix_s = now_s;
  ex_.cache.obj.initial_age_s = std::max(apparent, f.age);
  ex_.cache.obj.stale_while_revalidate_ms = ex_.cache.decision.stale_while_revalidate_ms;
  ex_.cache.obj.stale_if_error_ms = ex_.cache.decision.stale_if_error_ms;
  if (ex_.response.head.body == http::BodyKind::kLength) {
    ex_.cache.obj.body.reserve(static_cast<size_t>(ex_.response.head.content_length));
  }
  ex_.cache.capture = true;
}

void DownstreamConn::CaptureBody(const char* d, size_t n) {
  if (ex_.cache.obj.body.size() + n > static_cast<size_t>(ex_.route->cfg->cache.max_object_bytes)) {
    ex_.cache.capture = false;  // too big to keep: the response still streams to the client
    ex_.cache.zone->too_big.fetch_add(1, std::memory_order_relaxed);
    ex_.cache.obj.body.clear();
    return;
  }
  ex_.cache.obj.body.append(d, n);
}

void DownstreamConn::CacheComplete(bool store) {
  HttpCacheZone* zone = ex_.cache.zone;
  if (zone == nullptr) return;
  if (store && ex_.cache.capture) {
    int64_t now = worker_->loop().now_ms();
    cache::PutOptions o;
    o.fresh_until_ms = now + ex_.cache.decision.fresh_ms;
    o.stale_until_ms = o.fresh_until_ms + std::max(ex_.cache.decision.stale_while_revalidate_ms,
                                                   ex_.cache.decision.stale_if_error_ms);
    o.tags = ex_.cache.obj.tags;
    auto value = std::make_shared<const std::string>(cache::EncodeHttpObject(ex_.cache.obj));
    zone->l1(worker_->index()).Put(ex_.cache.key, value, o, now);
    zone->stored.fetch_add(1, std::memory_order_relaxed);
    ex_.cache.handoff = value;
    ex_.cache.handoff_opts = o;
    RedisClient* redis = worker_->redis();
    if (zone->config().redis && redis != nullptr && redis->connected()) {
      const std::string& prefix = ex_.view->snap->config->redis.key_prefix;
      int64_t wall = WallMicros() / 1000;
      int64_t life = o.stale_until_ms - now;
      std::string rkey = HttpCacheRedisKey(prefix, zone->config().name, ex_.cache.key);
      std::string px = StrCat(std::max<int64_t>(life, 1));
      cache::L2Record rec;
      rec.fresh_until_ms = wall + ex_.cache.decision.fresh_ms;
      rec.stale_until_ms = wall + life;
      rec.payload = *value;
      std::string record = cache::EncodeL2Record(rec);
      redis->Command({"SET", rkey, record, "PX", px}, [zone](const RedisReply& r) {
        (r.is_error() ? zone->l2_errors : zone->l2_sets).fetch_add(1, std::memory_order_relaxed);
      });
      for (const std::string& t : ex_.cache.obj.tags) {
        cache::AddToL2TagSet(*redis, HttpCacheRedisTagKey(prefix, zone->config().name, t), rkey,
                             life);
      }
    }
  } else if (ex_.cache.store && ex_.cache.leader) {
    zone->not_stored.fetch_add(1, std::memory_order_relaxed);
  }
  ex_.cache.capture = false;
  ex_.cache.store = false;
  if (!ex_.cache.leader) return;
  ex_.cache.leader = false;
  std::shared_ptr<const std::string> value = std::move(ex_.cache.handoff);
  for (const HttpCacheZone::Waiter& w : zone->flights.Finish(ex_.cache.key)) {
    DownstreamConn* c = w.conn;
    uint64_t token = w.token;
    w.worker->loop().Post(
        [c, token, value, o = ex_.cache.handoff_opts] { c->OnCacheWake(token, value, o); });
  }
}

}  // namespace bulwark::gateway
