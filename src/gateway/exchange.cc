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

Exchange::Exchange(Worker* worker, Downstream* down) : worker_(worker), down_(down) {
  upstream_.retry_timer.set_callback([this] { OnRetryTimer(); });
}

void Exchange::Begin() {
  req_ = &down_->request_head();
  HandleRequest();
}

void Exchange::StartRecord() {
  log_.logged = false;
  response_.started = response_.done = false;
  route_ = nullptr;
  response_.status = 0;
  response_.bytes_out = 0;
  upstream_.us = -1;
  upstream_.attempts = 0;
  log_.upstream.clear();
  admission_.ban_key.clear();
  admission_.ban_counted = false;
  admission_.limit_rejected = false;
  admission_.jwt_ok = false;
  upstream_.index = -1;
  upstream_.probe = upstream_.counted_active = upstream_.counted_retry = false;
  upstream_.probe_server = nullptr;
  admission_.limit_result = -1;
}

void Exchange::RefuseUnparsed(int status, std::string_view reason) {
  req_ = nullptr;
  StartRecord();
  request_.method = http::Method::kOther;
  request_.keep_alive = false;
  log_.method.assign("-");
  log_.path.assign("-");
  log_.request_id_len = 0;
  log_.trace_id[0] = 0;
  SendError(status, reason, true);
}

