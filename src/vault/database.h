// A database server reached through its own client programs (psql, pg_restore, mysql), the way
// an operator would by hand: the same authentication, the same error messages.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vault/config.h"
#include "core/process.h"

namespace bulwark::vault {

// A client program of a source and what it needs to log in. The password goes in a 0600 file in
// a private 0700 directory (libpq's PGPASSFILE; MySQL's --defaults-extra-file, which must be
// the program's first argument), removed when this goes; never in the environment, where any
// process of the same user reads it (/proc/<pid>/environ).
class ClientCommand {
 public:
  static absl::StatusOr<ClientCommand> Make(const SourceConfig& src,
                                            std::vector<std::string> argv);
  ClientCommand(ClientCommand&& o) noexcept
      : argv(std::move(o.argv)), env(std::move(o.env)), dir_(std::move(o.dir_)) {
    o.dir_.clear();
  }
  ClientCommand& operator=(ClientCommand&&) = delete;
  ClientCommand(const ClientCommand&) = delete;
  ~ClientCommand();

  std::vector<std::string> argv;
  EnvList env;

 private:
  ClientCommand() = default;
  std::string dir_;  // the secret's directory, removed with it
};

class DatabaseClient {
 public:
  // `src`: a pg_dump or mysqldump source (host, port, user, password, engine).
  explicit DatabaseClient(SourceConfig src) : src_(std::move(src)) {}

  bool postgres() const { return src_.Engine() == "postgres"; }
  // The first column of the first row of `sql` run in `db`, as text; "" for no rows.
  absl::StatusOr<std::string> Query(const std::string& db, const std::string& sql,
                                    int64_t timeout_ms = 600000) const;
  absl::StatusOr<bool> Exists(const std::string& db) const;
  absl::Status Create(const std::string& db) const;
  // Drops `db` if it exists, disconnecting its clients (PostgreSQL: WITH (FORCE)).
  absl::Status Drop(const std::string& db) const;
  // The program that takes a backup of this source on stdin and restores it into `db`
  // ("" with all_databases: the whole server).
  std::vector<std::string> RestoreArgv(const std::string& db) const;
  // `argv` (a client program of this source) with its login.
  absl::StatusOr<ClientCommand> Command(std::vector<std::string> argv) const {
    return ClientCommand::Make(src_, std::move(argv));
  }
  // A source that backs up `db` of this server the way the plan does.
  SourceConfig DumpOf(const std::string& db) const;
  // "postgres://user@host:port/db"
  std::string Describe(const std::string& db) const;
  // Runs one check in `db` (or the check's own database); the error says what was found.
  absl::Status RunCheck(const CheckConfig& c, const std::string& db) const;

  static std::string QuoteIdent(const std::string& name, bool postgres);
  static std::string QuoteLiteral(const std::string& value, bool postgres);

 private:
  std::string AdminDb() const { return postgres() ? "postgres" : ""; }
  SourceConfig src_;
};

// Runs a check that needs no database (`command`).
absl::Status RunCommandCheck(const CheckConfig& c);

}  // namespace bulwark::vault
