// bulwark: one binary for the gateway, the PostgreSQL proxy, observability and backups.
#include <ares.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <zlib.h>

#include <cstdio>
#include <iostream>

#include "CLI/CLI.hpp"
#include "app/app.h"
#include "app/backup_cli.h"
#include "app/config.h"
#include "app/control_cli.h"
#include "app/demo.h"
#include "core/event_loop.h"
#include "core/systemd.h"
#include "core/units.h"
#include "nlohmann/json.hpp"
#include "observe/rules/test_runner.h"
#include "security/jwt.h"

namespace {
#include "app/build_info.inc"

// `bulwark --version`: what was built from what, and the libraries it runs with (their versions
// at run time, which is what a security advisory asks about).
std::string VersionText() {
  std::string s = "bulwark ";
  s.append(kBuildVersion).append(" (commit ").append(kBuildCommit).append("; ");
  s.append(kBuildOptions).append(")\nlibraries: ").append(OpenSSL_version(OPENSSL_VERSION));
  s.append(", c-ares ").append(ares_version(nullptr)).append(", zlib ").append(zlibVersion());
  s.append(", libcurl ").append(curl_version_info(CURLVERSION_NOW)->version);
  return s;
}

int CheckConfig(const std::string& path) {
  bulwark::ConfigLoad load = bulwark::LoadConfigFile(path, bulwark::ProcessEnv());
  if (load.errors.empty()) {
    bulwark::Resolver resolver(load.config->resolver);
    load.errors = bulwark::CheckNamesResolve(*load.config, &resolver);
  }
  if (!load.errors.empty()) {
    for (const auto& e : load.errors) fprintf(stderr, "%s\n", e.c_str());
    fprintf(stderr, "%zu error%s\n", load.errors.size(), load.errors.size() == 1 ? "" : "s");
    return 1;
  }
  printf("%s: configuration is valid\n", path.c_str());
  return 0;
}

int Serve(const std::string& path) {
  bulwark::App::BlockSignals();
  // Socket activation: sockets systemd bound for us serve the listeners of their addresses.
  bulwark::systemd::AdoptListenFds();
  bulwark::ConfigLoad load = bulwark::LoadConfigFile(path, bulwark::ProcessEnv());
  if (!load.errors.empty()) {
    for (const auto& e : load.errors) fprintf(stderr, "%s\n", e.c_str());
    return 1;
  }
  bulwark::App server(std::move(load.config),
                      [path] { return bulwark::LoadConfigFile(path, bulwark::ProcessEnv()); });
  absl::Status s = server.Start();
  if (!s.ok()) {
    fprintf(stderr, "bulwark: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return server.Run();
}
// Mints an HS256 service token from a provider's secret (the cloud-phone platform's
// X-Service-Auth tokens).
int IssueToken(const std::string& path, std::string provider, const std::string& service,
               const std::string& ttl_text) {
  bulwark::ConfigLoad load = bulwark::LoadConfigFile(path, bulwark::ProcessEnv());
  if (!load.errors.empty()) {
    for (const auto& e : load.errors) fprintf(stderr, "%s\n", e.c_str());
    return 1;
  }
  const auto& providers = load.config->gateway->jwt_providers;
  const bulwark::gateway::JwtProviderConfig* p = nullptr;
  for (const auto& candidate : providers) {
    if (provider.empty() ? !candidate.secret.empty() : candidate.name == provider) p = &candidate;
    if (p != nullptr) break;
  }
  if (p == nullptr || p->secret.empty()) {
    fprintf(stderr, "bulwark: %s\n",
            provider.empty() ? "no jwt_providers entry has an HS256 secret to sign with"
                             : ("jwt provider \"" + provider + "\" has no HS256 secret").c_str());
    return 1;
  }
  auto ttl = bulwark::ParseDurationMs(ttl_text);
  if (!ttl.ok() || *ttl < 1000) {
    fprintf(stderr, "bulwark: --ttl: expected a duration such as 1h\n");
    return 1;
  }
  int64_t now = bulwark::WallMicros() / 1000000;
  nlohmann::json claims{{"sub", service}, {"iat", now}, {"exp", now + *ttl / 1000}};
  if (!p->issuers.empty()) claims["iss"] = p->issuers.front();
  if (!p->audiences.empty()) claims["aud"] = p->audiences.front();
  printf("%s\n", bulwark::security::MintHs256(claims, p->secret).c_str());
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bulwark: gateway, PostgreSQL proxy, observability and backups in one binary"};
  app.set_version_flag("--version", VersionText());
  app.require_subcommand(1);
  std::string serve_path, check_path;
  auto* serve = app.add_subcommand("serve", "Run with a configuration file");
  serve->add_option("-c,--config", serve_path, "Configuration file")->required();
  auto* check =
      app.add_subcommand("check-config", "Validate a configuration file (exit 1 on any error)");
  check->add_option("file", check_path, "Configuration file")->required();
  auto* version = app.add_subcommand("version", "Print the version");
  std::string control_path;
  bool status_json = false;
  auto* reload = app.add_subcommand(
      "reload", "Validate a configuration file, then have the running bulwark reload it");
  reload->add_option("-c,--config", control_path, "Configuration file")->required();
  auto* status = app.add_subcommand(
      "status", "Is bulwark running and ready (exit 0), running but not ready (1), or not (3)");
  status->add_option("-c,--config", control_path, "Configuration file")->required();
  status->add_flag("--json", status_json, "Print JSON");
  auto* token = app.add_subcommand("token", "Service tokens");
  token->require_subcommand(1);
  auto* issue = token->add_subcommand("issue", "Mint an HS256 token from a jwt provider's secret");
  std::string token_config, token_provider, token_service, token_ttl = "1h";
  issue->add_option("-c,--config", token_config, "Configuration file")->required();
  issue->add_option("--service", token_service, "The service name (the `sub` claim)")->required();
  issue->add_option("--ttl", token_ttl, "Lifetime, e.g. 1h (default 1h)");
  issue->add_option("--provider", token_provider,
                    "jwt_providers entry (default: the first with a secret)");
  auto* rules = app.add_subcommand("rules", "Prometheus rule files");
  rules->require_subcommand(1);
  std::vector<std::string> rule_test_files, rule_check_files;
  auto* rules_test = rules->add_subcommand(
      "test", "Run rule unit tests written for `promtool test rules` (exit 1 on a failure)");
  rules_test->add_option("files", rule_test_files, "Test files")->required();
  auto* rules_check = rules->add_subcommand(
      "check", "Check rule files (exit 1 on any error), as promtool check rules");
  rules_check->add_option("files", rule_check_files, "Rule files")->required();
  auto* backup = app.add_subcommand("backup", "Backups made by the vault: run, list, verify");
  backup->require_subcommand(1);
  bulwark::BackupCommand bcmd;
  auto* backup_run = backup->add_subcommand("run", "Make one backup of a plan now");
  backup_run->add_option("plan", bcmd.plan, "Plan name (vault.plans)")->required();
  auto* backup_list = backup->add_subcommand("list", "List the catalog, newest first");
  backup_list->add_option("--plan", bcmd.plan, "Only this plan");
  auto* backup_verify = backup->add_subcommand(
      "verify", "Check every stored copy of a backup end to end (exit 1 when it fails)");
  backup_verify->add_option("id", bcmd.id, "Backup id (from `backup list`)")->required();
  auto* backup_cat = backup->add_subcommand(
      "cat", "Write a backup's original bytes to stdout (checked as they are read)");
  backup_cat->add_option("id", bcmd.id, "Backup id (from `backup list`)")->required();
  for (auto* sub : {backup_run, backup_list, backup_verify, backup_cat}) {
    sub->add_option("-c,--config", bcmd.config, "Configuration file")->required();
    sub->add_flag("--json", bcmd.json, "Print JSON");
  }
  auto* restore = app.add_subcommand(
      "restore",
      "Restore a backup: verify it, keep a safety backup, restore, check, roll back "
      "on failure");
  restore->add_option("id", bcmd.id, "Backup id (from `backup list`)")->required();
  restore->add_option("--target", bcmd.target,
                      "Database name on the plan's server, or a directory (files, "
                      "pg_basebackup); default: where the backup came from");
  restore->add_flag("--dry-run", bcmd.dry_run, "Say what would be done, change nothing");
  auto* drill = app.add_subcommand(
      "drill",
      "Run a disaster-recovery drill (vault.drills): seed, back up, break, restore, check");
  drill->add_option("name", bcmd.plan, "Drill name (vault.drills)")->required();
  auto* plan = app.add_subcommand("plan", "Recovery plans (vault.recovery)");
  plan->require_subcommand(1);
  auto* plan_run = plan->add_subcommand("run", "Run a recovery plan; roll back if a step fails");
  plan_run->add_option("name", bcmd.plan, "Recovery plan name")->required();
  auto* plan_status = plan->add_subcommand("status", "The last run of each recovery plan");
  plan_status->add_option("name", bcmd.plan, "Only this plan");
  for (auto* sub : {restore, drill, plan_run, plan_status}) {
    sub->add_option("-c,--config", bcmd.config, "Configuration file")->required();
    sub->add_flag("--json", bcmd.json, "Print JSON");
  }
  auto* demo = app.add_subcommand(
      "demo", "Run the gateway on the embedded demo configuration with three origins");
  CLI11_PARSE(app, argc, argv);
  if (*serve) return Serve(serve_path);
  if (*check) return CheckConfig(check_path);
  if (*reload) return bulwark::RunReloadCommand(control_path);
  if (*status) return bulwark::RunStatusCommand(control_path, status_json);
  if (*version) {
    printf("%s\n", VersionText().c_str());
    return 0;
  }
  if (*demo) return bulwark::RunDemo();
  if (*backup) {
    bcmd.action = *backup_run ? "run" : *backup_list ? "list" : *backup_cat ? "cat" : "verify";
    return bulwark::RunBackupCommand(bcmd);
  }
  if (*restore || *drill || *plan) {
    bcmd.action = *restore ? "restore" : *drill ? "drill" : *plan_run ? "plan-run" : "plan-status";
    return bulwark::RunBackupCommand(bcmd);
  }
  if (*rules_test) return bulwark::observe::rules::RunRuleTests(rule_test_files, std::cout) ? 0 : 1;
  if (*rules_check) {
    return bulwark::observe::rules::CheckRuleFiles(rule_check_files, std::cout) ? 0 : 1;
  }
  if (*issue) return IssueToken(token_config, token_provider, token_service, token_ttl);
  return 2;
}
