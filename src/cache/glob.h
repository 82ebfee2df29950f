// Glob patterns with the syntax Redis uses for KEYS, SCAN MATCH and PSUBSCRIBE, so an
// invalidation pattern means in bulwark what it means in redis-cli:
//   *      any sequence of characters (also empty)
//   ?      any one character
//   [abc]  one of a, b, c;  [^abc] none of them;  [a-z] a range (reversed ranges work too)
//   \x     the character x itself
// An unterminated [ class extends to the end of the pattern, as in Redis.
#pragma once

#include <string>
#include <string_view>

namespace bulwark::cache {

// Matching is linear in the key for each star (no exponential backtracking), so a hostile
// pattern costs at most O(pattern × key).
bool GlobMatch(std::string_view pattern, std::string_view key);

// The literal prefix of a pattern before its first special character ("user:1:*" → "user:1:"),
// for narrowing a scan.
std::string_view GlobLiteralPrefix(std::string_view pattern);

// Whether the pattern has any special character at all.
bool IsGlob(std::string_view pattern);

// Escapes the special characters, so `text` matches only itself inside a pattern.
std::string GlobEscape(std::string_view text);

}  // namespace bulwark::cache
