// Helpers for integration tests: real processes on loopback, free ports, temp dirs, a raw client.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/resolver.h"

namespace bulwark::testing {

int FreePort();
std::string MakeTempDir();
void WriteFile(const std::string& path, const std::string& text);
std::string ReadFile(const std::string& path);
// A self-signed P-256 certificate for `name` (and *.name): DIR/NAME.crt and DIR/NAME.key. A
// failure of openssl is a test failure (run under ASSERT_NO_FATAL_FAILURE to stop there).
void MakeCert(const std::string& dir, const std::string& name);
// A test PKI in `dir`: ca.crt/key, server.crt/key for api.test and 127.0.0.1 signed by it,
// client.crt/key (clientAuth) signed by it, and other-ca.crt/key that signed nothing. A failure
// of openssl is a test failure (run under ASSERT_NO_FATAL_FAILURE).
void MakeTestPki(const std::string& dir);
// The uncompressed contents of a gzip file (all its members); "" if it cannot be opened.
std::string GunzipFile(const std::string& path);
// The first gzip member in `bytes`, uncompressed; "<bad gzip>" if it is not one whole member.
std::string Gunzip(const std::string& bytes);
// kB of a /proc/PID/status field (VmRSS, VmHWM); -1 when absent.
long ProcKb(pid_t pid, const std::string& field);
bool WaitForPort(int port, int timeout_ms);
// A blocking TCP connection to 127.0.0.1:port (TCP_NODELAY, send and receive timeouts of
// timeout_ms); -1 when refused.
int ConnectLoopback(int port, int timeout_ms);
// Runs `cmd` with sh, returning its stdout and stderr together; `status` gets its exit code.
std::string Shell(const std::string& cmd, int* status = nullptr);
// Polls `f` every 50 ms until it returns true; gives up when `ms` have passed and it has been
// asked at least ms / 50 times (on a loaded machine each call can take far longer than the
// pause, so neither the clock nor the count alone is a fair wait). Returns f's last answer.
template <typename F>
bool WaitFor(F f, int ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (int tries = 0; tries < ms / 50 || std::chrono::steady_clock::now() < until; ++tries) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return f();
}
// Absolute path of a program from PATH, /usr/sbin or /sbin (nginx and haproxy live in sbin); "" if
// absent.
std::string FindProgram(const std::string& name);

// A child process (fork+exec) in a process group of its own, its output in files. On
// destruction the group is killed (SIGKILL): the process and whatever it started.
class Process {
 public:
  Process(std::vector<std::string> argv, std::map<std::string, std::string> env,
          const std::string& log_path);
  ~Process();
  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits up to timeout_ms; returns the exit code, or -1 on timeout, or 128+signal.
  int Wait(int timeout_ms);
  bool running();

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool closed = false;  // the server closed the connection after this response
  std::string error;    // why no response could be read (status 0)
};

// The admin API token of the bulwark whose admin listener is on `port` (read from its state
// directory), or "" when no Bulwark below runs there or its config sets its own token.
std::string AdminToken(int port);
// Makes requests to a registered admin port carry its token (Client::Send adds the
// Authorization header when the request has none; "" for a bulwark whose config sets its own
// token) and "Host: localhost" instead of the tests' usual "Host: test". Tests of the token
// itself turn the token off (Client::set_auto_token).
void RegisterAdminPort(int port, const std::string& token_file);
void UnregisterAdminPort(int port);

// A blocking HTTP/1.1 client connection. A request to a bulwark's admin port gets that
// bulwark's token added unless it has an Authorization header or set_auto_token(false).
class Client {
 public:
  explicit Client(int port, int timeout_ms = 5000);
  void set_auto_token(bool on) { auto_token_ = on; }
  ~Client();
  bool connected() const { return fd_ >= 0; }
  bool Send(const std::string& raw);
  // Reads one response (Content-Length, chunked or close-delimited). status 0 on failure.
  Response Read(bool head_request = false);
  Response Get(const std::string& path, const std::string& extra_headers = "");
  // True when the peer has closed the connection (reads EOF within timeout_ms).
  bool WaitClosed(int timeout_ms);
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  bool auto_token_ = true;
  std::string buf_;
};

// One-shot GET on a new connection.
Response HttpGet(int port, const std::string& path, const std::string& extra_headers = "");
Response HttpPost(int port, const std::string& path, const std::string& body);

// A scriptable HTTP backend on its own threads (one per connection).
class Backend {
 public:
  struct Request {
    std::string method, target, body;
    std::map<std::string, std::string> headers;  // lower-case names
  };
  using Handler = std::function<std::string(const Request&)>;  // returns a whole raw response
  // Listens on `ip` (any loopback address: 127.0.0.0/8 is all local) and `port` (0: a free one).
  explicit Backend(Handler h, int port = 0, std::string ip = "127.0.0.1");
  ~Backend();
  int port() const { return port_; }
  int requests() const { return requests_.load(); }
  void Stop();   // close the listener and every connection
  void Start();  // listen again on the same port
  static std::string Reply(int status, const std::string& body, const std::string& extra = "");

