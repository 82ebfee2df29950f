// The `vault:` block: where backups go, with which keys, and the plans that make them.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config_reader.h"
#include "core/cron.h"
#include "vault/archive.h"

namespace bulwark::vault {

// Where archives are kept. `local`: a directory (objects are written as NAME.partial and
// renamed once complete and synced). `s3`: a bucket of any S3-compatible service (multipart
// uploads, visible only once completed).
struct StorageConfig {
  std::string name;
  std::string type = "local";
  std::string path;  // local
  // s3
  std::string endpoint;  // default https://s3.<region>.amazonaws.com
  std::string bucket, region = "us-east-1", access_key, secret_key, prefix;
  bool path_style = false;  // default: true when `endpoint` is given
  int64_t part_size = 16 << 20;
};

// What a backup reads. Each source is a program whose stdout is the backup stream.
struct SourceConfig {
  // pg_dump | pg_basebackup | mysqldump | files | command
  std::string type;
  // pg_dump: one database in custom format, uncompressed (bulwark compresses), or with
  // all_databases every database of the server (pg_dumpall --clean --if-exists, plain SQL).
  // pg_basebackup: the whole cluster as one tar stream (-Ft -X fetch).
  // mysqldump: --single-transaction, one database or all_databases.
  std::string host, user, password, database;
  int port = 0;  // default 5432 (PostgreSQL) or 3306 (MySQL)
  bool all_databases = false;
  std::vector<std::string> options;  // extra flags for mysqldump / pg_dump
  // command: argv; restore_command: the argv that takes a backup back on its stdin.
  std::vector<std::string> command, restore_command;
  // files: absolute paths (a tar stream of them)
  std::vector<std::string> paths;
  // Variables of bulwark's own environment the program also gets; every other one stays behind
  // (process.h: children see PATH, HOME, LANG and TZ, and what bulwark sets for them).
  std::vector<std::string> pass_env;

  // The argv and extra environment that produce the stream.
  std::vector<std::string> Argv() const;
  std::vector<std::pair<std::string, std::string>> Env() const;
  // "postgres", "mysql" or "" (files, command).
  std::string Engine() const;
  // A single database that restores and checks can address.
  bool OneDatabase() const { return (type == "pg_dump" || type == "mysqldump") && !all_databases; }
};

// Run after a restore (and after the scratch restore of `backup verify`): a check fails the
// restore. `sql` must return `expect` (default: true — "t" on PostgreSQL, "1" on MySQL) as its
// first column of its first row; `table` + `min_rows` is short for a count; `command` is any
// program that must exit 0.
struct CheckConfig {
  std::string name;
  std::string sql, expect, table;
  int64_t min_rows = 0;
  std::string database;  // default: the database restored
  std::vector<std::string> command;
};

// retention.h: a backup stays when any rule keeps it; no rule keeps everything.
struct RetentionConfig {
  int count = 0;                           // the newest N
  int64_t max_age_ms = 0;                  // those younger than this
  int daily = 0, weekly = 0, monthly = 0;  // the newest of each of the last N days/weeks/months
};

struct PlanConfig {
  std::string name;
  SourceConfig source;
  std::optional<CronSchedule> schedule;
  std::string schedule_text;
  Compression compression = Compression::kZstd;
  int level = 3;
  int threads = 0;
  // zstd's window: 2^22 = 4 MiB by default, twice what level 3 picks on its own. Dumps repeat
  // over longer distances than that; on a pgbench dump it saves 1.5% for a quarter more
  // compression CPU (on the compressor's own threads). 0: the level's own choice.
  int window_log = 22;
  bool encrypt = true;
  uint32_t chunk_size = 1 << 20;
  std::vector<std::string> storage;  // names; default: every storage
  RetentionConfig retention;
  std::vector<CheckConfig> checks;
  // `backup verify` also restores a one-database PostgreSQL or MySQL backup into a scratch
  // database (bulwark_verify_<id>) and runs the checks there.
  bool verify_restore = true;
  bool verify_after_backup = false;  // scheduled and manual backups are verified right after
  // The source program's time: past it, it (and everything it started) is stopped and the
  // backup fails. Other plans' schedules run meanwhile (scheduler.h).
  int64_t timeout_ms = 24LL * 3600 * 1000;
};

// `bulwark drill NAME`: seed known rows in a database of its own, back it up with the plan's
// settings, break it, restore it, check every row came back, and measure RTO and RPO.
// A database name bulwark passes to pg_dump, pg_restore, psql or mysql: letters, digits, `_`,
// `$` and `-`, not starting with `-`, at most 63 bytes — never a connection string
// ("host=... dbname=...", "postgresql://..."), a path or an option.
bool IsPlainDatabaseName(std::string_view name);

// The plan whose source is database `name`, or null. A drill drops and
// re-creates its database: it must never be one that holds an application's data.
const PlanConfig* PlanWithSourceDatabase(const std::map<std::string, PlanConfig>& plans,
                                         std::string_view name);

struct DrillConfig {
  std::string name;
  std::string plan;  // a pg_dump or mysqldump plan: its server and storage
  std::string database = "bulwark_drill";
  int rows = 100;
  std::string break_mode = "drop_database";  // drop_database | command
  std::vector<std::string> break_command;
  int64_t rto_target_ms = 0, rpo_target_ms = 0;  // 0: not judged
};

// One step of a recovery plan (the IAM design's RecoveryStep).
struct StepConfig {
  std::string id, name, description;
  // command | http | restore | backup | promote | drill | drain-upstream | undrain-upstream
  std::string action;
  std::vector<std::string> command;
  // http, drain-upstream: the URL (drain: the bulwark admin address, e.g. http://127.0.0.1:9901)
  std::string url, method = "GET", body;
  int expect_status = 0;                        // 0: any 2xx
  // http: send bulwark's admin token as a bearer token (drain/undrain always send it).
  bool admin_token = false;
  std::string plan, backup = "latest", target;  // restore, backup
  std::string upstream, server;                 // drain-upstream
  std::string host, user, password;             // promote
  int port = 5432;
  int64_t timeout_ms = 60000;
  int retries = 0;  // attempts after the first
  int64_t retry_delay_ms = 5000;
  std::vector<std::string> depends;
  std::vector<StepConfig> undo;  // this step's own undo, run when a later step fails
};

struct RecoveryPlanConfig {
  std::string name, description;
  std::vector<StepConfig> steps;     // in dependency order once loaded
  std::vector<StepConfig> rollback;  // after the undo of completed steps
};

struct VaultConfig {
  bool enabled = false;
  std::string catalog = "/var/lib/bulwark/catalog.db";
  // Where a restore copies a backup and verifies it before applying it; "" = `staging` next to
  // the catalog.
  std::string staging;
  // The key ring: the first key encrypts, all of them decrypt (old keys stay for old archives).
  std::vector<ArchiveKey> keys;
  std::map<std::string, StorageConfig> storage;
  std::map<std::string, PlanConfig> plans;
  std::map<std::string, DrillConfig> drills;
  std::map<std::string, RecoveryPlanConfig> recovery;
  // What was accepted but not acted on (from a plans_file); printed as warnings.
  std::vector<std::string> notes;
};

void LoadVaultConfig(ConfigContext& ctx, const YAML::Node& node, VaultConfig* out);

}  // namespace bulwark::vault
