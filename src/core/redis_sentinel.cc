#include "core/redis_sentinel.h"

#include "core/log.h"
#include "core/strings.h"

namespace bulwark {

SentinelResolver::SentinelResolver(EventLoop* loop, std::vector<SocketAddress> sentinels,
                                   std::string master_name, int64_t interval_ms)
    : loop_(loop),
      sentinels_(std::move(sentinels)),
      master_name_(std::move(master_name)),
      interval_ms_(interval_ms) {
  RedisOptions o;
  o.command_timeout_ms = 500;
  o.reconnect_min_ms = 100;
  o.reconnect_max_ms = 1000;
  // Each connection attempt goes to the next sentinel, so one dead sentinel is skipped.
  o.resolve = [this]() -> std::optional<SocketAddress> {
    if (sentinels_.empty()) return std::nullopt;
    return sentinels_[next_sentinel_++ % sentinels_.size()];
  };
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
  MutexLock lock(&mu_);
  return master_;
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
        auto a = ResolveSocketAddress(r.elements[0].str, port);
        if (!a.ok()) return;
        MutexLock lock(&mu_);
        if (!master_.has_value() || master_->ToString() != a->ToString()) {
          LogInfo("redis sentinel: master \"", master_name_, "\" is at ", a->ToString());
          master_ = *a;
          changes_.fetch_add(1, std::memory_order_relaxed);
        }
      });
}

}  // namespace bulwark
