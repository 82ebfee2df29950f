// Process log (not the access log): one line per event on stderr, plain or JSON.
#pragma once

#include <string_view>

#include "core/strings.h"

namespace bulwark {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
void SetLogJson(bool json);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void LogInfo(const Args&... args) {
  if (LogEnabled(LogLevel::kInfo)) LogLine(LogLevel::kInfo, StrCat(args...));
}
template <typename... Args>
void LogWarn(const Args&... args) {
  if (LogEnabled(LogLevel::kWarn)) LogLine(LogLevel::kWarn, StrCat(args...));
}
template <typename... Args>
void LogError(const Args&... args) {
  if (LogEnabled(LogLevel::kError)) LogLine(LogLevel::kError, StrCat(args...));
}
template <typename... Args>
void LogDebug(const Args&... args) {
  if (LogEnabled(LogLevel::kDebug)) LogLine(LogLevel::kDebug, StrCat(args...));
}

// Appends `s` to `out` escaped as the inside of a JSON string.
void AppendJsonEscaped(std::string* out, std::string_view s);
// RFC 3339 UTC time with milliseconds, e.g. 2026-11-22T10:00:00.123Z.
void AppendRfc3339(std::string* out, int64_t wall_micros);

}  // namespace bulwark
