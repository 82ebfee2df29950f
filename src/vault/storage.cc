#include "vault/storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/files.h"
#include "core/strings.h"
#include "vault/s3.h"

namespace bulwark::vault {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::UnavailableError(StrCat(what, ": ", std::strerror(errno)));
}

void SyncDir(const std::string& path) {
  std::string dir = path.substr(0, path.rfind('/'));
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

class LocalWriter final : public ObjectWriter {
 public:
  LocalWriter(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~LocalWriter() override { Abort(); }
  absl::Status Write(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno(Partial());
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }
  absl::Status Commit() override {
    if (fsync(fd_) != 0) return Errno(Partial());
    if (close(fd_) != 0) {
      fd_ = -1;
      return Errno(Partial());
    }
    fd_ = -1;
    if (rename(Partial().c_str(), path_.c_str()) != 0) return Errno(path_);
    SyncDir(path_);
    committed_ = true;
    return absl::OkStatus();
  }
  void Abort() override {
    if (committed_) return;
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    unlink(Partial().c_str());
  }

 private:
  std::string Partial() const { return path_ + ".partial"; }
  std::string path_;
  int fd_;
  bool committed_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ObjectWriter>> LocalStorage::Create(const std::string& object) {
  std::string path = Locate(object);
  if (auto st = MakeParentDirs(path); !st.ok()) return st;
  struct stat sb;
  if (stat(path.c_str(), &sb) == 0) {
    return absl::AlreadyExistsError(StrCat(path, " already exists"));
  }
  std::string partial = path + ".partial";
  int fd = open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno(partial);
  return std::unique_ptr<ObjectWriter>(new LocalWriter(path, fd));
}

absl::Status LocalStorage::Read(const std::string& object, ByteSink* out) {
  std::string path = Locate(object);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(path);
  std::string buf(1 << 20, '\0');
  absl::Status st;
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = Errno(path);
      break;
    }
    if (n == 0) break;
    st = out->Write(std::string_view(buf.data(), static_cast<size_t>(n)));
    if (!st.ok()) break;
  }
  close(fd);
  return st;
}

absl::Status LocalStorage::Remove(const std::string& object) {
  std::string path = Locate(object);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return Errno(path);
  return absl::OkStatus();
}

void LocalStorage::RemovePartial(const std::string& object) {
  unlink((Locate(object) + ".partial").c_str());
}

std::unique_ptr<Storage> MakeStorage(const StorageConfig& cfg) {
  if (cfg.type == "s3") return std::make_unique<S3Storage>(cfg);
  return std::make_unique<LocalStorage>(cfg);
}

}  // namespace bulwark::vault
