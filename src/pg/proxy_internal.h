// The proxy's moving parts, private to src/pg: client and server connections, pools and the
// proxy thread that owns them. Everything here is touched by the proxy thread only, except the
// counters (atomics, read by the metrics collector).
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/buffers.h"
#include "core/etcd_lease.h"
#include "core/event_loop.h"
#include "core/mutex.h"
#include "core/tls.h"
#include "observe/metrics.h"
#include "pg/auth.h"
#include "pg/classify.h"
#include "pg/config.h"
#include "pg/health.h"
#include "pg/proxy.h"
#include "pg/scatter.h"
#include "pg/shard_router.h"

namespace bulwark::pg {

class ClientConn;
class ServerConn;
class ProxyImpl;
class ScatterJob;
class AuthQuery;
class ScatterPart;
struct PoolGroup;
struct Pool;

// Something a pool lends server connections to: a client, or one shard's part of a
// scatter-gather query. Waits in the pool's queue until Attach.
class PoolUser {
 public:
  virtual ~PoolUser() = default;
  virtual void Attach(ServerConn* s) = 0;
  // Still wants a server (a closed client or a finished part is skipped).
  virtual bool Waiting() const = 0;
  // query_wait_timeout passed in the queue.
  virtual void WaitTimedOut(const std::string& why) = 0;

  Pool* wanted = nullptr;  // the pool being waited on
  int64_t wait_start_ms = 0;
  bool read_next = true;  // the routing verdict for the next transaction
  int shard_next = -1;    // and its shard
};

// A user of a server connection that is bulwark itself (not a client's bytes): one part of a
// scatter-gather, or an auth_query. Gets whole messages.
class InternalUser : public PoolUser {
 public:
  virtual void FromServer(char type, std::string_view msg, std::string_view body) = 0;
  // After a batch of messages: give the server back once its ReadyForQuery came.
  virtual void AfterServerBatch() = 0;
  virtual void ServerLost(std::string_view why) = 0;

