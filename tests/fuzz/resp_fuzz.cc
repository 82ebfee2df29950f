// Replies from a Redis server (or anything pretending to be one) must never crash the parser.
#include <cstddef>
#include <cstdint>
#include <string_view>

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
  }
  return 0;
}
