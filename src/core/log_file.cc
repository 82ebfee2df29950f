#include "core/log_file.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "core/log.h"
#include "core/strings.h"

namespace bulwark {

absl::StatusOr<std::unique_ptr<LogFile>> LogFile::Open(const LogFileConfig& cfg) {
  if (cfg.path == "stdout" || cfg.path == "-") {
    return std::unique_ptr<LogFile>(new LogFile(cfg, STDOUT_FILENO, false));
  }
  if (cfg.path == "stderr") return std::unique_ptr<LogFile>(new LogFile(cfg, STDERR_FILENO, false));
  int fd = open(cfg.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, cfg.mode);
  if (fd < 0) {
    return absl::UnavailableError(StrCat("log: cannot open ", cfg.path, ": ", strerror(errno)));
  }
  // open() leaves an existing file's mode alone (and the umask may have narrowed a new one).
  if (fchmod(fd, cfg.mode) != 0) {
    int e = errno;
    close(fd);
    return absl::PermissionDeniedError(
        StrCat("log: cannot set the mode of ", cfg.path, ": ", strerror(e)));
  }
  return std::unique_ptr<LogFile>(new LogFile(cfg, fd, true));
}

LogFile::~LogFile() {
  if (compressor_.joinable()) compressor_.join();
  if (owned_) close(fd_);
}

void LogFile::WaitForCompression() {
  if (compressor_.joinable()) compressor_.join();
}

void LogFile::Write(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      write_errors_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

absl::Status LogFile::Reopen() {
  if (!owned_) return absl::OkStatus();  // stdout / stderr
  int nfd = open(cfg_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, cfg_.mode);
  if (nfd < 0)
    return absl::UnavailableError(StrCat("cannot reopen ", cfg_.path, ": ", strerror(errno)));
  fchmod(nfd, cfg_.mode);
  dup3(nfd, fd_, O_CLOEXEC);
  close(nfd);
  return absl::OkStatus();
}

bool LogFile::MaybeRotate() {
  if (!owned_ || cfg_.max_size <= 0) return false;
  struct stat st;
  if (fstat(fd_, &st) != 0 || st.st_size < cfg_.max_size) return false;
  if (compressor_.joinable()) compressor_.join();
  const std::string& p = cfg_.path;
  const char* ext = cfg_.compress ? ".gz" : "";
  // Shift path.N-1 -> path.N ... path.1 -> path.2, dropping the oldest.
  if (cfg_.max_files > 0) {
    unlink(StrCat(p, ".", cfg_.max_files, ext).c_str());
    for (int i = cfg_.max_files - 1; i >= 1; --i) {
      rename(StrCat(p, ".", i, ext).c_str(), StrCat(p, ".", i + 1, ext).c_str());
    }
  }
  std::string rotated = StrCat(p, ".1");
  if (cfg_.max_files > 0) {
    rename(p.c_str(), rotated.c_str());
  } else {
    unlink(p.c_str());
  }
  int nfd = open(p.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, cfg_.mode);
  if (nfd < 0) {
    LogError("log: cannot reopen ", p, " after rotation: ", strerror(errno));
    return false;
  }
  fchmod(nfd, cfg_.mode);
  dup3(nfd, fd_, O_CLOEXEC);
  close(nfd);
  rotations_.fetch_add(1, std::memory_order_relaxed);
  if (cfg_.compress && cfg_.max_files > 0) {
    compressor_ = std::thread([rotated, mode = cfg_.mode] {
      // Compression is background work: at nice 19 it never takes CPU from a worker.
      setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
      // A worker may be inside a write() to the old file; give it a moment to land.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      absl::Status s = GzipFile(rotated, rotated + ".gz", mode);
      if (!s.ok()) LogError("log: ", s.message());
    });
  }
  return true;
}

absl::Status GzipFile(const std::string& src, const std::string& dst, unsigned mode) {
  FILE* in = fopen(src.c_str(), "rb");
  if (in == nullptr)
    return absl::UnavailableError(StrCat("cannot read ", src, ": ", strerror(errno)));
  std::string tmp = dst + ".tmp";
  int tfd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (tfd >= 0) fchmod(tfd, mode);
  gzFile out = tfd >= 0 ? gzdopen(tfd, "wb6") : nullptr;
  if (out == nullptr && tfd >= 0) close(tfd);
  if (out == nullptr) {
    fclose(in);
    return absl::UnavailableError(StrCat("cannot write ", tmp));
  }
  char buf[65536];
  size_t n;
  bool ok = true;
  while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
    if (gzwrite(out, buf, static_cast<unsigned>(n)) != static_cast<int>(n)) {
      ok = false;
      break;
    }
  }
  fclose(in);
  if (gzclose(out) != Z_OK) ok = false;
  if (!ok) {
    unlink(tmp.c_str());
    return absl::DataLossError(
        StrCat("compressing ", src, " failed; the uncompressed file is kept"));
  }
  rename(tmp.c_str(), dst.c_str());
  unlink(src.c_str());
  return absl::OkStatus();
}

}  // namespace bulwark
