// libFuzzer target: the PostgreSQL router's classifier (libpg_query's tree walked for reads,
// writes, transactions, tables and shard keys) and the comment scanner it reads hints with.
// Besides not crashing: a statement the parser refuses, or one over max_bytes, is a write; a
// table's recorded location lies inside the text (the monthly-table rename writes there).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pg/classify.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view sql(reinterpret_cast<const char*>(data), size);
  for (std::string_view c : bulwark::pg::SqlComments(sql)) {
    if (c.data() < sql.data() || c.data() + c.size() > sql.data() + sql.size()) __builtin_trap();
  }
  bulwark::pg::ClassifyOptions o;
  o.max_bytes = 2048;
  o.value_columns = {"created_at"};
  static const bulwark::pg::FunctionNames kKnown = {"count", "lower", "now"};
  bulwark::pg::Classification c = bulwark::pg::Classify(sql, o, &kKnown);
  if ((!c.parsed || size > o.max_bytes) && !c.write) __builtin_trap();
  for (const bulwark::pg::TableRef& t : c.table_refs) {
    if (t.location >= 0 && static_cast<size_t>(t.location) > size) __builtin_trap();
  }
  return 0;
}
