// Programs bulwark runs (the vault's pg_dump, pg_restore, psql, mysqldump, mysql, tar and
// commands; the pg proxy's fence_command):
// started with posix_spawn, their stdout streamed into a sink or their stdin fed from one,
// stderr kept (its last 4 KiB) for the error message. Never through a shell.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/byte_sink.h"

namespace bulwark {

using EnvList = std::vector<std::pair<std::string, std::string>>;

// Every program runs in a process group of its own, with the default signal mask and
// dispositions; stopping it (a timeout, a failed sink, a shutdown) stops the whole group, so a
// shell's background jobs never outlive it.
//
// Runs `argv` (PATH lookup) with `env` added, stdin from /dev/null, its stdout streamed into
// `out`. Fails when the program cannot start, exits non-zero or is killed, when `out` fails or
// when `timeout_ms` (> 0) passes (the group is then stopped: SIGTERM, SIGKILL 2 s later); the
// error ends with the last lines it wrote to stderr.
absl::Status RunSource(const std::vector<std::string>& argv, const EnvList& env, ByteSink* out,
                       int64_t timeout_ms = 0);

// While one lives, programs this thread runs are stopped (their call returns Cancelled) once
// `*cancel` is true: the scheduler's shutdown reaches a backup stuck in its source.
class ScopedCancel {
 public:
  explicit ScopedCancel(const std::atomic<bool>* cancel);
  ~ScopedCancel();
  ScopedCancel(const ScopedCancel&) = delete;
  ScopedCancel& operator=(const ScopedCancel&) = delete;

 private:
  const std::atomic<bool>* previous_;
};

// Runs `argv` and keeps its stdout (up to 1 MiB) in `*output`; stopped (SIGTERM, then SIGKILL
// after 2 s) when `timeout_ms` > 0 passes. Same errors as RunSource, plus DeadlineExceeded.
absl::Status RunCapture(const std::vector<std::string>& argv, const EnvList& env,
                        int64_t timeout_ms, std::string* output);

// A program whose stdin is fed by Write() (pg_restore, psql, mysql, tar -x). Its stdout and
// stderr are read while writing, so it can never block on a full pipe; both are kept (last
// 4 KiB) for the error. Finish() closes stdin and waits; the destructor kills a program that
// was not finished.
class ProcessSink final : public ByteSink {
 public:
  static absl::StatusOr<std::unique_ptr<ProcessSink>> Start(const std::vector<std::string>& argv,
                                                            const EnvList& env);
  ~ProcessSink() override;
  absl::Status Write(std::string_view data) override;
  absl::Status Finish();

 private:
  ProcessSink(std::string name, pid_t pid, int in, int out)
      : name_(std::move(name)), pid_(pid), in_(in), out_(out) {}
  void Drain(bool block);

  std::string name_;
  pid_t pid_;
  int in_, out_;  // its stdin (we write), its stdout+stderr (we read)
  std::string tail_;
  bool finished_ = false;
};

}  // namespace bulwark
