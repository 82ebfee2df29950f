// Process log (not the access log): one line per event, plain or JSON, on stderr or in a
// rotating file, with warnings and errors also in a separate error log when one is set.
// A JSON line: {"time":"...","level":"warn","component":"health","msg":"...","request_id":"..."}.
// The component is the message's leading "word: " (every message names its part that way:
// "health: ...", "observe: ..."), "bulwark" when there is none.
#pragma once

#include <memory>
#include <string_view>

#include "core/strings.h"

namespace bulwark {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
void SetLogJson(bool json);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view message);
// With the request (or trace) id the line is about.
void LogLineFor(LogLevel level, std::string_view request_id, std::string_view message);

class LogFile;
struct LogFileConfig;
// Sends the log to `main` (stderr when null) and warnings and errors also to `errors`. Lines
// are whole with either; called at start-up, before other threads log.
void SetLogFiles(std::unique_ptr<LogFile> main, std::unique_ptr<LogFile> errors);
// Rotates the log files that have reached their size (from the control thread, once a second).
void MaybeRotateLogFiles();
// Reopens the log files by their paths (SIGUSR1, after logrotate moved them).
void ReopenLogFiles();
// Starts each line of the process log (not the error log) with its syslog priority, "<3>" ...
// "<7>", which journald reads as the line's level (sd-daemon(3)).
void SetLogPriorityPrefix(bool on);
// At exit: waits for a rotated log file still being compressed (the files themselves stay open,
// for threads that log to the end).
void FinishLogFiles();

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
void LogWarnFor(std::string_view request_id, const Args&... args) {
  if (LogEnabled(LogLevel::kWarn)) LogLineFor(LogLevel::kWarn, request_id, StrCat(args...));
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
