// Fuzzes the PostgreSQL protocol decoder: a stream of bytes as a client would send them (a
// startup packet, then typed messages), every message handed to the parser for its type.
// Query texts also go through the router's classifier. Any input must end in a status or a
// parse, never a crash, a hang or a read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pg/classify.h"
#include "pg/protocol.h"

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
        (void)ParseQuery(b);
        break;
      case 'P':
        (void)ParseParse(b);
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
