// One request's life, phase by phase (nginx's phase handlers): route, admission
// (admission.cc), cache (exchange_cache.cc), server choice (sticky.cc), attempts
// (upstream_exchange.cc), response filters (response_filters.cc), the access-log record.
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

void DownstreamConn::HandleRequest() {
  ++requests_;
  worker_->stats().requests.Add(1);
  ex_.view = worker_->AcquireView();
  const GatewayConfig& cfg = *ex_.view->snap->config;
  ex_.log.logged = false;
  ex_.response.started = ex_.response.done = false;
  ex_.route = nullptr;
  ex_.response.status = 0;
  ex_.response.bytes_out = 0;
  ex_.upstream.us = -1;
  ex_.upstream.attempts = 0;
  ex_.log.upstream.clear();
  ex_.admission.ban_key.clear();
  ex_.admission.ban_counted = false;
  ex_.admission.limit_rejected = false;
  ex_.admission.jwt_ok = false;
  ex_.upstream.index = -1;
  ex_.upstream.probe = ex_.upstream.counted_active = ex_.upstream.counted_retry = false;
  ex_.upstream.probe_server = nullptr;
  ex_.admission.limit_result = -1;
  ex_.request.method = req_.method;
  ex_.request.version_minor = req_.version_minor;
  ex_.request.keep_alive =
      req_.keep_alive && !worker_->draining() && requests_ < cfg.http.keepalive_requests;
  ex_.log.method.assign(req_.method_str);
  ex_.log.path.assign(req_.target.substr(0, 2048));

  const http::Header* rid = req_.Find("x-request-id");
  if (rid != nullptr && ValidRequestId(rid->value)) {
    ex_.log.request_id_len = rid->value.size();
    std::memcpy(ex_.log.request_id, rid->value.data(), ex_.log.request_id_len);
  } else {
    worker_->RandomHex(ex_.log.request_id, 32);
    ex_.log.request_id_len = 32;
  }
  const http::Header* tp = req_.Find("traceparent");
  ex_.log.incoming_trace = tp != nullptr && ValidTraceparent(tp->value);
  if (ex_.log.incoming_trace) {
    std::memcpy(ex_.log.trace_id, tp->value.data() + 3, 32);
  } else {
    worker_->RandomHex(ex_.log.trace_id, 32);
  }
  ex_.log.trace_id[32] = 0;

  ex_.request.accept_gzip = ex_.request.via = false;
  for (const auto& h : req_.headers) {
    if (h.name.size() == 15 && http::EqualsLower(h.name, "accept-encoding")) {
      ex_.request.accept_gzip = ex_.request.accept_gzip || AcceptsGzip(h.value);
    } else if (h.name.size() == 3 && http::EqualsLower(h.name, "via")) {
      ex_.request.via = true;
    }
  }
  ex_.request.body_kind = req_.body;
  ex_.request.body_left = req_.content_length;
  ex_.request.body_start = in_.rpos + req_.head_len;
  ex_.request.body_pos = ex_.request.body_start;
  ex_.request.body_done = ex_.request.body_kind == http::BodyKind::kNone;
  ex_.request.body_retained = true;
  ex_.request.body_bytes = 0;
  ex_.request.chunks.Reset();
  ex_.request.has_body = !ex_.request.body_done;

  // The client address: like nginx real_ip with real_ip_recursive on, the rightmost address in
  // X-Forwarded-For that is not a trusted proxy, when the peer itself is trusted.
  ex_.admission.trusted_peer = false;
  for (const auto& c : cfg.trusted_proxies) {
    if (c.Contains(peer_)) {
      ex_.admission.trusted_peer = true;
      break;
    }
  }
  ex_.admission.client_ip = peer_ip_;
  ex_.admission.client_addr = IpAddress::From(peer_);
  if (ex_.admission.trusted_peer) {
    if (const http::Header* xff = req_.Find("x-forwarded-for")) {
      std::string_view list = xff->value;
      while (!list.empty()) {
        size_t comma = list.rfind(',');
        std::string_view ip = comma == std::string_view::npos ? list : list.substr(comma + 1);
        while (!ip.empty() && ip.front() == ' ') ip.remove_prefix(1);
        while (!ip.empty() && ip.back() == ' ') ip.remove_suffix(1);
        std::optional<IpAddress> parsed = IpAddress::Parse(ip);
        if (parsed.has_value()) {
          ex_.admission.client_ip.assign(ip);
          ex_.admission.client_addr = *parsed;
          bool ip_trusted = false;
          for (const auto& c : cfg.trusted_proxies) ip_trusted |= c.Contains(*parsed);
          if (!ip_trusted) break;
        } else if (!ip.empty()) {
          break;  // garbage is not an address: keep the last good one
        }
        if (comma == std::string_view::npos) break;
        list = list.substr(0, comma);
      }
    }
  }

  if (ex_.request.method == http::Method::kConnect) {
    SendError(501, "CONNECT is not supported", true);
    return;
  }
  if (ex_.request.body_kind == http::BodyKind::kLength &&
      req_.content_length > static_cast<uint64_t>(cfg.http.client_max_body_size)) {
    SendError(413, "request body larger than client_max_body_size", true);
    return;
  }
  if (!NormalizeRequestPath(cfg)) return;
  ex_.route =
      ex_.view->snap->routers[listener_index_]->Match(req_.host, ex_.request.path, req_.method_str);
  if (!Protect(cfg)) return;
  if (ex_.route == nullptr) {
    SendError(404, "no route matches", ex_.request.has_body);
    return;
  }
  Proceed();
}

