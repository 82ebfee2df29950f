#include "core/timer_wheel.h"

#include <vector>

#include "gtest/gtest.h"

namespace bulwark {
namespace {

TEST(TimerWheel, FiresInOrderAtExpiry) {
  TimerWheel w(1000);
  std::vector<int> fired;
  Timer a([&] { fired.push_back(1); });
  Timer b([&] { fired.push_back(2); });
  Timer c([&] { fired.push_back(3); });
  w.Arm(&a, 1000, 10);
  w.Arm(&b, 1000, 5);
  w.Arm(&c, 1000, 10000);  // more than one revolution away
  EXPECT_EQ(w.NextTimeoutMs(1000), 5);
  w.Advance(1004);
  EXPECT_TRUE(fired.empty());
  w.Advance(1005);
  EXPECT_EQ(fired, std::vector<int>({2}));
  w.Advance(1010);
  EXPECT_EQ(fired, std::vector<int>({2, 1}));
  w.Advance(1000 + 4096 + 100);
  EXPECT_EQ(fired, std::vector<int>({2, 1}));  // c's slot came round early: not yet due
  w.Advance(11000);
  EXPECT_EQ(fired, std::vector<int>({2, 1, 3}));
  EXPECT_EQ(w.size(), 0u);
  EXPECT_EQ(w.NextTimeoutMs(11000), -1);
}

TEST(TimerWheel, CancelAndRearm) {
  TimerWheel w(0);
  int n = 0;
  Timer t([&] { ++n; });
  w.Arm(&t, 0, 10);
  w.Cancel(&t);
  w.Advance(20);
  EXPECT_EQ(n, 0);
  w.Arm(&t, 20, 10);
  w.Arm(&t, 20, 50);  // re-arm moves it
  w.Advance(40);
  EXPECT_EQ(n, 0);
  w.Advance(70);
  EXPECT_EQ(n, 1);
}

TEST(TimerWheel, CallbackMayRearmItself) {
  TimerWheel w(0);
  int n = 0;
  Timer t;
  t.set_callback([&] {
    if (++n < 3) w.Arm(&t, 10 * n, 10);
  });
  w.Arm(&t, 0, 10);
  for (int now = 1; now <= 100; ++now) w.Advance(now);
  EXPECT_EQ(n, 3);
}

TEST(TimerWheel, DestroyedTimerUnlinks) {
  TimerWheel w(0);
  {
    Timer t([] {});
    w.Arm(&t, 0, 10);
    EXPECT_EQ(w.size(), 1u);
  }
  EXPECT_EQ(w.size(), 0u);
  w.Advance(100);
}

}  // namespace
}  // namespace bulwark
