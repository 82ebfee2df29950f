// Fuzzes the cron parser and the next-run search: any input either fails with a status or gives
// a schedule whose next run is after the given time (or -1).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/cron.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto s = bulwark::CronSchedule::Parse(text);
  if (!s.ok()) return 0;
  const int64_t after = 1795000000;  // 2026-11
  int64_t next = s->Next(after);
  if (next != -1 && next <= after) std::abort();
  return 0;
}
