#include "vault/database.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/strings.h"

namespace bulwark::vault {

absl::StatusOr<ClientCommand> ClientCommand::Make(const SourceConfig& src,
                                                  std::vector<std::string> argv) {
  ClientCommand c;
  c.argv = std::move(argv);
  c.env = src.Env();
  if (src.password.empty() || src.Engine().empty()) return c;
  std::string text;
  if (src.password.find_first_of("\r\n") != std::string::npos) {
    return absl::InvalidArgumentError("the source's password contains a line break");
  }
  if (src.Engine() == "postgres") {
    // ~/.pgpass's format: host:port:database:user:password, ':' and '\\' escaped.
    text = "*:*:*:*:";
    for (char ch : src.password) {
      if (ch == ':' || ch == '\\') text.push_back('\\');
      text.push_back(ch);
    }
    text.push_back('\n');
  } else {
    // An option file: a quoted value, backslashes doubled.
    char quote = src.password.find('"') == std::string::npos ? '"' : '\'';
    if (quote == '\'' && src.password.find('\'') != std::string::npos) {
      return absl::InvalidArgumentError(
          "the source's password holds both quote characters; MySQL's option file cannot "
          "carry it");
    }
    text = "[client]\npassword=";
    text.push_back(quote);
    for (char ch : src.password) {
      if (ch == '\\') text.push_back('\\');
      text.push_back(ch);
    }
    text.push_back(quote);
    text.push_back('\n');
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = StrCat(tmp != nullptr && tmp[0] == '/' ? tmp : "/tmp", "/bulwark-login-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {
    return absl::InternalError(StrCat("cannot create a directory for the login file: ",
                                      std::strerror(errno)));
  }
  c.dir_ = dir;  // mkdtemp made it 0700; from here the destructor removes it
  std::string path = dir + "/login";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return absl::InternalError(StrCat("cannot create ", path, ": ", std::strerror(errno)));
  bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!written) return absl::InternalError(StrCat("cannot write ", path));
  if (src.Engine() == "postgres") {
    c.env.emplace_back("PGPASSFILE", path);
  } else if (!c.argv.empty()) {
    c.argv.insert(c.argv.begin() + 1, "--defaults-extra-file=" + path);
  }
  return c;
}

ClientCommand::~ClientCommand() {
  if (dir_.empty()) return;
  unlink((dir_ + "/login").c_str());
  rmdir(dir_.c_str());
}

std::string DatabaseClient::QuoteIdent(const std::string& name, bool postgres) {
  char q = postgres ? '"' : '`';
  std::string out(1, q);
  for (char c : name) {
    if (c == q) out += q;
    out += c;
  }
  out += q;
  return out;
}

std::string DatabaseClient::QuoteLiteral(const std::string& value, bool postgres) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') out += '\'';
    if (c == '\\' && !postgres) out += '\\';  // MySQL reads backslash escapes in literals
    out += c;
  }
  out += '\'';
  return out;
}

absl::StatusOr<std::string> DatabaseClient::Query(const std::string& db, const std::string& sql,
                                                  int64_t timeout_ms) const {
  std::vector<std::string> argv;
  std::string p = std::to_string(src_.port);
  if (postgres()) {
    argv = {"psql",
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            src_.host,
            "-p",
            p,
            "-U",
            src_.user,
            "--no-password",
            "-d",
            db.empty() ? AdminDb() : db,
            "-c",
            sql};
  } else {
    argv = {"mysql", "-N", "-B"};
    if (!src_.host.empty() && src_.host[0] == '/') {
      argv.push_back("--socket=" + src_.host);
    } else {
      argv.insert(argv.end(), {"--protocol=tcp", "-h", src_.host, "-P", p});
    }
    argv.push_back("-u" + src_.user);
    if (!db.empty()) argv.push_back("-D" + db);
    argv.insert(argv.end(), {"-e", sql});
  }
  std::string out;
  auto cmd = Command(std::move(argv));
  if (!cmd.ok()) return cmd.status();
  if (auto st = RunCapture(cmd->argv, cmd->env, timeout_ms, &out); !st.ok()) return st;
  size_t nl = out.find('\n');
  if (nl != std::string::npos) out.resize(nl);
  if (!postgres()) {
    size_t tab = out.find('\t');
    if (tab != std::string::npos) out.resize(tab);
  } else {
    size_t bar = out.find('|');
    if (bar != std::string::npos) out.resize(bar);
  }
  return std::string(Trim(out));
}

