// The upstream side of an exchange: the request head as sent, attempts, body forwarding, the
// response head, retries (nginx proxy_next_upstream, Envoy retry policies and budgets) and
// the breaker and outlier outcomes of each attempt.
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

namespace {

bool NamedIn(const std::vector<SetHeader>& sets, std::string_view name) {
  for (const auto& s : sets) {
    if (s.name.size() == name.size() && EqualsIgnoreCase(s.name, name)) return true;
  }
  return false;
}

}  // namespace

void Exchange::AppendTemplate(const VarTemplate& t, std::string* out) const {
  for (const auto& p : t.parts) AppendVariable(p, out);
}

bool Exchange::HiddenHeader(std::string_view name) const {
  if (route_ == nullptr) return false;
  for (const std::string& h : route_->cfg->hide_headers) {
    if (h.size() == name.size() && http::EqualsLower(name, h)) return true;
  }
  return false;
}

void Exchange::BuildUpstreamHead(const Router::Route& route, bool trusted) {
  std::string& h = upstream_.head;
  h.clear();
  const std::vector<SetHeader>& sets = route.cfg->set_headers;
  h.append(req_->method_str);
  h.push_back(' ');
  const GatewayConfig& cfg = *view_->snap->config;
  if (cfg.http.upstream_path == UpstreamPath::kOriginal && !request_.rewritten &&
      !req_->target.empty() && req_->target[0] == '/') {
    h.append(req_->target);
  } else {
    // Envoy normalize_path; absolute-form is sent on in origin-form; a rewritten path as
    // nginx sends it (escaped, with the rewrite's arguments).
    h.append(request_.upstream_path);
    if (!request_.args.empty()) {
      h.push_back('?');
      h.append(request_.args);
    }
  }
  h.append(" HTTP/1.1\r\n");
  // proxy_set_header replaces a header of the same name, the client's or bulwark's own.
  bool set_any = !sets.empty();
  auto ours = [&](std::string_view name) { return !set_any || !NamedIn(sets, name); };
  if (ours("host"))
    AppendHeaderLine(&h, "Host", req_->host.empty() ? route.cfg->upstream : req_->host);
  std::string_view xff, xfp, xfh;
  for (const auto& hd : req_->headers) {
    std::string_view n = hd.name;
    if (http::IsHopByHop(n)) continue;
    switch (n.size()) {
      case 4:
        if (http::EqualsLower(n, "host")) continue;
        break;
      case 6:
        if (http::EqualsLower(n, "expect") && req_->expect_continue) continue;
        break;
      case 9:
        if (http::EqualsLower(n, "x-real-ip")) continue;
        break;
      case 11:
        if (http::EqualsLower(n, "traceparent")) continue;
        break;
      case 12:
        if (http::EqualsLower(n, "x-request-id")) continue;
        break;
      case 14:
        if (http::EqualsLower(n, "content-length")) continue;
        break;
      case 15:
        if (http::EqualsLower(n, "x-forwarded-for")) {
          xff = hd.value;
          continue;
        }
        break;
      case 16:
        if (http::EqualsLower(n, "x-forwarded-host")) {
          xfh = hd.value;
          continue;
        }
        break;
      case 17:
        if (http::EqualsLower(n, "x-forwarded-proto")) {
          xfp = hd.value;
          continue;
        }
        break;
      default:
        break;
    }
    // Same default as nginx (underscores_in_headers off): such names are dropped, because some
    // servers read "X_Foo" as "X-Foo" and that disagreement can be abused.
    if (n.find('_') != std::string_view::npos) continue;
    if (route.cfg->jwt_index >= 0) {
      // Headers that carry verified claims upstream are only ever bulwark's: a client's own
      // copy is dropped, so it cannot pose as someone else.
      bool spoof = false;
      for (const auto& fc : view_->snap->config->jwt_providers[route.cfg->jwt_index].forward_claims)
        spoof |= n.size() == fc.second.size() && EqualsIgnoreCase(n, fc.second);
      if (spoof) continue;
    }
    if (!req_->connection.empty() && NamedInConnection(req_->connection, n)) continue;
    if (set_any && NamedIn(sets, n)) continue;
    AppendHeaderLine(&h, n, hd.value);
  }
  // X-Forwarded-*: trusted proxies' values are extended; anyone else's are replaced, so a client
  // cannot forge its address.
  if (ours("x-forwarded-for")) {
    h.append("X-Forwarded-For: ");
    if (trusted && !xff.empty()) {
      h.append(xff);
      h.append(", ");
    }
    h.append(down_->peer_ip());
    h.append("\r\n");
  }
  if (ours("x-forwarded-proto")) {
    AppendHeaderLine(&h, "X-Forwarded-Proto",
                     trusted && !xfp.empty() ? xfp
                     : down_->secure()       ? std::string_view("https")
                                             : std::string_view("http"));
  }
  if (ours("x-forwarded-host")) {
    if (trusted && !xfh.empty()) {
      AppendHeaderLine(&h, "X-Forwarded-Host", xfh);
    } else if (!req_->host.empty()) {
      AppendHeaderLine(&h, "X-Forwarded-Host", req_->host);
    }
  }
  if (ours("x-real-ip")) AppendHeaderLine(&h, "X-Real-IP", admission_.client_ip);
  for (const SetHeader& s : sets) {
    size_t start = h.size();
    StrAppend(&h, s.name, ": ");
    size_t value = h.size();
    AppendTemplate(s.value, &h);
    if (h.size() == value) {
      h.resize(start);  // nginx: an empty value is not passed
    } else {
      h.append("\r\n");
    }
  }
  if (admission_.jwt_ok) h.append(admission_.jwt_headers);
  AppendHeaderLine(&h, "X-Request-Id", std::string_view(log_.request_id, log_.request_id_len));
  if (log_.incoming_trace) {
    AppendHeaderLine(&h, "traceparent", req_->Find("traceparent")->value);
  } else {
    char span[16];
    worker_->RandomHex(span, 16);
    h.append("traceparent: 00-");
    h.append(log_.trace_id, 32);
    h.push_back('-');
    h.append(span, 16);
    h.append("-01\r\n");
  }
  if (request_.body_kind == http::BodyKind::kLength) {
    h.append("Content-Length: ");
    StrAppend(&h, req_->content_length);
    h.append("\r\n");
  } else if (request_.body_kind == http::BodyKind::kChunked) {
    h.append("Transfer-Encoding: chunked\r\n");
  }
  if (request_.upgrade_requested) {
    h.append("Connection: upgrade\r\n");
    AppendHeaderLine(&h, "Upgrade", req_->upgrade);
  }
  h.append("\r\n");
}