bool DownstreamConn::NormalizeRequestPath(const GatewayConfig& cfg) {
  if (http::PathIsNormal(req_.path, cfg.http.path)) {
    ex_.request.path = ex_.request.upstream_path = req_.path;
    return true;
  }
  http::ParseError err;
  if (!http::NormalizePath(req_.path, cfg.http.path, &ex_.request.path_buf,
                           &ex_.request.upstream_path_buf, &err)) {
    worker_->stats().bad_paths.Add(1);
    SendError(err.status, err.reason, ex_.request.has_body);
    return false;
  }
  ex_.request.path = ex_.request.path_buf;
  // What goes upstream (Envoy normalize_path): the normal form, or the client's own path.
  ex_.request.upstream_path = cfg.http.upstream_path == UpstreamPath::kOriginal
                                  ? req_.path
                                  : std::string_view(ex_.request.upstream_path_buf);
  return true;
}

std::string DownstreamConn::ExpandVariables(std::string_view t) const {
  // nginx variables a `return` commonly uses: return 301 https://$host$request_uri;
  // $host is the Host without its port (a bracketed IPv6 literal is kept whole).
  std::string_view host = req_.host;
  if (!host.empty() && host[0] == '[') {
    host = host.substr(0, host.find(']') + 1);  // [v6] without its port (npos + 1 is 0: all)
    if (host.empty()) host = req_.host;
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string out;
  size_t i = 0;
  while (i < t.size()) {
    if (t[i] != '$') {
      out.push_back(t[i++]);
      continue;
    }
    size_t j = i + 1;
    while (j < t.size() && (std::isalnum(static_cast<unsigned char>(t[j])) || t[j] == '_')) ++j;
    std::string_view name = t.substr(i + 1, j - i - 1);
    if (name == "scheme") {
      out.append(tls_.active() ? "https" : "http");
    } else if (name == "host") {
      out.append(AsciiLower(std::string(host)));
    } else if (name == "http_host") {
      out.append(req_.host);
    } else if (name == "request_uri") {
      out.append(req_.target);
    } else if (name == "uri") {
      out.append(ex_.request.path);  // decoded and normalised, as nginx's $uri
    } else if (name == "upstream_request_uri") {
      // The target as it goes upstream (NormalizeRequestPath chose the path).
      out.append(ex_.request.upstream_path);
      if (!req_.query.empty()) {
        out.push_back('?');
        out.append(req_.query);
      }
    } else if (name == "args") {
      out.append(req_.query);
    } else if (name == "remote_addr") {
      out.append(ex_.admission.client_ip);
    } else if (name == "request_method") {
      // A cache key's method: HEAD is answered from GET entries (nginx proxy_cache_convert_head).
      out.append(ex_.request.method == http::Method::kHead && ex_.cache.zone != nullptr
                     ? "GET"
                     : req_.method_str);
    } else if (name.size() > 5 && name.substr(0, 5) == "http_") {
      std::string h = AsciiLower(std::string(name.substr(5)));
      std::replace(h.begin(), h.end(), '_', '-');
      if (const http::Header* hd = req_.Find(h)) out.append(hd->value);
    } else if (name.size() > 7 && name.substr(0, 7) == "cookie_") {
      out.append(CookieValue(req_, name.substr(7)).value_or(""));
    } else {
      out.append(t.substr(i, j - i));  // unknown: left as written
    }
    i = j;
  }
  return out;
}

void DownstreamConn::Proceed() {
  const Router::Route* route = ex_.route;
  bool has_body = ex_.request.has_body;
  if (!AcquireConnLimits()) return;
  if (route->cfg->ret.has_value()) {
    const ReturnConfig& r = *route->cfg->ret;
    if (r.location.find('$') == std::string::npos && r.body.find('$') == std::string::npos) {
      SendLocal(r.status, r.body, r.content_type, r.location, has_body);
    } else {
      // $uri is decoded: a %0D%0A in the request must not start a header of the answer (the
      // classic `return 302 https://$host$uri` header injection). Controls and spaces are
      // escaped again.
      std::string location;
      for (char c : ExpandVariables(r.location)) {
        unsigned char u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) {
          AppendHexEscape(&location, '%', u);
        } else {
          location.push_back(c);
        }
      }
      std::string body = ExpandVariables(r.body);
      SendLocal(r.status, body, r.content_type, location, has_body);
    }
    return;
  }
  ex_.request.upgrade_requested = req_.connection_upgrade && !req_.upgrade.empty();
  if (route->cfg->cache.enabled && route->cfg->cache.zone_index >= 0 && CacheLookup(true)) return;
  ProceedUpstream();
}

