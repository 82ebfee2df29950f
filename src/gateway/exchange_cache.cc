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

// Wait tokens: unique per wait in the process, so a pooled exchange never takes a wake-up
// meant for the request it served before.
std::atomic<uint64_t> g_cache_wait_tokens{1};

bool IsStatusWithoutBody(int status) { return status == 204 || status == 304 || status < 200; }

}  // namespace

void Exchange::ResetCacheState() {
  if (cache_.zone != nullptr) CacheComplete(false);
  cache_.zone = nullptr;
  cache_.key.clear();
  cache_.status = nullptr;
  cache_.store = cache_.capture = false;
  cache_.stale.reset();
  cache_.stale_until = 0;
  cache_.handoff.reset();
  cache_.obj.tags.clear();
  cache_.obj.vary.clear();
  cache_.obj.head.clear();
  // A large captured body is not kept around on an idle connection.
  if (cache_.obj.body.capacity() > 64 * 1024) {
    std::string().swap(cache_.obj.body);
  } else {
    cache_.obj.body.clear();
  }
}

bool Exchange::VaryMatches(const cache::HttpObjectView& v) const {
  for (const auto& [name, value] : v.vary) {
    const http::Header* h = req_->Find(name);
    std::string_view now = h != nullptr ? h->value : std::string_view();
    if (now != value) return false;
  }
  return true;
}

bool Exchange::CacheLookup(bool first) {
  const RouteCacheConfig& cc = route_->cfg->cache;
  HttpCacheZone* zone = view_->snap->cache_zones[static_cast<size_t>(cc.zone_index)].get();
  cache_.zone = zone;
  bool head = request_.method == http::Method::kHead;
  bool allowed = false;
  for (const std::string& m : cc.methods) {
    if ((m == "GET" && request_.method == http::Method::kGet) || (m == "HEAD" && head))
      allowed = true;
  }
  // RFC 9111 §3.5: a shared cache does not answer requests with credentials from a stored
  // response (Varnish passes them too); upgrades are never cached.
  if (!allowed || request_.upgrade_requested || req_->Find("authorization") != nullptr) {
    cache_.status = "BYPASS";
    zone->bypass.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (first) cache_.key = ExpandVariables(cc.key);
  int64_t now = worker_->loop().now_ms();
  cache::Lookup l = zone->l1(worker_->index()).Get(cache_.key, now);
  cache::HttpObjectView v;
  if (l.hit() && l.value != nullptr && cache::DecodeHttpObject(*l.value, &v) && VaryMatches(v)) {
    if (l.state == cache::Freshness::kFresh) {
      zone->hits.fetch_add(1, std::memory_order_relaxed);
      ServeCached(l.value, v, "HIT");
      return true;
    }
    if (now < l.fresh_until_ms + v.stale_if_error_ms) {
      cache_.stale = l.value;
      cache_.stale_until = l.fresh_until_ms + v.stale_if_error_ms;
    }
    // stale-while-revalidate, as nginx's proxy_cache_use_stale updating: while one request
    // refreshes the entry, the others get the stale copy at once.
    if (now < l.fresh_until_ms + v.stale_while_revalidate_ms &&
        zone->flights.InFlight(cache_.key)) {
      zone->stale.fetch_add(1, std::memory_order_relaxed);
      ServeCached(l.value, v, "STALE");
      return true;
    }
  }
  cache_.status = "MISS";
  // One outcome per request: a request that waits for another's fetch is counted when it
  // wakes (a hit, or a miss if it must go to the server after all), not here as well.
  auto miss = [zone] { zone->misses.fetch_add(1, std::memory_order_relaxed); };
  if (head || !first) {  // HEAD is answered from GET entries but not stored
    miss();
    return false;
  }
  cache_.store = true;
  if (!cc.lock) {
    miss();
    return false;
  }
  cache_.wait_token = g_cache_wait_tokens.fetch_add(1, std::memory_order_relaxed);
  HttpCacheZone::Waiter me{worker_, this, cache_.wait_token};
  if (zone->flights.LeadOrWait(cache_.key, &me)) {
    miss();
    cache_.leader = true;
    RedisLink* redis = worker_->redis();
    if (zone->config().redis && redis != nullptr && redis->connected()) {
      // The second level, shared by the instances: asked once per key, by the leader.
      uint64_t seq = ++redis_seq_;
      phase_ = Phase::kCacheL2;
      const GatewayConfig& gw = *view_->snap->config;
      redis->Command(
          {"GET", HttpCacheRedisKey(gw.redis.key_prefix, zone->config().name, cache_.key)},
          [this, seq](const RedisReply& r) { OnCacheL2(seq, r); });
      return true;
    }
    return false;
  }
  // Another request is fetching this key: wait for it (nginx proxy_cache_lock).
  zone->coalesced.fetch_add(1, std::memory_order_relaxed);
  cache_.store = false;
  phase_ = Phase::kCacheWait;
  down_->ArmTimer(cc.lock_timeout_ms);
  return true;
}

void Exchange::OnCacheL2(uint64_t seq, const RedisReply& r) {
  if (phase_ != Phase::kCacheL2 || seq != redis_seq_) return;  // the client left
  phase_ = Phase::kNone;
  HttpCacheZone* zone = cache_.zone;
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
      zone->l1(worker_->index()).Put(cache_.key, value, o, now);
      cache_.handoff = value;
      cache_.handoff_opts = o;
      ServeCached(value, view, "HIT");  // and wakes the requests waiting on this key
      return;
    }
    if (wall < fresh_until + view.stale_if_error_ms) {
      cache_.stale = value;  // stale-if-error from the shared level
      cache_.stale_until = now + (fresh_until + view.stale_if_error_ms - wall);
    }
  }
  zone->l2_misses.fetch_add(1, std::memory_order_relaxed);
  ProceedUpstream();
}