void Exchange::StartAttempt(int server_index) {
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_.index];
  const UpstreamConfig& ucfg = *ur.cfg;
  Balancer& bal = *view_->balancers[upstream_.index];
  ServerState* s = bal.peer(server_index).state;
  upstream_.tried.set(server_index);
  ++upstream_.attempts;
  log_.upstream.assign(s->address_text());
  ServerCounters& sc = worker_->server_counters_mut(s->id());
  sc.requests.Add(1);
  if (upstream_.attempts > 1) sc.retries.Add(1);
  s->active().fetch_add(1, std::memory_order_relaxed);
  upstream_.start_us = MonotonicUs();

  int64_t now = worker_->loop().now_ms();
  upstream_.probe = s->ClaimProbe(now);
  upstream_.probe_server = s;
  int64_t deadline = ucfg.retry.enabled && ucfg.retry.per_try_timeout_ms > 0
                         ? now + ucfg.retry.per_try_timeout_ms
                         : 0;
  UpstreamConn* c = worker_->TakeIdle(s->id());
  if (c != nullptr) {
    c->server_index_ = server_index;
    c->deadline_ms_ = deadline;
  } else {
    c = worker_->NewUpstream();
    c->deadline_ms_ = deadline;
    absl::Status st =
        c->Connect(s, server_index, ucfg.servers[server_index], ucfg.tls,
                   route_->cfg->connect_timeout_ms > 0 ? route_->cfg->connect_timeout_ms
                                                       : ucfg.connect_timeout_ms);
    if (!st.ok()) {
      worker_->FreeUpstream(c);
      s->active().fetch_sub(1, std::memory_order_relaxed);
      s->OnFailure(now);
      bal.RecordFailure(server_index);
      sc.failures.Add(1);
      RecordAttemptOutcome(s, 0);
      RetryOrFail(UpstreamFailure::kConnect, /*sent=*/false);
      return;
    }
  }
  upstream_.conn = c;
  c->owner_ = this;
  c->wrote_any_ = c->got_any_ = false;
  c->read_paused_ = false;
  // A route's own timeouts win over its upstream's (nginx proxy_*_timeout in a location).
  c->send_timeout_ms_ =
      route_->cfg->send_timeout_ms > 0 ? route_->cfg->send_timeout_ms : ucfg.send_timeout_ms;
  c->read_timeout_ms_ =
      route_->cfg->read_timeout_ms > 0 ? route_->cfg->read_timeout_ms : ucfg.read_timeout_ms;
  response_.scanner.Reset();
  response_.chunks.Reset();
  response_.started = response_.done = false;

  // (Re)send the request: the head, then whatever body bytes are in the buffer.
  c->out_.Clear();
  c->out_.buf.append(upstream_.head);
  request_.body_pos = request_.body_start;
  request_.body_left = req_->content_length;
  request_.body_bytes = 0;
  request_.body_done = request_.body_kind == http::BodyKind::kNone;
  request_.chunks.Reset();
  ForwardBody();
  if (upstream_.conn == c && c->state_ == UpstreamConn::State::kActive) {
    c->ArmTimer(c->send_timeout_ms_);
    c->Flush();
  }
}