void DownstreamConn::ProceedUpstream() {
  const GatewayConfig& cfg = *ex_.view->snap->config;
  const Router::Route* route = ex_.route;
  bool has_body = ex_.request.has_body;
  BuildUpstreamHead(*route, ex_.admission.trusted_peer);

  if (req_.expect_continue && has_body && req_.version_minor == 1) {
    // bulwark answers 100-continue itself (as nginx does) and does not forward Expect.
    out_.buf.append("HTTP/1.1 100 Continue\r\n\r\n");
    WriteOut();
  }

  ex_.upstream.index = route->upstream_index;
  const UpstreamRuntime& ur = ex_.view->snap->upstreams[ex_.upstream.index];
  ex_.upstream.key_hash = AffinityHash(*ur.cfg);
  ex_.upstream.tried.reset();
  ur.live->active_requests.fetch_add(1, std::memory_order_relaxed);
  ex_.upstream.counted_active = true;
  ex_.sticky.cookie_id = ex_.sticky.session_server_id = 0;
  ex_.sticky.session_value.clear();
  const StickyConfig& sticky = ur.cfg->sticky;
  if (sticky.enabled) {
    if (!sticky.cookie.empty()) {
      uint64_t id = 0;
      if (ParseStickyCookie(CookieValue(req_, sticky.cookie).value_or(""), StickySecret(),
                            ur.cfg->name, &id))
        ex_.sticky.cookie_id = id;
    }
    std::string_view sv = sticky.session_cookie.empty()
                              ? std::string_view()
                              : CookieValue(req_, sticky.session_cookie).value_or("");
    if (!sv.empty() && sv.size() <= 512) {
      ex_.sticky.session_value.assign(sv);
      RedisClient* redis = worker_->redis();
      if (redis != nullptr && redis->connected()) {
        // The session table (seed 002's design): session -> server, refreshed on every use.
        std::string key =
            StrCat(cfg.redis.key_prefix, "sticky:", ur.cfg->name, ":", ex_.sticky.session_value);
        std::string ttl = StrCat(sticky.ttl_ms);
        uint64_t seq = ++redis_seq_;
        state_ = State::kSticky;
        redis->Command({"GETEX", key, "PX", ttl},
                       [this, seq](const RedisReply& r) { OnStickyLookup(seq, r); });
        return;
      }
    }
  }
  ChooseAndStart(0);
}

