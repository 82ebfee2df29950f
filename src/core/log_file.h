// An append-only log file shared by threads, with size-based rotation: the access log and the
// application's own log and error log.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace bulwark {

struct LogFileConfig {
  std::string path = "stdout";             // or "stderr", or a file
  int64_t max_size = 100LL * 1024 * 1024;  // rotate at this size; 0 = never
  int max_files = 5;                       // rotated files kept (path.1 ... path.N)
  bool compress = true;                    // gzip rotated files
  // Permissions of the file and its rotated copies, set whether or not bulwark created the
  // file: logs hold client addresses and paths (0640, group-readable for a log shipper);
  // the audit log holds who changed what (0600).
  unsigned mode = 0640;
};

// A LogFile is one open file (or stdout). Threads append whole batches of lines with one
// write() each on a fd that never changes number; rotation renames the file and swaps a new one
// in under the same number with dup2(), so no worker ever sees a closed fd and no line is lost.
// Rotated files are gzipped off the request path. Write() is thread-safe; MaybeRotate() is
// called from the control thread only.
class LogFile {
 public:
  static absl::StatusOr<std::unique_ptr<LogFile>> Open(const LogFileConfig& cfg);
  ~LogFile();

  void Write(std::string_view data);
  // Rotates when the file has reached max_size. Returns true if it rotated.
  bool MaybeRotate();
  // Opens the file by its path again (nginx's SIGUSR1: logrotate moved it away, or removed it,
  // and bulwark now writes a new one there), under the same descriptor number. Control thread.
  absl::Status Reopen();
  // Waits for the compression of the last rotated file, if one is running.
  void WaitForCompression();
  const LogFileConfig& config() const { return cfg_; }
  uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }
  uint64_t rotations() const { return rotations_.load(std::memory_order_relaxed); }

 private:
  LogFile(LogFileConfig cfg, int fd, bool owned) : cfg_(std::move(cfg)), fd_(fd), owned_(owned) {}
  LogFileConfig cfg_;
  int fd_;
  bool owned_;
  std::thread compressor_;
  std::atomic<uint64_t> write_errors_{0};
  std::atomic<uint64_t> rotations_{0};
};

// Gzips `src` to `dst` (created with `mode`) and removes `src` on success.
absl::Status GzipFile(const std::string& src, const std::string& dst, unsigned mode = 0640);

}  // namespace bulwark
