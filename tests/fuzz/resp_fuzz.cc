// Replies from a Redis server (or anything pretending to be one) must never crash the parser,
// nor what reads cluster answers out of the parsed replies (CLUSTER SLOTS, MOVED/ASK).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/redis_cluster.h"
#include "core/resp.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  bulwark::RespLimits limits;
  limits.max_bulk = 4096;
  limits.max_elements = 256;
  size_t off = 0;
  while (off < in.size()) {
    bulwark::RedisReply r;
    size_t used = 0;
    std::string err;
    auto st = bulwark::ParseResp(in.substr(off), limits, &r, &used, &err);
    if (st != bulwark::RespStatus::kDone) break;
    if (used == 0 || used > in.size() - off) __builtin_trap();
    off += used;
    for (const auto& range : bulwark::RedisClusterClient::ParseSlots(r, "127.0.0.1")) {
      if (range.from > range.to || range.to >= bulwark::RedisClusterClient::kSlots)
        __builtin_trap();
    }
    bool ask = false;
    uint16_t slot = 0;
    std::string_view address;
    if (r.is_error() && bulwark::RedisClusterClient::ParseRedirect(r.str, &ask, &slot, &address) &&
        (slot >= bulwark::RedisClusterClient::kSlots || address.empty())) {
      __builtin_trap();
    }
  }
  return 0;
}
