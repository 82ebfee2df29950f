// Fuzzes the PostgreSQL protocol decoder: a stream of bytes as a client would send them (a
// startup packet, then typed messages), every message handed to the parser for its type.
// Query texts also go through the router: the classifier, the shard router (a two-shard map
// with a monthly table) and the scatter-gather planner. Any input must end in a status or a
// parse, never a crash, a hang or a read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pg/classify.h"
#include "pg/protocol.h"
#include "pg/scatter.h"
#include "pg/shard_router.h"

namespace {

const bulwark::pg::ShardingConfig& Shards() {
  static const bulwark::pg::ShardingConfig* cfg = [] {
    auto* c = new bulwark::pg::ShardingConfig;
    c->databases = {"s0", "s1"};
    bulwark::pg::ShardedTable t;
    t.name = "orders";
    t.database = *bulwark::pg::ShardExpression::Parse("s${tenant_id % 2}");
    bulwark::pg::MonthlyTables m;
    m.column = "created_at";
    m.table_pattern = "orders_{yyyy_MM}";
    m.start_year = 2025;
    m.start_month = 1;
    m.end_year = 2030;
    m.end_month = 12;
    t.monthly = m;
    c->tables.emplace("orders", t);
    return c;
  }();
  return *cfg;
}

void Route(std::string_view sql) {
  using namespace bulwark::pg;
  static const ClassifyOptions options = ShardClassifyOptions(Shards(), ClassifyOptions{});
  Classification c = Classify(sql, options);
  (void)RouteShard(Shards(), c, sql, {std::string("7"), std::nullopt}, std::string("3"), true);
  auto plan = PlanScatter(sql);
  if (plan.ok()) {
    ScatterMerger m(*plan);
    (void)m.Finish();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bulwark::pg;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto sp = NextStartupPacket(in);
  if (!sp.ok() || !sp->has_value()) return 0;
  (void)ParseStartup((*sp)->body);
  in.remove_prefix((*sp)->size);
  while (!in.empty()) {
    auto m = NextMessage(in, 1 << 20);
    if (!m.ok() || !m->has_value()) break;
    std::string_view b = (*m)->body;
    switch ((*m)->type) {
      case 'Q':
        if (auto q = ParseQuery(b); q.ok()) Route(*q);
        break;
      case 'P':
        if (auto p = ParseParse(b); p.ok()) Route(p->query);
        break;
      case 'B':
        (void)ParseBind(b);
        break;
      case 'D':
        (void)ParseDescribeOrClose(b);
        (void)ParseDataRow(b);
        break;
      case 'C':
        (void)ParseDescribeOrClose(b);
        (void)ParseCommandComplete(b);
        break;
      case 'E':
        (void)ParseExecute(b);
        (void)ParseErrorFields(b);
        break;
      case 'R':
        (void)ParseAuthentication(b);
        break;
      case 'S':
        (void)ParseParameterStatus(b);
        break;
      case 'K':
        (void)ParseBackendKeyData(b);
        break;
      case 'Z':
        (void)ParseReadyForQuery(b);
        break;
      case 'T':
        (void)ParseRowDescription(b);
        break;
      default:
        break;
    }
    in.remove_prefix((*m)->size);
  }
  return 0;
}