void Exchange::OnUpstreamConnected() {
  if (upstream_.conn == nullptr) return;
  upstream_.conn->ArmTimer(upstream_.conn->send_timeout_ms_);
  upstream_.conn->Flush();
}

void Exchange::OnUpstreamDrained() {
  if (upstream_.conn == nullptr) return;
  if (!request_.body_done) {
    ForwardBody();
    if (upstream_.conn != nullptr && upstream_.conn->out_.pending() < kMaxPending)
      down_->ResumeRead();
  }
  if (upstream_.conn == nullptr || upstream_.conn->out_.pending() != 0 || response_.started) return;
  if (request_.body_done) {
    // The whole request is sent: from now on the read timeout measures the wait for the
    // response (nginx proxy_read_timeout).
    upstream_.conn->ArmTimer(upstream_.conn->read_timeout_ms_);
  } else {
    // Waiting for more body from the client, whose own timeout (client_body_timeout) governs.
    worker_->loop().CancelTimer(&upstream_.conn->timer_);
  }
}

void Exchange::ForwardBody() {
  if (upstream_.conn == nullptr) return;
  int64_t max_body = MaxBodyBytes();
  Buffer& in = down_->input();
  while (!request_.body_done) {
    size_t avail = in.wpos - request_.body_pos;
    if (avail == 0 || upstream_.conn->out_.pending() > kMaxPending) break;
    const char* p = in.data.get() + request_.body_pos;
    if (request_.body_kind == http::BodyKind::kLength) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(avail, request_.body_left));
      upstream_.conn->out_.buf.append(p, n);
      request_.body_pos += n;
      request_.body_left -= n;
      request_.body_bytes += n;
      if (request_.body_left == 0) request_.body_done = true;
    } else {
      size_t consumed = 0;
      std::string& out = upstream_.conn->out_.buf;
      http::ChunkedDecoder::Result r =
          request_.chunks.Feed(p, avail, &consumed, [&](const char* d, size_t n) {
            AppendHex(&out, n);
            out.append("\r\n");
            out.append(d, n);
            out.append("\r\n");
            request_.body_bytes += n;
          });
      request_.body_pos += consumed;
      if (r == http::ChunkedDecoder::Result::kError ||
          (max_body > 0 && request_.body_bytes > static_cast<uint64_t>(max_body))) {
        bool too_big = r != http::ChunkedDecoder::Result::kError;
        ReleaseUpstream(false);
        worker_->stats().parse_errors.Add(too_big ? 0 : 1);
        if (response_.started) {
          down_->Abort();
        } else {
          SendError(
              too_big ? 413 : 400,
              too_big ? "request body larger than client_max_body_size" : request_.chunks.error(),
              true);
        }
        return;
      }
      if (r == http::ChunkedDecoder::Result::kDone) {
        out.append("0\r\n\r\n");
        request_.body_done = true;
      }
    }
  }
  if (request_.body_done && phase_ == Phase::kProxy)
    down_->CancelTimer();
  else if (!request_.body_done && phase_ == Phase::kProxy)
    down_->ArmTimer(view_->snap->config->http.client_body_timeout_ms);
}

