#include "vault/config.h"

#include <algorithm>
#include <cstdlib>
#include <set>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/files.h"
#include "core/strings.h"

namespace bulwark::vault {

std::vector<std::string> SourceConfig::Argv() const {
  std::string p = std::to_string(port);
  if (type == "pg_dump" && all_databases) {
    // Plain SQL that drops and re-creates each database it holds: replaying it is a restore.
    std::vector<std::string> argv = {"pg_dumpall", "--clean", "--if-exists", "-h", host,
                                     "-p",         p,         "-U",          user, "--no-password"};
    argv.insert(argv.end(), options.begin(), options.end());
    return argv;
  }
  if (type == "pg_dump") {
    // -Fc: pg_restore can pick and reorder; -Z0: bulwark compresses (zstd beats pg_dump's zlib).
    std::vector<std::string> argv = {"pg_dump", "-Fc", "-Z0", "-h", host,
                                     "-p",      p,     "-U",  user, "--no-password"};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back(database);
    return argv;
  }
  if (type == "pg_basebackup") {
    // To stdout only as one tar (one tablespace), with the WAL it needs inside (-X fetch).
    return {"pg_basebackup",
            "-h",
            host,
            "-p",
            p,
            "-U",
            user,
            "-D",
            "-",
            "-Ft",
            "-X",
            "fetch",
            "--checkpoint=fast",
            "--no-password"};
  }
  if (type == "mysqldump") {
    std::vector<std::string> argv = {
        "mysqldump",  "--single-transaction",           "--routines", "--triggers", "--events",
        "--hex-blob", "--default-character-set=utf8mb4"};
    if (!host.empty() && host[0] == '/') {
      argv.push_back("--socket=" + host);
    } else {
      argv.insert(argv.end(), {"--protocol=tcp", "-h", host, "-P", p});
    }
    argv.push_back("-u" + user);
    argv.insert(argv.end(), options.begin(), options.end());
    if (all_databases) {
      argv.push_back("--all-databases");
    } else {
      argv.push_back(database);
    }
    return argv;
  }
  if (type == "files") {
    std::vector<std::string> argv = {"tar", "--create", "--file=-", "--absolute-names", "--"};
    argv.insert(argv.end(), paths.begin(), paths.end());
    return argv;
  }
  return command;
}

std::vector<std::pair<std::string, std::string>> SourceConfig::Env() const {
  std::vector<std::pair<std::string, std::string>> env;
  for (const std::string& name : pass_env) {
    if (const char* v = std::getenv(name.c_str())) env.emplace_back(name, v);
  }
  return env;  // the password goes in a file (ClientCommand), never the environment
}

std::string SourceConfig::Engine() const {
  if (type == "pg_dump" || type == "pg_basebackup") return "postgres";
  if (type == "mysqldump") return "mysql";
  return "";
}

namespace {

void LoadKey(ConfigContext& ctx, const YAML::Node& node, VaultConfig* out) {
  MapReader r(ctx, node, "vault.keys[]");
  if (!r.valid()) return;
  std::string env, file, value, text;
  r.String("env", &env);
  r.String("file", &file);
  r.String("value", &value);
  r.Finish();
  int given = !env.empty() + !file.empty() + !value.empty();
  if (given != 1) {
    ctx.Error(node.Mark(), "vault.keys[]: give exactly one of env, file or value");
    return;
  }
  if (!env.empty()) {
    auto v = ctx.env()(env);
    if (!v) {
      ctx.Error(node.Mark(), StrCat("vault.keys[]: environment variable ", env, " is not set"));
      return;
    }
    text = *v;
  } else if (!file.empty()) {
    std::string path = ctx.Resolve(file);
    auto f = ReadFileToString(path, 4096);
    if (!f.ok()) {
      ctx.Error(node.Mark(), StrCat("vault.keys[]: ", path, ": ", f.status().message()));
      return;
    }
    text = *f;
  } else {
    text = value;
  }
  auto k = ParseKey(text);
  if (!k.ok()) {
    ctx.Error(node.Mark(), StrCat("vault.keys[]: ", k.status().message()));
    return;
  }
  for (const ArchiveKey& have : out->keys) {
    if (have.id == k->id) {
      ctx.Error(node.Mark(), StrCat("vault.keys[]: key ", k->id, " is listed twice"));
      return;
    }
  }
  out->keys.push_back(*k);
}

void LoadSource(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                SourceConfig* s) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  r.Require("type");
  r.Enum("type", {"pg_dump", "pg_basebackup", "mysqldump", "command", "files"}, &s->type);
  r.StringList("pass_env", &s->pass_env);
  for (const std::string& name : s->pass_env) {
    bool ok = !name.empty() && !(name[0] >= '0' && name[0] <= '9');
    for (char c : name)
      ok = ok &&
           ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    if (!ok) {
      ctx.Error(r.Get("pass_env").Mark(),
                StrCat(what, ".pass_env: \"", name, "\" is not an environment variable name"));
    }
  }
  if (s->Engine() != "") {
    bool mysql = s->Engine() == "mysql";
    r.String("host", &s->host);
    s->port = mysql ? 3306 : 5432;
    r.Int("port", &s->port, 1, 65535);
    r.String("user", &s->user);
    r.String("password", &s->password);
    if (s->type != "pg_basebackup") {
      r.Bool("all_databases", &s->all_databases);
      r.String("database", &s->database);
      r.StringList("options", &s->options);
      if (s->database.empty() == !s->all_databases) {
        ctx.Error(node.Mark(), StrCat(what, ": give either database or all_databases: true"));
      }
    }
    if (s->host.empty()) s->host = "127.0.0.1";
    if (s->user.empty()) s->user = mysql ? "root" : "postgres";
  } else if (s->type == "command") {
    r.Require("command");
    r.StringList("command", &s->command);
    r.StringList("restore_command", &s->restore_command);
    if (r.Has("command") && s->command.empty()) {
      ctx.Error(node.Mark(),
                StrCat(what, ".command: an argv list, e.g. [redis-cli, --rdb, /dev/stdout]"));
    }
  } else if (s->type == "files") {
    r.Require("paths");
    r.StringList("paths", &s->paths);
    for (const std::string& p : s->paths) {
      if (p.empty() || p[0] != '/') {
        ctx.Error(node.Mark(), StrCat(what, ".paths: \"", p, "\" is not an absolute path"));
      }
    }
  }
  r.Finish();
}

void LoadCheck(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
               CheckConfig* c) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  r.String("name", &c->name);
  r.String("sql", &c->sql);
  r.String("expect", &c->expect);
  r.String("table", &c->table);
  r.Int("min_rows", &c->min_rows, 0, int64_t{1} << 62);
  r.String("database", &c->database);
  r.StringList("command", &c->command);
  r.Finish();
  int kinds = !c->sql.empty() + !c->table.empty() + !c->command.empty();
  if (kinds != 1) {
    ctx.Error(node.Mark(), StrCat(what, ": give one of sql, table (with min_rows) or command"));
  }
  if (c->name.empty()) {
    c->name = !c->table.empty()    ? StrCat(c->table, " has at least ", c->min_rows, " rows")
              : !c->sql.empty()    ? c->sql
              : c->command.empty() ? ""
                                   : absl::StrJoin(c->command, " ");
  }
}

