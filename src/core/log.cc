#include "core/log.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "core/event_loop.h"
#include "core/log_file.h"

namespace bulwark {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<bool> g_json{false};
// Set once at start-up (SetLogFiles) and kept for the life of the process.
std::atomic<LogFile*> g_main{nullptr};
std::atomic<LogFile*> g_errors{nullptr};
std::atomic<bool> g_priority_prefix{false};

// "health: server x is DOWN" -> component "health", message "server x is DOWN".
std::string_view SplitComponent(std::string_view* message) {
  size_t colon = message->find(": ");
  if (colon == std::string_view::npos || colon == 0 || colon > 24) return "bulwark";
  for (size_t i = 0; i < colon; ++i) {
    char c = (*message)[i];
    if (!((c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9'))) return "bulwark";
  }
  std::string_view component = message->substr(0, colon);
  message->remove_prefix(colon + 2);
  return component;
}
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

void LogLine(LogLevel level, std::string_view message) { LogLineFor(level, "", message); }

void LogLineFor(LogLevel level, std::string_view request_id, std::string_view message) {
  std::string line;
  line.reserve(message.size() + 96);
  if (g_json.load(std::memory_order_relaxed)) {
    std::string_view component = SplitComponent(&message);
    line.append("{\"time\":\"");
    AppendRfc3339(&line, WallMicros());
    line.append("\",\"level\":\"");
    line.append(LevelName(level));
    line.append("\",\"component\":\"");
    AppendJsonEscaped(&line, component);
    line.append("\",\"msg\":\"");
    AppendJsonEscaped(&line, message);
    if (!request_id.empty()) {
      line.append("\",\"request_id\":\"");
      AppendJsonEscaped(&line, request_id);
    }
    line.append("\"}\n");
  } else {
    AppendRfc3339(&line, WallMicros());
    line.push_back(' ');
    line.append(LevelName(level));
    line.push_back(' ');
    line.append(message);
    if (!request_id.empty()) {
      line.append(" request_id=");
      line.append(request_id);
    }
    line.push_back('\n');
  }
  // One write() per line keeps lines whole when several threads log at once.
  std::string_view out = line;
  std::string with_priority;
  if (g_priority_prefix.load(std::memory_order_relaxed)) {
    // LOG_DEBUG 7, LOG_INFO 6, LOG_WARNING 4, LOG_ERR 3.
    static constexpr const char* kPriority[] = {"<7>", "<6>", "<4>", "<3>"};
    with_priority = kPriority[static_cast<int>(level)];
    with_priority.append(line);
    out = with_priority;
  }
  if (LogFile* f = g_main.load(std::memory_order_acquire)) {
    f->Write(out);
  } else {
    [[maybe_unused]] ssize_t n = write(STDERR_FILENO, out.data(), out.size());
  }
  if (level >= LogLevel::kWarn) {
    if (LogFile* e = g_errors.load(std::memory_order_acquire)) e->Write(line);
  }
}

void SetLogFiles(std::unique_ptr<LogFile> main, std::unique_ptr<LogFile> errors) {
  // The files live as long as the process: a thread may still be logging at exit.
  g_main.store(main.release(), std::memory_order_release);
  g_errors.store(errors.release(), std::memory_order_release);
}

void FinishLogFiles() {
  if (LogFile* f = g_main.load(std::memory_order_acquire)) f->WaitForCompression();
  if (LogFile* e = g_errors.load(std::memory_order_acquire)) e->WaitForCompression();
}

void ReopenLogFiles() {
  for (LogFile* f :
       {g_main.load(std::memory_order_acquire), g_errors.load(std::memory_order_acquire)}) {
    if (f == nullptr) continue;
    if (absl::Status s = f->Reopen(); !s.ok()) LogError("log: ", s.message());
  }
}

void SetLogPriorityPrefix(bool on) { g_priority_prefix.store(on, std::memory_order_relaxed); }

void MaybeRotateLogFiles() {
  if (LogFile* f = g_main.load(std::memory_order_acquire)) f->MaybeRotate();
  if (LogFile* e = g_errors.load(std::memory_order_acquire)) e->MaybeRotate();
}

}  // namespace bulwark