void Exchange::OnUpstreamData() {
  if (upstream_.conn == nullptr) return;
  if (phase_ == Phase::kTunnel) {
    down_->Tunnel();
    return;
  }
  if (!response_.started && !ParseUpstreamHead()) return;
  ForwardResponseBody();
}

bool Exchange::ParseUpstreamHead() {
  http::Limits limits;
  limits.max_header_bytes = kUpstreamBufferBytes;
  limits.max_request_line = kUpstreamBufferBytes;
  limits.max_headers = 256;
  for (;;) {
    Buffer& b = upstream_.conn->in_;
    size_t end = 0;
    http::ParseError err;
    http::ParseStatus st =
        response_.scanner.Scan(b.read_ptr(), b.readable(), limits, false, &end, &err);
    if (st == http::ParseStatus::kNeedMore) {
      if (b.readable() >= kUpstreamBufferBytes) {
        OnUpstreamFailure(UpstreamFailure::kInvalidResponse);
      }
      return false;
    }
    if (st == http::ParseStatus::kDone)
      st = http::ParseResponseHead(b.read_ptr(), end, limits, request_.method, &response_.head,
                                   &err);
    if (st == http::ParseStatus::kError ||
        (response_.head.status == 101 && !request_.upgrade_requested)) {
      OnUpstreamFailure(UpstreamFailure::kInvalidResponse);
      return false;
    }
    if (response_.head.status < 200 && response_.head.status != 101) {
      // Interim responses (100 Continue, 103 Early Hints) are not passed on: bulwark already
      // answered the client's Expect itself.
      b.Consume(end);
      response_.scanner.Reset();
      continue;
    }
    // The response head is here: the attempt's outcome is known.
    ServerState* s = upstream_.conn->server_;
    RecordAttemptOutcome(s, response_.head.status);
    const UpstreamConfig& ucfg = *view_->snap->upstreams[upstream_.index].cfg;
    if (ucfg.retry.enabled && response_.head.status >= 500 &&
        std::find(ucfg.retry.statuses.begin(), ucfg.retry.statuses.end(), response_.head.status) !=
            ucfg.retry.statuses.end() &&
        MayRetry(/*sent=*/true)) {
      // Envoy retry_on 5xx statuses: drop this answer and try another server. nginx counts
      // such statuses as failures of the server (proxy_next_upstream http_50x).
      s->OnFailure(worker_->loop().now_ms());
      view_->balancers[upstream_.index]->RecordFailure(upstream_.conn->server_index_);
      worker_->server_counters_mut(s->id()).failures.Add(1);
      int status = response_.head.status;
      ReleaseUpstream(false);
      response_.scanner.Reset();
      if (!RetryNext(status)) return false;
      return false;
    }
    if (cache_.stale != nullptr && response_.head.status >= 500 && response_.head.status != 501 &&
        response_.head.status <= 504 && worker_->loop().now_ms() < cache_.stale_until) {
      // RFC 5861 stale-if-error (nginx proxy_cache_use_stale http_50x): the stale copy instead
      // of the server's error.
      ReleaseUpstream(false);
      response_.scanner.Reset();
      ServeStaleOnError();
      return false;
    }
    upstream_.conn->deadline_ms_ = 0;  // the per-try timeout covers the wait for the response head
    response_.started = true;
    response_.status = response_.head.status;
    if (cache_.store) CacheDecide();
    BuildResponseHead();
    b.Consume(end);
    if (response_.status == 101) {
      phase_ = Phase::kTunnel;
      if (!log_.logged) LogAndCount(101);
      down_->StartTunnel();
      return false;
    }
    return true;
  }
}