const std::vector<std::string_view> kActions = {
    "command", "http",  "restore",        "backup",
    "promote", "drill", "drain-upstream", "undrain-upstream"};

void LoadStep(ConfigContext& ctx, const YAML::Node& node, const std::string& what, StepConfig* st) {
  MapReader r(ctx, node, what);
  if (!r.valid()) return;
  r.String("id", &st->id);
  r.String("name", &st->name);
  r.String("description", &st->description);
  r.Require("action");
  r.Enum("action", kActions, &st->action);
  r.StringList("command", &st->command);
  r.String("url", &st->url);
  r.Enum("method", {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"}, &st->method);
  r.String("body", &st->body);
  r.Int("expect_status", &st->expect_status, 100, 599);
  r.Bool("admin_token", &st->admin_token);
  r.String("plan", &st->plan);
  r.String("backup", &st->backup);
  r.String("target", &st->target);
  r.String("upstream", &st->upstream);
  r.String("server", &st->server);
  r.String("host", &st->host);
  r.Int("port", &st->port, 1, 65535);
  r.String("user", &st->user);
  r.String("password", &st->password);
  r.Duration("timeout", &st->timeout_ms);
  r.Int("retries", &st->retries, 0, 100);
  r.Duration("retry_delay", &st->retry_delay_ms);
  r.StringList("depends", &st->depends);
  YAML::Node undo = r.Get("undo");
  if (undo.IsDefined()) {
    // One action or a list of them.
    if (undo.IsSequence()) {
      for (size_t i = 0; i < undo.size(); ++i) {
        st->undo.emplace_back();
        LoadStep(ctx, undo[i], StrCat(what, ".undo[", i, "]"), &st->undo.back());
      }
    } else {
      st->undo.emplace_back();
      LoadStep(ctx, undo, what + ".undo", &st->undo.back());
    }
  }
  r.Finish();
  auto need = [&](bool ok, std::string_view field) {
    if (!ok) ctx.Error(node.Mark(), StrCat(what, ": action ", st->action, " needs ", field));
  };
  if (st->action == "command") need(!st->command.empty(), "command (an argv list)");
  if (st->action == "http") need(!st->url.empty(), "url");
  if (st->admin_token && st->action != "http") {
    ctx.Error(r.Get("admin_token").Mark(),
              StrCat(what,
                     ".admin_token: only http steps take it (drain-upstream and "
                     "undrain-upstream always send the admin token)"));
  }
  if (st->action == "restore" || st->action == "backup" || st->action == "drill") {
    need(!st->plan.empty(), "plan");
  }
  if (st->action == "promote") need(!st->host.empty(), "host");
  if (st->action == "drain-upstream" || st->action == "undrain-upstream") {
    need(!st->url.empty(), "url (the bulwark admin address)");
    need(!st->upstream.empty(), "upstream");
    need(!st->server.empty(), "server");
  }
  if (st->user.empty()) st->user = "postgres";
  if (st->name.empty()) st->name = st->id.empty() ? st->action : st->id;
}

// Orders steps so each comes after the steps it depends on (file order otherwise), as Kahn's
// algorithm; unknown ids and cycles are errors.
void OrderSteps(ConfigContext& ctx, const YAML::Node& node, const std::string& what,
                std::vector<StepConfig>* steps) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < steps->size(); ++i) {
    StepConfig& st = (*steps)[i];
    if (st.id.empty()) st.id = StrCat("step-", i + 1);
    if (!index.emplace(st.id, i).second) {
      ctx.Error(node.Mark(), StrCat(what, ": two steps have the id \"", st.id, "\""));
      return;
    }
  }
  for (const StepConfig& st : *steps) {
    for (const std::string& d : st.depends) {
      if (!index.count(d)) {
        ctx.Error(node.Mark(), StrCat(what, ": step \"", st.id, "\" depends on \"", d,
                                      "\", which is not a step"));
        return;
      }
    }
  }
  std::vector<StepConfig> ordered;
  std::vector<bool> placed(steps->size(), false);
  std::set<std::string> done;
  while (ordered.size() < steps->size()) {
    bool progress = false;
    for (size_t i = 0; i < steps->size(); ++i) {
      if (placed[i]) continue;
      bool ready = true;
      for (const std::string& d : (*steps)[i].depends) ready = ready && done.count(d) > 0;
      if (!ready) continue;
      placed[i] = true;
      done.insert((*steps)[i].id);
      ordered.push_back((*steps)[i]);
      progress = true;
      break;  // restart: keep file order among the ready ones
    }
    if (!progress) {
      ctx.Error(node.Mark(), StrCat(what, ": the steps' dependencies form a cycle"));
      return;
    }
  }
  *steps = std::move(ordered);
}

}  // namespace

