#include "vault/config.h"

#include "core/files.h"
#include "core/strings.h"

namespace bulwark::vault {

std::vector<std::string> SourceConfig::Argv() const {
  if (type == "pg_dump") {
    // -Fc: pg_restore can pick and reorder; -Z0: bulwark compresses (zstd beats pg_dump's zlib).
    return {"pg_dump", "-Fc", "-Z0",           "-h",    host, "-p", std::to_string(port),
            "-U",      user,  "--no-password", database};
  }
  if (type == "files") {
    std::vector<std::string> argv = {"tar", "--create", "--file=-", "--absolute-names", "--"};
    argv.insert(argv.end(), paths.begin(), paths.end());
    return argv;
  }
  return command;
}

std::vector<std::pair<std::string, std::string>> SourceConfig::Env() const {
  if (type == "pg_dump" && !password.empty()) return {{"PGPASSWORD", password}};
  return {};
}

namespace {

void LoadKey(ConfigContext& ctx, const YAML::Node& node, const std::string& base_dir,
             VaultConfig* out) {
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
    std::string path = file[0] == '/' || base_dir.empty() ? file : base_dir + "/" + file;
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
  r.Enum("type", {"pg_dump", "command", "files"}, &s->type);
  if (s->type == "pg_dump") {
    r.Require("database");
    r.String("host", &s->host);
    r.Int("port", &s->port, 1, 65535);
    r.String("user", &s->user);
    r.String("password", &s->password);
    r.String("database", &s->database);
    if (s->host.empty()) s->host = "127.0.0.1";
    if (s->user.empty()) s->user = "postgres";
  } else if (s->type == "command") {
    r.Require("command");
    r.StringList("command", &s->command);
    if (r.Has("command") && s->command.empty()) {
      ctx.Error(node.Mark(),
                StrCat(what, ".command: an argv list, e.g. [mysqldump, --all-databases]"));
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

}  // namespace

void LoadVaultConfig(ConfigContext& ctx, const YAML::Node& node, const std::string& base_dir,
                     VaultConfig* out) {
  MapReader r(ctx, node, "vault");
  if (!r.valid()) return;
  out->enabled = true;
  r.String("catalog", &out->catalog);
  if (!out->catalog.empty() && out->catalog[0] != '/' && !base_dir.empty()) {
    out->catalog = base_dir + "/" + out->catalog;
  }
  YAML::Node keys = r.Get("keys");
  if (keys.IsDefined()) {
    if (!keys.IsSequence()) {
      ctx.Error(keys.Mark(), "vault.keys: a list of {env|file|value: ...}");
    } else {
      for (const auto& k : keys) LoadKey(ctx, k, base_dir, out);
    }
  }
  YAML::Node storage = r.Get("storage");
  if (storage.IsDefined()) {
    if (!storage.IsMap()) {
      ctx.Error(storage.Mark(), "vault.storage: a map of name: {type, ...}");
    } else {
      for (const auto& it : storage) {
        StorageConfig s;
        s.name = it.first.as<std::string>();
        std::string what = StrCat("vault.storage.", s.name);
        MapReader sr(ctx, it.second, what);
        if (!sr.valid()) continue;
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
            ctx.Error(sr.Get("endpoint").Mark(),
                      StrCat(what, ".endpoint: a URL such as https://minio.internal:9000"));
          }
        } else {
          sr.Require("path");
          sr.String("path", &s.path);
          if (!s.path.empty() && s.path[0] != '/' && !base_dir.empty()) {
            s.path = base_dir + "/" + s.path;
          }
        }
        sr.Finish();
        out->storage[s.name] = s;
      }
    }
  }
  YAML::Node plans = r.Get("plans");
  if (plans.IsDefined()) {
    if (!plans.IsMap()) {
      ctx.Error(plans.Mark(), "vault.plans: a map of name: {source, schedule, ...}");
    } else {
      for (const auto& it : plans) {
        PlanConfig p;
        p.name = it.first.as<std::string>();
        std::string what = StrCat("vault.plans.", p.name);
        MapReader pr(ctx, it.second, what);
        if (!pr.valid()) continue;
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
        pr.Finish();
        out->plans[p.name] = p;
      }
    }
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
}

}  // namespace bulwark::vault
