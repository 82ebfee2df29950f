#include "vault/vault.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "core/event_loop.h"
#include "core/log.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "vault/retention.h"

extern char** environ;

namespace bulwark::vault {
namespace {

int64_t WallMs() { return WallMicros() / 1000; }

std::string UtcStamp(int64_t ms) { return FormatUtc(ms, "%Y%m%dT%H%M%SZ"); }

// Copies every write to several sinks; the first failure stops it.
class TeeSink final : public ByteSink {
 public:
  explicit TeeSink(std::vector<ByteSink*> sinks) : sinks_(std::move(sinks)) {}
  absl::Status Write(std::string_view data) override {
    for (ByteSink* s : sinks_) {
      if (auto st = s->Write(data); !st.ok()) return st;
    }
    return absl::OkStatus();
  }

 private:
  std::vector<ByteSink*> sinks_;
};

class Sha256Sink final : public ByteSink {
 public:
  Sha256Sink() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256Sink() override { EVP_MD_CTX_free(ctx_); }
  absl::Status Write(std::string_view data) override {
    EVP_DigestUpdate(ctx_, data.data(), data.size());
    return absl::OkStatus();
  }
  std::string Hex() {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, md, &n);
    return HexDigest(md, sizeof(md));
  }

 private:
  EVP_MD_CTX* ctx_;
};

}  // namespace

absl::Status RunSource(const std::vector<std::string>& argv,
                       const std::vector<std::pair<std::string, std::string>>& env, ByteSink* out) {
  if (argv.empty()) return absl::InvalidArgumentError("no command to run");
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError(std::strerror(errno));
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return absl::InternalError(std::strerror(errno));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    bool overridden = false;
    for (const auto& [k, v] : env) overridden = overridden || kv.substr(0, k.size() + 1) == k + "=";
    if (!overridden) env_strings.emplace_back(kv);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return absl::UnavailableError(StrCat("cannot run ", argv[0], ": ", std::strerror(rc)));
  }
  std::string err_tail, buf(256 * 1024, '\0');
  absl::Status sink_error;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
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
        if (sink_error.ok()) {
          sink_error = out->Write(data);
          if (!sink_error.ok()) kill(pid, SIGTERM);  // nowhere to put its output
        }
      } else {
        err_tail.append(data);
        if (err_tail.size() > 4096) err_tail.erase(0, err_tail.size() - 4096);
      }
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string tail(Trim(err_tail));
  std::string why = tail.empty() ? "" : StrCat(": ", tail);
  if (!sink_error.ok()) return sink_error;
  if (WIFSIGNALED(status)) {
    return absl::AbortedError(StrCat(argv[0], " was killed by signal ", WTERMSIG(status), why));
  }
  if (WEXITSTATUS(status) != 0) {
    return absl::AbortedError(StrCat(argv[0], " exited with status ", WEXITSTATUS(status), why));
  }
  return absl::OkStatus();
}

Vault::Vault(std::shared_ptr<const VaultConfig> cfg, Catalog* catalog)
    : cfg_(std::move(cfg)), catalog_(catalog), now_ms_(WallMs) {}

std::unique_ptr<Storage> Vault::StorageNamed(const std::string& name) const {
  auto it = cfg_->storage.find(name);
  if (it == cfg_->storage.end()) return nullptr;
  return MakeStorage(it->second);
}