void Exchange::OnCacheWake(uint64_t token, std::shared_ptr<const std::string> value,
                           cache::PutOptions options) {
  if (phase_ != Phase::kCacheWait || token != cache_.wait_token) return;
  down_->CancelTimer();
  if (value != nullptr && cache_.zone != nullptr && cache_.zone->config().per_worker) {
    // This worker's own L1 gets the leader's copy (the deadlines are on the same clock).
    cache_.zone->l1(worker_->index())
        .Put(cache_.key, std::move(value), options, worker_->loop().now_ms());
  }
  phase_ = Phase::kNone;
  // The fetch is over: a hit now, or (not storable, or it failed) straight to the server.
  if (CacheLookup(false)) return;
  ProceedUpstream();
}

void Exchange::ServeCached(const std::shared_ptr<const std::string>& value,
                           const cache::HttpObjectView& v, const char* status) {
  cache_.status = status;
  if (cache_.zone != nullptr) CacheComplete(false);
  if (worker_->draining()) request_.keep_alive = false;
  if (request_.has_body && !request_.body_done)
    request_.keep_alive = false;  // the request body is not read
  response_.status = v.status;
  response_.started = response_.done = true;
  log_.upstream.clear();
  std::string& o = down_->output().buf;
  o.append(request_.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  StrAppend(&o, v.status, " ", http::StatusReason(v.status), "\r\n");
  o.append(v.head);
  int64_t age = std::max<int64_t>(0, WallMicros() / 1000000 - v.stored_unix_s) + v.initial_age_s;
  StrAppend(&o, "Age: ", age, "\r\nX-Cache: ", status, "\r\n");
  if (log_.request_id_len > 0)
    AppendHeaderLine(&o, "X-Request-Id", std::string_view(log_.request_id, log_.request_id_len));
  if (AddHeaderStatus(v.status)) o.append(route_->cfg->add_header_block);
  o.append(route_->cfg->add_header_always_block);
  if (!IsStatusWithoutBody(v.status)) StrAppend(&o, "Content-Length: ", v.body.size(), "\r\n");
  if (!request_.keep_alive) {
    o.append("Connection: close\r\n");
  } else if (request_.version_minor == 0) {
    o.append("Connection: keep-alive\r\n");
  }
  o.append("\r\n");
  if (request_.method != http::Method::kHead && !IsStatusWithoutBody(v.status)) {
    o.append(v.body);
    response_.bytes_out = v.body.size();
  }
  (void)value;  // the caller's reference keeps `v` valid until here
  if (!log_.logged) LogAndCount(v.status);
  Done();
}

bool Exchange::ServeStaleOnError() {
  if (cache_.stale == nullptr || worker_->loop().now_ms() >= cache_.stale_until) return false;
  cache::HttpObjectView v;
  std::shared_ptr<const std::string> keep = cache_.stale;
  if (!cache::DecodeHttpObject(*keep, &v)) return false;
  if (cache_.zone != nullptr) cache_.zone->stale.fetch_add(1, std::memory_order_relaxed);
  ServeCached(keep, v, "STALE");
  return true;
}

void Exchange::CacheDecide() {
  const RouteCacheConfig& cc = route_->cfg->cache;
  cache::ResponseFacts f;
  f.status = response_.head.status;
  std::string_view vary_value;
  bool vary_seen = false;
  for (const auto& hd : response_.head.headers) {
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
  cache_.decision = cache::DecideStorage(f, rules, now_s);
  if (!cache_.decision.store ||
      (response_.head.body == http::BodyKind::kLength &&
       response_.head.content_length > static_cast<uint64_t>(cc.max_object_bytes))) {
    if (cache_.decision.store) cache_.zone->too_big.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  cache_.obj = cache::HttpObject{};
  cache_.obj.status = response_.head.status;
  for (const auto& hd : response_.head.headers) {
    if (http::IsHopByHop(hd.name)) continue;
    if (!response_.head.connection.empty() && NamedInConnection(response_.head.connection, hd.name))
      continue;
    if (http::EqualsLower(hd.name, "content-length") || http::EqualsLower(hd.name, "age") ||
        http::EqualsLower(hd.name, "x-request-id") || http::EqualsLower(hd.name, "x-cache") ||
        http::EqualsLower(hd.name, "set-cookie") || HiddenHeader(hd.name))
      continue;
    AppendHeaderLine(&cache_.obj.head, hd.name, hd.value);
    for (const std::string& tag_header : cc.tag_headers) {
      if (!http::EqualsLower(hd.name, tag_header)) continue;
      // Cache-Tag (comma-separated) and Surrogate-Key (space-separated) lists.
      for (std::string& part : Split(hd.value, ',', true)) {
        for (std::string& t : Split(part, ' ', true)) {
          if (cache_.obj.tags.size() < cache::kMaxTags && t.size() <= 256)
            cache_.obj.tags.push_back(std::move(t));
        }
      }
    }
  }
  for (std::string& name : Split(vary_value, ',', true)) {
    std::string n = AsciiLower(std::string(Trim(name)));
    if (n.empty()) continue;
    if (cache_.obj.vary.size() >= cache::kMaxVaryHeaders) return;  // too many: not stored
    const http::Header* h = req_->Find(n);
    cache_.obj.vary.emplace_back(n, h != nullptr ? std::string(h->value) : std::string());
  }
  int64_t apparent = f.date >= 0 ? std::max<int64_t>(0, now_s - f.date) : 0;
  cache_.obj.stored_unix_s = now_s;
  cache_.obj.initial_age_s = std::max(apparent, f.age);
  cache_.obj.stale_while_revalidate_ms = cache_.decision.stale_while_revalidate_ms;
  cache_.obj.stale_if_error_ms = cache_.decision.stale_if_error_ms;
  if (response_.head.body == http::BodyKind::kLength) {
    cache_.obj.body.reserve(static_cast<size_t>(response_.head.content_length));
  }
  cache_.capture = true;
}

void Exchange::CaptureBody(const char* d, size_t n) {
  if (cache_.obj.body.size() + n > static_cast<size_t>(route_->cfg->cache.max_object_bytes)) {
    cache_.capture = false;  // too big to keep: the response still streams to the client
    cache_.zone->too_big.fetch_add(1, std::memory_order_relaxed);
    cache_.obj.body.clear();
    return;
  }
  cache_.obj.body.append(d, n);
}

void Exchange::CacheComplete(bool store) {
  HttpCacheZone* zone = cache_.zone;
  if (zone == nullptr) return;
  if (store && cache_.capture) {
    int64_t now = worker_->loop().now_ms();
    cache::PutOptions o;
    o.fresh_until_ms = now + cache_.decision.fresh_ms;
    o.stale_until_ms = o.fresh_until_ms + std::max(cache_.decision.stale_while_revalidate_ms,
                                                   cache_.decision.stale_if_error_ms);
    o.tags = cache_.obj.tags;
    auto value = std::make_shared<const std::string>(cache::EncodeHttpObject(cache_.obj));
    zone->l1(worker_->index()).Put(cache_.key, value, o, now);
    zone->stored.fetch_add(1, std::memory_order_relaxed);
    cache_.handoff = value;
    cache_.handoff_opts = o;
    RedisLink* redis = worker_->redis();
    if (zone->config().redis && redis != nullptr && redis->connected()) {
      const std::string& prefix = view_->snap->config->redis.key_prefix;
      int64_t wall = WallMicros() / 1000;
      int64_t life = o.stale_until_ms - now;
      std::string rkey = HttpCacheRedisKey(prefix, zone->config().name, cache_.key);
      std::string px = StrCat(std::max<int64_t>(life, 1));
      cache::L2Record rec;
      rec.fresh_until_ms = wall + cache_.decision.fresh_ms;
      rec.stale_until_ms = wall + life;
      rec.payload = *value;
      std::string record = cache::EncodeL2Record(rec);
      redis->Command({"SET", rkey, record, "PX", px}, [zone](const RedisReply& r) {
        (r.is_error() ? zone->l2_errors : zone->l2_sets).fetch_add(1, std::memory_order_relaxed);
      });
      for (const std::string& t : cache_.obj.tags) {
        cache::AddToL2TagSet(*redis, HttpCacheRedisTagKey(prefix, zone->config().name, t), rkey,
                             life);
      }
    }
  } else if (cache_.store && cache_.leader) {
    zone->not_stored.fetch_add(1, std::memory_order_relaxed);
  }
  cache_.capture = false;
  cache_.store = false;
  if (!cache_.leader) return;
  cache_.leader = false;
  std::shared_ptr<const std::string> value = std::move(cache_.handoff);
  for (const HttpCacheZone::Waiter& w : zone->flights.Finish(cache_.key)) {
    Exchange* ex = w.exchange;
    uint64_t token = w.token;
    w.worker->loop().Post(
        [ex, token, value, o = cache_.handoff_opts] { ex->OnCacheWake(token, value, o); });
  }
}

}  // namespace bulwark::gateway
