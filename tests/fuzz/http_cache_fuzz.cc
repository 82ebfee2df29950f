// Fuzzes what the caches read from upstreams and from Redis: Cache-Control values, HTTP dates,
// stored objects and L2 records. Decoding an encoded object or record must give it back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cache/http_policy.h"
#include "cache/l2_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  bulwark::cache::CacheControl cc;
  bulwark::cache::ParseCacheControl(in, &cc);
  (void)bulwark::cache::ParseHttpDate(in);
  bulwark::cache::HttpObjectView v;
  if (bulwark::cache::DecodeHttpObject(in, &v)) {
    bulwark::cache::HttpObject o;
    o.status = v.status;
    o.head = std::string(v.head);
    for (auto& [n, val] : v.vary) o.vary.emplace_back(std::string(n), std::string(val));
    for (auto t : v.tags) o.tags.emplace_back(t);
    o.stored_unix_s = v.stored_unix_s;
    o.initial_age_s = v.initial_age_s;
    o.stale_while_revalidate_ms = v.stale_while_revalidate_ms;
    o.stale_if_error_ms = v.stale_if_error_ms;
    o.body = std::string(v.body);
    std::string again = bulwark::cache::EncodeHttpObject(o);
    bulwark::cache::HttpObjectView w;
    if (!bulwark::cache::DecodeHttpObject(again, &w) || w.body != v.body || w.head != v.head)
      std::abort();
  }
  bulwark::cache::L2Record r;
  if (bulwark::cache::DecodeL2Record(in, &r)) {
    std::string again = bulwark::cache::EncodeL2Record(r);
    if (again != in) std::abort();  // every field was within its limits, so nothing was cut
  }
  return 0;
}
