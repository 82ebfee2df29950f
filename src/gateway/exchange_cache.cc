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

void ClientConn::ResetCacheState() {
  if (cache_zone_ != nullptr) CacheComplete(false);
  cache_zone_ = nullptr;
  cache_key_.clear();
  cache_status_ = nullptr;
  cache_store_ = cache_capture_ = false;
  cache_stale_.reset();
  cache_stale_until_ = 0;
  cache_handoff_.reset();
  cache_obj_.tags.clear();
  cache_obj_.vary.clear();
  cache_obj_.head.clear();
  // A large captured body is not kept around on an idle connection.
  if (cache_obj_.body.capacity() > 64 * 1024) {
    std::string().swap(cache_obj_.body);
  } else {
    cache_obj_.body.clear();
  }
}

bool ClientConn::VaryMatches(const cache::HttpObjectView& v) const {
  for (const auto& [name, value] : v.vary) {
    const http::Header* h = req_.Find(name);
    std::string_view now = h != nullptr ? h->value : std::string_view();
    if (now != value) return false;
  }
  return true;
}

bool ClientConn::CacheLookup(bool first) {
  const RouteCacheConfig& cc = route_->cfg->cache;
  HttpCacheZone* zone = view_->snap->cache_zones[static_cast<size_t>(cc.zone_index)].get();
  cache_zone_ = zone;
  bool head = method_ == http::Method::kHead;
  bool allowed = false;
  for (const std::string& m : cc.methods) {
    if ((m == "GET" && method_ == http::Method::kGet) || (m == "HEAD" && head)) allowed = true;
  }
  // RFC 9111 §3.5: a shared cache does not answer requests with credentials from a stored
  // response (Varnish passes them too); upgrades are never cached.
  if (!allowed || upgrade_requested_ || req_.Find("authorization") != nullptr) {
    cache_status_ = "BYPASS";
    zone->bypass.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (first) cache_key_ = ExpandVariables(cc.key);
  int64_t now = worker_->loop().now_ms();
  cache::Lookup l = zone->l1(worker_->index()).Get(cache_key_, now);
  cache::HttpObjectView v;
  if (l.hit() && l.value != nullptr && cache::DecodeHttpObject(*l.value, &v) && VaryMatches(v)) {
    if (l.state == cache::Freshness::kFresh) {
      zone->hits.fetch_add(1, std::memory_order_relaxed);
      ServeCached(l.value, v, "HIT");
      return true;
    }
    if (now < l.fresh_until_ms + v.stale_if_error_ms) {
      cache_stale_ = l.value;
      cache_stale_until_ = l.fresh_until_ms + v.stale_if_error_ms;
    }
    // stale-while-revalidate, as nginx's proxy_cache_use_stale updating: while one request
    // refreshes the entry, the others get the stale copy at once.
    if (now < l.fresh_until_ms + v.stale_while_revalidate_ms &&
        zone->flights.InFlight(cache_key_)) {
      zone->stale.fetch_add(1, std::memory_order_relaxed);
      ServeCached(l.value, v, "STALE");
      return true;
    }
  }
  cache_status_ = "MISS";
  // One outcome per request: a request that waits for another's fetch is counted when it
  // wakes (a hit, or a miss if it must go to the server after all), not here as well.
  auto miss = [zone] { zone->misses.fetch_add(1, std::memory_order_relaxed); };
  if (head || !first) {  // HEAD is answered from GET entries but not stored
    miss();
    return false;
  }
  cache_store_ = true;
  if (!cc.lock) {
    miss();
    return false;
  }
  cache_wait_token_ = g_cache_wait_tokens.fetch_add(1, std::memory_order_relaxed);
  HttpCacheZone::Waiter me{worker_, this, cache_wait_token_};
  if (zone->flights.LeadOrWait(cache_key_, &me)) {
    miss();
    cache_leader_ = true;
    RedisClient* redis = worker_->redis();
    if (zone->config().redis && redis != nullptr && redis->connected()) {
      // The second level, shared by the instances: asked once per key, by the leader.
      uint64_t seq = ++limit_seq_;
      state_ = State::kCacheL2;
      const GatewayConfig& gw = *view_->snap->config;
      redis->Command(
          {"GET", HttpCacheRedisKey(gw.redis.key_prefix, zone->config().name, cache_key_)},
          [this, seq](const RedisReply& r) { OnCacheL2(seq, r); });
      return true;
    }
    return false;
  }
  // Another request is fetching this key: wait for it (nginx proxy_cache_lock).
  zone->coalesced.fetch_add(1, std::memory_order_relaxed);
  cache_store_ = false;
  state_ = State::kCacheWait;
  ArmClientTimer(cc.lock_timeout_ms);
  return true;
}

void ClientConn::OnCacheL2(uint64_t seq, const RedisReply& r) {
  if (!open_ || state_ != State::kCacheL2 || seq != limit_seq_) return;  // the client left
  state_ = State::kHead;
  HttpCacheZone* zone = cache_zone_;
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
      zone->l1(worker_->index()).Put(cache_key_, value, o, now);
      cache_handoff_ = value;
      cache_handoff_opts_ = o;
      ServeCached(value, view, "HIT");  // and wakes the requests waiting on this key
      return;
    }
    if (wall < fresh_until + view.stale_if_error_ms) {
      cache_stale_ = value;  // stale-if-error from the shared level
      cache_stale_until_ = now + (fresh_until + view.stale_if_error_ms - wall);
    }
  }
  zone->l2_misses.fetch_add(1, std::memory_order_relaxed);
  ProceedUpstream();
}