 protected:
  // Out of the pool's queue (a wait that timed out).
  void LeaveQueue();
  // ParameterStatus and ReadyForQuery keep the server's state; true when `type` was one.
  bool TrackServer(ServerConn* s, char type, std::string_view body, bool* ready);
};

// db_query_duration_seconds' operations and buckets (the AlkaidSYS metrics.yml).
enum Operation { kOpSelect, kOpInsert, kOpUpdate, kOpDelete, kOpCopy, kOpOther, kOpCount };
inline constexpr double kQueryBuckets[] = {0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10};
inline constexpr int kQueryBucketCount = 8;

// Per client-facing database: counters kept for the life of the process (series continue across
// reloads). Written by the proxy thread, read by the collector.
struct DatabaseStats {
  struct Histogram {
    observe::ShardValue buckets[kQueryBucketCount];  // non-cumulative
    observe::ShardValue count;
    observe::ShardValue sum_us;
  };
  Histogram ops[kOpCount];
  observe::ShardValue transactions;
  observe::ShardValue queries;
  observe::ShardValue routed_primary;
  observe::ShardValue routed_replica;
  observe::ShardValue scatters;  // queries run on every shard
  observe::ShardValue wait_timeouts;
  observe::ShardValue query_timeouts;
  observe::ShardValue wait_us;  // total time clients waited for a server
  std::atomic<int64_t> clients{0};
  std::atomic<int64_t> clients_waiting{0};
};

// Per (database, user, server): the pool's gauges and counters.
struct PoolStats {
  std::string database, user, server;
  std::atomic<int64_t> active{0};      // linked to a client
  std::atomic<int64_t> idle{0};        // ready in the pool
  std::atomic<int64_t> connecting{0};  // connecting or logging in
  std::atomic<int64_t> used{0};        // running the reset or a check query
  observe::ShardValue connects;
  observe::ShardValue connect_failures;
  observe::ShardValue bytes_in;   // from the server
  observe::ShardValue bytes_out;  // to the server
};

// A prepared statement as a client named it, and what the servers call it.
struct PreparedStatement {
  std::string query;
  uint64_t hash = 0;       // of query and parameter types: the server-side name
  std::string parse_body;  // the Parse message body with the server-side name
  bool write = true;       // the router's verdict on the query
};

// One pool: server connections to one server for one (database, user).
struct Pool {
  PoolGroup* group = nullptr;
  const ServerConfig* server = nullptr;
  std::string dbname;  // on the server: the database's dbname, or one shard's
  int shard = -1;      // index into the shard map's databases; -1 when not sharded
  std::shared_ptr<ServerHealth> health;
  Role config_role = Role::kPrimary;  // from the config until the health checker knows better
  PoolStats* stats = nullptr;
  std::vector<ServerConn*> idle;  // LIFO, as PgBouncer's server_round_robin = 0
  std::deque<PoolUser*> waiting;  // FIFO
  int total = 0;                  // every server connection of this pool
  int connecting = 0;
  int64_t last_failure_ms = -1;  // server_login_retry starts from here
  std::string last_error;
  int64_t wait_since_ms = 0;  // oldest waiter (for reserve_pool_timeout)
};

// The pools of one (database, user): one per server, plus what new clients are welcomed with.
struct PoolGroup {
  std::string database, user;
  std::shared_ptr<const PgConfig> cfg;  // the snapshot this group was made under
  const DatabaseConfig* db = nullptr;
  const UserConfig* user_cfg = nullptr;
  DatabaseStats* stats = nullptr;
  PoolMode mode = PoolMode::kSession;
  int pool_size = 20, min_pool_size = 0, reserve = 0, max_db = 0, max_user = 0;
  std::vector<std::unique_ptr<Pool>> pools;  // per server, in config order
  // ParameterStatus values of the first server login: what clients are told at startup.
  std::vector<std::pair<std::string, std::string>> welcome;
  bool welcome_ready = false;
  std::vector<ClientConn*> login_waiters;  // clients waiting for `welcome`
  int clients = 0;
  bool retired = false;  // replaced by a reload: no new clients
  // Everything a reload must not change under a running group (GroupSignature); a reload that
  // leaves it alone keeps the group and its server connections.
  std::string signature;
  // Server login credentials.
  std::string server_user;  // the password: the database's, or user_cfg's (read at each login)
  // SCRAM pass-through: the ClientKey of the last client that logged in with SCRAM and the
  // verifier's ServerKey, for servers whose password bulwark holds only as a verifier.
  std::string scram_client_key, scram_server_key;
  bool has_replicas = false;
  int rr = 0;                                // round robin over replicas
  const ShardingConfig* sharding = nullptr;  // the database's shard map, when it has one
  ClassifyOptions shard_options;             // its key and date columns
  // Its database's read-only functions (from pg_proc), null until the health checker has them.
  std::shared_ptr<const FunctionNames> functions;
};

// What the server owes the client for one message sent to it, in order. The proxy answers some
// messages itself (a Parse the server already has) and slips in some of its own (a Parse the
// server lacks, a SET to match the client's parameters), so responses are matched to requests.
struct Expect {
  enum Kind : uint8_t { kForward, kDrop, kSynthetic };
  Kind kind = kForward;
  char type = 0;           // the request: 'P','B','C','D','E','S','Q','F'
  uint64_t stmt_hash = 0;  // an injected or forwarded named Parse (forgotten on error)
  std::string synthetic;   // kSynthetic: the bytes to send the client
};

class ServerConn final : public IoHandler {
 public:
  enum class State { kConnecting, kLogin, kIdle, kActive, kReset, kClosed };
  ServerConn(ProxyImpl* proxy, Pool* pool);
  ~ServerConn() override;

  void Connect();
  void OnIo(uint32_t events) override;
  void Close(std::string_view why);

  // Sends what is queued; false when the connection failed (and was closed).
  bool Flush();
  void ReadAndForward();

