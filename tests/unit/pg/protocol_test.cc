#include "pg/protocol.h"

#include <gtest/gtest.h>

namespace bulwark::pg {
namespace {

TEST(PgProtocol, FramesMessagesAndStartupPackets) {
  std::string wire;
  AppendStartup(&wire, {{"user", "app"}, {"database", "db_tenant_3"}});
  AppendQuery(&wire, "SELECT 1");
  auto sp = NextStartupPacket(wire);
  ASSERT_TRUE(sp.ok() && sp->has_value());
  auto startup = ParseStartup((*sp)->body);
  ASSERT_TRUE(startup.ok()) << startup.status();
  EXPECT_EQ(startup->code, kProtocolV3);
  EXPECT_EQ(startup->Param("database"), "db_tenant_3");
  std::string_view rest = std::string_view(wire).substr((*sp)->size);
  // Partial input asks for more, whole input gives the message.
  for (size_t cut = 0; cut < rest.size(); ++cut) {
    auto m = NextMessage(rest.substr(0, cut), kDefaultMaxMessage);
    ASSERT_TRUE(m.ok());
    EXPECT_FALSE(m->has_value()) << cut;
  }
  auto m = NextMessage(rest, kDefaultMaxMessage);
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_EQ((*m)->type, 'Q');
  EXPECT_EQ(*ParseQuery((*m)->body), "SELECT 1");
  // Lengths that lie are protocol violations.
  std::string bad = "Q";
  AppendInt32(&bad, 3);
  EXPECT_FALSE(NextMessage(bad, kDefaultMaxMessage).ok());
  bad = "Q";
  AppendInt32(&bad, 1000);
  EXPECT_FALSE(NextMessage(bad, 100).ok());
  std::string big;
  AppendInt32(&big, 20000);
  EXPECT_FALSE(NextStartupPacket(big).ok());
}

TEST(PgProtocol, SslAndCancelRequestsAndOldProtocols) {
  std::string ssl;
  AppendInt32(&ssl, 8);
  AppendInt32(&ssl, kSslRequest);
  auto p = ParseStartup((*NextStartupPacket(ssl))->body);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->code, kSslRequest);
  std::string cancel;
  AppendCancelRequest(&cancel, 1234, -5);
  p = ParseStartup((*NextStartupPacket(cancel))->body);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->cancel_pid, 1234);
  EXPECT_EQ(p->cancel_key, -5);
  std::string v2;
  AppendInt32(&v2, 8);
  AppendInt32(&v2, 2 << 16);
  EXPECT_EQ(ParseStartup((*NextStartupPacket(v2))->body).status().message(),
            "unsupported frontend protocol 2.0: server supports 3.0 to 3.0");
}

TEST(PgProtocol, ExtendedQueryMessages) {
  std::string body = std::string("s1\0SELECT $1::int\0", 18);
  AppendInt16(&body, 1);
  AppendInt32(&body, 23);
  auto parse = ParseParse(body);
  ASSERT_TRUE(parse.ok()) << parse.status();
  EXPECT_EQ(parse->statement, "s1");
  EXPECT_EQ(parse->query, "SELECT $1::int");
  EXPECT_EQ(parse->param_types, std::vector<uint32_t>{23});

  body = std::string("\0s1\0", 4);
  AppendInt16(&body, 1);
  AppendInt16(&body, 0);
  AppendInt16(&body, 2);
  AppendInt32(&body, 2);
  body += "42";
  AppendInt32(&body, -1);
  AppendInt16(&body, 0);
  auto bind = ParseBind(body);
  ASSERT_TRUE(bind.ok()) << bind.status();
  EXPECT_EQ(bind->statement, "s1");
  ASSERT_EQ(bind->params.size(), 2u);
  EXPECT_EQ(*bind->params[0], "42");
  EXPECT_FALSE(bind->params[1].has_value());
  // A parameter running past the message's end.
  std::string cut = body.substr(0, body.size() - 8);
  EXPECT_FALSE(ParseBind(cut).ok());

  auto d = ParseDescribeOrClose(std::string("Ps1\0", 4));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->kind, 'P');
  EXPECT_FALSE(ParseDescribeOrClose(std::string("Xs1\0", 4)).ok());
  body = std::string("\0", 1);
  AppendInt32(&body, 10);
  EXPECT_EQ(ParseExecute(body)->max_rows, 10);
}

TEST(PgProtocol, BackendMessagesRoundTrip) {
  std::string wire;
  AppendAuthentication(&wire, 5, "salt");
  AppendParameterStatus(&wire, "server_version", "15.10");
  AppendBackendKeyData(&wire, 42, 7);
  AppendReadyForQuery(&wire, 'I');
  AppendError(&wire, "FATAL", "08P01", "no shard key in the query");
  std::string_view in = wire;
  std::vector<Message> ms;
  while (!in.empty()) {
    auto m = NextMessage(in, kDefaultMaxMessage);
    ASSERT_TRUE(m.ok() && m->has_value());
    ms.push_back(**m);
    in.remove_prefix((*m)->size);
  }
  ASSERT_EQ(ms.size(), 5u);
  auto auth = ParseAuthentication(ms[0].body);
  ASSERT_TRUE(auth.ok());
  EXPECT_EQ(auth->code, 5);
  EXPECT_EQ(auth->data, "salt");
  EXPECT_EQ(ParseParameterStatus(ms[1].body)->value, "15.10");
  EXPECT_EQ(ParseBackendKeyData(ms[2].body)->pid, 42);
  EXPECT_EQ(*ParseReadyForQuery(ms[3].body), 'I');
  auto err = ParseErrorFields(ms[4].body);
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(err->Get('C'), "08P01");
  EXPECT_EQ(err->Get('M'), "no shard key in the query");

  std::string sasl;
  AppendInt32(&sasl, 10);
  sasl += std::string("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0", 34);
  auto a = ParseAuthentication(sasl);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->mechanisms.size(), 2u);
  EXPECT_EQ(a->mechanisms[1], "SCRAM-SHA-256");

  std::string row;
  AppendInt16(&row, 2);
  AppendInt32(&row, 3);
  row += "abc";
  AppendInt32(&row, -1);
  auto cols = ParseDataRow(row);
  ASSERT_TRUE(cols.ok());
  EXPECT_EQ(*(*cols)[0], "abc");
  EXPECT_FALSE((*cols)[1].has_value());
}

}  // namespace
}  // namespace bulwark::pg
