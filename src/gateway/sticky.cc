// Server affinity: hash keys, signed sticky cookies and Redis-held sessions, then the choice
// of the first server.
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

std::optional<uint64_t> Exchange::AffinityHash(const UpstreamConfig& cfg) {
  if (cfg.balance != BalanceKind::kHash) return std::nullopt;
  switch (cfg.hash_key) {
    case HashKeyKind::kClientIp:
      return StableHash(admission_.client_ip);
    case HashKeyKind::kHeader:
      if (const http::Header* h = req_->Find(cfg.hash_key_name)) return StableHash(h->value);
      return std::nullopt;
    case HashKeyKind::kCookie:
      if (auto v = CookieValue(*req_, cfg.hash_key_name)) return StableHash(*v);
      return std::nullopt;
  }
  return std::nullopt;
}

void Exchange::OnStickyLookup(uint64_t seq, const RedisReply& r) {
  if (phase_ != Phase::kSticky || seq != redis_seq_) return;
  phase_ = Phase::kNone;
  uint64_t id = 0;
  // Redis down or slow: the session is balanced like any request (and re-pinned later).
  if (r.type == RedisReply::Type::kString && ParseHex16(r.str, &id)) sticky_.session_server_id = id;
  ChooseAndStart(sticky_.session_server_id);
}

std::string_view Exchange::StickySecret() const {
  const StickyConfig& st = view_->snap->upstreams[upstream_.index].cfg->sticky;
  return st.secret.empty() ? std::string_view(worker_->shared().sticky_secret)
                           : std::string_view(st.secret);
}

void Exchange::ChooseAndStart(uint64_t session_server) {
  const GatewayConfig& cfg = *view_->snap->config;
  Balancer& bal = *view_->balancers[upstream_.index];
  int64_t now = worker_->loop().now_ms();
  int idx = -1;
  if (session_server != 0) idx = bal.FindSticky(session_server, now, upstream_.tried);
  if (idx < 0 && sticky_.cookie_id != 0)
    idx = bal.FindSticky(sticky_.cookie_id, now, upstream_.tried);
  if (idx < 0) idx = bal.Select(now, upstream_.key_hash, upstream_.tried);
  if (bal.panicked()) worker_->stats().panic_selections.Add(1);
  if (idx < 0) {
    // Every server is down, drained or failed: answer now instead of queueing (nginx: "no live
    // upstreams").
    worker_->stats().no_upstream.Add(1);
    if (ServeStaleOnError()) return;
    SendError(503, "no live upstreams", request_.has_body);
    return;
  }
  phase_ = Phase::kProxy;
  if (request_.has_body) {
    down_->ArmTimer(cfg.http.client_body_timeout_ms);
  } else {
    down_->CancelTimer();
  }
  StartAttempt(idx);
}

void Exchange::StickyResponse(std::string* o) {
  const UpstreamRuntime& ur = view_->snap->upstreams[upstream_.index];
  const StickyConfig& st = ur.cfg->sticky;
  if (!st.enabled || upstream_.conn == nullptr) return;
  uint64_t id = view_->balancers[upstream_.index]->peer(upstream_.conn->server_index_).sticky_id;
  if (!st.cookie.empty() && id != sticky_.cookie_id) {
    // Pin (or re-pin, when the pinned server could not answer) to the server that did.
    o->append("Set-Cookie: ");
    o->append(st.cookie);
    o->push_back('=');
    AppendHex16(o, id);
    o->push_back('.');
    AppendStickyMac(o, StickySecret(), ur.cfg->name, id);
    StrAppend(o, "; Path=", st.path);
    if (st.max_age_ms > 0) StrAppend(o, "; Max-Age=", st.max_age_ms / 1000);
    if (st.http_only) o->append("; HttpOnly");
    if (st.secure) o->append("; Secure");
    StrAppend(o, "; SameSite=", st.same_site, "\r\n");
  }
  if (st.session_cookie.empty()) return;
  // A session the application just created, or one whose server changed, is (re)recorded.
  std::string_view created;
  for (const auto& h : response_.head.headers) {
    if (h.name.size() != 10 || !http::EqualsLower(h.name, "set-cookie")) continue;
    std::string_view v = h.value;
    if (v.size() > st.session_cookie.size() &&
        v.substr(0, st.session_cookie.size()) == st.session_cookie &&
        v[st.session_cookie.size()] == '=') {
      v.remove_prefix(st.session_cookie.size() + 1);
      created = v.substr(0, v.find(';'));
    }
  }
  std::string_view session = !created.empty() ? created : std::string_view(sticky_.session_value);
  if (session.empty() || session.size() > 512) return;
  if (created.empty() && sticky_.session_server_id == id) return;
  RedisLink* redis = worker_->redis();
  if (redis == nullptr || !redis->connected()) return;
  std::string key =
      StrCat(view_->snap->config->redis.key_prefix, "sticky:", ur.cfg->name, ":", session);
  std::string value;
  AppendHex16(&value, id);
  redis->Command({"SET", key, value, "PX", StrCat(st.ttl_ms)}, [](const RedisReply&) {});
}

}  // namespace bulwark::gateway
