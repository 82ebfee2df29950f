// Admission: access lists, bans, JWT, limit_req (local and shared through Redis) and
// limit_conn, in nginx's order (access before limits).
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

#include "core/clock.h"
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

bool Exchange::AppendKey(const KeySpec& spec, bool binary_ip, std::string* out) const {
  size_t start = out->size();
  bool any = false;
  for (size_t i = 0; i < spec.parts.size(); ++i) {
    const KeyPart& p = spec.parts[i];
    if (i > 0) out->push_back(binary_ip ? '\x1f' : '+');
    switch (p.kind) {
      case KeyPartKind::kClientIp:
        if (binary_ip) {
          out->append(admission_.client_addr.Binary());
        } else {
          out->append(admission_.client_ip);
        }
        any = true;
        break;
      case KeyPartKind::kHeader:
        if (const http::Header* h = req_->Find(p.name); h != nullptr && !h->value.empty()) {
          out->append(h->value.substr(0, 1024));
          any = true;
        }
        break;
      case KeyPartKind::kRoute:
        if (route_ != nullptr) {
          out->append(route_->cfg->name);
          any = true;
        }
        break;
      case KeyPartKind::kJwtClaim:
        if (admission_.jwt_ok) {
          auto it = admission_.jwt_claims.find(p.name);
          if (it != admission_.jwt_claims.end() && (it->is_string() || it->is_number())) {
            std::string v = it->is_string() ? it->get<std::string>() : it->dump();
            if (!v.empty()) {
              out->append(v.substr(0, 1024));
              any = true;
            }
          }
        }
        break;
    }
  }
  if (!any) out->resize(start);  // as nginx: a key whose parts are all empty is not limited
  return any;
}

bool Exchange::Protect(const GatewayConfig& cfg) {
  const Snapshot& snap = *view_->snap;
  const ListenerConfig& lcfg = cfg.listeners[listener_];
  const AccessList& acl = route_ != nullptr ? route_->cfg->access : lcfg.access;
  if (!acl.rules.empty() && !acl.Allows(admission_.client_addr)) {
    worker_->stats().access_denied.Add(1);
    SendError(403, "access denied", request_.has_body);
    return false;
  }
  BanTable* bans = worker_->shared().bans;
  int64_t now = worker_->loop().now_ms();
  if (bans != nullptr && bans->active() > 0) {
    for (const KeySpec& spec : snap.ban_keys) {
      admission_.key_buf.clear();
      if (AppendKey(spec, false, &admission_.key_buf) && bans->IsBanned(admission_.key_buf, now)) {
        SendError(cfg.bans.status, "banned", request_.has_body);
        return false;
      }
    }
  }
  if (route_ == nullptr) return true;
  const RouteConfig& rc = *route_->cfg;
  if (rc.jwt_index >= 0 && !VerifyJwt(cfg.jwt_providers[rc.jwt_index])) return false;
  if (rc.ban.set) {
    admission_.ban_key.clear();
    AppendKey(rc.ban.key, false, &admission_.ban_key);
  }
  const LimitReqConfig& lr = rc.limit_req;
  if (lr.rules.empty()) return true;

  // Keys first (the buffer may grow), then views into it.
  int n = std::min<int>(static_cast<int>(lr.rules.size()), LimitDecision::kMaxRules);
  size_t offsets[LimitDecision::kMaxRules + 1];
  admission_.key_buf.clear();
  for (int i = 0; i < n; ++i) {
    offsets[i] = admission_.key_buf.size();
    AppendKey(cfg.limit_zones[lr.rules[i].zone_index].key, true, &admission_.key_buf);
  }
  offsets[n] = admission_.key_buf.size();
  LimitRequest* reqs = admission_.limit_reqs;
  for (int i = 0; i < n; ++i) {
    const LimitReqRule& rule = lr.rules[i];
    reqs[i].zone = snap.zones[rule.zone_index].get();
    reqs[i].burst = rule.burst;
    reqs[i].delay = rule.delay;
    reqs[i].key =
        std::string_view(admission_.key_buf).substr(offsets[i], offsets[i + 1] - offsets[i]);
  }
  admission_.limit_n = n;
  if (cfg.limit_zones[lr.rules[0].zone_index].shared) {
    RedisLink* redis = worker_->redis();
    if (redis != nullptr && redis->connected()) {
      // Decided in Redis: the request waits for the answer (a few hundred microseconds on a
      // LAN; at most redis.timeout before the fallback decides instead).
      std::vector<std::string_view> keys, args;
      SharedLimit::BuildArgs(cfg.redis.key_prefix, reqs, n, &redis_buf_, &keys, &args);
      uint64_t seq = ++redis_seq_;
      phase_ = Phase::kLimiting;
      redis->Eval(SharedLimit::Script(), SharedLimit::Sha1(), keys, args,
                  [this, seq](const RedisReply& r) { OnSharedLimit(seq, r); });
      return false;
    }
    return ApplyLimitOutcome(FallbackDecision());
  }
  return ApplyLimitOutcome(LimitDecision::Decide(reqs, n, now, lr.dry_run));
}