void Exchange::BrokenUpstreamFraming() {
  // A broken response after its head was sent: all that can be done is cut the connection.
  LogWarnFor(std::string_view(log_.request_id, log_.request_id_len), "upstream: ", log_.upstream,
             " sent invalid chunked framing: ", response_.chunks.error());
  if (!log_.logged) LogAndCount(response_.status);
  ReleaseUpstream(false);
  down_->Abort();
}

void Exchange::OnUpstreamEof() {
  if (upstream_.conn == nullptr) return;
  if (!response_.started) {
    OnUpstreamFailure(upstream_.conn->got_any_ ? UpstreamFailure::kInvalidResponse
                                               : UpstreamFailure::kClosed);
    return;
  }
  if (response_.body_kind == http::BodyKind::kUntilClose) {
    ForwardResponseBody();
    if (upstream_.conn == nullptr) return;
    response_.done = true;
    if (response_.gzip) GzipFeed(nullptr, 0, true);
    FinishExchange();
    return;
  }
  if (!response_.done) {
    // Truncated response: the client cannot be told except by closing.
    LogWarnFor(std::string_view(log_.request_id, log_.request_id_len), "upstream: ", log_.upstream,
               " closed the connection mid-response");
    if (!log_.logged) LogAndCount(response_.status);
    ReleaseUpstream(false);
    down_->Abort();
  }
}

void Exchange::OnUpstreamFailure(UpstreamFailure why) {
  if (upstream_.conn == nullptr) return;
  if (phase_ == Phase::kTunnel) {
    ReleaseUpstream(false);
    down_->Abort();
    return;
  }
  UpstreamConn* c = upstream_.conn;
  ServerState* s = c->server_;
  int idx = c->server_index_;
  bool sent = c->wrote_any_;
  // A pooled connection the server closed just as we reused it is not the server's fault.
  bool stale = c->requests_ > 0 && !c->got_any_ &&
               (why == UpstreamFailure::kClosed || why == UpstreamFailure::kWrite ||
                why == UpstreamFailure::kRead);
  ReleaseUpstream(false);
  if (why == UpstreamFailure::kTimeout) worker_->stats().timeouts.Add(1);
  if (!stale) {
    s->OnFailure(worker_->loop().now_ms());
    RecordAttemptOutcome(s, 0);
    view_->balancers[upstream_.index]->RecordFailure(idx);
    worker_->server_counters_mut(s->id()).failures.Add(1);
    LogWarnFor(std::string_view(log_.request_id, log_.request_id_len), "upstream: ", s->upstream(),
               " server ", s->address_text(), " failed: ",
               why == UpstreamFailure::kConnect           ? "connect error"
               : why == UpstreamFailure::kTimeout         ? "timeout"
               : why == UpstreamFailure::kInvalidResponse ? "invalid response"
                                                          : "connection error");
  } else {
    upstream_.tried.reset(idx);  // the server may be tried again on a fresh connection
    if (upstream_.probe) RecordAttemptOutcome(s, -1);  // give the probe slot back
  }
  if (response_.started) {
    if (!log_.logged) LogAndCount(response_.status);
    down_->Abort();
    return;
  }
  RetryOrFail(why, sent && !stale);
}

