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

void ClientConn::HandleRequest() {
  ++requests_;
  worker_->stats().requests.Add(1);
  view_ = worker_->AcquireView();
  const GatewayConfig& cfg = *view_->snap->config;
  logged_ = false;
  resp_started_ = resp_done_ = false;
  route_ = nullptr;
  status_ = 0;
  bytes_out_ = 0;
  upstream_us_ = -1;
  attempts_ = 0;
  log_upstream_.clear();
  ban_key_.clear();
  ban_counted_ = false;
  limit_rejected_ = false;
  jwt_ok_ = false;
  upstream_index_ = -1;
  attempt_probe_ = counted_active_ = counted_retry_ = false;
  probe_server_ = nullptr;
  limit_result_ = -1;
  method_ = req_.method;
  version_minor_ = req_.version_minor;
  keep_alive_ = req_.keep_alive && !worker_->draining() && requests_ < cfg.http.keepalive_requests;
  log_method_.assign(req_.method_str);
  log_path_.assign(req_.target.substr(0, 2048));

  const http::Header* rid = req_.Find("x-request-id");
  if (rid != nullptr && ValidRequestId(rid->value)) {
    request_id_len_ = rid->value.size();
    std::memcpy(request_id_, rid->value.data(), request_id_len_);
  } else {
    worker_->RandomHex(request_id_, 32);
    request_id_len_ = 32;
  }
  const http::Header* tp = req_.Find("traceparent");
  incoming_trace_ = tp != nullptr && ValidTraceparent(tp->value);
  if (incoming_trace_) {
    std::memcpy(trace_id_, tp->value.data() + 3, 32);
  } else {
    worker_->RandomHex(trace_id_, 32);
  }
  trace_id_[32] = 0;

  accept_gzip_ = via_ = false;
  for (const auto& h : req_.headers) {
    if (h.name.size() == 15 && http::EqualsLower(h.name, "accept-encoding")) {
      accept_gzip_ = accept_gzip_ || AcceptsGzip(h.value);
    } else if (h.name.size() == 3 && http::EqualsLower(h.name, "via")) {
      via_ = true;
    }
  }
  body_kind_ = req_.body;
  body_left_ = req_.content_length;
  body_start_ = in_.rpos + req_.head_len;
  body_pos_ = body_start_;
  body_done_ = body_kind_ == http::BodyKind::kNone;
  body_retained_ = true;
  body_bytes_ = 0;
  req_chunks_.Reset();
  has_body_ = !body_done_;

  // The client address: like nginx real_ip with real_ip_recursive on, the rightmost address in
  // X-Forwarded-For that is not a trusted proxy, when the peer itself is trusted.
  trusted_peer_ = false;
  for (const auto& c : cfg.trusted_proxies) {
    if (c.Contains(peer_)) {
      trusted_peer_ = true;
      break;
    }
  }
  client_ip_ = peer_ip_;
  client_addr_ = IpAddress::From(peer_);
  if (trusted_peer_) {
    if (const http::Header* xff = req_.Find("x-forwarded-for")) {
      std::string_view list = xff->value;
      while (!list.empty()) {
        size_t comma = list.rfind(',');
        std::string_view ip = comma == std::string_view::npos ? list : list.substr(comma + 1);
        while (!ip.empty() && ip.front() == ' ') ip.remove_prefix(1);
        while (!ip.empty() && ip.back() == ' ') ip.remove_suffix(1);
        std::optional<IpAddress> parsed = IpAddress::Parse(ip);
        if (parsed.has_value()) {
          client_ip_.assign(ip);
          client_addr_ = *parsed;
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

  if (method_ == http::Method::kConnect) {
    SendError(501, "CONNECT is not supported", true);
    return;
  }
  if (body_kind_ == http::BodyKind::kLength &&
      req_.content_length > static_cast<uint64_t>(cfg.http.client_max_body_size)) {
    SendError(413, "request body larger than client_max_body_size", true);
    return;
  }
  if (!NormalizeRequestPath(cfg)) return;
  route_ = view_->snap->routers[listener_index_]->Match(req_.host, path_, req_.method_str);
  if (!Protect(cfg)) return;
  if (route_ == nullptr) {
    SendError(404, "no route matches", has_body_);
    return;
  }
  Proceed();
}

bool ClientConn::NormalizeRequestPath(const GatewayConfig& cfg) {
  if (http::PathIsNormal(req_.path, cfg.http.path)) {
    path_ = upstream_path_ = req_.path;
    return true;
  }
  http::ParseError err;
  if (!http::NormalizePath(req_.path, cfg.http.path, &path_buf_, &upstream_path_buf_, &err)) {
    worker_->stats().bad_paths.Add(1);
    SendError(err.status, err.reason, has_body_);
    return false;
  }
  path_ = path_buf_;
  // What goes upstream (Envoy normalize_path): the normal form, or the client's own path.
  upstream_path_ = cfg.http.upstream_path == UpstreamPath::kOriginal
                       ? req_.path
                       : std::string_view(upstream_path_buf_);
  return true;
}

std::string ClientConn::ExpandVariables(std::string_view t) const {
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
      out.append(ssl_ != nullptr ? "https" : "http");
    } else if (name == "host") {
      out.append(AsciiLower(std::string(host)));
    } else if (name == "http_host") {
      out.append(req_.host);
    } else if (name == "request_uri") {
      out.append(req_.target);
    } else if (name == "uri") {
      out.append(path_);  // decoded and normalised, as nginx's $uri
    } else if (name == "upstream_request_uri") {
      // The target as it goes upstream (NormalizeRequestPath chose the path).
      out.append(upstream_path_);
      if (!req_.query.empty()) {
        out.push_back('?');
        out.append(req_.query);
      }
    } else if (name == "args") {
      out.append(req_.query);
    } else if (name == "remote_addr") {
      out.append(client_ip_);
    } else if (name == "request_method") {
      // A cache key's method: HEAD is answered from GET entries (nginx proxy_cache_convert_head).
      out.append(method_ == http::Method::kHead && cache_zone_ != nullptr ? "GET"
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

void ClientConn::Proceed() {
  const Router::Route* route = route_;
  bool has_body = has_body_;
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
  upgrade_requested_ = req_.connection_upgrade && !req_.upgrade.empty();
  if (route->cfg->cache.enabled && route->cfg->cache.zone_index >= 0 && CacheLookup(true)) return;
  ProceedUpstream();
}

void ClientConn::ProceedUpstream() {
  const GatewayConfig& cfg = *view_->snap->config;
  const Router::Route* route = route_;
  bool has_body = has_body_;
  BuildUpstreamHead(*route, trusted_peer_);

  if (req_.expect_continue && has_body && req_.version_minor == 1) {
    // bulwark answers 100-continue itself (as nginx does) and does not forward Expect.
    out_.buf.append("HTTP/1.1 100 Continue\r\n\r\n");
    WriteOut();
  }

  upstream_index_ = route->upstream_index;
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_index_];
  key_hash_ = AffinityHash(*ur.cfg);
  tried_.reset();
  ur.live->active_requests.fetch_add(1, std::memory_order_relaxed);
  counted_active_ = true;
  sticky_cookie_id_ = session_server_id_ = 0;
  session_value_.clear();
  const StickyConfig& sticky = ur.cfg->sticky;
  if (sticky.enabled) {
    if (!sticky.cookie.empty()) {
      uint64_t id = 0;
      if (ParseStickyCookie(CookieValue(req_, sticky.cookie).value_or(""), StickySecret(),
                            ur.cfg->name, &id))
        sticky_cookie_id_ = id;
    }
    std::string_view sv = sticky.session_cookie.empty()
                              ? std::string_view()
                              : CookieValue(req_, sticky.session_cookie).value_or("");
    if (!sv.empty() && sv.size() <= 512) {
      session_value_.assign(sv);
      RedisClient* redis = worker_->redis();
      if (redis != nullptr && redis->connected()) {
        // The session table (seed 002's design): session -> server, refreshed on every use.
        std::string key =
            StrCat(cfg.redis.key_prefix, "sticky:", ur.cfg->name, ":", session_value_);
        std::string ttl = StrCat(sticky.ttl_ms);
        uint64_t seq = ++limit_seq_;
        state_ = State::kSticky;
        redis->Command({"GETEX", key, "PX", ttl},
                       [this, seq](const RedisReply& r) { OnStickyLookup(seq, r); });
        return;
      }
    }
  }
  ChooseAndStart(0);
}

void ClientConn::FinishExchange() {
  if (cache_zone_ != nullptr) CacheComplete(cache_capture_ && resp_done_);
  if (up_ != nullptr) {
    upstream_us_ = MonotonicUs() - upstream_start_us_;
    UpstreamConn* c = up_;
    c->server_->OnSuccess();
    ++c->requests_;
    const UpstreamConfig& u = *view_->snap->upstreams[upstream_index_].cfg;
    bool reusable = resp_.keep_alive && body_done_ && c->in_.readable() == 0 && !c->eof_ &&
                    resp_body_ != http::BodyKind::kUntilClose &&
                    c->requests_ < u.keepalive_requests;
    ReleaseUpstream(reusable);
  }
  if (!body_done_) keep_alive_ = false;  // the rest of the body is still on the wire
  if (!logged_) LogAndCount(status_);
  state_ = State::kLocal;
  close_after_ = close_after_ || !keep_alive_;
  DoWrite();
}

void ClientConn::LogAndCount(int status) {
  logged_ = true;
  EndUpstreamAccounting();
  ReleaseConnLimits();
  BanStatus(status);
  int64_t dur_us = MonotonicUs() - start_us_;
  uint32_t endpoint = route_ != nullptr ? route_->endpoint_id : worker_->unrouted_endpoint();
  worker_->http_shard_mut().Record(endpoint, static_cast<int>(method_), status, dur_us);
  if (worker_->shared().access_log == nullptr) return;
  std::string& o = worker_->log_buffer();
  o.append("{\"time\":\"");
  worker_->AppendLogTime(&o);
  o.append("\",\"request_id\":\"");
  o.append(request_id_, request_id_len_);
  o.append("\",\"trace_id\":\"");
  o.append(trace_id_);
  o.append("\",\"client_ip\":\"");
  AppendJsonEscaped(&o, client_ip_.empty() ? peer_ip_ : client_ip_);
  o.append("\",\"method\":\"");
  AppendJsonEscaped(&o, log_method_);
  o.append("\",\"path\":\"");
  AppendJsonEscaped(&o, log_path_);
  o.append("\",\"route\":\"");
  if (route_ != nullptr) AppendJsonEscaped(&o, route_->cfg->name);
  o.append("\",\"upstream\":\"");
  o.append(log_upstream_);
  o.push_back('"');
  if (limit_result_ >= 0) {
    o.append(",\"limit_req\":\"");
    o.append(LimitResultName(static_cast<LimitResult>(limit_result_)));
    o.push_back('"');
  }
  StrAppend(&o, ",\"status\":", status, ",\"bytes_sent\":", bytes_out_,
            ",\"bytes_received\":", bytes_in_, ",\"attempts\":", attempts_, ",\"duration_ms\":");
  AppendMillis(&o, dur_us);
  o.append(",\"upstream_ms\":");
  if (upstream_us_ >= 0) {
    AppendMillis(&o, upstream_us_);
  } else {
    o.append("null");
  }
  o.append("}\n");
  worker_->MaybeFlushLog();
}

}  // namespace bulwark::gateway
