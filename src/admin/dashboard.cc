#include "admin/dashboard.h"

#include <openssl/sha.h>

#include "core/base64.h"
#include "core/strings.h"

namespace bulwark::admin {

std::string_view DashboardHtml() {
  static constexpr char kHtml[] =
#include "admin/dashboard_html.inc"
      ;
  return std::string_view(kHtml, sizeof(kHtml) - 1);
}

namespace {

// 'sha256-…' of the text between `open` and `close` (CSP hashes the element's exact content).
std::string InlineHash(std::string_view html, std::string_view open, std::string_view close) {
  size_t start = html.find(open);
  size_t end = start == std::string_view::npos ? start : html.find(close, start);
  if (end == std::string_view::npos) return "'none'";
  std::string_view body = html.substr(start + open.size(), end - start - open.size());
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), md);
  return StrCat("'sha256-", Base64Encode(std::string_view(reinterpret_cast<char*>(md), sizeof(md))),
                "'");
}

}  // namespace

const std::string& DashboardCsp() {
  static const std::string csp = StrCat(
      "default-src 'none'; script-src ", InlineHash(DashboardHtml(), "<script>", "</script>"),
      "; style-src ", InlineHash(DashboardHtml(), "<style>", "</style>"),
      "; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
      "frame-ancestors 'none'");
  return csp;
}

}  // namespace bulwark::admin