absl::StatusOr<bool> DatabaseClient::Exists(const std::string& db) const {
  auto r = Query(
      "", postgres() ? "SELECT 1 FROM pg_database WHERE datname = " + QuoteLiteral(db, postgres())
                     : "SELECT 1 FROM information_schema.schemata WHERE schema_name = " +
                           QuoteLiteral(db, postgres()));
  if (!r.ok()) return r.status();
  return *r == "1";
}

absl::Status DatabaseClient::Create(const std::string& db) const {
  return Query("", "CREATE DATABASE " + QuoteIdent(db, postgres())).status();
}

absl::Status DatabaseClient::Drop(const std::string& db) const {
  // PostgreSQL 13+: FORCE ends the database's sessions first (a restore cannot wait for them).
  return Query("", "DROP DATABASE IF EXISTS " + QuoteIdent(db, postgres()) +
                       (postgres() ? " WITH (FORCE)" : ""))
      .status();
}

std::vector<std::string> DatabaseClient::RestoreArgv(const std::string& db) const {
  std::string p = std::to_string(src_.port);
  if (postgres() && db.empty()) {
    // pg_dumpall's plain SQL; errors such as "role already exists" are expected, as with psql -f.
    return {"psql",          "-X", "-q",      "-h", src_.host, "-p", p, "-U", src_.user,
            "--no-password", "-d", "postgres"};
  }
  if (postgres()) {
    return {"pg_restore", "--exit-on-error", "-h", src_.host, "-p", p, "-U",
            src_.user,    "--no-password",   "-d", db};
  }
  std::vector<std::string> argv = {"mysql", "--default-character-set=utf8mb4"};
  if (!src_.host.empty() && src_.host[0] == '/') {
    argv.push_back("--socket=" + src_.host);
  } else {
    argv.insert(argv.end(), {"--protocol=tcp", "-h", src_.host, "-P", p});
  }
  argv.push_back("-u" + src_.user);
  if (!db.empty()) argv.push_back(db);
  return argv;
}

SourceConfig DatabaseClient::DumpOf(const std::string& db) const {
  SourceConfig s = src_;
  s.database = db;
  s.all_databases = db.empty();
  return s;
}

std::string DatabaseClient::Describe(const std::string& db) const {
  return StrCat(postgres() ? "postgres://" : "mysql://", src_.user, "@", src_.host, ":", src_.port,
                "/", db.empty() ? "(all databases)" : db);
}

absl::Status RunCommandCheck(const CheckConfig& c) {
  std::string out;
  auto st = RunCapture(c.command, {}, 600000, &out);
  if (!st.ok())
    return absl::FailedPreconditionError(StrCat("check \"", c.name, "\": ", st.message()));
  return absl::OkStatus();
}

absl::Status DatabaseClient::RunCheck(const CheckConfig& c, const std::string& db) const {
  if (!c.command.empty()) return RunCommandCheck(c);
  std::string sql = c.sql, expect = c.expect;
  if (!c.table.empty()) {
    sql = StrCat("SELECT count(*) >= ", c.min_rows, " FROM ", c.table);
    expect = "";
  }
  if (expect.empty()) expect = postgres() ? "t" : "1";
  auto got = Query(c.database.empty() ? db : c.database, sql);
  if (!got.ok()) {
    return absl::FailedPreconditionError(
        StrCat("check \"", c.name, "\": ", got.status().message()));
  }
  if (*got != expect) {
    std::string detail = *got;
    if (!c.table.empty()) {
      auto n = Query(c.database.empty() ? db : c.database, "SELECT count(*) FROM " + c.table);
      if (n.ok()) detail = *n + " rows";
    }
    return absl::FailedPreconditionError(StrCat("check \"", c.name, "\": expected ", expect,
                                                ", got ", detail.empty() ? "no rows" : detail));
  }
  return absl::OkStatus();
}

}  // namespace bulwark::vault