void DownstreamConn::FinishExchange() {
  if (ex_.cache.zone != nullptr) CacheComplete(ex_.cache.capture && ex_.response.done);
  if (ex_.upstream.conn != nullptr) {
    ex_.upstream.us = MonotonicUs() - ex_.upstream.start_us;
    UpstreamConn* c = ex_.upstream.conn;
    c->server_->OnSuccess();
    ++c->requests_;
    const UpstreamConfig& u = *ex_.view->snap->upstreams[ex_.upstream.index].cfg;
    bool reusable = ex_.response.head.keep_alive && ex_.request.body_done &&
                    c->in_.readable() == 0 && !c->eof_ &&
                    ex_.response.body_kind != http::BodyKind::kUntilClose &&
                    c->requests_ < u.keepalive_requests;
    ReleaseUpstream(reusable);
  }
  if (!ex_.request.body_done)
    ex_.request.keep_alive = false;  // the rest of the body is still on the wire
  if (!ex_.log.logged) LogAndCount(ex_.response.status);
  state_ = State::kLocal;
  close_after_ = close_after_ || !ex_.request.keep_alive;
  DoWrite();
}

void DownstreamConn::LogAndCount(int status) {
  ex_.log.logged = true;
  EndUpstreamAccounting();
  ReleaseConnLimits();
  BanStatus(status);
  int64_t dur_us = MonotonicUs() - ex_.request.start_us;
  uint32_t endpoint = ex_.route != nullptr ? ex_.route->endpoint_id : worker_->unrouted_endpoint();
  worker_->http_shard_mut().Record(endpoint, static_cast<int>(ex_.request.method), status, dur_us);
  if (worker_->shared().access_log == nullptr) return;
  std::string& o = worker_->log_buffer();
  o.append("{\"time\":\"");
  worker_->AppendLogTime(&o);
  o.append("\",\"request_id\":\"");
  o.append(ex_.log.request_id, ex_.log.request_id_len);
  o.append("\",\"trace_id\":\"");
  o.append(ex_.log.trace_id);
  o.append("\",\"client_ip\":\"");
  AppendJsonEscaped(&o, ex_.admission.client_ip.empty() ? peer_ip_ : ex_.admission.client_ip);
  o.append("\",\"method\":\"");
  AppendJsonEscaped(&o, ex_.log.method);
  o.append("\",\"path\":\"");
  AppendJsonEscaped(&o, ex_.log.path);
  o.append("\",\"route\":\"");
  if (ex_.route != nullptr) AppendJsonEscaped(&o, ex_.route->cfg->name);
  o.append("\",\"upstream\":\"");
  o.append(ex_.log.upstream);
  o.push_back('"');
  if (ex_.admission.limit_result >= 0) {
    o.append(",\"limit_req\":\"");
    o.append(LimitResultName(static_cast<LimitResult>(ex_.admission.limit_result)));
    o.push_back('"');
  }
  StrAppend(&o, ",\"status\":", status, ",\"bytes_sent\":", ex_.response.bytes_out,
            ",\"bytes_received\":", ex_.request.bytes_in, ",\"attempts\":", ex_.upstream.attempts,
            ",\"duration_ms\":");
  AppendMillis(&o, dur_us);
  o.append(",\"upstream_ms\":");
  if (ex_.upstream.us >= 0) {
    AppendMillis(&o, ex_.upstream.us);
  } else {
    o.append("null");
  }
  o.append("}\n");
  worker_->MaybeFlushLog();
}

}  // namespace bulwark::gateway
