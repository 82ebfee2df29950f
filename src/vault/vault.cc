#include "vault/vault.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "core/event_loop.h"
#include "core/log.h"
#include "core/process.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "vault/database.h"
#include "vault/retention.h"

namespace bulwark::vault {
namespace {


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

// Appends to a file descriptor (the staging copy).
class FdSink final : public ByteSink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  absl::Status Write(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return absl::UnavailableError(StrCat("staging: ", std::strerror(errno)));
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

 private:
  int fd_;
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
  auto rec = BackupPlan(pit->second, trigger, true);
  if (rec.ok() && rec->status == "ok" && pit->second.verify_after_backup) {
    return Verify(rec->id);
  }
  return rec;
}

absl::StatusOr<BackupRecord> Vault::BackupPlan(const PlanConfig& plan, const std::string& trigger,
                                               bool prune) {
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
  if (plan.source.OneDatabase()) rec.database = plan.source.database;
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
  o.window_log = plan.compression == Compression::kZstd ? plan.window_log : 0;
  o.key = key;
  o.chunk_size = plan.chunk_size;
  nlohmann::json meta = {{"plan", plan.name},
                         {"source", plan.source.type},
                         {"started", UtcStamp(rec.started_ms)},
                         {"catalog_id", rec.id}};
  if (plan.source.OneDatabase()) meta["database"] = plan.source.database;
  o.metadata = meta.dump();
  auto writer = ArchiveWriter::Create(o, &tee);
  if (!writer.ok()) return fail(writer.status());
  auto cmd = ClientCommand::Make(plan.source, plan.source.Argv());
  if (!cmd.ok()) return fail(cmd.status());
  if (auto st = RunSource(cmd->argv, cmd->env, writer->get(), plan.timeout_ms); !st.ok()) {
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
  if (!prune) return rec;
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
  // Safety backups (taken by restores) are outside the plan's rules: the newest three stay.
  std::vector<BackupRecord> scheduled;
  std::vector<int64_t> expired;
  int safety = 0;
  for (const BackupRecord& b : *all) {
    if (b.trigger == "safety") {
      if (b.status == "ok" && ++safety > 3) expired.push_back(b.id);
    } else if (b.trigger != "drill") {
      scheduled.push_back(b);
    }
  }
  for (int64_t id : Expired(scheduled, pit->second.retention, now_ms_())) expired.push_back(id);
  std::vector<int64_t> done;
  for (int64_t id : expired) {
    if (auto st = Delete(id); !st.ok()) return st;
    done.push_back(id);
  }
  return done;
}

absl::Status Vault::Delete(int64_t id) {
  auto rec = catalog_->Get(id);
  if (!rec.ok()) return rec.status();
  for (const std::string& s : rec->storage) {
    auto storage = StorageNamed(s);
    if (storage == nullptr) continue;  // no longer configured: nothing bulwark can delete
    if (auto st = storage->Remove(rec->object); !st.ok()) return st;
  }
  return catalog_->SetStatus(id, "deleted");
}

absl::Status Vault::ReadAndCheck(const BackupRecord& rec, Storage* storage, ByteSink* copy) {
  Sha256Sink sha;
  ArchiveReader reader(cfg_->keys, nullptr);
  reader.Expect(rec.key_id);
  std::vector<ByteSink*> sinks = {&sha, &reader};
  if (copy != nullptr) sinks.insert(sinks.begin(), copy);
  TeeSink tee(std::move(sinks));
  absl::Status st = storage->Read(rec.object, &tee);
  if (st.ok()) st = reader.Finish();
  if (!st.ok()) return st;
  if (sha.Hex() != rec.stored_sha256) {
    return absl::DataLossError("SHA-256 differs from the catalog's");
  }
  if (reader.raw_sha256() != rec.raw_sha256) {
    return absl::DataLossError("the original's SHA-256 differs from the catalog's");
  }
  return absl::OkStatus();
}

absl::StatusOr<BackupRecord> Vault::Verify(int64_t id, bool scratch_restore) {
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
    if (absl::Status st = ReadAndCheck(*rec, storage.get(), nullptr); !st.ok()) {
      error = StrCat(storage->Locate(rec->object), ": ", st.message());
      break;
    }
  }
  if (error.empty() && scratch_restore) {
    auto pit = cfg_->plans.find(rec->plan);
    if (pit != cfg_->plans.end() && pit->second.verify_restore &&
        pit->second.source.OneDatabase() && pit->second.source.type == rec->source) {
      if (auto st = VerifyByRestoring(*rec, pit->second); !st.ok()) {
        error = std::string(st.message());
      }
    }
  }
  if (auto st = catalog_->SetVerified(id, error.empty(), error, now_ms_()); !st.ok()) return st;
  return catalog_->Get(id);
}

Vault::Staged::~Staged() {
  if (!path.empty()) unlink(path.c_str());
}

absl::StatusOr<std::unique_ptr<Vault::Staged>> Vault::Stage(int64_t id) {
  auto rec = catalog_->Get(id);
  if (!rec.ok()) return rec.status();
  if (rec->status != "ok") {
    return absl::FailedPreconditionError(StrCat("backup ", id, " is ", rec->status));
  }
  if (rec->storage.empty()) return absl::NotFoundError(StrCat("backup ", id, " has no copies"));
  std::string dir = cfg_->staging;
  if (dir.empty()) {
    size_t slash = cfg_->catalog.rfind('/');
    dir = (slash == std::string::npos ? std::string(".") : cfg_->catalog.substr(0, slash)) +
          "/staging";
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(StrCat("staging directory ", dir, ": ", ec.message()));
  chmod(dir.c_str(), 0700);
  auto staged = std::make_unique<Staged>();
  staged->rec = *rec;
  std::string error;
  // The first copy that verifies; another storage is tried when one does not.
  for (const std::string& name : rec->storage) {
    auto storage = StorageNamed(name);
    if (storage == nullptr) {
      error = StrCat("storage \"", name, "\" is no longer configured");
      continue;
    }
    std::string path = StrCat(dir, "/backup-", id, "-XXXXXX");
    int fd = mkostemp(path.data(), O_CLOEXEC);  // 0600
    if (fd < 0) return absl::UnavailableError(StrCat(dir, ": ", std::strerror(errno)));
    staged->path = path;
    FdSink file(fd);
    absl::Status st = ReadAndCheck(*rec, storage.get(), &file);
    if (st.ok() && fsync(fd) != 0) st = absl::UnavailableError(std::strerror(errno));
    close(fd);
    if (st.ok()) return staged;
    unlink(staged->path.c_str());
    staged->path.clear();
    if (!error.empty()) error += "; ";
    error += StrCat(storage->Locate(rec->object), ": ", st.message());
  }
  return absl::DataLossError(error);
}

absl::Status Vault::ExtractStaged(const Staged& s, ByteSink* out) {
  int fd = open(s.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(StrCat(s.path, ": ", std::strerror(errno)));
  ArchiveReader reader(cfg_->keys, out);
  reader.Expect(s.rec.key_id);
  std::string buf(1 << 20, '\0');
  absl::Status st;
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) st = absl::UnavailableError(StrCat(s.path, ": ", std::strerror(errno)));
    if (n <= 0) break;
    st = reader.Write(std::string_view(buf.data(), static_cast<size_t>(n)));
    if (!st.ok()) break;
  }
  close(fd);
  if (st.ok()) st = reader.Finish();
  if (st.ok() && reader.raw_sha256() != s.rec.raw_sha256) {
    st = absl::DataLossError("the original's SHA-256 differs from the catalog's");
  }
  if (!st.ok()) return absl::DataLossError(StrCat(s.path, ": ", st.message()));
  return absl::OkStatus();
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
  reader.Expect(rec->key_id);
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
