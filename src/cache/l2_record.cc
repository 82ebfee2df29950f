#include "cache/l2_record.h"

#include <algorithm>

#include "cache/le_bytes.h"

namespace bulwark::cache {
namespace {

constexpr size_t kVersion = 2;
constexpr size_t kFlagNegative = 1;

}  // namespace

std::string EncodeL2Record(const L2Record& r) {
  std::string out;
  out.reserve(20 + r.payload.size());
  out.push_back(static_cast<char>(kVersion));
  out.push_back(static_cast<char>(r.negative ? kFlagNegative : 0));
  PutI64(&out, r.fresh_until_ms);
  PutI64(&out, r.stale_until_ms);
  size_t n = std::min(r.tags.size(), kL2MaxTags);
  PutU16(&out, n);
  for (size_t i = 0; i < n; ++i) PutStr16(&out, r.tags[i].substr(0, kL2MaxTagLength));
  out.append(r.payload);
  return out;
}

bool DecodeL2Record(std::string_view in, L2Record* out) {
  LeReader r(in);
  size_t version = 0, flags = 0, n = 0;
  if (!r.U8(&version) || version != kVersion || !r.U8(&flags) || (flags & ~kFlagNegative) != 0)
    return false;
  out->negative = (flags & kFlagNegative) != 0;
  if (!r.I64(&out->fresh_until_ms) || !r.I64(&out->stale_until_ms) || !r.U16(&n) || n > kL2MaxTags)
    return false;
  out->tags.clear();
  for (size_t i = 0; i < n; ++i) {
    std::string_view t;
    if (!r.Str16(&t) || t.size() > kL2MaxTagLength) return false;
    out->tags.push_back(t);
  }
  out->payload = r.rest();
  return !out->negative || out->payload.empty();
}

}  // namespace bulwark::cache