void ClientConn::OnCacheWake(uint64_t token, std::shared_ptr<const std::string> value,
                             cache::PutOptions options) {
  if (!open_ || state_ != State::kCacheWait || token != cache_wait_token_) return;
  worker_->loop().CancelTimer(&timer_);
  if (value != nullptr && cache_zone_ != nullptr && cache_zone_->config().per_worker) {
    // This worker's own L1 gets the leader's copy (the deadlines are on the same clock).
    cache_zone_->l1(worker_->index())
        .Put(cache_key_, std::move(value), options, worker_->loop().now_ms());
  }
  state_ = State::kHead;
  // The fetch is over: a hit now, or (not storable, or it failed) straight to the server.
  if (CacheLookup(false)) return;
  ProceedUpstream();
}

void ClientConn::ServeCached(const std::shared_ptr<const std::string>& value,
                             const cache::HttpObjectView& v, const char* status) {
  cache_status_ = status;
  if (cache_zone_ != nullptr) CacheComplete(false);
  if (worker_->draining()) keep_alive_ = false;
  if (has_body_ && !body_done_) keep_alive_ = false;  // the request body is not read
  status_ = v.status;
  resp_started_ = resp_done_ = true;
  log_upstream_.clear();
  std::string& o = out_.buf;
  o.append(version_minor_ == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  StrAppend(&o, v.status, " ", http::StatusReason(v.status), "\r\n");
  o.append(v.head);
  int64_t age = std::max<int64_t>(0, WallMicros() / 1000000 - v.stored_unix_s) + v.initial_age_s;
  StrAppend(&o, "Age: ", age, "\r\nX-Cache: ", status, "\r\n");
  if (request_id_len_ > 0)
    AppendHeaderLine(&o, "X-Request-Id", std::string_view(request_id_, request_id_len_));
  if (AddHeaderStatus(v.status)) o.append(route_->cfg->add_header_block);
  o.append(route_->cfg->add_header_always_block);
  if (!IsStatusWithoutBody(v.status)) StrAppend(&o, "Content-Length: ", v.body.size(), "\r\n");
  if (!keep_alive_) {
    o.append("Connection: close\r\n");
  } else if (version_minor_ == 0) {
    o.append("Connection: keep-alive\r\n");
  }
  o.append("\r\n");
  if (method_ != http::Method::kHead && !IsStatusWithoutBody(v.status)) {
    o.append(v.body);
    bytes_out_ = v.body.size();
  }
  (void)value;  // the caller's reference keeps `v` valid until here
  if (!logged_) LogAndCount(v.status);
  state_ = State::kLocal;
  close_after_ = close_after_ || !keep_alive_;
  DoWrite();
}

bool ClientConn::ServeStaleOnError() {
  if (cache_stale_ == nullptr || worker_->loop().now_ms() >= cache_stale_until_) return false;
  cache::HttpObjectView v;
  std::shared_ptr<const std::string> keep = cache_stale_;
  if (!cache::DecodeHttpObject(*keep, &v)) return false;
  if (cache_zone_ != nullptr) cache_zone_->stale.fetch_add(1, std::memory_order_relaxed);
  ServeCached(keep, v, "STALE");
  return true;
}

void ClientConn::CacheDecide() {
  const RouteCacheConfig& cc = route_->cfg->cache;
  cache::ResponseFacts f;
  f.status = resp_.status;
  std::string_view vary_value;
  bool vary_seen = false;
  for (const auto& hd : resp_.headers) {
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
  cache_decision_ = cache::DecideStorage(f, rules, now_s);
  if (!cache_decision_.store ||
      (resp_.body == http::BodyKind::kLength &&
       resp_.content_length > static_cast<uint64_t>(cc.max_object_bytes))) {
    if (cache_decision_.store) cache_zone_->too_big.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  cache_obj_ = cache::HttpObject{};
  cache_obj_.status = resp_.status;
  for (const auto& hd : resp_.headers) {
    if (http::IsHopByHop(hd.name)) continue;
    if (!resp_.connection.empty() && NamedInConnection(resp_.connection, hd.name)) continue;
    if (http::EqualsLower(hd.name, "content-length") || http::EqualsLower(hd.name, "age") ||
        http::EqualsLower(hd.name, "x-request-id") || http::EqualsLower(hd.name, "x-cache") ||
        http::EqualsLower(hd.name, "set-cookie"))
      continue;
    AppendHeaderLine(&cache_obj_.head, hd.name, hd.value);
    for (const std::string& tag_header : cc.tag_headers) {
      if (!http::EqualsLower(hd.name, tag_header)) continue;
      // Cache-Tag (comma-separated) and Surrogate-Key (space-separated) lists.
      for (std::string& part : Split(hd.value, ',', true)) {
        for (std::string& t : Split(part, ' ', true)) {
          if (cache_obj_.tags.size() < cache::kMaxTags && t.size() <= 256)
            cache_obj_.tags.push_back(std::move(t));
        }
      }
    }
  }
  for (std::string& name : Split(vary_value, ',', true)) {
    std::string n = AsciiLower(std::string(Trim(name)));
    if (n.empty()) continue;
    if (cache_obj_.vary.size() >= cache::kMaxVaryHeaders) return;  // too many: not stored
    const http::Header* h = req_.Find(n);
    cache_obj_.vary.emplace_back(n, h != nullptr ? std::string(h->value) : std::string());
  }
  int64_t apparent = f.date >= 0 ? std::max<int64_t>(0, now_s - f.date) : 0;
  cache_obj_.stored_unix_s = now_s;
  cache_obj_.initial_age_s = std::max(apparent, f.age);
  cache_obj_.stale_while_revalidate_ms = cache_decision_.stale_while_revalidate_ms;
  cache_obj_.stale_if_error_ms = cache_decision_.stale_if_error_ms;
  if (resp_.body == http::BodyKind::kLength) {
    cache_obj_.body.reserve(static_cast<size_t>(resp_.content_length));
  }
  cache_capture_ = true;
}

void ClientConn::CaptureBody(const char* d, size_t n) {
  if (cache_obj_.body.size() + n > static_cast<size_t>(route_->cfg->cache.max_object_bytes)) {
    cache_capture_ = false;  // too big to keep: the response still streams to the client
    cache_zone_->too_big.fetch_add(1, std::memory_order_relaxed);
    cache_obj_.body.clear();
    return;
  }
  cache_obj_.body.append(d, n);
}

void ClientConn::CacheComplete(bool store) {
  HttpCacheZone* zone = cache_zone_;
  if (zone == nullptr) return;
  if (store && cache_capture_) {
    int64_t now = worker_->loop().now_ms();
    cache::PutOptions o;
    o.fresh_until_ms = now + cache_decision_.fresh_ms;
    o.stale_until_ms = o.fresh_until_ms + std::max(cache_decision_.stale_while_revalidate_ms,
                                                   cache_decision_.stale_if_error_ms);
    o.tags = cache_obj_.tags;
    auto value = std::make_shared<const std::string>(cache::EncodeHttpObject(cache_obj_));
    zone->l1(worker_->index()).Put(cache_key_, value, o, now);
    zone->stored.fetch_add(1, std::memory_order_relaxed);
    cache_handoff_ = value;
    cache_handoff_opts_ = o;
    RedisClient* redis = worker_->redis();
    if (zone->config().redis && redis != nullptr && redis->connected()) {
      const std::string& prefix = view_->snap->config->redis.key_prefix;
      int64_t wall = WallMicros() / 1000;
      int64_t life = o.stale_until_ms - now;
      std::string rkey = HttpCacheRedisKey(prefix, zone->config().name, cache_key_);
      std::string px = StrCat(std::max<int64_t>(life, 1));
      cache::L2Record rec;
      rec.fresh_until_ms = wall + cache_decision_.fresh_ms;
      rec.stale_until_ms = wall + life;
      rec.payload = *value;
      std::string record = cache::EncodeL2Record(rec);
      redis->Command({"SET", rkey, record, "PX", px}, [zone](const RedisReply& r) {
        (r.is_error() ? zone->l2_errors : zone->l2_sets).fetch_add(1, std::memory_order_relaxed);
      });
      for (const std::string& t : cache_obj_.tags) {
        cache::AddToL2TagSet(*redis, HttpCacheRedisTagKey(prefix, zone->config().name, t), rkey,
                             life);
      }
    }
  } else if (cache_store_ && cache_leader_) {
    zone->not_stored.fetch_add(1, std::memory_order_relaxed);
  }
  cache_capture_ = false;
  cache_store_ = false;
  if (!cache_leader_) return;
  cache_leader_ = false;
  std::shared_ptr<const std::string> value = std::move(cache_handoff_);
  for (const HttpCacheZone::Waiter& w : zone->flights.Finish(cache_key_)) {
    ClientConn* c = w.conn;
    uint64_t token = w.token;
    w.worker->loop().Post(
        [c, token, value, o = cache_handoff_opts_] { c->OnCacheWake(token, value, o); });
  }
}

}  // namespace bulwark::gateway