bool Exchange::MayRetry(bool sent) {
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_.index];
  const UpstreamConfig& u = *ur.cfg;
  int64_t now = worker_->loop().now_ms();
  // nginx proxy_next_upstream: a request that reached a server is only resent if it is
  // idempotent (or non_idempotent is allowed); the body must still be here; tries and time are
  // bounded.
  bool non_idempotent_ok = route_ != nullptr && route_->cfg->retry_non_idempotent.has_value()
                               ? *route_->cfg->retry_non_idempotent
                               : u.retry_non_idempotent;
  bool allowed =
      request_.body_retained &&
      (!sent || http::IsIdempotent(request_.method) || non_idempotent_ok) &&
      (u.next_upstream_tries == 0 || upstream_.attempts < u.next_upstream_tries) &&
      (u.next_upstream_timeout_ms == 0 || now - request_.start_ms < u.next_upstream_timeout_ms);
  if (!allowed || !u.retry.enabled || upstream_.counted_retry) return allowed;
  // Envoy's retry budget: retries in flight stay under a share of the requests in flight.
  int64_t active = ur.live->active_requests.load(std::memory_order_relaxed);
  int64_t budget =
      std::max<int64_t>(u.retry.min_retry_concurrency, active * u.retry.budget_percent / 100);
  if (ur.live->active_retries.load(std::memory_order_relaxed) >= budget) {
    worker_->stats().retry_budget_exhausted.Add(1);
    return false;
  }
  ur.live->active_retries.fetch_add(1, std::memory_order_relaxed);
  upstream_.counted_retry = true;
  return true;
}

bool Exchange::RetryOrFail(UpstreamFailure why, bool sent) {
  const UpstreamConfig& u = *view_->snap->upstreams[upstream_.index].cfg;
  bool condition = true;
  if (u.retry.enabled) {
    condition = why == UpstreamFailure::kConnect   ? u.retry.on_connect_failure
                : why == UpstreamFailure::kTimeout ? u.retry.on_timeout
                                                   : u.retry.on_reset;
  }
  int status = why == UpstreamFailure::kTimeout ? 504 : 502;
  if (condition && MayRetry(sent)) return RetryNext(status);
  bool close = !request_.body_done || !request_.body_retained;
  SendError(status, status == 504 ? "upstream timed out" : "upstream failed", close);
  return false;
}

bool Exchange::RetryNext(int status_if_none) {
  const UpstreamConfig& u = *view_->snap->upstreams[upstream_.index].cfg;
  if (u.retry.enabled && u.retry.backoff_base_ms > 0) {
    // Envoy retry_back_off: fully jittered, the n-th retry waits a random time below
    // (2^n - 1) x base, capped at max.
    int64_t cap = u.retry.backoff_base_ms;
    for (int i = 1; i < upstream_.attempts && cap < u.retry.backoff_max_ms; ++i)
      cap = cap * 2 + u.retry.backoff_base_ms;
    cap = std::min(cap, u.retry.backoff_max_ms);
    uint64_t r = worker_->Random();
    int64_t wait = cap > 0 ? static_cast<int64_t>(r % static_cast<uint64_t>(cap)) : 0;
    upstream_.retry_status = status_if_none;
    worker_->stats().retry_backoffs.Add(1);
    worker_->loop().ArmTimer(&upstream_.retry_timer, std::max<int64_t>(wait, 1));
    return true;
  }
  int idx = view_->balancers[upstream_.index]->Select(worker_->loop().now_ms(), upstream_.key_hash,
                                                      upstream_.tried);
  if (idx >= 0) {
    StartAttempt(idx);
    return true;
  }
  if (ServeStaleOnError()) return false;
  bool close = !request_.body_done || !request_.body_retained;
  SendError(status_if_none, "upstream failed", close);
  return false;
}

