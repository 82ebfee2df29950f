#include "cache/glob.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace bulwark::cache {
namespace {

// A reference matcher by dynamic programming over (pattern token, key position), written
// independently of the production one.
bool ReferenceMatch(const std::string& pat, const std::string& key) {
  struct Token {
    enum Kind { kStar, kAny, kSet, kChar } kind;
    std::vector<bool> set;  // for kSet: 256 entries
    unsigned char c = 0;
  };
  std::vector<Token> toks;
  for (size_t i = 0; i < pat.size();) {
    Token t;
    char ch = pat[i];
    if (ch == '*') {
      t.kind = Token::kStar;
      ++i;
    } else if (ch == '?') {
      t.kind = Token::kAny;
      ++i;
    } else if (ch == '\\') {
      t.kind = Token::kChar;
      t.c = static_cast<unsigned char>(i + 1 < pat.size() ? pat[i + 1] : '\\');
      i += i + 1 < pat.size() ? 2 : 1;
    } else if (ch == '[') {
      t.kind = Token::kSet;
      t.set.assign(256, false);
      size_t j = i + 1;
      bool neg = j < pat.size() && pat[j] == '^';
      if (neg) ++j;
      while (j < pat.size() && pat[j] != ']') {
        if (pat[j] == '\\' && j + 1 < pat.size()) {
          t.set[static_cast<unsigned char>(pat[j + 1])] = true;
          j += 2;
        } else if (j + 2 < pat.size() && pat[j + 1] == '-' && pat[j + 2] != ']') {
          int a = static_cast<unsigned char>(pat[j]);
          int b = static_cast<unsigned char>(pat[j + 2]);
          if (a > b) std::swap(a, b);
          for (int x = a; x <= b; ++x) t.set[x] = true;
          j += 3;
        } else {
          t.set[static_cast<unsigned char>(pat[j])] = true;
          ++j;
        }
      }
      if (neg) t.set.flip();
      i = j < pat.size() ? j + 1 : j;
    } else {
      t.kind = Token::kChar;
      t.c = static_cast<unsigned char>(ch);
      ++i;
    }
    toks.push_back(t);
  }
  // dp[i][j]: tokens[i:] match key[j:]
  std::vector<std::vector<char>> dp(toks.size() + 1, std::vector<char>(key.size() + 1, 0));
  dp[toks.size()][key.size()] = 1;
  for (size_t i = toks.size(); i-- > 0;) {
    for (size_t j = key.size() + 1; j-- > 0;) {
      const Token& t = toks[i];
      bool m = false;
      if (t.kind == Token::kStar) {
        m = dp[i + 1][j] || (j < key.size() && dp[i][j + 1]);
      } else if (j < key.size()) {
        unsigned char c = static_cast<unsigned char>(key[j]);
        bool one = t.kind == Token::kAny || (t.kind == Token::kChar && t.c == c) ||
                   (t.kind == Token::kSet && t.set[c]);
        m = one && dp[i + 1][j + 1];
      }
      dp[i][j] = m;
    }
  }
  return dp[0][0];
}

TEST(Glob, RedisSyntax) {
  EXPECT_TRUE(GlobMatch("user:*", "user:1:profile"));
  EXPECT_TRUE(GlobMatch("user:*", "user:"));
  EXPECT_FALSE(GlobMatch("user:*", "users:1"));
  EXPECT_TRUE(GlobMatch("h?llo", "hello"));
  EXPECT_FALSE(GlobMatch("h?llo", "hllo"));
  EXPECT_TRUE(GlobMatch("h[ae]llo", "hallo"));
  EXPECT_FALSE(GlobMatch("h[ae]llo", "hillo"));
  EXPECT_TRUE(GlobMatch("h[^e]llo", "hallo"));
  EXPECT_FALSE(GlobMatch("h[^e]llo", "hello"));
  EXPECT_TRUE(GlobMatch("h[a-b]llo", "hbllo"));
  EXPECT_TRUE(GlobMatch("h[b-a]llo", "hallo"));  // reversed range, as Redis allows
  EXPECT_TRUE(GlobMatch("a\\*b", "a*b"));
  EXPECT_FALSE(GlobMatch("a\\*b", "axb"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("", ""));
  EXPECT_FALSE(GlobMatch("", "a"));
  EXPECT_TRUE(GlobMatch("*a*b*c*", "xxaxxbxxcxx"));
  EXPECT_FALSE(GlobMatch("*a*b*c*", "xxaxxcxxbxx"));
  EXPECT_TRUE(GlobMatch("user:[0-9]*:perm*", "user:42:permissions"));
  EXPECT_TRUE(GlobMatch("[abc", "b"));  // unterminated class runs to the end
}

TEST(Glob, LiteralPrefix) {
  EXPECT_EQ(GlobLiteralPrefix("user:1:*"), "user:1:");
  EXPECT_EQ(GlobLiteralPrefix("plain"), "plain");
  EXPECT_EQ(GlobLiteralPrefix("a?b"), "a");
  EXPECT_TRUE(IsGlob("a*"));
  EXPECT_FALSE(IsGlob("abc"));
}

TEST(Glob, AgreesWithAReferenceOnRandomInputs) {
  std::mt19937 rng(7);
  const std::string pat_alphabet = "ab*?[]^-\\";
  const std::string key_alphabet = "ab-]^";
  for (int i = 0; i < 200000; ++i) {
    std::string pat, key;
    int pl = rng() % 8, kl = rng() % 8;
    for (int j = 0; j < pl; ++j) pat += pat_alphabet[rng() % pat_alphabet.size()];
    for (int j = 0; j < kl; ++j) key += key_alphabet[rng() % key_alphabet.size()];
    ASSERT_EQ(GlobMatch(pat, key), ReferenceMatch(pat, key)) << "pattern " << pat << " key " << key;
  }
}

TEST(Glob, HostilePatternsStayFast) {
  std::string key(10000, 'a');
  std::string pat;
  for (int i = 0; i < 50; ++i) pat += "*a";
  pat += "b";
  EXPECT_FALSE(GlobMatch(pat, key));  // exponential in a naive backtracking matcher
}

}  // namespace
}  // namespace bulwark::cache
