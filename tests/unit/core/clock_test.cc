#include "core/clock.h"

#include <gtest/gtest.h>

#include "core/event_loop.h"

namespace bulwark {
namespace {

class FakeClock : public Clock {
 public:
  int64_t MonotonicNs() override { return mono_ns; }
  int64_t WallNs() override { return wall_ns; }
  int64_t mono_ns = 5'000'000'000;
  int64_t wall_ns = 1'700'000'000'123'456'789;
};

TEST(Clock, ReadsTheSystemClocksByDefault) {
  int64_t a = MonotonicNs();
  int64_t b = MonotonicNs();
  EXPECT_LE(a, b);
  EXPECT_GT(WallMs(), int64_t{1'600'000'000'000});  // after 2020
  // std::chrono::steady_clock shares the monotonic epoch (condition variables wait on it).
  int64_t steady = std::chrono::steady_clock::now().time_since_epoch().count();
  EXPECT_LE(b, steady);
  EXPECT_LT(steady - b, int64_t{1'000'000'000});
}

// Every reader of time in bulwark goes through these functions, so one Clock drives them all.
TEST(Clock, AnInstalledClockDrivesEveryReader) {
  FakeClock fake;
  SetClockForTesting(&fake);
  EXPECT_EQ(MonotonicNs(), 5'000'000'000);
  EXPECT_EQ(MonotonicUs(), 5'000'000);
  EXPECT_EQ(MonotonicMs(), 5'000);
  EXPECT_EQ(WallMicros(), 1'700'000'000'123'456);
  EXPECT_EQ(WallMs(), 1'700'000'000'123);
  fake.mono_ns += 2'500'000'000;
  EXPECT_EQ(MonotonicMs(), 7'500);
  EventLoop loop;
  EXPECT_EQ(loop.now_ms(), 7'500);  // a loop's cached time comes from the same clock
  SetClockForTesting(nullptr);
  EXPECT_NE(MonotonicNs(), 7'500'000'000);
}

}  // namespace
}  // namespace bulwark