// A backup plan file in the shape teams write for their own scripts (the AlkaidSYS backup.yml):
// `backup.types` (schedule, retention in days, compress, encrypt), `backup.storage.local` and
// `.cloud` (aws_s3, aliyun_oss), `backup.database.mysql` (the flags of its dump_command are
// kept). Each type becomes a plan of that name; `backup_scripts` are what bulwark replaces.
void LoadPlansFile(ConfigContext& parent, const std::string& path, VaultConfig* out) {
  ConfigContext ctx(path, parent.env());
  auto root = LoadYamlFile(ctx, path);
  if (root && (!root->IsMap() || !(*root)["backup"].IsDefined())) {
    ctx.Error("no top-level `backup:` mapping");
  } else if (root) {
    YAML::Node backup = (*root)["backup"];
    MapReader br(ctx, backup, "backup");
    // storage
    std::vector<std::string> storages;
    YAML::Node storage = br.Get("storage");
    if (storage.IsDefined()) {
      MapReader sr(ctx, storage, "backup.storage");
      YAML::Node local = sr.Get("local");
      if (local.IsDefined()) {
        StorageConfig sc;
        sc.name = "local";
        MapReader lr(ctx, local, "backup.storage.local");
        lr.Require("path");
        lr.String("path", &sc.path);
        int64_t max_size = 0;
        if (lr.Size("max_size", &max_size)) {
          out->notes.push_back(StrCat(path,
                                      ": backup.storage.local.max_size is not enforced; "
                                      "retention decides what is kept"));
        }
        lr.Finish();
        out->storage[sc.name] = sc;
        storages.push_back(sc.name);
      }
      YAML::Node cloud = sr.Get("cloud");
      if (cloud.IsDefined() && cloud.IsSequence()) {
        for (size_t i = 0; i < cloud.size(); ++i) {
          std::string what = StrCat("backup.storage.cloud[", i, "]");
          MapReader cr(ctx, cloud[i], what);
          if (!cr.valid()) continue;
          StorageConfig sc;
          sc.type = "s3";
          std::string kind;
          cr.Require("type");
          cr.Enum("type", {"aws_s3", "aliyun_oss", "s3"}, &kind);
          cr.Require("bucket");
          cr.String("bucket", &sc.bucket);
          cr.String("region", &sc.region);
          cr.String("endpoint", &sc.endpoint);
          cr.String("access_key", &sc.access_key);
          cr.String("secret_key", &sc.secret_key);
          cr.String("prefix", &sc.prefix);
          cr.Finish();
          // Alibaba OSS speaks the S3 API at oss-<region>.aliyuncs.com, virtual-hosted style.
          if (kind == "aliyun_oss" && sc.endpoint.empty()) {
            sc.endpoint = StrCat("https://oss-", sc.region, ".aliyuncs.com");
          }
          sc.path_style = false;
          sc.name = kind;
          for (int n = 2; out->storage.count(sc.name); ++n) sc.name = StrCat(kind, "-", n);
          out->storage[sc.name] = sc;
          storages.push_back(sc.name);
        }
      } else if (cloud.IsDefined()) {
        ctx.Error(cloud.Mark(), "backup.storage.cloud: a list of {type, bucket, region, ...}");
      }
      sr.Finish();
    }
    // database
    SourceConfig src;
    YAML::Node database = br.Get("database");
    if (database.IsDefined()) {
      MapReader dr(ctx, database, "backup.database");
      YAML::Node mysql = dr.Get("mysql");
      YAML::Node postgres = dr.Get("postgresql");
      dr.Finish();
      YAML::Node db = mysql.IsDefined() ? mysql : postgres;
      if (db.IsDefined()) {
        std::string what =
            mysql.IsDefined() ? "backup.database.mysql" : "backup.database.postgresql";
        MapReader mr(ctx, db, what);
        src.type = mysql.IsDefined() ? "mysqldump" : "pg_dump";
        src.port = mysql.IsDefined() ? 3306 : 5432;
        mr.String("host", &src.host);
        mr.Int("port", &src.port, 1, 65535);
        mr.String("username", &src.user);
        mr.String("password", &src.password);
        mr.String("database", &src.database);
        std::string dump_command, restore_command;
        mr.String("dump_command", &dump_command);
        mr.String("restore_command", &restore_command);  // bulwark pipes into mysql / pg_restore
        mr.Finish();
        src.all_databases = src.database.empty();
        if (src.user.empty()) src.user = mysql.IsDefined() ? "root" : "postgres";
        // Keep the operator's dump flags, minus what bulwark sets itself.
        for (absl::string_view tok :
             absl::StrSplit(dump_command, absl::ByAnyChar(" \t\n\\"), absl::SkipEmpty())) {
          if (tok.substr(0, 2) != "--" || tok == "--databases" || tok == "--all-databases")
            continue;
          std::string t(tok);
          SourceConfig plain;
          plain.type = src.type;
          auto defaults = plain.Argv();
          if (std::find(defaults.begin(), defaults.end(), t) != defaults.end()) continue;
          src.options.push_back(t);
        }
      }
    }
    // types
    ForEachNamed(
        ctx, br.Get("types"), "backup.types", "a map of name: {schedule, retention, ...}",
        [&](const std::string& name, const YAML::Node& body) {
          std::string what = StrCat("backup.types.", name);
          MapReader tr(ctx, body, what);
          if (!tr.valid()) return;
          if (!tr.Has("schedule")) {
            // e.g. `realtime` (continuous binlog shipping): not a scheduled dump.
            for (const char* k : {"enabled", "target", "bucket", "encryption"}) tr.Known(k);
            tr.Finish();
            out->notes.push_back(StrCat(path, ": backup.types.", name,
                                        " has no schedule; bulwark takes scheduled dumps only, so "
                                        "it is not run"));
            return;
          }
          if (src.type.empty()) {
            ctx.Error(body.Mark(), StrCat(what, ": backup.database names no database to dump"));
            return;
          }
          PlanConfig p;
          p.name = name;
          p.source = src;
          tr.String("schedule", &p.schedule_text);
          auto c = CronSchedule::Parse(p.schedule_text);
          if (c.ok()) {
            p.schedule = *c;
          } else {
            ctx.Error(tr.Get("schedule").Mark(), StrCat(what, ".schedule: ", c.status().message()));
          }
          // `retention: 30` next to `find -mtime +30 -delete`: days.
          int days = 0;
          if (tr.Int("retention", &days, 1, 100000)) {
            p.retention.max_age_ms = int64_t{days} * 86400 * 1000;
          }
          bool compress = true;
          tr.Bool("compress", &compress);
          p.compression = compress ? Compression::kZstd : Compression::kNone;
          tr.Bool("encrypt", &p.encrypt);
          tr.Finish();
          if (name == "incremental") {
            out->notes.push_back(StrCat(path,
                                        ": backup.types.incremental is taken as full dumps on "
                                        "its schedule (bulwark has no binlog increments)"));
          }
          p.storage = storages;
          if (out->plans.count(name)) {
            ctx.Error(body.Mark(), StrCat(what, ": a plan named \"", name, "\" exists already"));
            return;
          }
          out->plans[name] = p;
        });
    br.Finish();
  }
  for (const auto& e : ctx.errors()) parent.ForeignError(e);
}

