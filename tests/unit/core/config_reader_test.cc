#include "core/config_reader.h"

#include <map>

#include "gtest/gtest.h"
#include "tests/unit/fake_env.h"

namespace bulwark {
namespace {

using testing::FakeEnv;

TEST(Interpolate, ShellSemantics) {
  auto env = FakeEnv({{"A", "1"}, {"EMPTY", ""}});
  std::string out;
  ASSERT_TRUE(Interpolate("x${A}y", env, &out).ok());
  EXPECT_EQ(out, "x1y");
  ASSERT_TRUE(Interpolate("${B:-dflt}", env, &out).ok());
  EXPECT_EQ(out, "dflt");
  ASSERT_TRUE(Interpolate("${EMPTY:-dflt}", env, &out).ok());
  EXPECT_EQ(out, "dflt");
  ASSERT_TRUE(Interpolate("${EMPTY-dflt}", env, &out).ok());
  EXPECT_EQ(out, "");
  ASSERT_TRUE(Interpolate("$$HOME $5", env, &out).ok());
  EXPECT_EQ(out, "$HOME $5");
  EXPECT_FALSE(Interpolate("${B}", env, &out).ok());
  EXPECT_FALSE(Interpolate("${A", env, &out).ok());
  EXPECT_FALSE(Interpolate("${A:?x}", env, &out).ok());
  EXPECT_FALSE(Interpolate("${a b}", env, &out).ok());
}

TEST(MapReader, UnknownKeyWithSuggestionAndPosition) {
  ConfigContext ctx("test.yml", FakeEnv({}));
  auto root = LoadYamlText(ctx, "listen: 1\nworkres: 2\n");
  ASSERT_TRUE(root.has_value());
  MapReader r(ctx, *root, "config");
  std::string listen;
  int workers = 0;
  r.String("listen", &listen);
  r.Int("workers", &workers, 1, 10);
  r.Finish();
  ASSERT_EQ(ctx.errors().size(), 1u);
  EXPECT_EQ(ctx.errors()[0],
            "test.yml:2:1: config: unknown key \"workres\" (did you mean \"workers\"?)");
}

TEST(MapReader, TypedErrorsNameTheLine) {
  ConfigContext ctx("c.yml", FakeEnv({}));
  auto root = LoadYamlText(ctx, "a: 1\nb: maybe\nc: 10x\nd: 99\n");
  MapReader r(ctx, *root, "s");
  bool b = false;
  int64_t ms = 0;
  int d = 0;
  r.Bool("b", &b);
  r.Duration("c", &ms);
  r.Int("d", &d, 0, 10);
  r.Known("a");
  r.Finish();
  ASSERT_EQ(ctx.errors().size(), 3u);
  EXPECT_EQ(ctx.errors()[0], "c.yml:2:4: s.b: expected true or false, got \"maybe\"");
  EXPECT_NE(ctx.errors()[1].find("c.yml:3:4: s.c: invalid duration"), std::string::npos);
  EXPECT_EQ(ctx.errors()[2], "c.yml:4:4: s.d: 99 is out of range [0, 10]");
}

TEST(MapReader, DuplicateKeyIsAnError) {
  ConfigContext ctx("c.yml", FakeEnv({}));
  auto root = LoadYamlText(ctx, "a: 1\na: 2\n");
  MapReader r(ctx, *root, "s");
  EXPECT_FALSE(ctx.ok());
  EXPECT_NE(ctx.ErrorText().find("c.yml:2:1: s: duplicate key \"a\""), std::string::npos);
}

TEST(LoadYaml, SyntaxErrorHasPosition) {
  ConfigContext ctx("bad.yml", FakeEnv({}));
  auto root = LoadYamlText(ctx, "a: [1, 2\nb: 3\n");
  EXPECT_FALSE(root.has_value());
  ASSERT_EQ(ctx.errors().size(), 1u);
  EXPECT_EQ(ctx.errors()[0].rfind("bad.yml:", 0), 0u);
}

TEST(Suggest, EditDistance) {
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3);
  EXPECT_EQ(Suggest("upstrem", {"upstream", "listen"}), "upstream");
  EXPECT_EQ(Suggest("zzz", {"upstream", "listen"}), "");
}

}  // namespace
}  // namespace bulwark
