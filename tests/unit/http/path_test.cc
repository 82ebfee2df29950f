#include "http/path.h"

#include <string>

#include "gtest/gtest.h"

namespace bulwark::http {
namespace {

struct Normal {
  bool ok = false;
  std::string decoded, upstream;
  std::string reason;
};

Normal Norm(std::string_view path, PathOptions opts = {}) {
  Normal n;
  ParseError err;
  n.ok = NormalizePath(path, opts, &n.decoded, &n.upstream, &err);
  if (!n.ok) n.reason = std::string(err.reason);
  // The fast path must agree: a path it calls normal comes out of NormalizePath unchanged.
  if (PathIsNormal(path, opts)) {
    EXPECT_TRUE(n.ok) << path;
    EXPECT_EQ(n.decoded, path);
    EXPECT_EQ(n.upstream, path);
  }
  return n;
}

// The matching form, as nginx computes $uri (checked against a real nginx in
// tests/integration/gateway_test.cc, Paths.*).
TEST(Path, DecodesResolvesAndMergesAsNginx) {
  EXPECT_EQ(Norm("//admin/").decoded, "/admin/");
  EXPECT_EQ(Norm("/%61dmin/").decoded, "/admin/");
  EXPECT_EQ(Norm("/x/../admin/").decoded, "/admin/");
  EXPECT_EQ(Norm("/api/auth//login").decoded, "/api/auth/login");
  EXPECT_EQ(Norm("/admin%2Fx").decoded, "/admin/x");
  EXPECT_EQ(Norm("/x/..%2Fadmin/").decoded, "/admin/");
  EXPECT_EQ(Norm("/a/.%2e/admin/").decoded, "/admin/");
  EXPECT_EQ(Norm("/%2F%2Fadmin/").decoded, "/admin/");
  EXPECT_EQ(Norm("/a//..//admin/").decoded, "/admin/");
  EXPECT_EQ(Norm("/admin/.").decoded, "/admin/");
  EXPECT_EQ(Norm("/admin/..").decoded, "/");
  EXPECT_EQ(Norm("/.").decoded, "/");
  EXPECT_EQ(Norm("/%2e").decoded, "/");
  EXPECT_EQ(Norm("/a%3Fb").decoded, "/a?b");
  EXPECT_EQ(Norm("/a%25b").decoded, "/a%b");
  EXPECT_EQ(Norm("/a/...").decoded, "/a/...");
  EXPECT_EQ(Norm("/.well-known/x").decoded, "/.well-known/x");
  EXPECT_EQ(Norm("/a\\..\\b").decoded, "/a\\..\\b");  // a backslash is data on POSIX, as nginx
}

TEST(Path, RefusesWhatNginxRefuses) {
  for (const char* p : {"/..", "/a/../..", "/%2e%2e/admin/", "/a/b/../../../", "/a%2F..%2F..",
                        "/a%00b", "/a%zz", "/a%2", "/a%"}) {
    Normal n = Norm(p);
    EXPECT_FALSE(n.ok) << p << " -> " << n.decoded;
  }
  EXPECT_EQ(Norm("/..").reason, "path goes above the root");
  EXPECT_EQ(Norm("/a%00").reason, "encoded NUL in path");
  EXPECT_EQ(Norm("/a%g0").reason, "malformed percent-encoding in path");
}

// Upstream: RFC 3986 normalisation (Envoy normalize_path): unreserved escapes decoded, others
// kept in upper case, so the server sees the same resource the route was chosen for.
TEST(Path, UpstreamFormKeepsReservedEscapes) {
  Normal n = Norm("/%61dmin/%3f%2fx/../y%20z");
  EXPECT_EQ(n.decoded, "/admin/?/y z");
  EXPECT_EQ(n.upstream, "/admin/%3F/y%20z");
  n = Norm("//a/./b/%7euser/%C3%A9");
  EXPECT_EQ(n.decoded, "/a/b/~user/\xC3\xA9");
  EXPECT_EQ(n.upstream, "/a/b/~user/%C3%A9");
  EXPECT_EQ(Norm("/a%3Fb").upstream, "/a%3Fb");  // never "/a?b": that is another request
}

TEST(Path, EscapedSlashActions) {
  PathOptions keep;
  keep.escaped_slashes = EscapedSlashes::kKeep;
  Normal n = Norm("/a%2f..%2Fb/../c", keep);
  EXPECT_TRUE(n.ok);
  EXPECT_EQ(n.decoded, "/c");  // "a%2F..%2Fb" is one segment, removed by the ".."
  n = Norm("/a%2fb", keep);
  EXPECT_EQ(n.decoded, "/a%2Fb");
  EXPECT_EQ(n.upstream, "/a%2Fb");
  PathOptions reject;
  reject.escaped_slashes = EscapedSlashes::kReject;
  n = Norm("/a%2fb", reject);
  EXPECT_FALSE(n.ok);
  EXPECT_EQ(n.reason, "encoded slash in path");
  EXPECT_TRUE(Norm("/a/b", reject).ok);
}

TEST(Path, MergeSlashesOff) {
  PathOptions off;
  off.merge_slashes = false;
  EXPECT_TRUE(PathIsNormal("/a//b", off));
  EXPECT_EQ(Norm("/a//b/./c", off).decoded, "/a//b/c");
  EXPECT_EQ(Norm("/a//../b", off).decoded, "/a/b");  // ".." removes the empty segment
}

TEST(Path, FastPathSeesEveryCaseThatNeedsWork) {
  PathOptions o;
  for (const char* p : {"/a%41", "//a", "/a//", "/.", "/..", "/a/./b", "/a/../b", "/a/."})
    EXPECT_FALSE(PathIsNormal(p, o)) << p;
  for (const char* p : {"/", "/a/b/", "/.well-known/x", "/a/...", "/a.b/c..d", "*"})
    EXPECT_TRUE(PathIsNormal(p, o)) << p;
}

// Normalising twice changes nothing, and no result holds "//", "/./" or "/../".
TEST(Path, IdempotentAndClean) {
  for (const char* p : {"/a/b/../c/./d//e/", "/%2e%2E/x", "/a%2F%2e%2e%2Fb", "//./..//", "/x/%2e/"}) {
    Normal n = Norm(p);
    if (!n.ok) continue;
    Normal again = Norm(n.upstream);
    ASSERT_TRUE(again.ok) << p;
    EXPECT_EQ(again.upstream, n.upstream) << p;
    EXPECT_EQ(again.decoded, n.decoded) << p;
    for (const char* bad : {"//", "/./", "/../"}) {
      EXPECT_EQ(n.decoded.find(bad), std::string::npos) << p << " -> " << n.decoded;
    }
  }
}

}  // namespace
}  // namespace bulwark::http
