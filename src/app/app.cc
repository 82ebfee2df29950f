#include "app/app.h"

#include <dirent.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "admin/dashboard.h"
#include "app/privileges.h"
#include "app/state.h"
#include "core/log.h"
#include "core/strings.h"
#include "core/systemd.h"
#include "core/units.h"

namespace bulwark {

class App::SignalHandler : public IoHandler {
 public:
  explicit SignalHandler(App* s) : s_(s) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  }
  ~SignalHandler() override {
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }
  void OnIo(uint32_t) override {
    signalfd_siginfo si;
    while (read(fd_, &si, sizeof(si)) == sizeof(si)) {
      if (si.ssi_signo == SIGHUP) {
        LogInfo("SIGHUP: reloading configuration");
        s_->Reload();
      } else if (si.ssi_signo == SIGUSR1) {
        // nginx's USR1: logrotate renames the files, then asks for new ones (no copytruncate).
        s_->ReopenLogs();
        LogInfo("SIGUSR1: log files reopened");
      } else {
        LogInfo(si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", ": draining and shutting down");
        s_->BeginDrain();
      }
    }
  }

 private:
  App* s_;
  int fd_ = -1;
};

void App::BlockSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

App::App(std::unique_ptr<Config> cfg, ConfigSource source)
    : cfg_(std::move(cfg)), source_(std::move(source)) {}

App::~App() {
  observer_.reset();
  pg_.reset();
  pg_names_.reset();
  gateway_.reset();
  admin_.reset();
}

absl::Status App::StartLogs() {
  SetLogLevel(cfg_->log_level == "debug"   ? LogLevel::kDebug
              : cfg_->log_level == "warn"  ? LogLevel::kWarn
              : cfg_->log_level == "error" ? LogLevel::kError
                                           : LogLevel::kInfo);
  SetLogJson(cfg_->log_format == "json");
  if (!cfg_->log_file.path.empty() || !cfg_->error_log.empty()) {
    std::unique_ptr<LogFile> main, errors;
    if (!cfg_->log_file.path.empty()) {
      auto f = LogFile::Open(cfg_->log_file);
      if (!f.ok()) return f.status();
      main = std::move(*f);
    }
    if (!cfg_->error_log.empty()) {
      LogFileConfig e = cfg_->log_file;
      e.path = cfg_->error_log;
      auto f = LogFile::Open(e);
      if (!f.ok()) return f.status();
      errors = std::move(*f);
    }
    SetLogFiles(std::move(main), std::move(errors));
  }
  // Started by systemd with the log on journald's stream: each line carries its priority.
  const std::string& to = cfg_->log_file.path;
  int stream = to.empty() || to == "stderr" ? STDERR_FILENO : to == "stdout" ? STDOUT_FILENO : -1;
  SetLogPriorityPrefix(stream >= 0 && systemd::IsJournalStream(stream));
  return absl::OkStatus();
}

absl::Status App::StartAdmin() {
  // The token and the audit log live in the state directory (0700, whoever made it).
  std::string state = StateDir(*cfg_);
  absl::Status s = PrepareStateDir(state);
  if (!s.ok()) return s;
  auto token = LoadOrCreateAdminToken(*cfg_, state);
  if (!token.ok()) return token.status();
  if (token->generated) {
    LogInfo("admin API token generated in ", token->path,
            " (send it as Authorization: Bearer <token>; the CLI reads it from there)");
  } else if (!token->path.empty()) {
    LogInfo("admin API token: ", token->path, " (", token->id, ")");
  }
  LogFileConfig audit_cfg = cfg_->admin.audit_log;
  if (audit_cfg.path.empty()) audit_cfg.path = state + "/audit.log";
  auto audit = security::AuditLog::Open(audit_cfg);
  if (!audit.ok()) return audit.status();
  audit_ = std::move(*audit);
  admin_token_ = *token;
  admin::AdminOptions o;
  o.token = token->token;
  o.token_id = token->id;
  o.server_names = cfg_->admin.server_names;
  o.protect_metrics = cfg_->admin.protect_metrics;
  o.audit = audit_.get();
  admin_ = std::make_unique<admin::AdminServer>(&loop_, std::move(o));
  s = admin_->Listen(cfg_->admin.address);
  if (!s.ok()) return s;
  return absl::OkStatus();
}

std::shared_ptr<const pg::PgConfig> App::PgWithAddresses() const {
  return pg::ExpandServerNames(*cfg_->pg, pg_names_ ? &pg_names_->table() : nullptr);
}

void App::StartLease() {
  EtcdLeaseOptions o;
  o.endpoints = cfg_->cluster.etcd_endpoints;
  o.key = cfg_->cluster.etcd_key_prefix + "/leader";
  o.ttl_ms = cfg_->cluster.lease_ttl_ms;
  o.name = cfg_->cluster.name;
  o.username = cfg_->cluster.etcd_username;
  o.password = cfg_->cluster.etcd_password;
  o.ca_file = cfg_->cluster.etcd_ca_file;
  o.cert_file = cfg_->cluster.etcd_cert_file;
  o.key_file = cfg_->cluster.etcd_key_file;
  o.pins = pins_.get();
  if (o.name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    o.name = StrCat(host, "/", cfg_->admin.listen);
  }
  lease_ = std::make_unique<EtcdLease>(o);
  lease_->Start();
}

absl::Status App::Start() {
  absl::Status s = StartLogs();
  if (!s.ok()) return s;
  s = loop_.Init();
  if (!s.ok()) return s;
  // Descriptors the gateway's connections may never take (admin, the pg proxy, the vault, log
  // files).
  int64_t reserve = cfg_->reserved_descriptors;
  if (reserve == 0)
    reserve = 256 + (cfg_->pg->enabled ? 2 * int64_t{cfg_->pg->max_client_conn} : 0);
  resolver_ = std::make_unique<Resolver>(cfg_->resolver);
  if (std::vector<std::string> errors = CheckNamesResolve(*cfg_, resolver_.get());
      !errors.empty()) {
    return absl::FailedPreconditionError(Join(errors, "\n"));
  }
  s = resolver_->Start();
  if (!s.ok()) return s;
  pins_ = std::make_unique<HostPins>(resolver_.get());
  gateway_ = std::make_unique<gateway::Gateway>(&loop_, cfg_->gateway, cfg_->EffectiveWorkers(),
                                                reserve, resolver_.get());
  s = gateway_->Start(++generation_);
  if (!s.ok()) return s;
  if (cfg_->cluster.enabled()) StartLease();
  if (cfg_->pg->enabled) {
    pg_names_ = std::make_unique<NameWatcher>(resolver_.get(), &loop_, "pg", [this] {
      // A name moved: the proxy reloads with the new addresses (groups whose servers changed are
      // replaced; clients on them finish where they are, as with any reload).
      if (pg_) pg_->Reload(PgWithAddresses());
    });
    pg_names_->Set(pg::ServerHostNames(*cfg_->pg));
    pg_ = std::make_unique<pg::Proxy>(PgWithAddresses());
    pg_->set_lease(lease_.get());
    s = pg_->Start();
    if (!s.ok()) return s;
  }
  if (cfg_->vault->enabled) {
    std::function<bool()> leader;
    if (lease_) leader = [l = lease_.get()] { return l->leader(); };
    for (const std::string& note : cfg_->vault->notes) LogWarn("vault: ", note);
    vault_ = std::make_unique<vault::Scheduler>(cfg_->vault, leader);
    s = vault_->Start();
    if (!s.ok()) return s;
  }
  if (cfg_->admin.enabled) {
    s = StartAdmin();
    if (!s.ok()) return s;
  }
  registry_.AddCollector([this](std::string* out) { CollectMetrics(out); });
  {
    // bulwark's own samples are labelled with the admin address (what Prometheus would call
    // this target), or the host name without an admin listener.
    std::string instance = "localhost";
    if (admin_) {
      instance = StrCat(cfg_->admin.address.IpString(), ":", admin_->port());
    } else {
      char host[256] = {};
      if (gethostname(host, sizeof(host) - 1) == 0) instance = host;
    }
    observer_ = std::make_unique<observe::Observer>(&loop_, &registry_, instance, pins_.get());
    observer_->Reload(cfg_->observe);
    if (admin_) RegisterAdminRoutes();
    observer_->Start();
  }
  signals_ = std::make_unique<SignalHandler>(this);
  if (signals_->fd() >= 0) {
    s = loop_.Add(signals_->fd(), EPOLLIN, signals_.get());
    if (!s.ok()) return s;
  }
  tick_.set_callback([this] { OnTick(); });
  loop_.ArmTimer(&tick_, 1000);
  // WatchdogSec=: the control loop proves it is alive at half the interval (sd_watchdog_enabled).
  if (int64_t usec = systemd::WatchdogUsec(); usec > 0) {
    watchdog_ms_ = std::max<int64_t>(1, usec / 2000);
    watchdog_.set_callback([this] { KickWatchdog(); });
    KickWatchdog();
  }
  if (pg_) {
    LogInfo("PostgreSQL proxy on ", cfg_->pg->listen.IpString(), ":", pg_->port(), " (",
            pg::PoolModeName(cfg_->pg->pool_mode), " pooling, ", cfg_->pg->databases.size(),
            cfg_->pg->databases.size() == 1 ? " database)" : " databases)");
  }
  if (admin_) LogInfo("admin API on ", cfg_->admin.address.IpString(), ":", admin_->port());
  for (const std::string& a : systemd::UnusedListenFds())
    LogWarn("systemd passed a socket on ", a, " that no listener is configured for");
  return BecomeUser();
}

absl::Status App::BecomeUser() {
  if (cfg_->user.empty()) return absl::OkStatus();
  absl::StatusOr<RunAs> who = LookUpRunAs(cfg_->user, cfg_->group);
  if (!who.ok()) return who.status();
  if (geteuid() != 0) {
    // nginx: "the user directive makes sense only if the master process runs with super-user
    // privileges, ignored".
    if (geteuid() != who->uid)
      LogWarn("user: \"", cfg_->user, "\" needs bulwark started as root; running as uid ",
              geteuid());
    return absl::OkStatus();
  }
  // What bulwark made as root and keeps writing to.
  std::vector<std::string> paths;
  std::string state = StateDir(*cfg_);
  paths.push_back(state);
  if (DIR* d = opendir(state.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') paths.push_back(StrCat(state, "/", e->d_name));
    }
    closedir(d);
  }
  for (const std::string& f : {cfg_->log_file.path, cfg_->error_log, cfg_->gateway->access_log.path,
                               cfg_->admin.audit_log.path}) {
    if (!f.empty() && f != "stdout" && f != "stderr") paths.push_back(f);
  }
  absl::Status s = DropPrivileges(*who, paths);
  if (!s.ok()) return s;
  LogInfo("running as user ", who->user, " (uid ", who->uid, ", gid ", who->gid, ")");
  return absl::OkStatus();
}

// Once a second: rotate the logs when they are full; watch a drain (every 50 ms then).
void App::OnTick() {
  gateway_->Tick();
  if (audit_ != nullptr) audit_->file()->MaybeRotate();
  MaybeRotateLogFiles();
  if (!draining_) {
    loop_.ArmTimer(&tick_, 1000);
    return;
  }
  bool all = gateway_->finished() && (pg_ == nullptr || pg_->finished());
  if (all || loop_.now_ms() >= drain_deadline_ms_) {
    if (!all) LogWarn("drain timeout reached; closing the remaining connections");
    loop_.Stop();
    return;
  }
  loop_.ArmTimer(&tick_, 50);
}

void App::ReopenLogs() {
  ReopenLogFiles();
  gateway_->ReopenLogs();
  if (audit_ != nullptr) {
    if (absl::Status s = audit_->file()->Reopen(); !s.ok())
      LogError("admin: audit log: ", s.message());
  }
}

std::string App::StatusLine() const {
  std::string why;
  return StrCat("configuration generation ", generation_, "; ",
                Ready(&why) ? std::string("ready") : StrCat("not ready: ", why));
}

void App::KickWatchdog() {
  systemd::Notify("WATCHDOG=1");
  loop_.ArmTimer(&watchdog_, watchdog_ms_);
}

int App::Run() {
  // Type=notify: listeners are bound and every plane has started.
  systemd::Notify(StrCat("READY=1\nSTATUS=", StatusLine()));
  loop_.Run();
  gateway_->Stop();
  gateway_->Join();
  if (pg_) {
    pg_->Stop();
    pg_->Join();
  }
  if (vault_) vault_->Stop();  // waits for a running backup to finish
  if (lease_) lease_->Stop();  // gives the lease back: another instance leads at once
  LogInfo("stopped");
  FinishLogFiles();
  return 0;
}

void App::Shutdown() {
  loop_.Post([this] { BeginDrain(); });
}

void App::BeginDrain() {
  if (draining_) return;
  draining_ = true;
  systemd::Notify("STOPPING=1\nSTATUS=draining");
  drain_deadline_ms_ = loop_.now_ms() + cfg_->drain_timeout_ms;
  gateway_->Drain();
  if (pg_) pg_->Drain();
  loop_.ArmTimer(&tick_, 10);
}

std::vector<std::string> App::KeepRestartSettings(Config* next) const {
  std::vector<std::string> warnings;
  if (next->EffectiveWorkers() != cfg_->EffectiveWorkers())
    warnings.push_back("workers: takes effect after a restart");
  if (next->admin.listen != cfg_->admin.listen || next->admin.token != cfg_->admin.token ||
      next->admin.server_names != cfg_->admin.server_names ||
      next->admin.protect_metrics != cfg_->admin.protect_metrics ||
      next->admin.audit_log.path != cfg_->admin.audit_log.path ||
      next->state_dir != cfg_->state_dir) {
    warnings.push_back("admin: takes effect after a restart");
  }
  if (next->cluster.etcd_endpoints != cfg_->cluster.etcd_endpoints ||
      next->cluster.name != cfg_->cluster.name ||
      next->cluster.etcd_key_prefix != cfg_->cluster.etcd_key_prefix ||
      next->cluster.lease_ttl_ms != cfg_->cluster.lease_ttl_ms ||
      next->cluster.etcd_username != cfg_->cluster.etcd_username ||
      next->cluster.etcd_password != cfg_->cluster.etcd_password ||
      next->cluster.etcd_ca_file != cfg_->cluster.etcd_ca_file ||
      next->cluster.etcd_cert_file != cfg_->cluster.etcd_cert_file ||
      next->cluster.etcd_key_file != cfg_->cluster.etcd_key_file) {
    warnings.push_back("cluster: takes effect after a restart");
  }
  if (next->user != cfg_->user || next->group != cfg_->group)
    warnings.push_back("user, group: take effect after a restart");
  next->user = cfg_->user;
  next->group = cfg_->group;
  if (!(next->resolver == cfg_->resolver)) {
    warnings.push_back("resolver: takes effect after a restart (required_at_start applies now)");
  }
  next->resolver = cfg_->resolver;
  next->workers = cfg_->workers;
  next->admin = cfg_->admin;
  next->cluster = cfg_->cluster;
  for (std::string& w : gateway::Gateway::KeepRestartSettings(*cfg_->gateway, next->gateway.get()))
    warnings.push_back(std::move(w));
  for (std::string& w : pg::Proxy::KeepRestartSettings(*cfg_->pg, next->pg.get()))
    warnings.push_back(std::move(w));
  return warnings;
}

std::vector<std::string> App::Reload() {
  // Type=notify-reload's handshake, also right for Type=notify: systemd knows a reload is under
  // way until READY=1 comes back, whatever its outcome.
  systemd::Notify(systemd::ReloadingState());
  std::vector<std::string> errors = ApplyReload();
  systemd::Notify(
      StrCat("READY=1\nSTATUS=", errors.empty() ? "" : "reload refused; ", StatusLine()));
  return errors;
}

std::vector<std::string> App::ApplyReload() {
  ConfigLoad load = source_();
  if (!load.errors.empty()) {
    reloads_failed_.Add(1);
    LogError("reload refused; the running configuration stays:\n", Join(load.errors, "\n"));
    return load.errors;
  }
  std::unique_ptr<Config> next = std::move(load.config);
  // Keep what needs a restart as it is, so the running state and the reported config agree.
  std::vector<std::string> warnings = KeepRestartSettings(next.get());
  if (std::vector<std::string> errors = CheckNamesResolve(*next, resolver_.get());
      !errors.empty()) {
    reloads_failed_.Add(1);
    LogError("reload refused; the running configuration stays:\n", Join(errors, "\n"));
    return errors;
  }
  // The gateway goes first: it is the one plane whose new snapshot can still fail to build
  // (a listener that cannot be bound), and then nothing changes.
  absl::Status s = gateway_->Reload(next->gateway, generation_ + 1);
  if (!s.ok()) {
    reloads_failed_.Add(1);
    std::string err = StrCat(next->path, ": ", s.message());
    LogError("reload refused; the running configuration stays: ", err);
    return {err};
  }
  ++generation_;
  cfg_ = std::move(next);
  if (pg_) {
    pg_names_->Set(pg::ServerHostNames(*cfg_->pg));
    pg_->Reload(PgWithAddresses());
  }
  if (vault_) vault_->Reload(cfg_->vault);
  if (observer_) {
    observer_->Reload(cfg_->observe);
    if (cfg_->observe->enabled) {
      observer_->Start();
    } else {
      observer_->Stop();
    }
  }
  reloads_ok_.Add(1);
  for (const auto& w : warnings) LogWarn("reload: ", w);
  LogInfo("configuration reloaded (generation ", generation_, ")");
  return {};
}

bool App::Ready(std::string* why) const {
  if (draining_) {
    *why = "draining";
    return false;
  }
  return gateway_->Ready(why);
}

void App::RegisterAdminRoutes() {
  using admin::AdminRequest;
  using admin::AdminResponse;
  admin_->Route("GET", "/health", [](const AdminRequest&) { return admin::Text(200, "ok\n"); });
  for (const char* path : {"/", "/dashboard"}) {
    admin_->Route("GET", path, [](const AdminRequest&) {
      admin::AdminResponse r;
      r.content_type = "text/html; charset=utf-8";
      r.body = std::string(admin::DashboardHtml());
      r.extra_headers = StrCat("Content-Security-Policy: ", admin::DashboardCsp(), "\r\n");
      return r;
    });
  }
  admin_->Route("GET", "/ready", [this](const AdminRequest&) {
    std::string why;
    if (Ready(&why)) return admin::Text(200, "ready\n");
    return admin::Text(503, StrCat("not ready: ", why, "\n"));
  });
  if (cfg_->metrics_enabled) {
    admin_->Route("GET", "/metrics", [this](const AdminRequest&) {
      return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8", registry_.Render(), ""};
    });
  }
  admin_->Route("GET", "/api/v1/cluster", [this](const AdminRequest&) {
    nlohmann::json j;
    j["etcd"] = lease_ != nullptr;
    if (lease_) {
      j["name"] = lease_->options().name;
      j["key"] = lease_->options().key;
      j["leader"] = lease_->leader();
      j["holder"] = lease_->holder();
    }
    return admin::Json(200, j.dump());
  });
  admin_->Route("POST", "/api/v1/reload", [this](const AdminRequest&) {
    std::vector<std::string> errors = Reload();
    if (!errors.empty())
      return admin::Json(400, nlohmann::json{{"reloaded", false}, {"errors", errors}}.dump());
    return admin::Json(200, nlohmann::json{{"reloaded", true}, {"generation", generation_}}.dump());
  });
  gateway_->RegisterAdminRoutes(*admin_);
  observer_->RegisterAdminRoutes(*admin_);
  if (pg_) {
    pg_->RegisterAdminRoutes(*admin_);
  } else {
    admin_->Absent("/api/v1/pg", "no pg: block in the configuration");
  }
  if (vault_) {
    vault_->RegisterAdminRoutes(*admin_);
  } else {
    for (const char* prefix :
         {"/api/v1/backups", "/api/v1/drills", "/api/v1/restores", "/api/v1/recovery"}) {
      admin_->Absent(prefix, "no vault: block in the configuration");
    }
  }
}

namespace {

// The host names servers are written with: one series per name.
void CollectResolverMetrics(const Resolver& resolver, std::string* out) {
  std::vector<NameStats> names = resolver.name_stats();
  if (names.empty()) return;
  struct Family {
    const char* name;
    const char* type;
    const char* help;
    uint64_t (*value)(const NameStats&);
  };
  static const Family kFamilies[] = {
      {"bulwark_resolver_lookups_total", "counter", "DNS lookups of the name.",
       [](const NameStats& n) -> uint64_t { return n.lookups; }},
      {"bulwark_resolver_failures_total", "counter",
       "Lookups of the name that failed (the last good addresses stayed in use).",
       [](const NameStats& n) -> uint64_t { return n.failures; }},
      {"bulwark_resolver_changes_total", "counter", "Times the name's set of addresses changed.",
       [](const NameStats& n) -> uint64_t { return n.changes; }},
      {"bulwark_resolver_up", "gauge", "1 when the name's last lookup answered.",
       [](const NameStats& n) -> uint64_t { return n.failing ? 0 : 1; }},
      {"bulwark_resolver_addresses", "gauge", "Addresses in the name's last good answer.",
       [](const NameStats& n) -> uint64_t { return n.addresses; }},
  };
  for (const Family& f : kFamilies) {
    observe::AppendHeader(out, f.name, f.type, f.help);
    for (const NameStats& n : names) {
      StrAppend(out, f.name, "{name=\"");
      observe::AppendLabelValue(out, n.name);
      StrAppend(out, "\"} ", f.value(n), "\n");
    }
  }
}

}  // namespace

void App::CollectMetrics(std::string* out) const {
  gateway_->CollectMetrics(out);
  if (audit_ != nullptr) {
    observe::AppendHeader(out, "bulwark_admin_audit_events_total", "counter",
                          "Admin API mutations written to the audit log, by result (ok, error, "
                          "denied: no or a wrong token, a refused Host or Origin).");
    for (int r = 0; r < security::AuditLog::kResults; ++r) {
      StrAppend(out, "bulwark_admin_audit_events_total{result=\"",
                security::AuditLog::ResultName(r), "\"} ", audit_->count(r), "\n");
    }
    observe::AppendHeader(out, "bulwark_admin_audit_log_write_errors_total", "counter",
                          "Audit log writes that failed.");
    StrAppend(out, "bulwark_admin_audit_log_write_errors_total ", audit_->file()->write_errors(),
              "\n");
  }
  observe::AppendHeader(out, "bulwark_config_reloads_total", "counter",
                        "Configuration reloads by result.");
  StrAppend(out, "bulwark_config_reloads_total{result=\"success\"} ", reloads_ok_.Get(), "\n");
  StrAppend(out, "bulwark_config_reloads_total{result=\"failure\"} ", reloads_failed_.Get(), "\n");
  observe::AppendHeader(out, "bulwark_config_generation", "gauge",
                        "Generation of the configuration in use.");
  StrAppend(out, "bulwark_config_generation ", generation_, "\n");
  if (resolver_ != nullptr) CollectResolverMetrics(*resolver_, out);
  if (pg_) pg_->CollectMetrics(out);
  if (vault_) vault_->CollectMetrics(out);
  if (lease_) {
    observe::AppendHeader(out, "bulwark_cluster_leader", "gauge",
                          "1 while this instance holds the etcd lease (and does the work that "
                          "must happen once).");
    StrAppend(out, "bulwark_cluster_leader ", lease_->leader() ? 1 : 0, "\n");
  }
}

}  // namespace bulwark
