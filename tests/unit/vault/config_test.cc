#include "vault/config.h"

#include <gtest/gtest.h>

#include <string>

namespace bulwark::vault {
namespace {

EnvLookup StorageEnv() {
  return [](std::string_view name) -> std::optional<std::string> {
    if (name == "OSS_ACCESS_KEY") return "oss-id";
    if (name == "OSS_SECRET_KEY") return "oss-secret";
    if (name == "AWS_ACCESS_KEY") return "aws-id";
    if (name == "AWS_SECRET_KEY") return "aws-secret";
    if (name == "BACKUP_USERNAME") return "backup";
    if (name == "BACKUP_PASSWORD") return "pw";
    return std::nullopt;
  };
}

std::string Load(const std::string& yaml, VaultConfig* out) {
  ConfigContext ctx("bulwark.yml", StorageEnv());
  LoadVaultConfig(ctx, YAML::Load(yaml)["vault"], out);
  std::string all;
  for (const auto& e : ctx.errors()) all += e + "\n";
  return all;
}

TEST(VaultConfig, TheAlkaidSysBackupFileLoadsAsItIs) {
  VaultConfig c;
  std::string backup_yml =
      std::string(BULWARK_SOURCE_DIR) + "/../shared/fixtures/seeds/000-backup.yml";
  ASSERT_EQ(Load("vault:\n  keys: [{value: "
                 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f}]\n"
                 "  plans_file: " +
                     backup_yml + "\n",
                 &c),
            "");
  ASSERT_EQ(c.plans.size(), 2u);  // full and incremental; realtime has no schedule
  const PlanConfig& full = c.plans.at("full");
  EXPECT_EQ(full.schedule_text, "0 2 * * 0");
  EXPECT_EQ(full.retention.max_age_ms, int64_t{30} * 86400 * 1000);  // `retention: 30`: days
  EXPECT_EQ(full.compression, Compression::kZstd);
  EXPECT_TRUE(full.encrypt);
  EXPECT_EQ(full.source.type, "mysqldump");
  EXPECT_EQ(full.source.host, "mysql-master.alkaidsys.com");
  EXPECT_EQ(full.source.port, 3306);
  EXPECT_EQ(full.source.user, "backup");
  EXPECT_EQ(full.source.password, "pw");
  EXPECT_TRUE(full.source.all_databases);
  EXPECT_TRUE(full.source.options.empty());  // every flag of its dump_command is a default
  std::vector<std::string> argv = full.source.Argv();
  EXPECT_EQ(argv.back(), "--all-databases");
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--single-transaction"), argv.end());
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--default-character-set=utf8mb4"), argv.end());
  EXPECT_EQ(c.plans.at("incremental").schedule_text, "0 2 * * 1-6");
  EXPECT_EQ(c.plans.at("incremental").retention.max_age_ms, int64_t{7} * 86400 * 1000);
  EXPECT_EQ(full.storage, (std::vector<std::string>{"local", "aliyun_oss", "aws_s3"}));
  EXPECT_EQ(c.storage.at("local").path, "/backup/mysql");
  const StorageConfig& oss = c.storage.at("aliyun_oss");
  EXPECT_EQ(oss.type, "s3");
  EXPECT_EQ(oss.endpoint, "https://oss-cn-hangzhou.aliyuncs.com");
  EXPECT_EQ(oss.bucket, "alkaid-backup-primary");
  EXPECT_EQ(oss.access_key, "oss-id");
  const StorageConfig& s3 = c.storage.at("aws_s3");
  EXPECT_EQ(s3.region, "us-west-2");
  EXPECT_EQ(s3.endpoint, "");  // AWS's own
  // What was accepted but is not acted on is said.
  std::string notes;
  for (const auto& n : c.notes) notes += n + "\n";
  EXPECT_NE(notes.find("backup.types.realtime has no schedule"), std::string::npos) << notes;
  EXPECT_NE(notes.find("backup.types.incremental is taken as full dumps"), std::string::npos);
  EXPECT_NE(notes.find("max_size is not enforced"), std::string::npos);
}

TEST(VaultConfig, SourcesChecksAndDrillsAreChecked) {
  VaultConfig c;
  std::string errors = Load(
      "vault:\n  storage: {d: {path: /tmp/x}}\n  plans:\n"
      "    a:\n      encrypt: false\n      source: {type: pg_dump}\n"
      "    b:\n      encrypt: false\n      source: {type: files, paths: [/etc]}\n"
      "      checks: [{table: t, min_rows: 1}]\n"
      "    c:\n      encrypt: false\n      source: {type: mysqldump, all_databases: true}\n"
      "      checks: [{sql: 'SELECT 1'}]\n"
      "    e:\n      encrypt: false\n      source: {type: pg_dump, database: app}\n"
      "  drills:\n    d1: {plan: b}\n    d2: {plan: zz}\n"
      "    d3: {plan: e, database: app}\n    d4: {plan: e, database: 'x host=evil'}\n",
      &c);
  // A drill drops and re-creates its database: never an application's.
  EXPECT_NE(errors.find("vault.drills.d3.database: \"app\" is the source database of plan \"e\""),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("vault.drills.d4.database: \"x host=evil\" is not a plain database name"),
            std::string::npos)
      << errors;
  EXPECT_TRUE(IsPlainDatabaseName("bulwark_drill"));
  for (const char* bad :
       {"", "-h", "dbname=app host=10.0.0.9", "postgresql://evil/app", "a b", "../x", "a;b"})
    EXPECT_FALSE(IsPlainDatabaseName(bad)) << bad;
  EXPECT_NE(errors.find("vault.plans.a.source: give either database or all_databases: true"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("vault.plans.b.checks: sql and table checks need a pg_dump or mysqldump"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("vault.plans.c.checks: with all_databases each sql or table check names"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("vault.drills.d1.plan: drills need a pg_dump or mysqldump plan"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("vault.drills.d2.plan: no plan named \"zz\""), std::string::npos) << errors;
  // Every error names the file and line.
  EXPECT_NE(errors.find("bulwark.yml:"), std::string::npos) << errors;
  EXPECT_EQ(c.plans.at("c").source.port, 3306);
  EXPECT_EQ(c.plans.at("c").source.user, "root");
}

TEST(VaultConfig, ANameThatIsNotAStringIsAnErrorNotACrash) {
  VaultConfig c;
  std::string errors =
      Load("vault:\n  storage:\n    ? [a, b]\n    : {path: /tmp/x}\n  plans: [x]\n", &c);
  EXPECT_NE(errors.find("bulwark.yml:3:7: vault.storage: each name must be a plain string"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("vault.plans: a map of name: {source, schedule, ...}"), std::string::npos)
      << errors;
  EXPECT_TRUE(c.storage.empty());
}

}  // namespace
}  // namespace bulwark::vault