void Exchange::HandleRequest() {
  worker_->stats().requests.Add(1);
  view_ = worker_->AcquireView();
  const GatewayConfig& cfg = *view_->snap->config;
  listener_ = down_->listener_index();
  StartRecord();
  request_.method = req_->method;
  request_.version_minor = req_->version_minor;
  request_.keep_alive =
      req_->keep_alive && !worker_->draining() && down_->requests() < cfg.http.keepalive_requests;
  log_.method.assign(req_->method_str);
  log_.path.assign(req_->target.substr(0, 2048));

  const http::Header* rid = req_->Find("x-request-id");
  if (rid != nullptr && ValidRequestId(rid->value)) {
    log_.request_id_len = rid->value.size();
    std::memcpy(log_.request_id, rid->value.data(), log_.request_id_len);
  } else {
    worker_->RandomHex(log_.request_id, 32);
    log_.request_id_len = 32;
  }
  const http::Header* tp = req_->Find("traceparent");
  log_.incoming_trace = tp != nullptr && ValidTraceparent(tp->value);
  if (log_.incoming_trace) {
    std::memcpy(log_.trace_id, tp->value.data() + 3, 32);
  } else {
    worker_->RandomHex(log_.trace_id, 32);
  }
  log_.trace_id[32] = 0;

  request_.accept_gzip = request_.via = false;
  for (const auto& h : req_->headers) {
    if (h.name.size() == 15 && http::EqualsLower(h.name, "accept-encoding")) {
      request_.accept_gzip = request_.accept_gzip || AcceptsGzip(h.value);
    } else if (h.name.size() == 3 && http::EqualsLower(h.name, "via")) {
      request_.via = true;
    }
  }
  request_.body_kind = req_->body;
  request_.body_left = req_->content_length;
  request_.body_start = down_->input().rpos + req_->head_len;
  request_.body_pos = request_.body_start;
  request_.body_done = request_.body_kind == http::BodyKind::kNone;
  request_.body_retained = true;
  request_.body_bytes = 0;
  request_.chunks.Reset();
  request_.has_body = !request_.body_done;

  // The client address: like nginx real_ip with real_ip_recursive on, the rightmost address in
  // X-Forwarded-For that is not a trusted proxy, when the peer itself is trusted.
  admission_.trusted_peer = false;
  for (const auto& c : cfg.trusted_proxies) {
    if (c.Contains(down_->peer())) {
      admission_.trusted_peer = true;
      break;
    }
  }
  admission_.client_ip = down_->peer_ip();
  admission_.client_addr = IpAddress::From(down_->peer());
  if (admission_.trusted_peer) {
    if (const http::Header* xff = req_->Find("x-forwarded-for")) {
      std::string_view list = xff->value;
      while (!list.empty()) {
        size_t comma = list.rfind(',');
        std::string_view ip = comma == std::string_view::npos ? list : list.substr(comma + 1);
        while (!ip.empty() && ip.front() == ' ') ip.remove_prefix(1);
        while (!ip.empty() && ip.back() == ' ') ip.remove_suffix(1);
        std::optional<IpAddress> parsed = IpAddress::Parse(ip);
        if (parsed.has_value()) {
          admission_.client_ip.assign(ip);
          admission_.client_addr = *parsed;
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

  if (listener_ < 0) {
    // A reload removed the listener while this request was on its way (an HTTP/2 stream, or
    // a head that was still arriving): it is not served by another listener's routes.
    SendError(503, "its listener was removed by a reload", true);
    return;
  }
  if (request_.method == http::Method::kConnect) {
    SendError(501, "CONNECT is not supported", true);
    return;
  }
  request_.args = req_->query;
  request_.rewritten = false;
  if (!NormalizeRequestPath(cfg)) return;
  // nginx: the server's rewrites, then the location search; a location's rewrites that change
  // the path search again (at most 10 times, then 500 as nginx's "rewrite or internal
  // redirection cycle").
  const auto& server_rewrites = cfg.listeners[listener_].rewrites;
  if (!server_rewrites.empty() && ApplyRewrites(server_rewrites) == RewriteOutcome::kAnswered)
    return;
  route_ = view_->snap->routers[listener_]->Match(req_->host, request_.path, req_->method_str);
  for (int cycle = 0; route_ != nullptr && !route_->cfg->rewrites.empty(); ++cycle) {
    if (cycle == 10) {
      LogError("rewrite: ", log_.path, ": the rewrites of route ", route_->cfg->name,
               " changed the path 10 times");
      route_ = nullptr;
      SendError(500, "rewrite cycle", true);
      return;
    }
    RewriteOutcome o = ApplyRewrites(route_->cfg->rewrites);
    if (o == RewriteOutcome::kAnswered) return;
    if (o == RewriteOutcome::kStay) break;
    route_ = view_->snap->routers[listener_]->Match(req_->host, request_.path, req_->method_str);
  }
  // As nginx, once the location is known and before its access checks.
  int64_t max_body = MaxBodyBytes();
  if (request_.body_kind == http::BodyKind::kLength && max_body > 0 &&
      req_->content_length > static_cast<uint64_t>(max_body)) {
    SendError(413, "request body larger than client_max_body_size", true);
    return;
  }
  if (!Protect(cfg)) return;
  if (route_ == nullptr) {
    SendError(404, "no route matches", request_.has_body);
    return;
  }
  Proceed();
}

Exchange::RewriteOutcome Exchange::ApplyRewrites(const std::vector<RewriteRule>& rules) {
  bool changed = false;
  for (const RewriteRule& rule : rules) {
    re2::StringPiece groups[10];
    int n = 1 + rule.regex->NumberOfCapturingGroups();
    re2::StringPiece path(request_.path.data(), request_.path.size());
    if (!rule.regex->Match(path, 0, path.size(), RE2::UNANCHORED, groups, n)) continue;
    std::string out;
    // A '?' written in the replacement (not one a capture or variable brings) starts new
    // arguments; the old ones follow unless it is the last character.
    size_t q = std::string::npos;
    for (const auto& p : rule.replacement.parts) {
      if (p.var == VarTemplate::Var::kCapture) {
        int i = p.text[0] - '0';
        if (i < n) out.append(groups[i].data(), groups[i].size());
      } else {
        size_t mark = p.var == VarTemplate::Var::kText ? p.text.find('?') : std::string::npos;
        if (q == std::string::npos && mark != std::string::npos) q = out.size() + mark;
        AppendVariable(p, &out);
      }
    }
    std::string args;
    if (q == std::string::npos) {
      args.assign(request_.args);
    } else {
      args = out.substr(q + 1);
      if (q + 1 < out.size() && !request_.args.empty()) StrAppend(&args, "&", request_.args);
      out.resize(q);
    }
    if (rule.redirects) {
      if (!args.empty()) StrAppend(&out, "?", args);
      worker_->stats().requests_rewritten.Add(1);
      SendLocal(rule.flag == RewriteRule::Flag::kPermanent ? 301 : 302, "", "text/plain", out,
                request_.has_body);
      return RewriteOutcome::kAnswered;
    }
    if (out.empty() || out[0] != '/') {
      LogError("rewrite: ", log_.path, ": \"", rule.pattern,
               "\" made a path without '/': ", out.substr(0, 256));
      SendError(500, "rewrite made an invalid path", true);
      return RewriteOutcome::kAnswered;
    }
    request_.path_buf = std::move(out);
    request_.path = request_.path_buf;
    request_.upstream_path_buf.clear();
    http::EscapePath(request_.path, &request_.upstream_path_buf);
    request_.upstream_path = request_.upstream_path_buf;
    request_.args_buf = std::move(args);
    request_.args = request_.args_buf;
    request_.rewritten = changed = true;
    worker_->stats().requests_rewritten.Add(1);
    if (rule.flag == RewriteRule::Flag::kLast) return RewriteOutcome::kSearch;
    if (rule.flag == RewriteRule::Flag::kBreak) return RewriteOutcome::kStay;
  }
  return changed ? RewriteOutcome::kSearch : RewriteOutcome::kStay;
}

int64_t Exchange::MaxBodyBytes() const {
  if (route_ != nullptr && route_->cfg->client_max_body_size >= 0)
    return route_->cfg->client_max_body_size;
  if (route_ == nullptr && listener_ >= 0) {
    int64_t l = view_->snap->config->listeners[listener_].client_max_body_size;
    if (l >= 0) return l;
  }
  return view_->snap->config->http.client_max_body_size;
}

bool Exchange::NormalizeRequestPath(const GatewayConfig& cfg) {
  if (http::PathIsNormal(req_->path, cfg.http.path)) {
    request_.path = request_.upstream_path = req_->path;
    return true;
  }
  http::ParseError err;
  if (!http::NormalizePath(req_->path, cfg.http.path, &request_.path_buf,
                           &request_.upstream_path_buf, &err)) {
    worker_->stats().bad_paths.Add(1);
    SendError(err.status, err.reason, request_.has_body);
    return false;
  }
  request_.path = request_.path_buf;
  // What goes upstream (Envoy normalize_path): the normal form, or the client's own path.
  request_.upstream_path = cfg.http.upstream_path == UpstreamPath::kOriginal
                               ? req_->path
                               : std::string_view(request_.upstream_path_buf);
  return true;
}

void Exchange::AppendVariable(const VarTemplate::Part& p, std::string* out) const {
  using Var = VarTemplate::Var;
  switch (p.var) {
    case Var::kText:
      out->append(p.text);
      break;
    case Var::kHost: {
      // The Host without its port (a bracketed IPv6 literal is kept whole), lower case.
      std::string_view host = req_->host;
      if (!host.empty() && host[0] == '[') {
        host = host.substr(0, host.find(']') + 1);  // npos + 1 is 0: all of it
        if (host.empty()) host = req_->host;
      } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
        host = host.substr(0, colon);
      }
      for (char c : host) out->push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
      break;
    }
    case Var::kHttpHost:
      out->append(req_->host);
      break;
    case Var::kRemoteAddr:
      out->append(admission_.client_ip);
      break;
    case Var::kScheme:
      out->append(down_->secure() ? "https" : "http");
      break;
    case Var::kRequestUri:
      out->append(req_->target);
      break;
    case Var::kUri:
      out->append(request_.path);  // decoded and normalised, as nginx's $uri
      break;
    case Var::kArgs:
      out->append(request_.args);
      break;
    case Var::kIsArgs:
      if (!request_.args.empty()) out->push_back('?');
      break;
    case Var::kRequestMethod:
      out->append(req_->method_str);
      break;
    case Var::kRequestId:
      out->append(log_.request_id, log_.request_id_len);
      break;
    case Var::kProxyAddXForwardedFor:
      // As nginx: the client's X-Forwarded-For as sent, then $remote_addr.
      if (const http::Header* xff = req_->Find("x-forwarded-for")) {
        out->append(xff->value);
        out->append(", ");
      }
      out->append(admission_.client_ip);
      break;
    case Var::kHttp: {
      // nginx joins repeated headers with ", " (Cookie with "; ").
      bool first = true;
      for (const auto& hd : req_->headers) {
        if (hd.name.size() != p.text.size() || !http::EqualsLower(hd.name, p.text)) continue;
        if (!first) out->append(p.text == "cookie" ? "; " : ", ");
        out->append(hd.value);
        first = false;
      }
      break;
    }
    case Var::kCookie:
      out->append(CookieValue(*req_, p.text).value_or(""));
      break;
    case Var::kCapture:  // only in a rewrite's replacement (ApplyRewrites)
      break;
    case Var::kUpstreamRequestUri:
      // The target as it goes upstream (NormalizeRequestPath chose the path).
      out->append(request_.upstream_path);
      if (!request_.args.empty()) {
        out->push_back('?');
        out->append(request_.args);
      }
      break;
  }
}

std::string Exchange::ExpandVariables(std::string_view t) const {
  std::string out;
  size_t i = 0;
  while (i < t.size()) {
    if (t[i] != '$') {
      out.push_back(t[i++]);
      continue;
    }
    size_t j = i + 1;
    while (j < t.size() && (std::isalnum(static_cast<unsigned char>(t[j])) || t[j] == '_')) ++j;
    std::optional<VarTemplate::Part> part = NginxVariable(t.substr(i + 1, j - i - 1));
    if (!part.has_value()) {
      out.append(t.substr(i, j - i));  // unknown: left as written
    } else if (part->var == VarTemplate::Var::kRequestMethod && cache_.zone != nullptr &&
               request_.method == http::Method::kHead) {
      out.append("GET");  // a cache key's: HEAD is answered from GET entries (nginx
                          // proxy_cache_convert_head)
    } else {
      AppendVariable(*part, &out);
    }
    i = j;
  }
  return out;
}

void Exchange::Proceed() {
  const Router::Route* route = route_;
  bool has_body = request_.has_body;
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
  request_.upgrade_requested = req_->connection_upgrade && !req_->upgrade.empty();
  if (route->cfg->cache.enabled && route->cfg->cache.zone_index >= 0 && CacheLookup(true)) return;
  ProceedUpstream();
}

void Exchange::ProceedUpstream() {
  const GatewayConfig& cfg = *view_->snap->config;
  const Router::Route* route = route_;
  bool has_body = request_.has_body;
  BuildUpstreamHead(*route, admission_.trusted_peer);

  if (req_->expect_continue && has_body && req_->version_minor == 1) {
    // bulwark answers 100-continue itself (as nginx does) and does not forward Expect.
    down_->output().buf.append("HTTP/1.1 100 Continue\r\n\r\n");
    down_->Write();
  }

  upstream_.index = route->upstream_index;
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_.index];
  upstream_.key_hash = AffinityHash(*ur.cfg);
  upstream_.tried.reset();
  ur.live->active_requests.fetch_add(1, std::memory_order_relaxed);
  upstream_.counted_active = true;
  sticky_.cookie_id = sticky_.session_server_id = 0;
  sticky_.session_value.clear();
  const StickyConfig& sticky = ur.cfg->sticky;
  if (sticky.enabled) {
    if (!sticky.cookie.empty()) {
      uint64_t id = 0;
      if (ParseStickyCookie(CookieValue(*req_, sticky.cookie).value_or(""), StickySecret(),
                            ur.cfg->name, &id))
        sticky_.cookie_id = id;
    }
    std::string_view sv = sticky.session_cookie.empty()
                              ? std::string_view()
                              : CookieValue(*req_, sticky.session_cookie).value_or("");
    if (!sv.empty() && sv.size() <= 512) {
      sticky_.session_value.assign(sv);
      RedisLink* redis = worker_->redis();
      if (redis != nullptr && redis->connected()) {
        // The session table (the IAM design's session-sticky service): session -> server,
        // refreshed on every use.
        std::string key =
            StrCat(cfg.redis.key_prefix, "sticky:", ur.cfg->name, ":", sticky_.session_value);
        std::string ttl = StrCat(sticky.ttl_ms);
        uint64_t seq = ++redis_seq_;
        phase_ = Phase::kSticky;
        redis->Command({"GETEX", key, "PX", ttl},
                       [this, seq](const RedisReply& r) { OnStickyLookup(seq, r); });
        return;
      }
    }
  }
  ChooseAndStart(0);
}

void Exchange::FinishExchange() {
  if (cache_.zone != nullptr) CacheComplete(cache_.capture && response_.done);
  if (upstream_.conn != nullptr) {
    upstream_.us = MonotonicUs() - upstream_.start_us;
    UpstreamConn* c = upstream_.conn;
    c->server_->OnSuccess();
    ++c->requests_;
    const UpstreamConfig& u = *view_->snap->upstreams[upstream_.index].cfg;
    bool reusable = response_.head.keep_alive && request_.body_done && c->in_.readable() == 0 &&
                    !c->eof_ && response_.body_kind != http::BodyKind::kUntilClose &&
                    c->requests_ < u.keepalive_requests;
    ReleaseUpstream(reusable);
  }
  if (!request_.body_done)
    request_.keep_alive = false;  // the rest of the body is still on the wire
  if (!log_.logged) LogAndCount(response_.status);
  Done();
}

void Exchange::LogAndCount(int status) {
  log_.logged = true;
  EndUpstreamAccounting();
  ReleaseConnLimits();
  BanStatus(status);
  int64_t dur_us = MonotonicUs() - request_.start_us;
  uint32_t endpoint = route_ != nullptr ? route_->endpoint_id : worker_->unrouted_endpoint();
  worker_->http_shard_mut().Record(endpoint, static_cast<int>(request_.method), status, dur_us);
  if (worker_->shared().access_log == nullptr) return;
  std::string& o = worker_->log_buffer();
  o.append("{\"time\":\"");
  worker_->AppendLogTime(&o);
  o.append("\",\"request_id\":\"");
  o.append(log_.request_id, log_.request_id_len);
  o.append("\",\"trace_id\":\"");
  o.append(log_.trace_id);
  o.append("\",\"client_ip\":\"");
  AppendJsonEscaped(&o, admission_.client_ip.empty() ? down_->peer_ip() : admission_.client_ip);
  o.append("\",\"method\":\"");
  AppendJsonEscaped(&o, log_.method);
  o.append("\",\"path\":\"");
  AppendJsonEscaped(&o, log_.path);
  // nginx $server_protocol, and the HTTP/2 stream that carried the request.
  uint32_t stream = down_->stream_id();
  o.append(stream != 0                   ? "\",\"protocol\":\"HTTP/2.0"
           : request_.version_minor == 0 ? "\",\"protocol\":\"HTTP/1.0"
                                         : "\",\"protocol\":\"HTTP/1.1");
  if (stream != 0)
    StrAppend(&o, "\",\"stream\":", stream, ",\"route\":\"");
  else
    o.append("\",\"route\":\"");
  if (route_ != nullptr) AppendJsonEscaped(&o, route_->cfg->name);
  o.append("\",\"upstream\":\"");
  o.append(log_.upstream);
  o.push_back('"');
  if (admission_.limit_result >= 0) {
    o.append(",\"limit_req\":\"");
    o.append(LimitResultName(static_cast<LimitResult>(admission_.limit_result)));
    o.push_back('"');
  }
  StrAppend(&o, ",\"status\":", status, ",\"bytes_sent\":", response_.bytes_out,
            ",\"bytes_received\":", request_.bytes_in, ",\"attempts\":", upstream_.attempts,
            ",\"duration_ms\":");
  AppendMillis(&o, dur_us);
  o.append(",\"upstream_ms\":");
  if (upstream_.us >= 0) {
    AppendMillis(&o, upstream_.us);
  } else {
    o.append("null");
  }
  o.append("}\n");
  worker_->MaybeFlushLog();
}

void Exchange::SendLocal(int status, std::string_view body, std::string_view content_type,
                         std::string_view location, bool close, std::string_view extra_headers) {
  if (cache_.zone != nullptr) CacheComplete(false);
  if (close) request_.keep_alive = false;
  if (worker_->draining()) request_.keep_alive = false;
  response_.status = status;
  response_.started = response_.done = true;
  BanStatus(status);
  std::string& o = down_->output().buf;
  o.append(request_.version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  StrAppend(&o, status, " ", http::StatusReason(status), "\r\nServer: bulwark\r\nDate: ");
  o.append(worker_->http_date());
  o.append("\r\n");
  if (!content_type.empty()) AppendHeaderLine(&o, "Content-Type", content_type);
  StrAppend(&o, "Content-Length: ", body.size(), "\r\n");
  if (!location.empty()) AppendHeaderLine(&o, "Location", location);
  o.append(extra_headers);
  if (route_ != nullptr) {
    if (AddHeaderStatus(status)) o.append(route_->cfg->add_header_block);
    o.append(route_->cfg->add_header_always_block);
  } else if (view_ != nullptr && listener_ >= 0) {
    // No route (404, refused before routing): the listener's headers, as nginx's server level.
    for (const auto& h : view_->snap->config->listeners[listener_].add_headers) {
      if (h.always || AddHeaderStatus(status)) AppendHeaderLine(&o, h.name, h.value);
    }
  }
  if (log_.request_id_len > 0)
    AppendHeaderLine(&o, "X-Request-Id", std::string_view(log_.request_id, log_.request_id_len));
  if (!request_.keep_alive) {
    o.append("Connection: close\r\n");
  } else if (request_.version_minor == 0) {
    o.append("Connection: keep-alive\r\n");
  }
  o.append("\r\n");
  if (request_.method != http::Method::kHead) o.append(body);
  response_.bytes_out = body.size();
  if (!log_.logged) LogAndCount(status);
  Done();
}

void Exchange::SendError(int status, std::string_view reason, bool close,
                         std::string_view extra_headers) {
  std::string body = StrCat(status, " ", http::StatusReason(status), "\n");
  if (status >= 500 || status == 413 || status == 404) LogDebug("answering ", status, ": ", reason);
  SendLocal(status, body, "text/plain", "", close, extra_headers);
}

void Exchange::Done() {
  phase_ = Phase::kDone;
  down_->ExchangeDone(request_.keep_alive);
}

bool Exchange::DropForwardedBody(Buffer& in) {
  if (phase_ != Phase::kProxy || request_.body_done || request_.body_pos <= in.rpos) return false;
  in.rpos = request_.body_pos;
  request_.body_retained = false;
  size_t shift = in.rpos;
  in.Compact();
  request_.body_pos -= shift;
  request_.body_start = 0;
  return true;
}

void Exchange::OnInput() {
  if (phase_ != Phase::kProxy || request_.body_done || upstream_.conn == nullptr) return;
  ForwardBody();
  if (upstream_.conn != nullptr && upstream_.conn->state_ == UpstreamConn::State::kActive)
    upstream_.conn->Flush();
}

void Exchange::OnOutputDrained() {
  if (phase_ != Phase::kProxy || upstream_.conn == nullptr || !response_.started) return;
  ForwardResponseBody();
  if (upstream_.conn != nullptr && upstream_.conn->read_paused_ &&
      down_->output().pending() < kMaxPending)
    upstream_.conn->ReadAvailable();
}

void Exchange::OnClientGone(bool eof) {
  bool waiting = phase_ == Phase::kLimiting || phase_ == Phase::kDelayed ||
                 phase_ == Phase::kSticky || phase_ == Phase::kCacheWait ||
                 phase_ == Phase::kCacheL2;
  if (phase_ == Phase::kProxy || (eof && waiting)) {
    if (eof) worker_->stats().client_aborts.Add(1);
    if (!log_.logged) LogAndCount(499);
  }
  ReleaseUpstream(false);
}

void Exchange::OnTimeout() {
  switch (phase_) {
    case Phase::kDelayed:
      // The limit_req delay is over.
      phase_ = Phase::kNone;
      Proceed();
      return;
    case Phase::kCacheWait:
      // proxy_cache_lock_timeout: go to the server, and do not store what it answers.
      if (cache_.zone != nullptr) {
        cache_.zone->lock_timeouts.fetch_add(1, std::memory_order_relaxed);
        cache_.zone->misses.fetch_add(1, std::memory_order_relaxed);
      }
      cache_.store = false;
      phase_ = Phase::kNone;
      ProceedUpstream();
      return;
    case Phase::kProxy:
      worker_->stats().timeouts.Add(1);
      if (!request_.body_done && !response_.started) {
        ReleaseUpstream(false);
        SendError(408, "client body timeout", true);
        return;
      }
      if (!log_.logged) LogAndCount(499);
      ReleaseUpstream(false);
      down_->Abort();
      return;
    default:
      // A shared limit's or the session table's Redis wait outlasted the header timeout, or
      // the response could not be sent within send_timeout.
      ReleaseUpstream(false);
      down_->Abort();
      return;
  }
}

void Exchange::Finish() {
  if (view_ != nullptr) {
    worker_->ReleaseView(view_);
    view_ = nullptr;
  }
  route_ = nullptr;
  req_ = nullptr;
  ResetCacheState();
  phase_ = Phase::kNone;
  response_.started = response_.done = false;
  log_.request_id_len = 0;
  admission_.client_ip.clear();
}

void Exchange::End() {
  ResetCacheState();  // a leader that goes away wakes its waiters (they fetch themselves)
  if (upstream_.conn != nullptr) ReleaseUpstream(false);
  EndUpstreamAccounting();
  ReleaseConnLimits();
  worker_->loop().CancelTimer(&upstream_.retry_timer);
  if (gz_) {
    deflateEnd(gz_.get());
    gz_.reset();
  }
  // A pooled connection's next life must not meet the route of this one: that route belongs
  // to a snapshot a reload may free.
  Finish();
}

}  // namespace bulwark::gateway
