// bulwark: one binary for the gateway, the PostgreSQL proxy, observability and backups.
#include <cstdio>

#include "CLI/CLI.hpp"
#include "app/config.h"
#include "app/demo.h"
#include "app/server.h"

namespace {
constexpr const char* kVersion = "0.1.0";

int CheckConfig(const std::string& path) {
  bulwark::ConfigLoad load = bulwark::LoadConfigFile(path, bulwark::ProcessEnv());
  if (!load.errors.empty()) {
    for (const auto& e : load.errors) fprintf(stderr, "%s\n", e.c_str());
    fprintf(stderr, "%zu error%s\n", load.errors.size(), load.errors.size() == 1 ? "" : "s");
    return 1;
  }
  printf("%s: configuration is valid\n", path.c_str());
  return 0;
}

int Serve(const std::string& path) {
  bulwark::Server::BlockSignals();
  bulwark::ConfigLoad load = bulwark::LoadConfigFile(path, bulwark::ProcessEnv());
  if (!load.errors.empty()) {
    for (const auto& e : load.errors) fprintf(stderr, "%s\n", e.c_str());
    return 1;
  }
  bulwark::Server server(std::move(load.config),
                         [path] { return bulwark::LoadConfigFile(path, bulwark::ProcessEnv()); });
  absl::Status s = server.Start();
  if (!s.ok()) {
    fprintf(stderr, "bulwark: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return server.Run();
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bulwark: gateway, PostgreSQL proxy, observability and backups in one binary"};
  app.require_subcommand(1);
  std::string serve_path, check_path;
  auto* serve = app.add_subcommand("serve", "Run with a configuration file");
  serve->add_option("-c,--config", serve_path, "Configuration file")->required();
  auto* check =
      app.add_subcommand("check-config", "Validate a configuration file (exit 1 on any error)");
  check->add_option("file", check_path, "Configuration file")->required();
  auto* version = app.add_subcommand("version", "Print the version");
  auto* demo = app.add_subcommand(
      "demo", "Run the gateway on the embedded demo configuration with three origins");
  CLI11_PARSE(app, argc, argv);
  if (*serve) return Serve(serve_path);
  if (*check) return CheckConfig(check_path);
  if (*version) {
    printf("bulwark %s\n", kVersion);
    return 0;
  }
  if (*demo) return bulwark::RunDemo();
  return 2;
}
