#include "vault/catalog.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "core/files.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace bulwark::vault {
namespace {

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(s_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  absl::Status Error() const {
    return absl::InternalError(StrCat("catalog: ", sqlite3_errmsg(db_)));
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  int Step() { return sqlite3_step(s_); }
  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  std::string Text(int col) const {
    const unsigned char* t = sqlite3_column_text(s_, col);
    return t == nullptr ? "" : reinterpret_cast<const char*>(t);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

constexpr const char* kColumns =
    "id, plan, source, trigger, status, started_ms, finished_ms, raw_bytes, stored_bytes, "
    "raw_sha256, stored_sha256, compression, key_id, object, storage, pid, error, verified, "
    "verified_ms, verify_error, database";

BackupRecord Row(const Stmt& s) {
  BackupRecord b;
  b.id = s.Int(0);
  b.plan = s.Text(1);
  b.source = s.Text(2);
  b.trigger = s.Text(3);
  b.status = s.Text(4);
  b.started_ms = s.Int(5);
  b.finished_ms = s.Int(6);
  b.raw_bytes = s.Int(7);
  b.stored_bytes = s.Int(8);
  b.raw_sha256 = s.Text(9);
  b.stored_sha256 = s.Text(10);
  b.compression = s.Text(11);
  b.key_id = s.Text(12);
  b.object = s.Text(13);
  auto j = nlohmann::json::parse(s.Text(14), nullptr, false);
  if (j.is_array()) {
    for (const auto& e : j) {
      if (e.is_string()) b.storage.push_back(e.get<std::string>());
    }
  }
  b.pid = s.Int(15);
  b.error = s.Text(16);
  b.verified = s.Text(17);
  b.verified_ms = s.Int(18);
  b.verify_error = s.Text(19);
  b.database = s.Text(20);
  return b;
}

}  // namespace

nlohmann::json BackupJson(const BackupRecord& b) {
  auto utc = [](int64_t ms) { return ms <= 0 ? "-" : FormatUtc(ms, "%Y-%m-%dT%H:%M:%SZ"); };
  nlohmann::json j = {{"id", b.id},
                      {"plan", b.plan},
                      {"source", b.source},
                      {"trigger", b.trigger},
                      {"status", b.status},
                      {"started", utc(b.started_ms)},
                      {"finished", utc(b.finished_ms)},
                      {"started_ms", b.started_ms},
                      {"finished_ms", b.finished_ms},
                      {"raw_bytes", b.raw_bytes},
                      {"stored_bytes", b.stored_bytes},
                      {"raw_sha256", b.raw_sha256},
                      {"stored_sha256", b.stored_sha256},
                      {"compression", b.compression},
                      {"key_id", b.key_id},
                      {"object", b.object},
                      {"storage", b.storage},
                      {"verified", b.verified}};
  if (b.verified_ms > 0) j["verified_ms"] = b.verified_ms;
  if (!b.database.empty()) j["database"] = b.database;
  if (!b.error.empty()) j["error"] = b.error;
  if (!b.verify_error.empty()) j["verify_error"] = b.verify_error;
  return j;
}

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Open(const std::string& path) {
  // Its directory is made on first use (0700: the catalog names every backup).
  if (auto st = MakeParentDirs(path); !st.ok()) return st;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(StrCat("catalog ", path, ": ", msg));
  }
  // 0600 whoever made it: it names every backup, its key id and checksums. SQLite gives the
  // -wal and -shm files the database file's mode, so this comes before WAL mode.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::string f = path + suffix;
    if (chmod(f.c_str(), 0600) != 0 && errno != ENOENT && *suffix == '\0') {
      std::string e = std::strerror(errno);
      sqlite3_close(db);
      return absl::PermissionDeniedError(StrCat("catalog ", path, ": cannot set mode 0600: ", e));
    }
  }
  sqlite3_busy_timeout(db, 10000);  // a scheduled backup and a CLI call may meet
  std::unique_ptr<Catalog> c(new Catalog(db));
  MutexLock lock(&c->mu_);  // no other thread has it yet; the analysis wants it held
  // WAL: readers (the admin API, `backup list`) never wait for a running backup's writes.
  if (auto st = c->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"); !st.ok()) return st;
  if (auto st =
          c->Exec("CREATE TABLE IF NOT EXISTS backups ("
                  " id INTEGER PRIMARY KEY AUTOINCREMENT, plan TEXT NOT NULL, source TEXT NOT NULL,"
                  " trigger TEXT NOT NULL, status TEXT NOT NULL, started_ms INTEGER NOT NULL,"
                  " finished_ms INTEGER NOT NULL DEFAULT 0, raw_bytes INTEGER NOT NULL DEFAULT 0,"
                  " stored_bytes INTEGER NOT NULL DEFAULT 0, raw_sha256 TEXT NOT NULL DEFAULT '',"
                  " stored_sha256 TEXT NOT NULL DEFAULT '', compression TEXT NOT NULL DEFAULT '',"
                  " key_id TEXT NOT NULL DEFAULT '', object TEXT NOT NULL, storage TEXT NOT NULL,"
                  " pid INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '',"
                  " verified TEXT NOT NULL DEFAULT '', verified_ms INTEGER NOT NULL DEFAULT 0,"
                  " verify_error TEXT NOT NULL DEFAULT '');"
                  "CREATE INDEX IF NOT EXISTS backups_plan ON backups (plan, started_ms);"
                  // Restores, drills and recovery-plan runs: one row each, the detail as JSON.
                  "CREATE TABLE IF NOT EXISTS reports ("
                  " id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, name TEXT NOT NULL,"
                  " status TEXT NOT NULL, started_ms INTEGER NOT NULL,"
                  " finished_ms INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '{}');"
                  "CREATE INDEX IF NOT EXISTS reports_kind ON reports (kind, name, id);");
      !st.ok()) {
    return st;
  }
  // Added after the first release of the catalog: older files get the column (empty).
  if (auto st = c->Exec("ALTER TABLE backups ADD COLUMN database TEXT NOT NULL DEFAULT ''");
      !st.ok() && st.message().find("duplicate column") == std::string_view::npos) {
    return st;
  }
  return c;
}

Catalog::~Catalog() { sqlite3_close(db_); }

absl::Status Catalog::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "error";
    sqlite3_free(err);
    return absl::InternalError(StrCat("catalog: ", msg));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Catalog::Begin(const BackupRecord& b) {
  MutexLock lock(&mu_);
  Stmt s(db_,
         "INSERT INTO backups (plan, source, trigger, status, started_ms, compression, key_id,"
         " object, storage, pid, database) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)");
  if (!s.ok()) return s.Error();
  s.Bind(1, b.plan).Bind(2, b.source).Bind(3, b.trigger).Bind(4, b.started_ms);
  s.Bind(5, b.compression).Bind(6, b.key_id).Bind(7, b.object);
  s.Bind(8, nlohmann::json(b.storage).dump()).Bind(9, b.pid).Bind(10, b.database);
  if (s.Step() != SQLITE_DONE) return s.Error();
  return sqlite3_last_insert_rowid(db_);
}

absl::Status Catalog::Finish(const BackupRecord& b) {
  MutexLock lock(&mu_);
  Stmt s(db_,
         "UPDATE backups SET status = ?, finished_ms = ?, raw_bytes = ?, stored_bytes = ?,"
         " raw_sha256 = ?, stored_sha256 = ?, storage = ?, error = ?, pid = 0 WHERE id = ?");
  if (!s.ok()) return s.Error();
  s.Bind(1, b.status).Bind(2, b.finished_ms).Bind(3, b.raw_bytes).Bind(4, b.stored_bytes);
  s.Bind(5, b.raw_sha256).Bind(6, b.stored_sha256).Bind(7, nlohmann::json(b.storage).dump());
  s.Bind(8, b.error).Bind(9, b.id);
  if (s.Step() != SQLITE_DONE) return s.Error();
  return absl::OkStatus();
}

absl::Status Catalog::SetVerified(int64_t id, bool ok, const std::string& error, int64_t now_ms) {
  MutexLock lock(&mu_);
  Stmt s(db_, "UPDATE backups SET verified = ?, verified_ms = ?, verify_error = ? WHERE id = ?");
  if (!s.ok()) return s.Error();
  s.Bind(1, std::string(ok ? "ok" : "failed")).Bind(2, now_ms).Bind(3, error).Bind(4, id);
  if (s.Step() != SQLITE_DONE) return s.Error();
  return absl::OkStatus();
}

absl::Status Catalog::SetStatus(int64_t id, const std::string& status) {
  MutexLock lock(&mu_);
  Stmt s(db_, "UPDATE backups SET status = ? WHERE id = ?");
  if (!s.ok()) return s.Error();
  s.Bind(1, status).Bind(2, id);
  if (s.Step() != SQLITE_DONE) return s.Error();
  return absl::OkStatus();
}

absl::StatusOr<BackupRecord> Catalog::Get(int64_t id) {
  MutexLock lock(&mu_);
  Stmt s(db_, StrCat("SELECT ", kColumns, " FROM backups WHERE id = ?").c_str());
  if (!s.ok()) return s.Error();
  s.Bind(1, id);
  int rc = s.Step();
  if (rc == SQLITE_DONE) return absl::NotFoundError(StrCat("no backup ", id, " in the catalog"));
  if (rc != SQLITE_ROW) return s.Error();
  return Row(s);
}

absl::StatusOr<std::vector<BackupRecord>> Catalog::List(const std::string& plan) {
  MutexLock lock(&mu_);
  Stmt s(db_, StrCat("SELECT ", kColumns,
                     " FROM backups WHERE (? = '' OR plan = ?) ORDER BY started_ms DESC, id DESC")
                  .c_str());
  if (!s.ok()) return s.Error();
  s.Bind(1, plan).Bind(2, plan);
  std::vector<BackupRecord> out;
  for (;;) {
    int rc = s.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return s.Error();
    out.push_back(Row(s));
  }
  return out;
}

absl::StatusOr<int64_t> Catalog::AddReport(const Report& r) {
  MutexLock lock(&mu_);
  Stmt s(db_,
         "INSERT INTO reports (kind, name, status, started_ms, finished_ms, detail)"
         " VALUES (?, ?, ?, ?, ?, ?)");
  if (!s.ok()) return s.Error();
  s.Bind(1, r.kind).Bind(2, r.name).Bind(3, r.status).Bind(4, r.started_ms);
  s.Bind(5, r.finished_ms).Bind(6, r.detail);
  if (s.Step() != SQLITE_DONE) return s.Error();
  return sqlite3_last_insert_rowid(db_);
}

absl::Status Catalog::UpdateReport(const Report& r) {
  MutexLock lock(&mu_);
  Stmt s(db_, "UPDATE reports SET status = ?, finished_ms = ?, detail = ? WHERE id = ?");
  if (!s.ok()) return s.Error();
  s.Bind(1, r.status).Bind(2, r.finished_ms).Bind(3, r.detail).Bind(4, r.id);
  if (s.Step() != SQLITE_DONE) return s.Error();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Report>> Catalog::Reports(const std::string& kind,
                                                     const std::string& name, int limit) {
  MutexLock lock(&mu_);
  Stmt s(db_,
         "SELECT id, kind, name, status, started_ms, finished_ms, detail FROM reports"
         " WHERE kind = ? AND (? = '' OR name = ?) ORDER BY id DESC LIMIT ?");
  if (!s.ok()) return s.Error();
  s.Bind(1, kind).Bind(2, name).Bind(3, name).Bind(4, int64_t{limit});
  std::vector<Report> out;
  for (;;) {
    int rc = s.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return s.Error();
    Report r;
    r.id = s.Int(0);
    r.kind = s.Text(1);
    r.name = s.Text(2);
    r.status = s.Text(3);
    r.started_ms = s.Int(4);
    r.finished_ms = s.Int(5);
    r.detail = s.Text(6);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace bulwark::vault
