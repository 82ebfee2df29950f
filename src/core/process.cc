#include "core/process.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "core/event_loop.h"
#include "core/strings.h"

namespace bulwark {
namespace {

constexpr size_t kTail = 4096;

void KeepTail(std::string* tail, std::string_view data) {
  tail->append(data);
  if (tail->size() > kTail) tail->erase(0, tail->size() - kTail);
}

// Starts argv with fds 0/1/2 from `in`, `out`, `err` (-1: /dev/null). Returns the pid.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const EnvList& env, int in,
                            int out, int err) {
  if (argv.empty()) return absl::InvalidArgumentError("no command to run");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (in >= 0) {
    posix_spawn_file_actions_adddup2(&fa, in, 0);
  } else {
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  }
  if (out >= 0) {
    posix_spawn_file_actions_adddup2(&fa, out, 1);
  } else {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&fa, err, 2);
  // A scrubbed environment: what any program needs to run, then what bulwark sets for this one
  // (a password, the plan's pass_env). bulwark's own variables — the secrets its configuration
  // interpolates, cloud credentials — stay behind.
  std::vector<std::string> env_strings;
  for (const char* name : {"PATH", "HOME", "LANG", "TZ"}) {
    const char* v = std::getenv(name);
    if (std::string_view(name) == "PATH" && v == nullptr) v = "/usr/local/bin:/usr/bin:/bin";
    if (v == nullptr) continue;
    bool overridden = false;
    for (const auto& [k, value] : env) overridden = overridden || k == name;
    if (!overridden) env_strings.push_back(StrCat(name, "=", v));
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);
  // Its own process group (so a timeout or a failed sink stops everything it started, children
  // of a shell included), the default signal mask (bulwark's threads block SIGTERM, SIGINT and
  // SIGHUP for their signalfd) and default dispositions (bulwark ignores SIGPIPE).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    return absl::UnavailableError(StrCat("cannot run ", argv[0], ": ", std::strerror(rc)));
  return pid;
}

absl::Status ExitStatus(const std::string& name, int status, const std::string& tail) {
  std::string t(Trim(tail));
  std::string why = t.empty() ? "" : StrCat(": ", t);
  if (WIFSIGNALED(status)) {
    return absl::AbortedError(StrCat(name, " was killed by signal ", WTERMSIG(status), why));
  }
  if (WEXITSTATUS(status) != 0) {
    return absl::AbortedError(StrCat(name, " exited with status ", WEXITSTATUS(status), why));
  }
  return absl::OkStatus();
}

thread_local const std::atomic<bool>* t_cancel = nullptr;

bool Cancelled() { return t_cancel != nullptr && t_cancel->load(); }

// The child's whole process group: what it started goes too.
void KillGroup(pid_t pid, int sig) { kill(-pid, sig); }

int WaitPid(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Reads stdout into `out` (or into `captured`, bounded) and stderr into `err_tail` until both
// close; SIGTERM on a sink failure or the deadline (SIGKILL 2 s later).
struct Pump {
  ByteSink* out = nullptr;
  std::string* captured = nullptr;
  int64_t deadline_us = 0;
  absl::Status sink_error;
  bool timed_out = false;
  std::string err_tail;

  void Run(pid_t pid, int out_fd, int err_fd) {
    std::string buf(256 * 1024, '\0');
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    int open_fds = 2;
    int64_t kill_at_us = 0;
    while (open_fds > 0) {
      // A quarter of a second at most between looks at the clock and at a shutdown.
      int wait_ms = 250;
      int64_t now = MonotonicMs() * 1000;
      bool stop = (deadline_us > 0 && now >= deadline_us) || Cancelled();
      if (stop && !timed_out) {
        timed_out = true;
        KillGroup(pid, SIGTERM);
        kill_at_us = now + 2'000'000;
      } else if (deadline_us > 0 && !timed_out) {
        wait_ms = std::min<int64_t>(wait_ms, (deadline_us - now) / 1000 + 1);
      }
      if (kill_at_us > 0) {
        if (now >= kill_at_us) {
          KillGroup(pid, SIGKILL);
          kill_at_us = 0;
        } else {
          wait_ms = std::min<int64_t>(wait_ms, (kill_at_us - now) / 1000 + 1);
        }
      }
      int rc = poll(fds, 2, wait_ms);
      if (rc < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (pollfd& p : fds) {
        if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = read(p.fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          close(p.fd);
          p.fd = -1;
          --open_fds;
          continue;
        }
        std::string_view data(buf.data(), static_cast<size_t>(n));
        if (&p == &fds[0]) {
          if (captured != nullptr) {
            if (captured->size() < (1 << 20)) captured->append(data);
          } else if (sink_error.ok()) {
            sink_error = out->Write(data);
            if (!sink_error.ok()) KillGroup(pid, SIGKILL);  // nowhere to put its output
          }
        } else {
          KeepTail(&err_tail, data);
        }
      }
    }
  }
};

absl::Status RunPumped(const std::vector<std::string>& argv, const EnvList& env, Pump* pump) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError(std::strerror(errno));
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return absl::InternalError(std::strerror(errno));
  }
  auto pid = Spawn(argv, env, -1, out_pipe[1], err_pipe[1]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (!pid.ok()) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return pid.status();
  }
  pump->Run(*pid, out_pipe[0], err_pipe[0]);
  int status = WaitPid(*pid);
  // Whatever it left running in its group (a shell's background job) goes with it.
  if (!pump->sink_error.ok() || pump->timed_out || WIFSIGNALED(status) || WEXITSTATUS(status) != 0)
    KillGroup(*pid, SIGKILL);
  if (!pump->sink_error.ok()) return pump->sink_error;
  if (pump->timed_out) {
    std::string t(Trim(pump->err_tail));
    if (Cancelled()) {
      return absl::CancelledError(StrCat(argv[0], " stopped: bulwark is shutting down"));
    }
    return absl::DeadlineExceededError(
        StrCat(argv[0], " did not finish in time and was stopped", t.empty() ? "" : ": ", t));
  }
  return ExitStatus(argv[0], status, pump->err_tail);
}

}  // namespace

