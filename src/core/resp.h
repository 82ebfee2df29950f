// RESP2, the Redis protocol: an incremental reply parser with limits, and command encoding.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark {

struct RedisReply {
  enum class Type { kNil, kStatus, kError, kInteger, kString, kArray };
  Type type = Type::kNil;
  std::string str;  // status, error or bulk string
  int64_t integer = 0;
  std::vector<RedisReply> elements;

  bool is_error() const { return type == Type::kError; }
  static RedisReply Error(std::string message) {
    RedisReply r;
    r.type = Type::kError;
    r.str = std::move(message);
    return r;
  }
};

struct RespLimits {
  int64_t max_bulk = 16 * 1024 * 1024;  // bytes in one bulk string
  int64_t max_elements = 1 << 20;       // elements in one array
  int max_depth = 8;                    // nested arrays
  size_t max_line = 64 * 1024;          // a status, error or length line
};

// Parses one reply from the front of `data`. Returns kNeedMore (nothing consumed), kDone (sets
// *consumed and *out) or kError (the stream is unusable; *error says why).
enum class RespStatus { kNeedMore, kDone, kError };
RespStatus ParseResp(std::string_view data, const RespLimits& limits, RedisReply* out,
                     size_t* consumed, std::string* error);

// Appends a command as a RESP array of bulk strings.
void AppendRespCommand(std::string* out, const std::vector<std::string_view>& args);

}  // namespace bulwark