  State state = State::kConnecting;
  Pool* pool;
  ProxyImpl* proxy;
  int fd = -1;
  ByteBuffer in;
  OutQueue out;
  ClientConn* client = nullptr;
  InternalUser* internal = nullptr;  // or lent to bulwark itself (scatter-gather, auth_query)
  std::vector<std::pair<std::string, std::string>> params;  // ParameterStatus
  int32_t backend_pid = 0, backend_key = 0;
  std::unordered_set<uint64_t> prepared;
  std::deque<uint64_t> prepared_order;
  int64_t created_ms = 0, last_used_ms = 0;
  bool at_sync = true;             // the last thing from the server was ReadyForQuery 'I'
  bool counted_connecting = true;  // still in its pool's `connecting`
  char tx_status = 'I';
  bool reading_paused = false;
  // epoll said the server hung up: read until EOF even after a short read (data and hang-up
  // can come in one edge-triggered event).
  bool peer_hup = false;
  size_t pass_left = 0;  // bytes of a large DataRow/CopyData still to pass to the client
  bool pass_drop = false;
  std::unique_ptr<ScramClient> scram;
  bool auth_seen = false;  // the server asked for some authentication during this login
  // TLS to the server (pg.server_tls_sslmode): the SSLRequest's one-byte answer is awaited,
  // then the handshake runs; the startup packet goes after it.
  enum class TlsPhase { kNone, kAwaitAnswer, kHandshake };
  TlsPhase tls_phase = TlsPhase::kNone;
  TlsStream tls;
  Timer timer;
  std::string FindParam(std::string_view name) const;
  void SetParam(std::string_view name, std::string_view value);
  void AddPrepared(uint64_t h);
  // What this server calls a client's prepared statement with text hash `h`.
  static std::string StatementName(uint64_t h);
  // SET statements bringing this server's parameters to `vars` (recorded as set), or "".
  std::string SetsFor(const std::vector<std::pair<std::string, std::string>>& vars);
  void ForgetPrepared(uint64_t h);
  void ResumeReading();

 private:
  void OnLoginMessage(char type, std::string_view body);
  void LoginFailed(std::string why);
  // The SSLRequest's answer and the handshake; false when the connection failed.
  bool NegotiateTls();
  void SendStartup();
};

class ClientConn final : public IoHandler, public PoolUser {
 public:
  enum class State {
    kStartup,    // before the startup packet
    kTls,        // TLS handshake after SSLRequest
    kAuthQuery,  // waiting for auth_query's answer
    kAuth,       // password exchange
    kWelcome,    // waiting for the pool's first server login (parameters)
    kIdle,       // logged in, no server
    kWaiting,    // queued for a server
    kLinked,     // a server is attached
    kScatter,    // a query runs on every shard
    kClosed
  };
  ClientConn(ProxyImpl* proxy, int fd, const SocketAddress& peer);
  ~ClientConn() override;

  void OnIo(uint32_t events) override;
  void Close(std::string_view why);
  // Sends an ErrorResponse (FATAL) and closes once it is written.
  void Fatal(std::string_view sqlstate, std::string_view message);
  bool Flush();
  // The proxy hands this client a server.
  void Attach(ServerConn* s) override;
  bool Waiting() const override { return state == State::kWaiting && !close_after_flush; }
  void WaitTimedOut(const std::string& why) override;
  // A scatter-gather finished: its answer is in `out`.
  void ScatterDone();
  // auth_query answered: the user is known now (or not: the login fails).
  void AuthQueryAnswered(bool found);
  void WelcomeReady();
  void WelcomeFailed(const std::string& error);
  // Server bytes: called by the server connection with a complete message.
  void FromServer(char type, std::string_view msg, std::string_view body);
  // The server went away under this client.
  void ServerLost(std::string_view why);
  void ProcessInput();
  void ResumeReading();
  // After a batch of server messages: flush, and in transaction mode give the server back at
  // the end of a transaction.
  void AfterServerBatch();
  // Sends the answers bulwark owes the client ahead of the server's next one.
  void DrainSynthetic();

  ProxyImpl* proxy;
  int fd;
  SocketAddress peer;
  State state = State::kStartup;
  TlsStream tls_stream;  // after an SSLRequest, when the proxy has TLS
  ByteBuffer in;
  OutQueue out;
  PoolGroup* group = nullptr;
  ServerConn* server = nullptr;
  ScatterJob* job = nullptr;
  AuthQuery* auth_query = nullptr;
  std::string user, database;
  std::vector<std::pair<std::string, std::string>> startup_params;
  // Parameters PgBouncer tracks per client and sets on each server it lands on.
  std::vector<std::pair<std::string, std::string>> vars;
  std::unordered_map<std::string, PreparedStatement> prepared;
  std::deque<Expect> expects;
  int32_t key_pid = 0, key_secret = 0;
  int64_t connected_ms = 0, query_start_ms = 0, last_write_ms = -1;
  int64_t idle_since_ms = 0;
  bool abandon = false;  // after an error in an extended-protocol batch, until Sync
  size_t pass_left = 0;  // bytes of a large message still to pass through to the server
  bool close_after_flush = false;
  bool reading_paused = false;
  bool peer_hup = false;              // as ServerConn::peer_hup
  std::optional<std::string> tenant;  // SET bulwark.tenant_id
  // The first message rewritten by the router (monthly tables): sent instead of the first
  // `rewrite_skip` bytes of `in`.
  std::string rewrite;
  size_t rewrite_skip = 0;
  Operation last_op = kOpOther;
  std::unique_ptr<ScramServer> scram_server;
  std::string md5_salt;
  std::string scram_client_key;  // for SCRAM pass-through to servers
  // A copy, not a pointer into ProxyImpl::verifiers: a reload, a name that starts resolving or an
  // auth_query answer replaces that map while a login is half-way through SCRAM.
  std::optional<ScramVerifier> verifier;
  int auth_step = 0;
  Timer timer;