void Exchange::OnRetryTimer() {
  if (phase_ != Phase::kProxy || upstream_.conn != nullptr || view_ == nullptr) return;
  int idx = view_->balancers[upstream_.index]->Select(worker_->loop().now_ms(), upstream_.key_hash,
                                                      upstream_.tried);
  if (idx >= 0) {
    StartAttempt(idx);
    return;
  }
  bool close = !request_.body_done || !request_.body_retained;
  SendError(upstream_.retry_status, "upstream failed", close);
}

void Exchange::RecordAttemptOutcome(ServerState* s, int status) {
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_.index];
  const UpstreamConfig& u = *ur.cfg;
  bool probe = upstream_.probe && upstream_.probe_server == s;
  if (probe) upstream_.probe = false;
  if (!u.breaker.enabled && !u.outlier.enabled && !probe) return;
  if (status < 0) {  // not the server's fault: only release a probe slot
    if (probe) {
      s->RecordOutcome(false, false, true, worker_->loop().now_ms(), BreakerConfig{},
                       OutlierConfig{}, ur.servers);
    }
    return;
  }
  bool breaker_failure =
      status == 0 || std::find(u.breaker.statuses.begin(), u.breaker.statuses.end(), status) !=
                         u.breaker.statuses.end();
  // Envoy counts connection errors and timeouts as 5xx for consecutive_5xx.
  bool outlier_failure = status == 0 || status >= 500;
  int64_t now = worker_->loop().now_ms();
  int change = s->RecordOutcome(breaker_failure, outlier_failure, probe, now, u.breaker, u.outlier,
                                ur.servers);
  if (change & ServerState::kOpened) {
    LogWarn("upstream ", s->upstream(), " server ", s->address_text(),
            ": circuit breaker opened for ", FormatDurationMs(s->open_until_ms() - now));
  }
  if (change & ServerState::kClosed) {
    LogInfo("upstream ", s->upstream(), " server ", s->address_text(), ": circuit breaker closed");
  }
  if (change & ServerState::kEjected) {
    LogWarn("upstream ", s->upstream(), " server ", s->address_text(), ": ejected for ",
            FormatDurationMs(s->ejected_until_ms() - now), " (", u.outlier.consecutive_5xx,
            " consecutive errors)");
  }
}

void Exchange::EndUpstreamAccounting() {
  if (view_ == nullptr || upstream_.index < 0) return;
  if (!upstream_.counted_active && !upstream_.counted_retry && !upstream_.probe) return;
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_.index];
  if (upstream_.probe && upstream_.probe_server != nullptr) {
    // The request ended before its probe had an answer: free the slot without a verdict.
    upstream_.probe_server->RecordOutcome(false, false, true, worker_->loop().now_ms(),
                                          BreakerConfig{}, OutlierConfig{}, ur.servers);
    upstream_.probe = false;
  }
  if (upstream_.counted_active) ur.live->active_requests.fetch_sub(1, std::memory_order_relaxed);
  if (upstream_.counted_retry) ur.live->active_retries.fetch_sub(1, std::memory_order_relaxed);
  upstream_.counted_active = upstream_.counted_retry = false;
  worker_->loop().CancelTimer(&upstream_.retry_timer);
}

void Exchange::ReleaseUpstream(bool reusable) {
  UpstreamConn* c = upstream_.conn;
  if (c == nullptr) return;
  upstream_.conn = nullptr;
  if (c->server_ != nullptr) c->server_->active().fetch_sub(1, std::memory_order_relaxed);
  c->owner_ = nullptr;
  c->deadline_ms_ = 0;
  const UpstreamConfig& u = *view_->snap->upstreams[upstream_.index].cfg;
  if (reusable && worker_->PutIdle(c, u.keepalive)) {
    c->MakeIdle(u.keepalive_timeout_ms);
  } else {
    c->Close();
  }
}

}  // namespace bulwark::gateway
