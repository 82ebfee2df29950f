// Host names in server addresses: how a name's addresses become servers (slots) and how a
// changed answer keeps each surviving address on its server.
#include <optional>
#include <vector>

#include "gateway/snapshot.h"
#include "gtest/gtest.h"

namespace bulwark::gateway {
namespace {

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

std::vector<std::string> Texts(const std::vector<std::optional<IpAddress>>& slots) {
  std::vector<std::string> out;
  for (const auto& s : slots) out.push_back(s ? s->ToString() : "-");
  return out;
}

TEST(Names, SlotsKeepTheirAddressesAndReuseFreedPlaces) {
  auto slots = AssignSlots({}, {Ip("10.0.0.1"), Ip("10.0.0.2"), Ip("10.0.0.3")});
  EXPECT_EQ(Texts(slots), (std::vector<std::string>{"10.0.0.1", "10.0.0.2", "10.0.0.3"}));
  // The second address goes: its place is left free, the others stay where they were.
  slots = AssignSlots(slots, {Ip("10.0.0.1"), Ip("10.0.0.3")});
  EXPECT_EQ(Texts(slots), (std::vector<std::string>{"10.0.0.1", "-", "10.0.0.3"}));
  // A new address takes the free place; another one is added at the end.
  slots = AssignSlots(slots, {Ip("10.0.0.9"), Ip("10.0.0.3"), Ip("10.0.0.1"), Ip("10.0.0.8")});
  EXPECT_EQ(Texts(slots),
            (std::vector<std::string>{"10.0.0.1", "10.0.0.9", "10.0.0.3", "10.0.0.8"}));
  // Free places at the end are dropped.
  slots = AssignSlots(slots, {Ip("10.0.0.1")});
  EXPECT_EQ(Texts(slots), (std::vector<std::string>{"10.0.0.1"}));
  // One address replaced by another: the same slot, so the same server.
  slots = AssignSlots(slots, {Ip("::1")});
  EXPECT_EQ(Texts(slots), (std::vector<std::string>{"::1"}));
}

TEST(Names, AServerIsOneServerPerAddressOfItsName) {
  ServerConfig literal;
  literal.address_text = "10.0.0.1:80";
  literal.address = *ParseSocketAddress("10.0.0.1:80");
  literal.port = 80;
  ServerConfig named;
  named.address_text = "App.test:8080";
  named.host = "app.test";
  named.port = 8080;
  named.resolved = false;
  named.weight = 5;

  NameTable names;
  names["app.test"] = {Ip("10.0.0.7"), std::nullopt, Ip("fd00::7")};
  auto l = ExpandByName(literal, &names);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].address_text, "10.0.0.1:80");

  auto e = ExpandByName(named, &names);
  ASSERT_EQ(e.size(), 2u);  // the free slot is no server
  EXPECT_EQ(e[0].address_text, "App.test:8080");
  EXPECT_EQ(e[0].address.ToString(), "10.0.0.7:8080");
  EXPECT_TRUE(e[0].resolved);
  EXPECT_EQ(e[1].address_text, "App.test:8080#3");  // slot 3 keeps its label
  EXPECT_EQ(e[1].address.ToString(), "[fd00::7]:8080");
  EXPECT_EQ(e[1].weight, 5);

  // Not resolved (yet): one server, down.
  NameTable empty;
  for (const NameTable* table :
       {static_cast<const NameTable*>(nullptr), static_cast<const NameTable*>(&empty)}) {
    auto u = ExpandByName(named, table);
    ASSERT_EQ(u.size(), 1u);
    EXPECT_FALSE(u[0].resolved);
    EXPECT_EQ(u[0].address_text, "App.test:8080");
  }
}

TEST(Names, HostPortSyntax) {
  for (const char* ok : {"a:1", "app-1.example.com:443", "x_y:80", "a.b.:80", "1.2.3.4:5",
                         "[::1]:80", "localhost:80"}) {
    EXPECT_TRUE(ParseHostPort(ok).ok()) << ok;
  }
  for (const char* bad : {"a", "a:", ":80", "a:0", "a:65536", "a..b:80", "-a:80", "a-:80", "a b:80",
                          "[::1]", "a:b:80", "é.test:80", ""}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
  EXPECT_TRUE(IsHostName(std::string(63, 'a') + ".b"));
  EXPECT_FALSE(IsHostName(std::string(64, 'a') + ".b"));
  std::string long_name;
  while (long_name.size() < 250) long_name += "abcdefghi.";
  EXPECT_FALSE(IsHostName(long_name + "abcd"));
}

}  // namespace
}  // namespace bulwark::gateway
