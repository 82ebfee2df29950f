// limit_req decided in Redis, so several bulwark instances share one budget per key.
//
// One Lua script decides a whole request (every zone of its route) atomically with the same
// integer arithmetic as LimitDecision, on Redis's clock (TIME), so instances with skewed clocks
// still agree. There is no GET-then-SET window: two instances together admit what one would.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/resp.h"
#include "gateway/rate_limit.h"

namespace bulwark::gateway {

class SharedLimit {
 public:
  static const std::string& Script();
  static const std::string& Sha1();
  // Builds the KEYS (prefix + zone + key) and ARGV (rate, burst, delay per rule) of one
  // decision into `storage` and returns views into it.
  static void BuildArgs(const std::string& prefix, const LimitRequest* rules, int n,
                        std::string* storage, std::vector<std::string_view>* keys,
                        std::vector<std::string_view>* args);
  // Reads the script's reply. False when it is not one (treated like Redis being down).
  // Per-rule results are counted in the zones.
  static bool ParseReply(const RedisReply& r, const LimitRequest* rules, int n, bool dry_run,
                         LimitOutcome* out);
};

}  // namespace bulwark::gateway