absl::Status RunSource(const std::vector<std::string>& argv, const EnvList& env, ByteSink* out,
                       int64_t timeout_ms) {
  Pump pump;
  pump.out = out;
  if (timeout_ms > 0) pump.deadline_us = MonotonicMs() * 1000 + timeout_ms * 1000;
  return RunPumped(argv, env, &pump);
}

ScopedCancel::ScopedCancel(const std::atomic<bool>* cancel) : previous_(t_cancel) {
  t_cancel = cancel;
}
ScopedCancel::~ScopedCancel() { t_cancel = previous_; }

absl::Status RunCapture(const std::vector<std::string>& argv, const EnvList& env,
                        int64_t timeout_ms, std::string* output) {
  Pump pump;
  output->clear();
  pump.captured = output;
  if (timeout_ms > 0) pump.deadline_us = MonotonicMs() * 1000 + timeout_ms * 1000;
  return RunPumped(argv, env, &pump);
}

absl::StatusOr<std::unique_ptr<ProcessSink>> ProcessSink::Start(
    const std::vector<std::string>& argv, const EnvList& env) {
  signal(SIGPIPE, SIG_IGN);  // a program that stops reading is an error from write(), not a kill
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return absl::InternalError(std::strerror(errno));
  if (pipe2(out_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    return absl::InternalError(std::strerror(errno));
  }
  auto pid = Spawn(argv, env, in_pipe[0], out_pipe[1], out_pipe[1]);
  close(in_pipe[0]);
  close(out_pipe[1]);
  if (!pid.ok()) {
    close(in_pipe[1]);
    close(out_pipe[0]);
    return pid.status();
  }
  return std::unique_ptr<ProcessSink>(new ProcessSink(argv[0], *pid, in_pipe[1], out_pipe[0]));
}

ProcessSink::~ProcessSink() {
  if (finished_) return;
  if (in_ >= 0) close(in_);
  KillGroup(pid_, SIGKILL);
  WaitPid(pid_);
  if (out_ >= 0) close(out_);
}

void ProcessSink::Drain(bool block) {
  char buf[16384];
  while (out_ >= 0) {
    if (block) {
      pollfd p = {out_, POLLIN, 0};
      if (poll(&p, 1, -1) < 0 && errno != EINTR) return;
    }
    ssize_t n = read(out_, buf, sizeof(buf));
    if (n > 0) {
      KeepTail(&tail_, std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n == 0) {
      close(out_);
      out_ = -1;
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN && block) continue;
    return;
  }
}

absl::Status ProcessSink::Write(std::string_view data) {
  while (!data.empty()) {
    pollfd fds[2] = {{in_, POLLOUT, 0}, {out_, POLLIN, 0}};
    if (poll(fds, out_ >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(std::strerror(errno));
    }
    if (out_ >= 0 && fds[1].revents) Drain(false);
    if (fds[0].revents & (POLLERR | POLLHUP)) {
      // It stopped reading: its exit status and output say why.
      absl::Status st = Finish();
      return st.ok() ? absl::AbortedError(StrCat(name_, " stopped reading its input")) : st;
    }
    if (!(fds[0].revents & POLLOUT)) continue;
    ssize_t n = write(in_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      absl::Status st = Finish();
      return st.ok() ? absl::AbortedError(StrCat(name_, ": ", std::strerror(errno))) : st;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status ProcessSink::Finish() {
  if (finished_) return absl::AbortedError(StrCat(name_, " has already finished"));
  if (in_ >= 0) {
    close(in_);
    in_ = -1;
  }
  Drain(true);
  int status = WaitPid(pid_);
  finished_ = true;
  return ExitStatus(name_, status, tail_);
}

}  // namespace bulwark
