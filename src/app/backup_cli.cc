#include "app/backup_cli.h"

#include <cstdio>

#include "app/config.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "vault/vault.h"

namespace bulwark {
namespace {

std::string Bytes(int64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string Time(int64_t ms) { return ms <= 0 ? "-" : FormatUtc(ms, "%Y-%m-%dT%H:%M:%SZ"); }

nlohmann::json ToJson(const vault::BackupRecord& b) {
  nlohmann::json j = {{"id", b.id},
                      {"plan", b.plan},
                      {"source", b.source},
                      {"trigger", b.trigger},
                      {"status", b.status},
                      {"started", Time(b.started_ms)},
                      {"finished", Time(b.finished_ms)},
                      {"raw_bytes", b.raw_bytes},
                      {"stored_bytes", b.stored_bytes},
                      {"raw_sha256", b.raw_sha256},
                      {"stored_sha256", b.stored_sha256},
                      {"compression", b.compression},
                      {"key_id", b.key_id},
                      {"object", b.object},
                      {"storage", b.storage},
                      {"verified", b.verified}};
  if (!b.error.empty()) j["error"] = b.error;
  if (!b.verify_error.empty()) j["verify_error"] = b.verify_error;
  return j;
}

}  // namespace

int RunBackupCommand(const BackupCommand& cmd) {
  ConfigLoad load = LoadConfigFile(cmd.config, ProcessEnv());
  if (!load.errors.empty()) {
    for (const auto& e : load.errors) fprintf(stderr, "%s\n", e.c_str());
    return 2;
  }
  std::shared_ptr<const vault::VaultConfig> vc = load.config->vault;
  if (!vc->enabled) {
    fprintf(stderr, "bulwark: %s has no vault: block\n", cmd.config.c_str());
    return 2;
  }
  auto catalog = vault::Catalog::Open(vc->catalog);
  if (!catalog.ok()) {
    fprintf(stderr, "bulwark: %s\n", std::string(catalog.status().message()).c_str());
    return 2;
  }
  vault::Vault v(vc, catalog->get());
  auto recovered = v.RecoverInterrupted();
  if (!recovered.ok()) {
    fprintf(stderr, "bulwark: %s\n", std::string(recovered.status().message()).c_str());
    return 2;
  }
  if (*recovered > 0) {
    fprintf(stderr, "bulwark: %d interrupted backup%s marked failed\n", *recovered,
            *recovered == 1 ? "" : "s");
  }

  if (cmd.action == "run") {
    auto r = v.Backup(cmd.plan, "manual");
    if (!r.ok()) {
      fprintf(stderr, "bulwark: %s\n", std::string(r.status().message()).c_str());
      return 2;
    }
    if (cmd.json) {
      printf("%s\n", ToJson(*r).dump().c_str());
    } else if (r->status == "ok") {
      printf("backup %lld of plan %s: ok, %s → %s in %.1f s (%s%s%s), %s\n",
             static_cast<long long>(r->id), r->plan.c_str(), Bytes(r->raw_bytes).c_str(),
             Bytes(r->stored_bytes).c_str(),
             static_cast<double>(r->finished_ms - r->started_ms) / 1000.0, r->compression.c_str(),
             r->key_id.empty() ? ", not encrypted" : ", key ", r->key_id.c_str(),
             r->object.c_str());
      if (!v.last_pruned().empty()) {
        std::string ids;
        for (int64_t id : v.last_pruned()) ids += (ids.empty() ? "" : ", ") + std::to_string(id);
        printf("retention deleted backup%s %s\n", v.last_pruned().size() == 1 ? "" : "s",
               ids.c_str());
      }
    } else {
      fprintf(stderr, "backup %lld of plan %s failed: %s\n", static_cast<long long>(r->id),
              r->plan.c_str(), r->error.c_str());
    }
    return r->status == "ok" ? 0 : 1;
  }
  if (cmd.action == "list") {
    auto all = (*catalog)->List(cmd.plan);
    if (!all.ok()) {
      fprintf(stderr, "bulwark: %s\n", std::string(all.status().message()).c_str());
      return 2;
    }
    if (cmd.json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& b : *all) j.push_back(ToJson(b));
      printf("%s\n", j.dump().c_str());
      return 0;
    }
    printf("%-6s %-16s %-8s %-20s %10s %10s %-8s\n", "ID", "PLAN", "STATUS", "STARTED", "SIZE",
           "STORED", "VERIFIED");
    for (const auto& b : *all) {
      printf("%-6lld %-16s %-8s %-20s %10s %10s %-8s\n", static_cast<long long>(b.id),
             b.plan.c_str(), b.status.c_str(), Time(b.started_ms).c_str(),
             Bytes(b.raw_bytes).c_str(), Bytes(b.stored_bytes).c_str(),
             b.verified.empty() ? "-" : b.verified.c_str());
    }
    return 0;
  }
  if (cmd.action == "cat") {
    // The original bytes on stdout: `bulwark backup cat 12 | pg_restore -d app`.
    class StdoutSink final : public vault::ByteSink {
     public:
      absl::Status Write(std::string_view d) override {
        if (fwrite(d.data(), 1, d.size(), stdout) != d.size()) {
          return absl::UnavailableError("stdout: write failed");
        }
        return absl::OkStatus();
      }
    } out;
    auto st = v.Extract(cmd.id, &out);
    fflush(stdout);
    if (!st.ok()) {
      fprintf(stderr, "bulwark: backup %lld: %s\n", static_cast<long long>(cmd.id),
              std::string(st.message()).c_str());
      return 1;
    }
    return 0;
  }
  if (cmd.action == "verify") {
    auto r = v.Verify(cmd.id);
    if (!r.ok()) {
      fprintf(stderr, "bulwark: %s\n", std::string(r.status().message()).c_str());
      return 2;
    }
    if (cmd.json) {
      printf("%s\n", ToJson(*r).dump().c_str());
    } else if (r->verified == "ok") {
      printf("backup %lld: verified (%zu cop%s, %s original bytes)\n",
             static_cast<long long>(r->id), r->storage.size(), r->storage.size() == 1 ? "y" : "ies",
             Bytes(r->raw_bytes).c_str());
    } else {
      fprintf(stderr, "backup %lld: verification failed: %s\n", static_cast<long long>(r->id),
              r->verify_error.c_str());
    }
    return r->verified == "ok" ? 0 : 1;
  }
  return 2;
}

}  // namespace bulwark
