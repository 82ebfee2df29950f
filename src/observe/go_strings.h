// Go's string literals, for the two Go-syntax languages observe reads (PromQL and rule
// templates) and the messages it writes: one reader with Go's own rules and messages, and
// Go's %q.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace bulwark::observe {

// Reads the Go string literal whose opening quote (", ' or `) is s[*pos], as Go's scanner
// does: escapes \a \b \f \n \r \t \v \\, the quote itself, \xHH, \uHHHH, \UHHHHHHHH and octal
// \OOO; no newline inside "..." or '...'; raw `...` strings take everything as it is. On
// success appends the value to *out and leaves *pos after the closing quote. On failure returns
// false with the scanner's message ("unterminated quoted string", "unknown escape sequence
// U+0071 'q'", "illegal character U+0067 'g' in escape sequence", ...) and *pos where it
// stopped.
bool ReadGoString(std::string_view s, size_t* pos, std::string* out, std::string* error);

// strconv.Unquote: `quoted` must be exactly one literal.
bool GoUnquote(std::string_view quoted, std::string* out, std::string* error);

// Go's %q of a string (strconv.Quote for printable ASCII; other control bytes as \xHH).
std::string GoQuote(std::string_view s);

// Go's %#U for a byte: U+0071 'q' (the quote part only when printable).
std::string GoRuneName(char c);

// Appends code point `cp` as UTF-8.
void AppendUtf8(std::string* out, uint32_t cp);

}  // namespace bulwark::observe