 private:
  void OnStartup();
  void StartAuth();
  void OnAuthMessage(char type, std::string_view body);
  void AuthOk();
  bool RouteAndAcquire();
  // Whether a Parse of `query` must go to the primary (classified once per request).
  bool ParseWrites(std::string_view query);
  std::string parse_memo_query_;
  const FunctionNames* parse_memo_functions_ = nullptr;
  bool parse_memo_valid_ = false, parse_memo_write_ = true;
  // Sharded databases: fills shard_next (and `rewrite`); false when the request was answered
  // here (an error, or a SET bulwark.tenant_id) or needs more bytes.
  bool RouteShardRequest(bool* answered);
  // Answers the first request in `in` with an error and drops it (up to its Sync).
  void RejectRequest(std::string_view sqlstate, std::string_view message);
  // Forwards the messages in `in` to the server until it needs more bytes or one must wait.
  void ForwardInput();
  bool HandleExtended(char type, std::string_view msg, std::string_view body);
  void Release();
  void TryRecv();
};

// One shard's part of a scatter-gather: the query on one server, its rows kept whole.
class ScatterPart final : public InternalUser {
 public:
  ScatterPart(ScatterJob* j, int shard) : job(j) { shard_next = shard; }
  void Attach(ServerConn* s) override;
  bool Waiting() const override { return waiting; }
  void WaitTimedOut(const std::string& why) override;
  void FromServer(char type, std::string_view msg, std::string_view body) override;
  void AfterServerBatch() override;
  void ServerLost(std::string_view why) override;

  ScatterJob* job;
  ServerConn* server = nullptr;
  bool waiting = false, done = false;
  int skip_z = 0;  // ReadyForQuery of the parameter SETs sent first
  std::string row_description;
  std::vector<Row> rows;
  std::string error;  // the first ErrorResponse, whole

 private:
  void Done();
};

// A query without a shard key, on every shard; the merged answer goes to the client.
class ScatterJob {
 public:
  ProxyImpl* proxy = nullptr;
  ClientConn* client = nullptr;  // null once the client has gone
  ScatterPlan plan;
  std::vector<std::unique_ptr<ScatterPart>> parts;
  int remaining = 0;
  void PartDone();
};

// PgBouncer's auth_query: the password of a user not in `users`, asked of the server as
// `auth_user` (SELECT usename, passwd FROM pg_shadow WHERE usename=$1 by default).
class AuthQuery final : public InternalUser {
 public:
  AuthQuery(ProxyImpl* p, ClientConn* c, std::string u) : proxy(p), client(c), user(std::move(u)) {}
  void Attach(ServerConn* s) override;
  bool Waiting() const override { return waiting; }
  void WaitTimedOut(const std::string& why) override;
  void FromServer(char type, std::string_view msg, std::string_view body) override;
  void AfterServerBatch() override;
  void ServerLost(std::string_view why) override;

  ProxyImpl* proxy;
  ClientConn* client;  // null once the client has gone
  std::string user;
  ServerConn* server = nullptr;
  bool waiting = false, done = false, found = false;
  std::string password, error;

 private:
  void Finish();
};

// The proxy thread.
class ProxyImpl {
 public:
  explicit ProxyImpl(std::shared_ptr<const PgConfig> cfg);
  ~ProxyImpl();

  absl::Status Start();
  void Run();

