// The `vault:` block: where backups go, with which keys, and the plans that make them.
#pragma once

#include <map>
#include <optional>
#include <string>
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
  std::string type;  // pg_dump | command | files
  // pg_dump: one database, custom format, uncompressed (bulwark compresses).
  std::string host, user, password, database;
  int port = 5432;
  // command: argv; files: paths (a tar stream of them)
  std::vector<std::string> command;
  std::vector<std::string> paths;
  // The argv and extra environment that produce the stream.
  std::vector<std::string> Argv() const;
  std::vector<std::pair<std::string, std::string>> Env() const;
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
  bool encrypt = true;
  uint32_t chunk_size = 1 << 20;
  std::vector<std::string> storage;  // names; default: every storage
  RetentionConfig retention;
};

struct VaultConfig {
  bool enabled = false;
  std::string catalog = "/var/lib/bulwark/catalog.db";
  // The key ring: the first key encrypts, all of them decrypt (old keys stay for old archives).
  std::vector<ArchiveKey> keys;
  std::map<std::string, StorageConfig> storage;
  std::map<std::string, PlanConfig> plans;
};

void LoadVaultConfig(ConfigContext& ctx, const YAML::Node& node, const std::string& base_dir,
                     VaultConfig* out);

}  // namespace bulwark::vault