 private:
  void AcceptLoop();
  void Serve(int fd);
  Handler handler_;
  int port_;
  std::string ip_;
  std::atomic<int> lfd_{-1};
  std::atomic<bool> stopping_{false};
  std::atomic<int> requests_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> threads_;
};

// bulwark under test: writes `config` to a temp file and runs `bulwark serve` with its own state
// directory (STATE_DIRECTORY, as systemd sets it), registering its admin port's token.
class Bulwark {
 public:
  // `prefix` runs before the binary (e.g. {"prlimit", "--nofile=64", "--"}).
  explicit Bulwark(const std::string& config, std::map<std::string, std::string> env = {},
                   std::vector<std::string> prefix = {});
  ~Bulwark();
  // Waits until the gateway port (and the admin port, when given) accept connections.
  bool Ready(int port, int admin_port = 0, int timeout_ms = 5000);
  Process& process() { return *process_; }
  const std::string& config_path() const { return config_path_; }
  const std::string& dir() const { return dir_; }
  std::string state_dir() const { return dir_ + "/state"; }
  std::string log() const;

 private:
  std::string dir_, config_path_, log_path_;
  int admin_port_ = 0;
  std::unique_ptr<Process> process_;
};

// The value of one series (name with its labels, as printed) in /metrics text; "" when absent.
std::string Metric(const std::string& text, const std::string& series);

// A real redis-server on a free loopback port, in a temp dir, without persistence. Extra
// arguments are appended (e.g. {"--replicaof", "127.0.0.1", "6380"}); with `sentinel` it runs
// as a Sentinel whose config file is `sentinel_conf`.
class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra = {}, std::string sentinel_conf = "");
  ~RedisServer();
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  void Start();
  void Kill();
  bool running() const { return proc_ != nullptr; }

 private:
  int port_;
  std::string dir_;
  std::vector<std::string> extra_;
  std::string sentinel_conf_;
  std::unique_ptr<Process> proc_;
};

// A PostgreSQL 15 server of its own on loopback (Debian's binaries), run as the postgres user:
// initdb in a temp dir (trust on the Unix socket, md5 on TCP, so a role's stored password decides
// between md5 and SCRAM-SHA-256), listening on a free port. `conf` lines are appended to
// postgresql.conf. Stopped with a fast shutdown.
class PostgresServer {
 public:
  explicit PostgresServer(std::vector<std::string> conf = {});
  // A streaming replica of `primary`: pg_basebackup -R from it, then started on its own port.
  struct ReplicaOf {
    const PostgresServer* primary;
    std::vector<std::string> conf = {};  // extra postgresql.conf lines (cluster_name, ...)
  };
  explicit PostgresServer(ReplicaOf replica_of);
  // A server started on an existing data directory (moved into the server's own temp dir and
  // given to the postgres user): e.g. one restored from a pg_basebackup.
  struct FromDataDir {
    std::string data;
  };
  explicit PostgresServer(FromDataDir from);
  ~PostgresServer();
  bool ok() const { return ok_; }
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // Runs SQL with psql as the superuser over the Unix socket; returns psql's output (-At).
  std::string Psql(const std::string& sql, const std::string& db = "postgres");
  std::string log() { return ReadFile(dir_ + "/postgres.log"); }
  // "<socket dir>:<port>": how bulwark's config names this server over its Unix socket.
  std::string socket_address() const { return dir_ + ":" + std::to_string(port_); }
  // Stops the server with `sig` (SIGQUIT: immediate shutdown, as a crash) and waits for it.
  void Stop(int sig);
  // Starts it again on its data directory; false unless it is back on the same port.
  bool Restart();

