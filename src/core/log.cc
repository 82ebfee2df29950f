#include "core/log.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "core/event_loop.h"

namespace bulwark {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<bool> g_json{false};
const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}
}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
void SetLogJson(bool json) { g_json.store(json); }
bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void AppendJsonEscaped(std::string* out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          // Bytes outside printable ASCII are escaped so a log line is always valid JSON,
          // whatever a client put in its request.
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
}

void AppendRfc3339(std::string* out, int64_t wall_micros) {
  time_t secs = static_cast<time_t>(wall_micros / 1000000);
  int ms = static_cast<int>((wall_micros / 1000) % 1000);
  tm t;
  gmtime_r(&secs, &t);
  char buf[40];
  int n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
                   t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ms);
  out->append(buf, n);
}

void LogLine(LogLevel level, std::string_view message) {
  std::string line;
  line.reserve(message.size() + 64);
  if (g_json.load(std::memory_order_relaxed)) {
    line.append("{\"time\":\"");
    AppendRfc3339(&line, WallMicros());
    line.append("\",\"level\":\"");
    line.append(LevelName(level));
    line.append("\",\"msg\":\"");
    AppendJsonEscaped(&line, message);
    line.append("\"}\n");
  } else {
    AppendRfc3339(&line, WallMicros());
    line.push_back(' ');
    line.append(LevelName(level));
    line.push_back(' ');
    line.append(message);
    line.push_back('\n');
  }
  // One write() per line keeps lines whole when several threads log at once.
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace bulwark
