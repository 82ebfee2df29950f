#include "core/redis_sentinel.h"

#include "core/log.h"
#include "core/strings.h"

namespace bulwark {

SentinelResolver::SentinelResolver(EventLoop* loop, std::vector<RedisEndpoint> sentinels,
                                   std::string master_name, RedisLookup lookup,
                                   RedisOptions sentinel, int64_t interval_ms)
    : loop_(loop),
      master_name_(std::move(master_name)),
      lookup_(lookup ? std::move(lookup) : SystemRedisLookup()),
      interval_ms_(interval_ms) {
  RedisOptions o = std::move(sentinel);
  o.db = 0;
  o.command_timeout_ms = 500;
  o.reconnect_min_ms = 100;
  o.reconnect_max_ms = 1000;
  // Each connection attempt goes to the next sentinel, so one dead (or unresolvable) sentinel is
  // skipped.
  o.resolve = EndpointsInTurn(std::move(sentinels), lookup_);
  client_ = std::make_unique<RedisClient>(loop_, o, "redis sentinel");
  client_->SetOnReady([this] { Query(); });
  timer_.set_callback([this] {
    Query();
    loop_->ArmTimer(&timer_, interval_ms_);
  });
}

SentinelResolver::~SentinelResolver() {
  loop_->CancelTimer(&timer_);
  client_.reset();
}

void SentinelResolver::Start() {
  client_->Start();
  loop_->ArmTimer(&timer_, interval_ms_);
}

std::optional<SocketAddress> SentinelResolver::master() const {
  MutexLock lock(&shared_->mu);
  return shared_->master;
}

std::function<std::optional<SocketAddress>()> SentinelResolver::MasterSource() const {
  return [shared = shared_]() -> std::optional<SocketAddress> {
    MutexLock lock(&shared->mu);
    return shared->master;
  };
}

void SentinelResolver::Query() {
  if (!client_->connected()) return;
  client_->Command(
      {"SENTINEL", "get-master-addr-by-name", master_name_}, [this](const RedisReply& r) {
        if (r.type != RedisReply::Type::kArray || r.elements.size() != 2) {
          if (!r.is_error()) {
            LogWarn("redis sentinel: no master named \"", master_name_, "\"");
          }
          return;
        }
        int port = 0;
        if (!ParseInt(r.elements[1].str, &port)) return;
        // An IP, or a name with Sentinel's `announce-hostnames`.
        std::optional<SocketAddress> a = lookup_(r.elements[0].str, port);
        if (!a) return;
        MutexLock lock(&shared_->mu);
        if (!shared_->master.has_value() || shared_->master->ToString() != a->ToString()) {
          LogInfo("redis sentinel: master \"", master_name_, "\" is at ", a->ToString());
          shared_->master = *a;
          changes_.fetch_add(1, std::memory_order_relaxed);
        }
      });
}

}  // namespace bulwark