 private:
  bool Prepare();
  void Start(const std::vector<std::string>& conf);

  bool ok_ = false;
  int port_;
  std::string dir_;
  std::unique_ptr<Process> proc_;
};

// MariaDB (Debian's mariadb-server) with its own data directory, run as the mysql user on a
// Unix socket and a free loopback port; root has no password on the socket.
class MysqlServer {
 public:
  MysqlServer();
  ~MysqlServer();
  bool ok() const { return ok_; }
  const std::string& dir() const { return dir_; }
  std::string socket() const { return dir_ + "/mysql.sock"; }
  // Runs SQL as root; returns the output (-N -B: tab-separated, no headers).
  std::string Sql(const std::string& sql, const std::string& db = "");
  std::string log() { return ReadFile(dir_ + "/error.log"); }

 private:
  bool ok_ = false;
  int port_;
  std::string dir_;
  std::unique_ptr<Process> proc_;
};

// dnsmasq answering from `hosts` only (no upstream, no /etc/hosts) on its own loopback port,
// records with a 1 s TTL. Start waits until it answers.
class DnsServer {
 public:
  DnsServer();
  void Start(const std::string& hosts);
  // Rewrites the hosts file; a running dnsmasq re-reads it on SIGHUP.
  void SetHosts(const std::string& hosts);
  void Kill();
  int port() const { return port_; }
  // Resolver options that ask only this server, with short timeouts and TTL bounds.
  ResolverOptions options() const;
  // The same as a bulwark `resolver:` block.
  std::string ConfigBlock() const;

 private:
  std::string dir_;
  int port_;
  std::unique_ptr<Process> proc_;
};

// A single-member etcd (Debian's etcd-server) on loopback ports.
class EtcdServer {
 public:
  // With `pki` (a MakeTestPki directory): HTTPS with its server certificate, client
  // certificates signed by its CA required (--client-cert-auth).
  explicit EtcdServer(std::string pki = "");
  ~EtcdServer();
  bool ok() const { return ok_; }
  std::string endpoint() const {
    return (pki_.empty() ? "http://127.0.0.1:" : "https://127.0.0.1:") + std::to_string(port_);
  }
  // POSTs JSON to the v3 gateway (with the test client certificate without a CommonName over
  // TLS, and `token` when
  // given); returns the answer.
  std::string Post(const std::string& path, const std::string& body, const std::string& token = "");
  // Creates user root with `password` (role root) and turns authentication on.
  bool EnableAuth(const std::string& password);
  void Stop();

 private:
  bool ok_ = false;
  int port_, peer_port_;
  std::string dir_, pki_;
  std::unique_ptr<Process> proc_;
};

// Masters on loopback joined into a Redis Cluster (no replicas, slots split evenly by
// `redis-cli --cluster create`); ok() once every node reports cluster_state:ok.
class RedisClusterServers {
 public:
  explicit RedisClusterServers(int masters = 3);
  bool ok() const { return ok_; }
  size_t size() const { return nodes_.size(); }
  int port(size_t i) const { return nodes_[i]->port(); }
  const std::string& log() const { return log_; }

 private:
  std::vector<std::unique_ptr<RedisServer>> nodes_;
  bool ok_ = false;
  std::string log_;
};

// Runs redis-cli against a port; returns its output without the trailing newline.
std::string RedisCli(int port, const std::vector<std::string>& args);

// A bulwark configuration with an admin listener, one listener routing everything to
// 127.0.0.1:APP_PORT, no access log, and `observe` as the body of the `observe:` block (indented
// two spaces, ending in a newline).
std::string ObserveConfig(int port, int admin, int app_port, const std::string& observe);

// Runs `bulwark ARGS...`, returning exit code and combined output.
int RunBulwark(const std::vector<std::string>& args, std::string* output);
// Runs any program with extra environment; returns its exit code (-1 on timeout) and its
// stdout and stderr together in `output`.
int RunProgram(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
               std::string* output, int timeout_ms = 60000);

}  // namespace bulwark::testing
