#include "observe/go_strings.h"

#include <gtest/gtest.h>

#include "observe/promql/parser.h"
#include "observe/template/template.h"

namespace bulwark::observe {
namespace {

struct Case {
  std::string literal;
  bool ok;
  std::string value;  // when ok
  std::string error;  // ReadGoString's message when not
};

// Go's scanner and strconv.Unquote on the same literals (checked against `go run` of
// strconv.Unquote for the values and go/scanner for the messages).
const Case kCases[] = {
    {R"("plain")", true, "plain", ""},
    {R"("a\nb\tc\\d\"e")", true, "a\nb\tc\\d\"e", ""},
    {R"("\a\b\f\r\v")", true, "\a\b\f\r\v", ""},
    {R"("\x41\101\u00e9\U0001F600")", true, "AA\xc3\xa9\xf0\x9f\x98\x80", ""},
    {R"("\xff")", true, "\xff", ""},
    {"`raw \\n stays`", true, "raw \\n stays", ""},
    {R"("\q")", false, "", "unknown escape sequence U+0071 'q'"},
    {R"("\'")", false, "", "unknown escape sequence U+0027 '''"},
    {R"("\400")", false, "", "octal escape value > 255"},
    {R"("\18")", false, "", "illegal character U+0038 '8' in escape sequence"},
    {R"("\x4g")", false, "", "illegal character U+0067 'g' in escape sequence"},
    {R"("\uD800")", false, "", "escape sequence is an invalid Unicode code point"},
    {R"("\U00110000")", false, "", "escape sequence is an invalid Unicode code point"},
    {"\"a\nb\"", false, "", "unterminated quoted string"},
    {R"("open)", false, "", "unterminated quoted string"},
};

TEST(GoStrings, ReadsLiteralsByGosRules) {
  for (const Case& c : kCases) {
    size_t pos = 0;
    std::string v, error;
    bool ok = ReadGoString(c.literal, &pos, &v, &error);
    EXPECT_EQ(ok, c.ok) << c.literal << ": " << error;
    if (c.ok) {
      EXPECT_EQ(v, c.value) << c.literal;
      EXPECT_EQ(pos, c.literal.size()) << c.literal;
    } else {
      EXPECT_EQ(error, c.error) << c.literal;
    }
    std::string u;
    EXPECT_EQ(GoUnquote(c.literal, &u, &error), c.ok) << c.literal;
  }
  std::string v, error;
  EXPECT_FALSE(GoUnquote(R"("a" + "b")", &v, &error));
  EXPECT_EQ(error, "invalid syntax");
  EXPECT_TRUE(GoUnquote(R"('it''s')", &v, &error) == false);
}

// PromQL string literals and template string constants read the same literals the same way.
TEST(GoStrings, PromqlAndTemplatesAgreeOnEveryCase) {
  for (const Case& c : kCases) {
    auto e = promql::Parse(c.literal);
    EXPECT_EQ(e.ok(), c.ok) << "PromQL " << c.literal << ": " << e.status();
    if (e.ok() && c.ok) {
      ASSERT_EQ((*e)->kind, promql::Expr::Kind::kString) << c.literal;
      EXPECT_EQ((*e)->str, c.value) << "PromQL " << c.literal;
    } else if (!e.ok() && !c.ok) {
      EXPECT_NE(std::string(e.status().message()).find(c.error), std::string::npos)
          << "PromQL " << c.literal << ": " << e.status();
    }
    auto t = tmpl::Template::Parse("t", "{{ " + c.literal + " }}");
    EXPECT_EQ(t.ok(), c.ok) << "template " << c.literal << ": " << t.status();
    if (t.ok() && c.ok) {
      auto out = (*t)->Expand(tmpl::TemplateData{});
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(*out, c.value) << "template " << c.literal;
    }
  }
  // Single quotes are strings in PromQL (with \' as the quote) but not in templates.
  auto e = promql::Parse(R"('it\'s')");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->str, "it's");
}

TEST(GoStrings, QuoteIsGosPercentQ) {
  EXPECT_EQ(GoQuote("a\"b\\c\n\x01"), R"("a\"b\\c\n\x01")");
  std::string back, error;
  ASSERT_TRUE(GoUnquote(GoQuote("x\ty\"z"), &back, &error)) << error;
  EXPECT_EQ(back, "x\ty\"z");
}

}  // namespace
}  // namespace bulwark::observe