  EventLoop loop;
  std::shared_ptr<const PgConfig> cfg;
  std::shared_ptr<TlsServer> tls;
  int listen_fd = -1;
  int port = 0;
  std::thread thread;
  std::atomic<bool> finished{false};
  bool draining = false;

  // Every pool group made under the current or an older config (retired ones stay until empty).
  std::map<std::pair<std::string, std::string>, std::unique_ptr<PoolGroup>> groups;
  std::vector<std::unique_ptr<PoolGroup>> retired;
  std::unordered_map<uint64_t, ClientConn*> by_cancel_key;
  std::unordered_set<ClientConn*> clients;
  std::unordered_set<ServerConn*> servers;

  // Shared with the health checker and the collector; never removed (keyed by name).
  mutable Mutex stats_mu;
  std::map<std::string, std::unique_ptr<DatabaseStats>> db_stats;
  std::map<std::string, std::unique_ptr<PoolStats>> pool_stats;
  std::map<std::string, std::shared_ptr<ServerHealth>> health;  // by server address
  std::unique_ptr<HealthChecker> checker;
  const EtcdLease* lease = nullptr;

  observe::ShardValue clients_accepted, clients_refused, login_failures, protocol_errors, cancels;
  std::atomic<int64_t> clients_open{0};

  // SCRAM verifiers derived once per config for users given plain passwords.
  std::map<std::string, ScramVerifier> verifiers;

  PoolGroup* FindGroup(const std::string& database, const std::string& user, std::string* error);
  const UserConfig* FindUserConfig(const std::string& user) const;
  // Puts `u` in the pool's queue or attaches it to an idle server at once.
  void Acquire(Pool* p, PoolUser* u);
  // Runs `plan` on every shard of the client's database for it.
  void StartScatter(ClientConn* c, ScatterPlan plan, bool read);
  std::unordered_map<ScatterJob*, std::unique_ptr<ScatterJob>> jobs;
  // auth_query: users learnt from the servers (kept; the password is refreshed each login).
  std::map<std::string, UserConfig> learnt_users;
  std::unordered_map<AuthQuery*, std::unique_ptr<AuthQuery>> auth_queries;
  // Starts an auth_query for `c`; false when there is no auth_user to ask with.
  bool StartAuthQuery(ClientConn* c);
  void AuthQueryDone(AuthQuery* q);
  // A server is free: give it to the next waiter, or keep it idle.
  void Release(ServerConn* s);
  void ServerReady(ServerConn* s);  // login or reset finished
  // Closed: free it, retry for waiters. `login_error` is set when it never became ready.
  void ServerGone(ServerConn* s, ServerConn::State was, const std::string& login_error);
  void ClientGone(ClientConn* c);
  void MaybeConnect(Pool* p);
  void Janitor();
  void OnTopologyChange();
  void ApplyConfig(std::shared_ptr<const PgConfig> c);
  Pool* ChoosePool(PoolGroup* g, bool read, int shard = -1);
  Role EffectiveRole(const Pool* p) const;
  int DatabaseConnections(const std::string& database) const;
  std::string StatusJson();
  void Accept();
  void Cancel(int32_t pid, int32_t key);
  std::string RandomBytes(size_t n);
  uint64_t Random();  // from the cryptographic generator
  Classification Classify(std::string_view sql, const PoolGroup* g) {
    return Classify(sql, classify_options, g);
  }
  Classification Classify(std::string_view sql, const ClassifyOptions& o, const PoolGroup* g) {
    (sql.size() > o.max_bytes ? statements_unparsed : statements_parsed).Add(1);
    return pg::Classify(sql, o, g->functions.get());
  }
  // What the router parsed, and what it left unparsed for being over classify_max_bytes.
  observe::ShardValue statements_parsed, statements_unparsed;
  // The router's verdict: may this request run on a replica?
  bool IsRead(std::string_view sql, const PoolGroup* g);
  ClassifyOptions classify_options;
  // Read-only functions by database (loop thread; the health checker's findings, posted).
  std::map<std::string, std::shared_ptr<const FunctionNames>> functions;
  void SetFunctions(const std::string& database, std::shared_ptr<const FunctionNames> f);
  void CheckDrained();

  ServerConn* NewServer(Pool* p);
  void Drain();

 private:
  class Listener;
  std::unique_ptr<Listener> listener_;
  Timer janitor_;
};

}  // namespace bulwark::pg