LimitOutcome Exchange::FallbackDecision() {
  const GatewayConfig& cfg = *view_->snap->config;
  const LimitReqConfig& lr = route_->cfg->limit_req;
  const LimitZoneConfig& zc = cfg.limit_zones[lr.rules[0].zone_index];
  admission_.limit_reqs[0].zone->CountFallback();
  LimitOutcome out;
  switch (zc.redis_failure) {
    case RedisFailure::kLocal:
      // Each instance limits on its own until Redis is back.
      return LimitDecision::Decide(admission_.limit_reqs, admission_.limit_n,
                                   worker_->loop().now_ms(), lr.dry_run);
    case RedisFailure::kOpen:
      out.applied = true;
      out.rule = 0;
      admission_.limit_reqs[0].zone->Count(LimitResult::kPassed);
      return out;
    case RedisFailure::kClosed:
      out.applied = true;
      out.rule = 0;
      out.result = lr.dry_run ? LimitResult::kRejectedDryRun : LimitResult::kRejected;
      out.retry_after_s = 1;
      admission_.limit_reqs[0].zone->Count(out.result);
      return out;
  }
  return out;
}

void Exchange::OnSharedLimit(uint64_t seq, const RedisReply& r) {
  if (phase_ != Phase::kLimiting || seq != redis_seq_) return;  // the client left
  phase_ = Phase::kNone;
  LimitOutcome out;
  if (r.is_error() || !SharedLimit::ParseReply(r, admission_.limit_reqs, admission_.limit_n,
                                               route_->cfg->limit_req.dry_run, &out)) {
    if (!r.is_error()) LogWarn("unexpected reply from the shared rate-limit script");
    out = FallbackDecision();
  }
  if (ApplyLimitOutcome(out)) Proceed();
}

bool Exchange::ApplyLimitOutcome(const LimitOutcome& out) {
  if (!out.applied) return true;
  const RouteConfig& rc = *route_->cfg;
  const LimitReqConfig& lr = rc.limit_req;
  admission_.limit_result = static_cast<int>(out.result);
  if (out.result == LimitResult::kRejected) {
    LogDebug("limiting requests, excess: ", out.excess / 1000, ".", out.excess % 1000,
             " by zone \"", admission_.limit_reqs[out.rule].zone->name(),
             "\", client: ", admission_.client_ip);
    admission_.limit_rejected = true;
    if (rc.ban.set && rc.ban.on_rate_limited) StrikeBan("rate_limited");
    std::string extra;
    if (lr.retry_after) extra = StrCat("Retry-After: ", out.retry_after_s, "\r\n");
    SendError(lr.status, "rate limited", request_.has_body, extra);
    return false;
  }
  if (out.result == LimitResult::kDelayed && out.delay_ms > 0) {
    // As nginx: the request waits, its body unread, then continues.
    phase_ = Phase::kDelayed;
    down_->ArmTimer(out.delay_ms);
    return false;
  }
  return true;
}

bool Exchange::VerifyJwt(const JwtProviderConfig& p) {
  std::string_view token;
  if (const http::Header* h = req_->Find(p.header)) {
    token = h->value;
    if (token.size() > 7 && http::EqualsLower(token.substr(0, 7), "bearer "))
      token.remove_prefix(7);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  }
  int64_t now_s = WallMicros() / 1000000;
  Downstream::VerifiedToken& verified = down_->verified_token();
  bool cached = !token.empty() && verified.verifier == p.verifier && token == verified.token;
  security::JwtFailure f = cached ? p.verifier->CheckTimes(admission_.jwt_claims, now_s)
                                  : p.verifier->Verify(token, now_s, &admission_.jwt_claims);
  if (f != security::JwtFailure::kNone) {
    verified.verifier.reset();
    verified.token.clear();
    p.counters->rejected[static_cast<int>(f)].fetch_add(1, std::memory_order_relaxed);
    // RFC 6750: say it is a bearer token that is wanted, and why this one was not taken.
    std::string extra = "WWW-Authenticate: Bearer realm=\"bulwark\"";
    if (f != security::JwtFailure::kMissing) {
      StrAppend(&extra, ", error=\"invalid_token\", error_description=\"",
                security::JwtFailureName(f), "\"");
    }
    extra.append("\r\n");
    SendError(401, "token refused", request_.has_body, extra);
    return false;
  }
  p.counters->verified.fetch_add(1, std::memory_order_relaxed);
  admission_.jwt_ok = true;
  if (cached) return true;  // claims and their headers are still those of this token
  verified.verifier = p.verifier;
  verified.token.assign(token);
  admission_.jwt_headers.clear();
  for (const auto& [claim, header] : p.forward_claims) {
    auto it = admission_.jwt_claims.find(claim);
    if (it == admission_.jwt_claims.end()) continue;
    std::string v = it->is_string() ? it->get<std::string>() : it->dump();
    bool clean = v.size() <= 1024;
    for (char c : v) clean &= c >= 32 && c != 127;
    if (clean) AppendHeaderLine(&admission_.jwt_headers, header, v);
  }
  return true;
}