bool IsPlainDatabaseName(std::string_view name) {
  if (name.empty() || name.size() > 63 || name[0] == '-') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '$' || c == '-';
    if (!ok) return false;
  }
  return true;
}

const PlanConfig* PlanWithSourceDatabase(const std::map<std::string, PlanConfig>& plans,
                                         std::string_view name) {
  for (const auto& [n, p] : plans) {
    if (p.source.OneDatabase() && p.source.database == name) return &p;
  }
  return nullptr;
}

void LoadVaultConfig(ConfigContext& ctx, const YAML::Node& node, VaultConfig* out) {
  MapReader r(ctx, node, "vault");
  if (!r.valid()) return;
  out->enabled = true;
  r.String("catalog", &out->catalog);
  r.String("staging", &out->staging);
  out->staging = ctx.Resolve(out->staging);
  out->catalog = ctx.Resolve(out->catalog);
  YAML::Node keys = r.Get("keys");
  if (keys.IsDefined()) {
    if (!keys.IsSequence()) {
      ctx.Error(keys.Mark(), "vault.keys: a list of {env|file|value: ...}");
    } else {
      for (const auto& k : keys) LoadKey(ctx, k, out);
    }
  }
  ForEachNamed(ctx, r.Get("storage"), "vault.storage", "a map of name: {type, ...}",
               [&](const std::string& name, const YAML::Node& body) {
                 StorageConfig s;
                 s.name = name;
                 std::string what = StrCat("vault.storage.", s.name);
                 MapReader sr(ctx, body, what);
                 if (!sr.valid()) return;
                 sr.Enum("type", {"local", "s3"}, &s.type);
                 if (s.type == "s3") {
                   sr.Require("bucket");
                   sr.String("bucket", &s.bucket);
                   sr.String("endpoint", &s.endpoint);
                   sr.String("region", &s.region);
                   sr.Require("access_key");
                   sr.Require("secret_key");
                   sr.String("access_key", &s.access_key);
                   sr.String("secret_key", &s.secret_key);
                   sr.String("prefix", &s.prefix);
                   s.path_style = !s.endpoint.empty();
                   sr.Bool("path_style", &s.path_style);
                   if (sr.Size("part_size", &s.part_size) &&
                       (s.part_size < (5 << 20) || s.part_size > (int64_t{5} << 30))) {
                     ctx.Error(sr.Get("part_size").Mark(),
                               StrCat(what, ".part_size: S3 takes parts of 5MiB to 5GiB"));
                   }
                   if (!s.endpoint.empty() && s.endpoint.find("://") == std::string::npos) {
                     ctx.Error(
                         sr.Get("endpoint").Mark(),
                         StrCat(what, ".endpoint: a URL such as https://minio.internal:9000"));
                   }
                 } else {
                   sr.Require("path");
                   sr.String("path", &s.path);
                   s.path = ctx.Resolve(s.path);
                 }
                 sr.Finish();
                 out->storage[s.name] = s;
               });
  ForEachNamed(
      ctx, r.Get("plans"), "vault.plans", "a map of name: {source, schedule, ...}",
      [&](const std::string& name, const YAML::Node& body) {
        PlanConfig p;
        p.name = name;
        std::string what = StrCat("vault.plans.", p.name);
        MapReader pr(ctx, body, what);
        if (!pr.valid()) return;
        pr.Require("source");
        YAML::Node src = pr.Get("source");
        if (src.IsDefined()) LoadSource(ctx, src, what + ".source", &p.source);
        if (pr.String("schedule", &p.schedule_text) && !p.schedule_text.empty()) {
          auto c = CronSchedule::Parse(p.schedule_text);
          if (c.ok()) {
            p.schedule = *c;
          } else {
            ctx.Error(pr.Get("schedule").Mark(), StrCat(what, ".schedule: ", c.status().message()));
          }
        }
        std::string comp = "zstd";
        pr.Enum("compression", {"zstd", "gzip", "none"}, &comp);
        p.compression = comp == "gzip"   ? Compression::kGzip
                        : comp == "none" ? Compression::kNone
                                         : Compression::kZstd;
        p.level = p.compression == Compression::kGzip ? 6 : 3;
        if (p.compression == Compression::kGzip) {
          pr.Int("level", &p.level, 1, 9);
        } else {
          pr.Int("level", &p.level, 1, 19);
        }
        pr.Int("threads", &p.threads, 0, 64);
        if (pr.Int("window_log", &p.window_log, 0, 27) && p.window_log > 0 && p.window_log < 10) {
          ctx.Error(pr.Get("window_log").Mark(), StrCat(what, ".window_log: 10..27, or 0"));
        }
        pr.Bool("encrypt", &p.encrypt);
        int64_t chunk = p.chunk_size;
        if (pr.Size("chunk_size", &chunk)) {
          if (chunk < 4096 || chunk > (64 << 20)) {
            ctx.Error(pr.Get("chunk_size").Mark(), StrCat(what, ".chunk_size: 4KiB to 64MiB"));
          } else {
            p.chunk_size = static_cast<uint32_t>(chunk);
          }
        }
        pr.StringList("storage", &p.storage);
        YAML::Node ret = pr.Get("retention");
        if (ret.IsDefined()) {
          MapReader rr(ctx, ret, what + ".retention");
          rr.Int("count", &p.retention.count, 0, 100000);
          rr.Duration("max_age", &p.retention.max_age_ms);
          rr.Int("daily", &p.retention.daily, 0, 100000);
          rr.Int("weekly", &p.retention.weekly, 0, 100000);
          rr.Int("monthly", &p.retention.monthly, 0, 100000);
          rr.Finish();
        }
        YAML::Node checks = pr.Get("checks");
        if (checks.IsDefined()) {
          if (!checks.IsSequence()) {
            ctx.Error(checks.Mark(), StrCat(what, ".checks: a list of {sql|table|command: ...}"));
          } else {
            for (size_t i = 0; i < checks.size(); ++i) {
              p.checks.emplace_back();
              LoadCheck(ctx, checks[i], StrCat(what, ".checks[", i, "]"), &p.checks.back());
            }
          }
        }
        pr.Bool("verify_restore", &p.verify_restore);
        pr.Bool("verify_after_backup", &p.verify_after_backup);
        pr.Duration("timeout", &p.timeout_ms);
        if (p.timeout_ms <= 0)
          ctx.Error(body.Mark(), StrCat(what, ".timeout: must be more than zero"));
        pr.Finish();
        for (const CheckConfig& c : p.checks) {
          if (!c.command.empty()) continue;
          if (p.source.Engine().empty() || p.source.type == "pg_basebackup") {
            ctx.Error(checks.Mark(), StrCat(what,
                                            ".checks: sql and table checks need a pg_dump or "
                                            "mysqldump source; use command checks"));
            break;
          }
          if (!p.source.OneDatabase() && c.database.empty()) {
            ctx.Error(checks.Mark(), StrCat(what,
                                            ".checks: with all_databases each sql or table "
                                            "check names its database"));
            break;
          }
        }
        out->plans[p.name] = p;
      });
  ForEachNamed(ctx, r.Get("drills"), "vault.drills", "a map of name: {plan, database, rows, ...}",
               [&](const std::string& name, const YAML::Node& body) {
                 DrillConfig d;
                 d.name = name;
                 std::string what = StrCat("vault.drills.", d.name);
                 MapReader dr(ctx, body, what);
                 if (!dr.valid()) return;
                 dr.Require("plan");
                 dr.String("plan", &d.plan);
                 dr.String("database", &d.database);
                 dr.Int("rows", &d.rows, 1, 10000000);
                 dr.Enum("break", {"drop_database", "command"}, &d.break_mode);
                 dr.StringList("break_command", &d.break_command);
                 YAML::Node targets = dr.Get("targets");
                 if (targets.IsDefined()) {
                   MapReader tr(ctx, targets, what + ".targets");
                   tr.Duration("rto", &d.rto_target_ms);
                   tr.Duration("rpo", &d.rpo_target_ms);
                   tr.Finish();
                 }
                 dr.Finish();
                 if (d.break_mode == "command" && d.break_command.empty()) {
                   ctx.Error(body.Mark(), StrCat(what, ": break: command needs break_command"));
                 }
                 YAML::Node dbn = dr.Get("database");
                 YAML::Mark mark = dbn.IsDefined() ? dbn.Mark() : body.Mark();
                 if (!IsPlainDatabaseName(d.database)) {
                   ctx.Error(mark, StrCat(what, ".database: \"", d.database,
                                          "\" is not a plain database name"));
                 } else if (const PlanConfig* p = PlanWithSourceDatabase(out->plans, d.database)) {
                   ctx.Error(mark, StrCat(what, ".database: \"", d.database,
                                          "\" is the source database of plan \"", p->name,
                                          "\"; a drill drops and re-creates its database: give it "
                                          "one of its own"));
                 }
                 out->drills[d.name] = d;
               });
  ForEachNamed(ctx, r.Get("recovery"), "vault.recovery", "a map of plan name: {steps, rollback}",
               [&](const std::string& name, const YAML::Node& body) {
                 RecoveryPlanConfig rp;
                 rp.name = name;
                 std::string what = StrCat("vault.recovery.", rp.name);
                 MapReader rr(ctx, body, what);
                 if (!rr.valid()) return;
                 rr.String("description", &rp.description);
                 rr.Require("steps");
                 for (const char* list : {"steps", "rollback"}) {
                   YAML::Node n = rr.Get(list);
                   if (!n.IsDefined()) continue;
                   if (!n.IsSequence()) {
                     ctx.Error(n.Mark(), StrCat(what, ".", list, ": a list of steps"));
                     continue;
                   }
                   auto* dst = std::string_view(list) == "steps" ? &rp.steps : &rp.rollback;
                   for (size_t i = 0; i < n.size(); ++i) {
                     dst->emplace_back();
                     LoadStep(ctx, n[i], StrCat(what, ".", list, "[", i, "]"), &dst->back());
                   }
                   OrderSteps(ctx, n, StrCat(what, ".", list), dst);
                 }
                 rr.Finish();
                 out->recovery[rp.name] = rp;
               });
  std::string plans_file;
  if (r.String("plans_file", &plans_file) && !plans_file.empty()) {
    LoadPlansFile(ctx, ctx.Resolve(plans_file), out);
  }
  r.Finish();
  // Cross-checks once everything is read.
  if (out->storage.empty() && !out->plans.empty()) {
    ctx.Error(node.Mark(), "vault: plans need at least one entry under vault.storage");
  }
  for (auto& [name, p] : out->plans) {
    if (p.storage.empty()) {
      for (const auto& [sname, s] : out->storage) p.storage.push_back(sname);
    }
    for (const std::string& s : p.storage) {
      if (!out->storage.count(s)) {
        ctx.Error(node.Mark(), StrCat("vault.plans.", name, ".storage: no storage named \"", s,
                                      "\" under vault.storage"));
      }
    }
    if (p.encrypt && out->keys.empty()) {
      ctx.Error(node.Mark(),
                StrCat("vault.plans.", name,
                       ": encrypt is on (the default) but vault.keys is empty; add a key "
                       "(`openssl rand -hex 32`) or set encrypt: false"));
    }
  }
  for (const auto& [name, d] : out->drills) {
    auto pit = out->plans.find(d.plan);
    if (pit == out->plans.end()) {
      ctx.Error(node.Mark(),
                StrCat("vault.drills.", name, ".plan: no plan named \"", d.plan, "\""));
    } else if (pit->second.source.Engine().empty() || pit->second.source.type == "pg_basebackup") {
      ctx.Error(node.Mark(),
                StrCat("vault.drills.", name,
                       ".plan: drills need a pg_dump or "
                       "mysqldump plan (its server is where the drill database goes)"));
    }
  }
  for (const auto& [name, rp] : out->recovery) {
    for (const auto* list : {&rp.steps, &rp.rollback}) {
      for (const StepConfig& st : *list) {
        if ((st.action == "restore" || st.action == "backup") && !out->plans.count(st.plan)) {
          ctx.Error(node.Mark(), StrCat("vault.recovery.", name, ": step \"", st.id,
                                        "\": no backup plan named \"", st.plan, "\""));
        }
        if (st.action == "drill" && !out->drills.count(st.plan)) {
          ctx.Error(node.Mark(), StrCat("vault.recovery.", name, ": step \"", st.id,
                                        "\": no drill named \"", st.plan, "\""));
        }
      }
    }
  }
}

}  // namespace bulwark::vault
