// Fuzzes the PromQL parser: any input either fails with a status or gives a tree whose printed
// form parses again to the same printed form (the printer and the parser agree).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "observe/promql/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto e = bulwark::observe::promql::Parse(text);
  if (!e.ok()) return 0;
  (*e)->type();
  std::string once = (*e)->String();
  auto again = bulwark::observe::promql::Parse(once);
  if (!again.ok()) std::abort();
  if ((*again)->String() != once) std::abort();
  return 0;
}
