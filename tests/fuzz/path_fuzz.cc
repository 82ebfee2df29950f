// libFuzzer target: the request path normaliser. Besides not crashing, normalising is
// idempotent (the upstream form normalises to itself, with the same matching form), and no
// result holds a run of slashes, a "." or ".." segment, under every escaped-slash action.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/path.h"

namespace {

void Check(std::string_view path, const bulwark::http::PathOptions& opts) {
  std::string decoded, upstream, decoded2, upstream2;
  bulwark::http::ParseError err;
  if (!bulwark::http::NormalizePath(path, opts, &decoded, &upstream, &err)) return;
  if (bulwark::http::PathIsNormal(path, opts) && (decoded != path || upstream != path))
    __builtin_trap();
  if (path.empty() || path[0] != '/') return;
  if (!bulwark::http::NormalizePath(upstream, opts, &decoded2, &upstream2, &err)) __builtin_trap();
  if (upstream2 != upstream || decoded2 != decoded) __builtin_trap();
  for (const std::string* s : {&decoded, &upstream}) {
    if (s->empty() || (*s)[0] != '/') __builtin_trap();
    if (opts.merge_slashes && s->find("//") != std::string::npos) __builtin_trap();
    if (s->find("/./") != std::string::npos || s->find("/../") != std::string::npos)
      __builtin_trap();
    std::string_view v(*s);
    if (v == "/." || v == "/.." || (v.size() >= 2 && v.substr(v.size() - 2) == "/.") ||
        (v.size() >= 3 && v.substr(v.size() - 3) == "/.."))
      __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path(reinterpret_cast<const char*>(data), size);
  bulwark::http::PathOptions opts;
  Check(path, opts);
  opts.escaped_slashes = bulwark::http::EscapedSlashes::kKeep;
  Check(path, opts);
  opts.escaped_slashes = bulwark::http::EscapedSlashes::kReject;
  opts.merge_slashes = false;
  Check(path, opts);
  return 0;
}