absl::StatusOr<BackupRecord> Vault::Backup(const std::string& plan_name,
                                           const std::string& trigger) {
  auto pit = cfg_->plans.find(plan_name);
  if (pit == cfg_->plans.end()) {
    return absl::NotFoundError(StrCat("no backup plan named \"", plan_name, "\""));
  }
  const PlanConfig& plan = pit->second;
  BackupRecord rec;
  rec.plan = plan.name;
  rec.source = plan.source.type;
  rec.trigger = trigger;
  rec.started_ms = now_ms_();
  rec.compression = CompressionName(plan.compression);
  const ArchiveKey* key = plan.encrypt && !cfg_->keys.empty() ? &cfg_->keys.front() : nullptr;
  if (key != nullptr) rec.key_id = key->id;
  unsigned char rnd[3];
  RAND_bytes(rnd, sizeof(rnd));
  char suffix[8];
  snprintf(suffix, sizeof(suffix), "%02x%02x%02x", rnd[0], rnd[1], rnd[2]);
  rec.object =
      StrCat(plan.name, "/", plan.name, "-", UtcStamp(rec.started_ms), "-", suffix, ".bwv");
  rec.storage = plan.storage;
  rec.pid = getpid();
  auto id = catalog_->Begin(rec);
  if (!id.ok()) return id.status();
  rec.id = *id;

  auto fail = [&](const absl::Status& st) -> absl::StatusOr<BackupRecord> {
    rec.status = "failed";
    rec.error = std::string(st.message());
    rec.finished_ms = now_ms_();
    if (auto cst = catalog_->Finish(rec); !cst.ok()) return cst;
    return rec;
  };
  std::vector<std::unique_ptr<Storage>> storages;
  std::vector<std::unique_ptr<ObjectWriter>> objects;
  std::vector<ByteSink*> sinks;
  for (const std::string& s : plan.storage) {
    storages.push_back(StorageNamed(s));
    auto w = storages.back()->Create(rec.object);
    if (!w.ok()) return fail(w.status());
    sinks.push_back(w->get());
    objects.push_back(std::move(*w));
  }
  TeeSink tee(sinks);
  ArchiveOptions o;
  o.compression = plan.compression;
  o.level = plan.level;
  o.threads = plan.threads;
  o.key = key;
  o.chunk_size = plan.chunk_size;
  nlohmann::json meta = {{"plan", plan.name},
                         {"source", plan.source.type},
                         {"started", UtcStamp(rec.started_ms)},
                         {"catalog_id", rec.id}};
  if (plan.source.type == "pg_dump") meta["database"] = plan.source.database;
  o.metadata = meta.dump();
  auto writer = ArchiveWriter::Create(o, &tee);
  if (!writer.ok()) return fail(writer.status());
  if (auto st = RunSource(plan.source.Argv(), plan.source.Env(), writer->get()); !st.ok()) {
    return fail(st);  // the objects abort (and disappear) as they go out of scope
  }
  if (auto st = (*writer)->Finish(); !st.ok()) return fail(st);
  for (size_t i = 0; i < objects.size(); ++i) {
    if (auto st = objects[i]->Commit(); !st.ok()) {
      // Copies already committed are removed too: a backup is complete everywhere or nowhere.
      for (size_t j = 0; j < i; ++j) (void)storages[j]->Remove(rec.object);
      return fail(st);
    }
  }
  rec.status = "ok";
  rec.finished_ms = now_ms_();
  rec.raw_bytes = static_cast<int64_t>((*writer)->raw_bytes());
  rec.stored_bytes = static_cast<int64_t>((*writer)->stored_bytes());
  rec.raw_sha256 = (*writer)->raw_sha256();
  rec.stored_sha256 = (*writer)->stored_sha256();
  if (auto st = catalog_->Finish(rec); !st.ok()) {
    for (auto& s : storages) (void)s->Remove(rec.object);
    return st;
  }
  last_pruned_.clear();
  auto pruned = Prune(plan.name);
  if (pruned.ok()) {
    last_pruned_ = *pruned;
  } else {
    LogError("vault: retention of plan ", plan.name, ": ", pruned.status().message());
  }
  return rec;
}

