// libFuzzer target: the YAML configuration loaders (bulwark.yml and the cache library's
// cache.yml) must report errors, never crash. The same input is tried as both.
#include <cstddef>
#include <cstdint>
#include <string>

#include "app/config.h"
#include "cache/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  auto env = [](std::string_view) -> std::optional<std::string> { return std::string("1"); };
  bulwark::ConfigLoad l = bulwark::LoadConfigText(text, "fuzz.yml", env);
  if (l.config == nullptr && l.errors.empty()) __builtin_trap();
  bulwark::cache::CacheConfigLoad c = bulwark::cache::LoadCacheConfigText(text, "fuzz.yml", env);
  (void)c;
  return 0;
}
