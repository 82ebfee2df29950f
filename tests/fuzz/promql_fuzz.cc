// Fuzzes the PromQL parser and evaluator: any input either fails with a status or gives a
// tree whose printed form parses again to the same printed form (the printer and the parser
// agree), and that evaluates over a small store without crashing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "observe/promql/engine.h"
#include "observe/promql/parser.h"
#include "observe/tsdb/store.h"

namespace {

const bulwark::observe::tsdb::Store& TestStore() {
  using bulwark::observe::Labels;
  static bulwark::observe::tsdb::Store* store = [] {
    auto* s = new bulwark::observe::tsdb::Store();
    const Labels series[] = {
        {{"__name__", "x"}, {"job", "a"}},
        {{"__name__", "x"}, {"job", "b"}},
        {{"__name__", "h_bucket"}, {"le", "0.5"}},
        {{"__name__", "h_bucket"}, {"le", "+Inf"}},
        {{"__name__", "y"}, {"instance", "a"}, {"job", "a"}},
    };
    for (const Labels& l : series) {
      for (int i = 0; i < 20; ++i) s->Append(l, i * 15000, i * (l.size() + 1.5));
    }
    s->Append(series[1], 20 * 15000, bulwark::observe::tsdb::StaleNaN());
    return s;
  }();
  return *store;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto e = bulwark::observe::promql::Parse(text);
  if (!e.ok()) return 0;
  (*e)->type();
  std::string once = (*e)->String();
  auto again = bulwark::observe::promql::Parse(once);
  if (!again.ok()) std::abort();
  if ((*again)->String() != once) std::abort();
  bulwark::observe::promql::EvalOptions options;
  options.max_samples = 100000;
  options.max_subquery_steps = 2000;
  bulwark::observe::promql::QueryResult result;
  (void)bulwark::observe::promql::Evaluate(**e, 200000, TestStore(), options, &result);
  return 0;
}