absl::StatusOr<std::vector<int64_t>> Vault::Prune(const std::string& plan_name) {
  auto pit = cfg_->plans.find(plan_name);
  if (pit == cfg_->plans.end()) {
    return absl::NotFoundError(StrCat("no backup plan named \"", plan_name, "\""));
  }
  auto all = catalog_->List(plan_name);
  if (!all.ok()) return all.status();
  std::vector<int64_t> done;
  for (int64_t id : Expired(*all, pit->second.retention, now_ms_())) {
    auto rec = catalog_->Get(id);
    if (!rec.ok()) return rec.status();
    for (const std::string& s : rec->storage) {
      auto storage = StorageNamed(s);
      if (storage == nullptr) continue;  // no longer configured: nothing bulwark can delete
      if (auto st = storage->Remove(rec->object); !st.ok()) return st;
    }
    if (auto st = catalog_->SetStatus(id, "deleted"); !st.ok()) return st;
    done.push_back(id);
  }
  return done;
}

absl::StatusOr<BackupRecord> Vault::Verify(int64_t id) {
  auto rec = catalog_->Get(id);
  if (!rec.ok()) return rec.status();
  if (rec->status != "ok") {
    return absl::FailedPreconditionError(
        StrCat("backup ", id, " is ", rec->status, "; only complete backups can be verified"));
  }
  std::string error;
  for (const std::string& name : rec->storage) {
    auto storage = StorageNamed(name);
    if (storage == nullptr) {
      error = StrCat("storage \"", name, "\" is no longer configured");
      break;
    }
    Sha256Sink sha;
    ArchiveReader reader(cfg_->keys, nullptr);
    TeeSink tee({&sha, &reader});
    absl::Status st = storage->Read(rec->object, &tee);
    if (st.ok()) st = reader.Finish();
    std::string where = storage->Locate(rec->object);
    if (!st.ok()) {
      error = StrCat(where, ": ", st.message());
      break;
    }
    if (sha.Hex() != rec->stored_sha256) {
      error = StrCat(where, ": SHA-256 differs from the catalog's");
      break;
    }
    if (reader.raw_sha256() != rec->raw_sha256) {
      error = StrCat(where, ": the original's SHA-256 differs from the catalog's");
      break;
    }
  }
  if (auto st = catalog_->SetVerified(id, error.empty(), error, now_ms_()); !st.ok()) return st;
  return catalog_->Get(id);
}

absl::Status Vault::Extract(int64_t id, ByteSink* out) {
  auto rec = catalog_->Get(id);
  if (!rec.ok()) return rec.status();
  if (rec->status != "ok") {
    return absl::FailedPreconditionError(StrCat("backup ", id, " is ", rec->status));
  }
  if (rec->storage.empty()) return absl::NotFoundError(StrCat("backup ", id, " has no copies"));
  auto storage = StorageNamed(rec->storage.front());
  if (storage == nullptr) {
    return absl::NotFoundError(
        StrCat("storage \"", rec->storage.front(), "\" is no longer configured"));
  }
  ArchiveReader reader(cfg_->keys, out);
  std::string where = storage->Locate(rec->object);
  absl::Status st = storage->Read(rec->object, &reader);
  if (st.ok()) st = reader.Finish();
  if (!st.ok()) return absl::DataLossError(StrCat(where, ": ", st.message()));
  if (reader.raw_sha256() != rec->raw_sha256) {
    return absl::DataLossError(
        StrCat(where, ": the original's SHA-256 differs from the catalog's"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Vault::RecoverInterrupted() {
  auto all = catalog_->List();
  if (!all.ok()) return all.status();
  int n = 0;
  for (BackupRecord& b : *all) {
    if (b.status != "running") continue;
    if (b.pid > 0 && b.pid != getpid() && kill(static_cast<pid_t>(b.pid), 0) == 0) continue;
    for (const std::string& s : b.storage) {
      if (auto st = StorageNamed(s)) st->RemovePartial(b.object);
    }
    b.status = "failed";
    b.error = "interrupted: the process writing it stopped before it was complete";
    b.finished_ms = now_ms_();
    if (auto st = catalog_->Finish(b); !st.ok()) return st;
    ++n;
  }
  return n;
}

}  // namespace bulwark::vault