void Exchange::BanStatus(int status) {
  // Counted once, before the answer leaves: the client's next request, on whichever worker,
  // must already see the ban.
  if (admission_.ban_counted || route_ == nullptr || admission_.ban_key.empty() ||
      admission_.limit_rejected)
    return;
  admission_.ban_counted = true;
  for (int s : route_->cfg->ban.statuses) {
    if (s == status) {
      StrikeBan(StrCat(status));
      break;
    }
  }
}

void Exchange::StrikeBan(std::string_view what) {
  BanTable* bans = worker_->shared().bans;
  if (bans == nullptr || route_ == nullptr || admission_.ban_key.empty()) return;
  const GatewayConfig& cfg = *view_->snap->config;
  for (const auto& c : cfg.bans.never_ban) {
    if (c.Contains(admission_.client_addr)) return;
  }
  const BanRuleConfig& rule = route_->cfg->ban;
  if (bans->Strike(admission_.ban_key, route_->cfg->name, rule, worker_->loop().now_ms(), what)) {
    std::string reason =
        StrCat(rule.maxretry, " x ", what, " within ", FormatDurationMs(rule.findtime_ms));
    LogWarn("security event: banned ", admission_.ban_key, " for ",
            FormatDurationMs(rule.bantime_ms), " (route ", route_->cfg->name, ": ", reason, ")");
    if (RedisLink* redis = worker_->redis(); redis != nullptr) {
      ShareBan(*redis, bans, cfg.redis.key_prefix, admission_.ban_key,
               BanMessage("ban", admission_.ban_key, route_->cfg->name, reason, rule.bantime_ms,
                          worker_->shared().instance_id, WallMicros() / 1000),
               rule.bantime_ms);
    }
  }
}

bool Exchange::AcquireConnLimits() {
  const LimitConnConfig& lc = route_->cfg->limit_conn;
  if (lc.rules.empty()) return true;
  const Snapshot& snap = *view_->snap;
  admission_.held_conn_keys.clear();
  for (const LimitConnRule& rule : lc.rules) {
    ConnZone* zone = snap.conn_zones[static_cast<size_t>(rule.zone_index)].get();
    size_t offset = admission_.held_conn_keys.size();
    if (!AppendKey(snap.config->conn_zones[static_cast<size_t>(rule.zone_index)].key, true,
                   &admission_.held_conn_keys)) {
      continue;  // as nginx: an empty key is not limited
    }
    std::string_view key = std::string_view(admission_.held_conn_keys).substr(offset);
    if (zone->Acquire(key, rule.max)) {
      admission_.held_conn[static_cast<size_t>(admission_.held_conn_n++)] = {zone, offset,
                                                                             key.size()};
      continue;
    }
    if (lc.dry_run) {
      admission_.held_conn_keys.resize(offset);
      zone->Count(ConnResult::kRejectedDryRun);
      continue;
    }
    zone->Count(ConnResult::kRejected);
    LogDebug("limiting connections by zone \"", zone->name(), "\", client: ", admission_.client_ip);
    ReleaseConnLimits();
    admission_.limit_rejected = true;
    SendError(lc.status, "too many requests in progress", request_.has_body);
    return false;
  }
  for (int i = 0; i < admission_.held_conn_n; ++i)
    admission_.held_conn[static_cast<size_t>(i)].zone->Count(ConnResult::kPassed);
  return true;
}

void Exchange::ReleaseConnLimits() {
  for (int i = 0; i < admission_.held_conn_n; ++i) {
    const auto& h = admission_.held_conn[static_cast<size_t>(i)];
    h.zone->Release(std::string_view(admission_.held_conn_keys).substr(h.offset, h.len));
  }
  admission_.held_conn_n = 0;
}

}  // namespace bulwark::gateway
