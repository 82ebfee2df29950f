// The PostgreSQL proxy end to end: real PostgreSQL 15 servers (run as the postgres user),
// psql, pgbench and a byte-level client through bulwark.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "pg/protocol.h"
#include "tests/integration/harness.h"
#include "tests/integration/pg_client.h"

namespace bulwark::testing {
namespace {

using json = nlohmann::json;

using Clock = std::chrono::steady_clock;

// A role `role` (password `password`) that the server asks for its password in clear text
// (pg_hba `password`), with connections logged so a test can see which method each login used.
void AddCleartextRole(PostgresServer& pg, const std::string& role, const std::string& password) {
  pg.Psql("CREATE ROLE " + role + " LOGIN PASSWORD '" + password + "'");
  std::string hba_path = pg.dir() + "/data/pg_hba.conf";
  std::string hba = ReadFile(hba_path);
  {
    std::ofstream f(hba_path, std::ios::trunc);
    f << "host all " << role << " 127.0.0.1/32 password\n" << hba;
  }
  pg.Psql("ALTER SYSTEM SET log_connections = on");
  pg.Psql("SELECT pg_reload_conf()");
}

// `pg_block` is inserted under `pg:` (two-space indented lines); `servers` is the YAML list.
std::string ProxyConfig(int port, int admin, const std::string& servers,
                        const std::string& pg_block = "") {
  return "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
         "}\npg:\n  listen: 127.0.0.1:" + std::to_string(port) + "\n" + pg_block +
         "  users:\n    - {name: app, password: secret}\n"
         "  databases:\n    app:\n      servers: " +
         servers + "\n";
}

std::string One(int pg_port) { return "['127.0.0.1:" + std::to_string(pg_port) + "']"; }

// A primary and one replica, their roles given in the config.
std::string PrimaryAndReplica(int primary_port, int replica_port) {
  return "[{address: '127.0.0.1:" + std::to_string(primary_port) +
         "', role: primary}, {address: '127.0.0.1:" + std::to_string(replica_port) +
         "', role: replica}]";
}

std::string Psql(int port, const std::vector<std::string>& commands,
                 std::map<std::string, std::string> env = {}) {
  std::vector<std::string> argv = {
      "psql", "-X", "-At", "-h", "127.0.0.1", "-p", std::to_string(port), "-U", "app", "-d", "app"};
  for (const auto& c : commands) {
    argv.push_back("-c");
    argv.push_back(c);
  }
  env["PGPASSWORD"] = env.count("PGPASSWORD") ? env["PGPASSWORD"] : "secret";
  std::string out;
  RunProgram(argv, env, &out, 60000);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string Pgbench(int port, std::vector<std::string> args) {
  std::vector<std::string> argv = {"pgbench", "-h", "127.0.0.1", "-p", std::to_string(port),
                                   "-U",      "app"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("app");
  std::string out;
  RunProgram(argv, {{"PGPASSWORD", "secret"}}, &out, 120000);
  return out;
}

struct Proxy {
  int port = FreePort(), admin = FreePort();
  std::unique_ptr<Bulwark> bw;
  Proxy(const std::string& servers, const std::string& block) {
    bw = std::make_unique<Bulwark>(ProxyConfig(port, admin, servers, block));
  }
  bool Ready() { return bw->Ready(port, admin); }
  std::string Metrics() { return HttpGet(admin, "/metrics").body; }
};

TEST(PgProxy, ClientTlsAfterSslRequestAndRequireRefusesClearText) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  std::string dir = MakeTempDir();
  ASSERT_NO_FATAL_FAILURE(MakeCert(dir, "pg"));
  std::string tls = "  pool_mode: transaction\n  client_tls_sslmode: require\n";
  tls += "  client_tls_cert_file: " + dir + "/pg.crt\n";
  tls += "  client_tls_key_file: " + dir + "/pg.key\n";
  Proxy px(One(db.pg.port()), tls);
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  // libpq asks with an SSLRequest and logs in inside TLS; a result of 640 kB crosses many TLS
  // records, and a statement of 100 kB too on the way in.
  EXPECT_EQ(Psql(px.port,
                 {"SELECT 41 + 1",
                  "SELECT length(string_agg(md5(i::text), '')) FROM generate_series(1, 20000) i",
                  "SELECT length('" + std::string(100000, 'x') + "')"},
                 {{"PGSSLMODE", "require"}}),
            "42\n640000\n100000");
  // Clear text is refused, as PostgreSQL refuses it with hostssl only.
  std::string clear = Psql(px.port, {"SELECT 1"}, {{"PGSSLMODE", "disable"}});
  EXPECT_NE(clear.find("SSL required"), std::string::npos) << clear;
  // A client that asks for TLS and then speaks something else is a failed handshake.
  Client raw(px.port);
  ASSERT_TRUE(raw.Send(std::string("\0\0\0\x08\x04\xd2\x16\x2f", 8)));  // SSLRequest
  char answer = 0;
  ASSERT_EQ(recv(raw.fd(), &answer, 1, 0), 1);
  EXPECT_EQ(answer, 'S');
  ASSERT_TRUE(raw.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(raw.WaitClosed(5000));
  std::string m = px.Metrics();
  EXPECT_EQ(Metric(m, "bulwark_pg_tls_handshakes_total{protocol=\"TLSv1.3\"}"), "1") << m;
  EXPECT_EQ(Metric(m, "bulwark_pg_tls_handshake_errors_total"), "1");
}

TEST(PgProxy, PgbenchAllProtocolsThroughTransactionPooling) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  // Three server connections for eight clients: every transaction may land on another one.
  Proxy px(One(db.pg.port()), "  pool_mode: transaction\n  default_pool_size: 3\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  // pgbench -i loads with COPY FROM STDIN: COPY in through the proxy.
  std::string init = Pgbench(px.port, {"-i", "-s", "1", "-q"});
  ASSERT_NE(init.find("done in"), std::string::npos) << init;
  EXPECT_EQ(db.pg.Psql("SELECT count(*) FROM pgbench_accounts", "app"), "100000");
  for (const char* mode : {"simple", "extended", "prepared"}) {
    for (bool select_only : {true, false}) {
      // One pgbench thread per client: a thread blocked in a synchronous PQprepare while the
      // three servers are held by its other clients' transactions would wait for itself.
      std::vector<std::string> args = {"-c", "8", "-j", "8", "-t", "150", "-M", mode};
      if (select_only) args.push_back("-S");
      std::string out = Pgbench(px.port, args);
      EXPECT_NE(out.find("number of transactions actually processed: 1200/1200"), std::string::npos)
          << mode << (select_only ? " -S" : "") << "\n"
          << out << px.bw->log();
      EXPECT_NE(out.find("number of failed transactions: 0 "), std::string::npos) << out;
    }
  }
  // Each tpcb-like transaction adds one history row (pgbench empties the table per run).
  EXPECT_EQ(db.pg.Psql("SELECT count(*) FROM pgbench_history", "app"), "1200");
  // Never more than the pool's three server connections.
  EXPECT_EQ(db.pg.Psql("SELECT count(*) <= 3 FROM pg_stat_activity WHERE usename = 'app' "
                       "AND application_name <> 'bulwark health check'"),
            "t");
  // COPY out through the proxy equals COPY out from the server.
  std::string copy =
      "COPY (SELECT aid, abalance FROM pgbench_accounts WHERE aid <= 500 ORDER BY "
      "aid) TO STDOUT";
  std::string via = Psql(px.port, {copy});
  EXPECT_EQ(via, db.pg.Psql(copy, "app"));
  EXPECT_GT(via.size(), 2500u);

  std::string m = px.Metrics();
  EXPECT_EQ(Metric(m, "db_connections{database=\"app\",state=\"total\"}"), "3") << m;
  EXPECT_NE(Metric(m, "db_query_duration_seconds_count{database=\"app\",operation=\"select\"}"),
            "");
  EXPECT_NE(Metric(m, "db_query_duration_seconds_count{database=\"app\",operation=\"update\"}"),
            "");
  EXPECT_GE(std::stoll(Metric(m, "bulwark_pg_transactions_total{database=\"app\"}")), 7200);
  std::string status = HttpGet(px.admin, "/api/v1/pg").body;
  EXPECT_NE(status.find("\"pool_mode\":\"transaction\""), std::string::npos) << status;
  EXPECT_NE(status.find("\"total\":3"), std::string::npos) << status;
}

TEST(PgProxy, SessionPoolingKeepsStateAndResetsItForTheNextClient) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  Proxy px(One(db.pg.port()), "  pool_mode: session\n  default_pool_size: 1\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  EXPECT_EQ(Psql(px.port, {"SET work_mem = '7MB'", "CREATE TEMP TABLE t AS SELECT 1 AS x",
                           "SHOW work_mem", "SELECT x FROM t"}),
            "SET\nSELECT 1\n7MB\n1");
  // One server connection for both clients; DISCARD ALL (server_reset_query) ran in between.
  EXPECT_EQ(Psql(px.port, {"SHOW work_mem", "SELECT to_regclass('pg_temp.t') IS NULL"}), "4MB\nt");
  EXPECT_EQ(db.pg.Psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                       "AND application_name <> 'bulwark health check'"),
            "1");
  // pgbench in session mode too, every protocol (one server: the clients take turns).
  Pgbench(px.port, {"-i", "-s", "1", "-q"});
  for (const char* mode : {"simple", "extended", "prepared"}) {
    std::string out = Pgbench(px.port, {"-c", "1", "-t", "200", "-M", mode});
    EXPECT_NE(out.find("actually processed: 200/200"), std::string::npos) << mode << out;
  }
}

TEST(PgProxy, TransactionPoolingGivesEachClientItsOwnParameters) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  Proxy px(One(db.pg.port()), "  pool_mode: transaction\n  default_pool_size: 1\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  PgConn a(px.port), b(px.port);
  ASSERT_EQ(a.Login("app", "secret", "app", {{"application_name", "alpha"}}), "");
  ASSERT_EQ(b.Login("app", "secret", "app", {{"application_name", "beta"}}), "");
  EXPECT_EQ(a.Query("SHOW application_name"), "alpha");
  EXPECT_EQ(b.Query("SHOW application_name"), "beta");
  std::string zone = db.pg.Psql("SHOW TimeZone");
  ASSERT_NE(zone, "Asia/Tokyo");
  EXPECT_EQ(a.Query("SET TimeZone = 'Asia/Tokyo'"), "");
  EXPECT_EQ(b.Query("SHOW TimeZone"), zone) << "b must not see a's SET";
  EXPECT_EQ(a.Query("SHOW TimeZone"), "Asia/Tokyo") << "a keeps its SET on the shared server";
  EXPECT_EQ(a.Query("SELECT pg_backend_pid()"), b.Query("SELECT pg_backend_pid()"));
}

TEST(PgProxy, LoginsWithEveryMethodAndClearRefusals) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  // The user list may hold PostgreSQL's own verifier instead of the password: bulwark then
  // logs in to the server with the key the client proved (SCRAM pass-through).
  std::string verifier = db.pg.Psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'");
  ASSERT_EQ(verifier.rfind("SCRAM-SHA-256$", 0), 0u) << verifier;
  for (const char* auth : {"scram-sha-256", "md5", "plain"}) {
    Proxy px(One(db.pg.port()), std::string("  auth_type: ") + auth + "\n");
    ASSERT_TRUE(px.Ready()) << px.bw->log();
    PgConn c(px.port);
    ASSERT_EQ(c.Login("app", "secret", "app"), "") << auth;
    EXPECT_EQ(c.used(), std::string(auth) == "scram-sha-256" ? "scram"
                        : std::string(auth) == "md5"         ? "md5"
                                                             : "plain");
    EXPECT_EQ(c.Query("SELECT current_user"), "app");
    PgConn wrong(px.port);
    EXPECT_EQ(wrong.Login("app", "nope", "app").substr(0, 5), "28P01") << auth;
  }
  {
    int port = FreePort(), admin = FreePort();
    std::string cfg = "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
                      "}\npg:\n  listen: 127.0.0.1:" + std::to_string(port) +
                      "\n  users:\n    - {name: app, password: '" + verifier +
                      "'}\n  databases:\n    app: {servers: " + One(db.pg.port()) + "}\n";
    Bulwark bw(cfg);
    ASSERT_TRUE(bw.Ready(port, admin)) << bw.log();
    PgConn c(port);
    ASSERT_EQ(c.Login("app", "secret", "app"), "");
    EXPECT_EQ(c.used(), "scram");
    EXPECT_EQ(c.Query("SELECT 1 + 1"), "2") << bw.log();
  }
  Proxy px(One(db.pg.port()), "");
  ASSERT_TRUE(px.Ready());
  EXPECT_NE(Psql(px.port, {"SELECT 1"}, {{"PGPASSWORD", "bad"}})
                .find("password authentication failed for user \"app\""),
            std::string::npos);
  PgConn nodb(px.port);
  EXPECT_EQ(nodb.Login("app", "secret", "nope"), "3D000 no such database: nope");
  PgConn nouser(px.port);
  EXPECT_EQ(nouser.Login("mallory", "secret", "app").substr(0, 5), "28P01");
  std::string m = px.Metrics();
  EXPECT_EQ(Metric(m, "bulwark_pg_login_failures_total"), "3") << m;
}

TEST(PgProxy, AuthQueryLearnsUsersFromTheServer) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  db.pg.Psql("CREATE ROLE authuser LOGIN SUPERUSER PASSWORD 'authpw'");
  db.pg.Psql(
      "SET password_encryption = 'scram-sha-256'; CREATE ROLE alice LOGIN PASSWORD "
      "'wonderland'; SET password_encryption = 'md5'; CREATE ROLE carol LOGIN PASSWORD "
      "'c4r0l'; GRANT ALL ON DATABASE app TO alice, carol");
  int port = FreePort(), admin = FreePort();
  std::string cfg = "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
                    "}\npg:\n  listen: 127.0.0.1:" + std::to_string(port) +
                    "\n  pool_mode: transaction\n  auth_user: authuser\n"
                    "  users: [{name: authuser, password: authpw}]\n"
                    "  databases:\n    app: {servers: " +
                    One(db.pg.port()) + "}\n";
  Bulwark bw(cfg);
  ASSERT_TRUE(bw.Ready(port, admin)) << bw.log();
  {
    // alice is not in the config: her SCRAM verifier comes from pg_shadow, and bulwark logs in
    // to the server as her with the key her own login proved.
    PgConn c(port);
    ASSERT_EQ(c.Login("alice", "wonderland", "app"), "") << bw.log();
    EXPECT_EQ(c.used(), "scram");
    EXPECT_EQ(c.Query("SELECT current_user"), "alice");
  }
  {
    PgConn c(port);  // an md5 hash in pg_shadow: the login is md5
    ASSERT_EQ(c.Login("carol", "c4r0l", "app"), "") << bw.log();
    EXPECT_EQ(c.used(), "md5");
    EXPECT_EQ(c.Query("SELECT current_user"), "carol");
  }
  PgConn wrong(port);
  EXPECT_EQ(wrong.Login("alice", "rabbit", "app").substr(0, 5), "28P01");
  PgConn nobody(port);
  EXPECT_EQ(nobody.Login("bob", "x", "app"),
            "28P01 password authentication failed for user \"bob\"");
  // A password changed on the server is what the next login checks against.
  db.pg.Psql(
      "SET password_encryption = 'scram-sha-256'; ALTER ROLE alice PASSWORD 'looking-glass'");
  PgConn again(port);
  EXPECT_EQ(again.Login("alice", "looking-glass", "app"), "");
}

// A role dropped on the server stops working at once, and when auth_query cannot run (here: a
// reload left the database only a standby, so there is no primary to ask) the login fails, as
// in PgBouncer, instead of using a password remembered from an earlier login.
TEST(PgProxy, AuthQueryUsersAreNeverLetInOnARememberedPassword) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  db.pg.Psql("CREATE ROLE authuser LOGIN SUPERUSER PASSWORD 'authpw'");
  db.pg.Psql(
      "SET password_encryption = 'scram-sha-256'; CREATE ROLE alice LOGIN PASSWORD 'wonderland';"
      "CREATE ROLE dave LOGIN PASSWORD 'd4ve'; GRANT ALL ON DATABASE app TO alice, dave");
  PostgresServer standby(PostgresServer::ReplicaOf{&db.pg});
  ASSERT_TRUE(standby.ok()) << standby.log();
  int port = FreePort(), admin = FreePort();
  auto config = [&](int server) {
    return "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
           "}\npg:\n  listen: 127.0.0.1:" + std::to_string(port) +
           "\n  pool_mode: transaction\n  auth_user: authuser\n"
           "  users: [{name: authuser, password: authpw}]\n"
           "  health: {interval: 200ms}\n"
           "  databases:\n    app: {servers: " +
           One(server) + "}\n";
  };
  Bulwark bw(config(db.pg.port()));
  ASSERT_TRUE(bw.Ready(port, admin)) << bw.log();
  for (const char* u : {"alice", "dave"}) {
    PgConn c(port);
    ASSERT_EQ(c.Login(u, std::string(u) == "alice" ? "wonderland" : "d4ve", "app"), "") << u;
  }
  db.pg.Psql("REVOKE ALL ON DATABASE app FROM dave; DROP ROLE dave");
  PgConn dropped(port);
  EXPECT_EQ(dropped.Login("dave", "d4ve", "app"),
            "28P01 password authentication failed for user \"dave\"");
  WriteFile(bw.config_path(), config(standby.port()));
  ASSERT_EQ(HttpPost(admin, "/api/v1/reload", "").status, 200);
  std::string m;
  for (int i = 0; i < 100; ++i) {
    m = HttpGet(admin, "/api/v1/pg").body;
    if (m.find("\"role\":\"replica\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NE(m.find("\"role\":\"replica\""), std::string::npos) << m;
  PgConn later(port);
  EXPECT_EQ(later.Login("alice", "wonderland", "app"),
            "08006 bulwark could not look up user \"alice\": no server is available for "
            "auth_query")
      << bw.log();
}

// The cancel key of one client must tell nothing about another's. A linear generator such as
// xorshift64* leaks: the low bits of its output are a bijection of the low bits of its state,
// and xorshift is linear over GF(2), so one login's key (63 observed bits) pins the state down
// to a couple of candidates and every later login's key follows. This test runs that attack.
TEST(PgProxy, CancelKeysCannotBePredictedFromAnotherLogin) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  Proxy px(One(db.pg.port()), "");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  PgConn attacker(px.port), victim(px.port);
  ASSERT_EQ(attacker.Login("app", "secret", "app"), "");
  ASSERT_EQ(victim.Login("app", "secret", "app"), "");
  constexpr uint64_t kMul = 2685821657736338717ull;
  uint64_t inv = kMul;  // Newton's iteration for the inverse modulo 2^64
  for (int i = 0; i < 6; ++i) inv *= 2 - kMul * inv;
  // Symbolic state: bit i of the state is the XOR of the unknowns in mask[i].
  using State = std::array<uint64_t, 64>;
  auto step = [](State s) {
    auto xr = [&s](int shift) {  // s ^= s >> shift (shift > 0) or s << -shift
      State t = s;
      for (int i = 0; i < 64; ++i) {
        int from = i + shift;
        if (from >= 0 && from < 64) t[i] ^= s[from];
      }
      s = t;
    };
    xr(12);
    xr(-25);
    xr(27);
    return s;
  };
  State s1;
  for (int i = 0; i < 64; ++i) s1[i] = uint64_t{1} << i;
  State s2 = step(s1);
  // Observed: pid = low31(s1 * kMul), key = low32(s2 * kMul).
  uint64_t low1 =
      (static_cast<uint64_t>(static_cast<uint32_t>(attacker.key().pid)) * inv) & 0x7fffffff;
  uint64_t low2 =
      (static_cast<uint64_t>(static_cast<uint32_t>(attacker.key().key)) * inv) & 0xffffffff;
  std::vector<std::pair<uint64_t, int>> eqs;  // (mask, value)
  for (int i = 0; i < 31; ++i) eqs.push_back({s1[i], static_cast<int>((low1 >> i) & 1)});
  for (int i = 0; i < 32; ++i) eqs.push_back({s2[i], static_cast<int>((low2 >> i) & 1)});
  // Gaussian elimination over GF(2).
  std::vector<int> pivot_of(64, -1);
  size_t rank = 0;
  for (int col = 0; col < 64 && rank < eqs.size(); ++col) {
    size_t r = rank;
    while (r < eqs.size() && !((eqs[r].first >> col) & 1)) ++r;
    if (r == eqs.size()) continue;
    std::swap(eqs[r], eqs[rank]);
    for (size_t k = 0; k < eqs.size(); ++k) {
      if (k != rank && ((eqs[k].first >> col) & 1)) {
        eqs[k].first ^= eqs[rank].first;
        eqs[k].second ^= eqs[rank].second;
      }
    }
    pivot_of[col] = static_cast<int>(rank++);
  }
  std::vector<int> free_cols;
  for (int c = 0; c < 64; ++c) {
    if (pivot_of[c] < 0) free_cols.push_back(c);
  }
  ASSERT_LE(free_cols.size(), 4u);
  int predicted = 0;
  for (uint64_t f = 0; f < (uint64_t{1} << free_cols.size()); ++f) {
    uint64_t x = 0;
    for (size_t i = 0; i < free_cols.size(); ++i) x |= ((f >> i) & 1) << free_cols[i];
    for (int c = 0; c < 64; ++c) {
      if (pivot_of[c] < 0) continue;
      const auto& [mask, value] = eqs[static_cast<size_t>(pivot_of[c])];
      int bit = value ^ (__builtin_popcountll(mask & x & ~(uint64_t{1} << c)) & 1);
      x |= static_cast<uint64_t>(bit) << c;
    }
    // x is a candidate s1: run the generator on to the victim's login.
    auto next = [](uint64_t s) {
      s ^= s >> 12;
      s ^= s << 25;
      s ^= s >> 27;
      return s;
    };
    uint64_t s3 = next(next(x)), s4 = next(s3);
    int32_t pid = static_cast<int32_t>((s3 * kMul) & 0x7fffffff);
    int32_t key = static_cast<int32_t>(s4 * kMul);
    predicted += pid == victim.key().pid && key == victim.key().key;
  }
  EXPECT_EQ(predicted, 0) << "the victim's cancel key follows from the attacker's";
}

TEST(PgProxy, QueryWaitTimeoutAndMaxClientConn) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  Proxy px(One(db.pg.port()),
           "  pool_mode: transaction\n  default_pool_size: 1\n  query_wait_timeout: 1s\n"
           "  max_client_conn: 3\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  PgConn a(px.port), b(px.port);
  ASSERT_EQ(a.Login("app", "secret", "app"), "");
  ASSERT_EQ(b.Login("app", "secret", "app"), "");
  EXPECT_EQ(a.Query("BEGIN"), "");  // a holds the only server connection
  auto start = Clock::now();
  ASSERT_TRUE(b.SendQuery("SELECT 1"));
  EXPECT_EQ(b.NextError().substr(0, 25), "08P01 query_wait_timeout:");
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(900));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(4));
  EXPECT_EQ(Metric(px.Metrics(), "bulwark_pg_wait_timeouts_total{database=\"app\"}"), "1");
  EXPECT_EQ(a.Query("COMMIT"), "");
  PgConn c(px.port), d(px.port), e2(px.port);
  EXPECT_EQ(c.Login("app", "secret", "app"), "");
  EXPECT_EQ(d.Login("app", "secret", "app"), "");
  EXPECT_EQ(e2.Login("app", "secret", "app"),
            "53300 no more connections allowed (max_client_conn)");
}

TEST(PgProxy, ReadsGoToReplicasAndWritesToThePrimary) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  db.pg.Psql("CREATE TABLE t (id int); CREATE SEQUENCE s; GRANT ALL ON t, s TO app", "app");
  PostgresServer r1(PostgresServer::ReplicaOf{&db.pg}), r2(PostgresServer::ReplicaOf{&db.pg});
  ASSERT_TRUE(r1.ok() && r2.ok()) << r1.log() << r2.log();
  std::string servers = "[{address: '127.0.0.1:" + std::to_string(db.pg.port()) +
                        "', role: primary}, {address: '127.0.0.1:" + std::to_string(r1.port()) +
                        "', role: replica}, {address: '127.0.0.1:" + std::to_string(r2.port()) +
                        "', role: replica}]";
  Proxy px(servers, "  pool_mode: transaction\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  PgConn c(px.port);
  ASSERT_EQ(c.Login("app", "secret", "app"), "");
  std::set<std::string> ports;
  for (int i = 0; i < 6; ++i) {
    std::string r = c.Query("SELECT pg_is_in_recovery()::text || ' ' || current_setting('port')");
    EXPECT_EQ(r.substr(0, 5), "true ");
    ports.insert(r.substr(5));
  }
  EXPECT_EQ(ports, (std::set<std::string>{std::to_string(r1.port()), std::to_string(r2.port())}));
  EXPECT_EQ(c.Query("/* bulwark:primary */ SELECT pg_is_in_recovery()"), "f");
  EXPECT_EQ(c.Query("INSERT INTO t VALUES (1) RETURNING pg_is_in_recovery()"), "f");
  EXPECT_EQ(c.Query("SELECT nextval('s') > 0 AND NOT pg_is_in_recovery()"), "t");
  EXPECT_EQ(c.Query("SELECT NOT pg_is_in_recovery() FROM t FOR UPDATE"), "t");
  std::string m = px.Metrics();
  EXPECT_GE(std::stoll(Metric(m, "bulwark_pg_routed_total{database=\"app\",target=\"replica\"}")),
            6);
  EXPECT_GE(std::stoll(Metric(m, "bulwark_pg_routed_total{database=\"app\",target=\"primary\"}")),
            4);
}

// The split reads the parse tree: a BEGIN whose comment says READ ONLY is a read-write
// transaction; functions that write, lock or hold session state go to the primary; a user
// function goes to a replica only when the primary's pg_proc says it is immutable or stable, or
// the operator lists it.
TEST(PgProxy, ReadWriteSplitFollowsTheParseTreeAndTheCatalog) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  db.pg.Psql(
      "CREATE TABLE t (id int); INSERT INTO t VALUES (1); GRANT ALL ON t TO app;"
      "CREATE FUNCTION bump() RETURNS int LANGUAGE sql AS "
      "'UPDATE t SET id = id + 1 RETURNING id';"
      "CREATE FUNCTION twice(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2';"
      "CREATE FUNCTION vouched() RETURNS bool LANGUAGE sql AS 'SELECT pg_is_in_recovery()';",
      "app");
  PostgresServer r1(PostgresServer::ReplicaOf{&db.pg});
  ASSERT_TRUE(r1.ok()) << r1.log();
  std::string servers = PrimaryAndReplica(db.pg.port(), r1.port());
  Proxy px(servers, "  pool_mode: transaction\n  routing: {read_only_functions: [Vouched]}\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  PgConn c(px.port);
  ASSERT_EQ(c.Login("app", "secret", "app"), "");
  // The replica has the functions once it has replayed them.
  for (int i = 0;
       i < 100 && r1.Psql("SELECT count(*) FROM pg_proc WHERE proname = 'vouched'", "app") != "1";
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(c.Query("SELECT pg_is_in_recovery()"), "t");  // volatile, but only a read
  // A comment saying READ ONLY leaves the transaction read-write: the primary.
  EXPECT_EQ(c.Query("BEGIN; -- READ ONLY"), "");
  EXPECT_EQ(c.Query("SELECT pg_is_in_recovery()"), "f");
  EXPECT_EQ(c.Query("UPDATE t SET id = id"), "");
  EXPECT_EQ(c.Query("COMMIT"), "");
  EXPECT_EQ(c.Query("BEGIN /* READ ONLY */ ISOLATION LEVEL REPEATABLE READ"), "");
  EXPECT_EQ(c.Query("SELECT pg_is_in_recovery()"), "f");
  EXPECT_EQ(c.Query("COMMIT"), "");
  // A BEGIN that says it in its options: a replica.
  EXPECT_EQ(c.Query("BEGIN READ ONLY"), "");
  EXPECT_EQ(c.Query("SELECT pg_is_in_recovery()"), "t");
  EXPECT_EQ(c.Query("COMMIT"), "");
  // A volatile user function that writes works (a replica would refuse it).
  EXPECT_EQ(c.Query("SELECT bump()"), "2");
  // An immutable one is a read; one the operator vouches for too.
  EXPECT_EQ(c.Query("SELECT twice(2) || ' ' || pg_is_in_recovery()"), "4 true");
  EXPECT_EQ(c.Query("SELECT vouched()"), "t");
  // Advisory locks and large objects: the primary.
  EXPECT_EQ(c.Query("SELECT pg_try_advisory_xact_lock(7) AND NOT pg_is_in_recovery()"), "t");
  EXPECT_EQ(c.Query("SELECT pg_is_in_recovery() FROM (SELECT pg_advisory_unlock_all()) u"), "f");
  EXPECT_EQ(c.Query("SELECT lo_create(0) > 0 AND NOT pg_is_in_recovery()"), "t");
  // A named Parse in an extended-protocol batch is parsed once: by the router, which then
  // remembers its verdict when the statement is prepared on the server.
  auto parsed = [&] {
    return std::stoll(Metric(px.Metrics(), "bulwark_pg_statements_parsed_total"));
  };
  int64_t before = parsed();
  std::string batch, body;
  body = std::string("s1\0SELECT twice(3) || ' ' || pg_is_in_recovery()\0", 49);
  pg::AppendInt16(&body, 0);
  pg::AppendMessage(&batch, 'P', body);
  body = std::string("\0s1\0", 4);
  pg::AppendInt16(&body, 0);
  pg::AppendInt16(&body, 0);
  pg::AppendInt16(&body, 0);
  pg::AppendMessage(&batch, 'B', body);
  body = std::string("\0", 1);
  pg::AppendInt32(&body, 0);
  pg::AppendMessage(&batch, 'E', body);
  pg::AppendMessage(&batch, 'S', "");
  ASSERT_TRUE(c.Send(batch));
  EXPECT_EQ(c.Finish(), "6 true");
  EXPECT_EQ(parsed() - before, 1);
}

// A statement far beyond classify_max_bytes goes to the primary without being parsed (its
// parse tree would cost many times its text); bulwark's peak memory grows by less than three
// times the statement.
TEST(PgProxy, AHugeStatementIsNotParsed) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  PostgresServer r1(PostgresServer::ReplicaOf{&db.pg});
  ASSERT_TRUE(r1.ok()) << r1.log();
  std::string servers = PrimaryAndReplica(db.pg.port(), r1.port());
  Proxy px(servers, "  pool_mode: transaction\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  PgConn c(px.port);
  ASSERT_EQ(c.Login("app", "secret", "app"), "");
  EXPECT_EQ(c.Query("SELECT pg_is_in_recovery()"), "t");
  const size_t kSize = 50 << 20;
  std::string sql =
      "SELECT length('" + std::string(kSize, 'x') + "') || ' ' || pg_is_in_recovery()";
  long before = ProcKb(px.bw->process().pid(), "VmHWM");
  ASSERT_GT(before, 0);
  EXPECT_EQ(c.Query(sql), std::to_string(kSize) + " false");
  long peak = ProcKb(px.bw->process().pid(), "VmHWM");
  // ThreadSanitizer keeps shadow memory for every byte the program writes (up to 4 cells of 8
  // bytes per 8 bytes, plus metadata): there, resident memory is up to 5 times the program's.
  const long shadow = BULWARK_TSAN_BUILD ? 5 : 1;
  EXPECT_LT(peak - before, static_cast<long>(3 * kSize / 1024) * shadow)
      << "peak " << peak << " kB, before " << before << " kB";
  EXPECT_EQ(Metric(px.Metrics(), "bulwark_pg_statements_unparsed_total"), "1");
  // Short statements still go by their parse tree.
  EXPECT_EQ(c.Query("SELECT pg_is_in_recovery()"), "t");
}

TEST(PgProxy, RolesComeFromTheServersAndALaggingReplicaGetsNoReads) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  PostgresServer r1(PostgresServer::ReplicaOf{&db.pg}), r2(PostgresServer::ReplicaOf{&db.pg});
  ASSERT_TRUE(r1.ok() && r2.ok()) << r1.log() << r2.log();
  // No roles in the config, and the primary is not listed first: pg_is_in_recovery() decides.
  auto addr = [](int port) { return "'127.0.0.1:" + std::to_string(port) + "'"; };
  std::string servers =
      "[" + addr(r1.port()) + ", " + addr(db.pg.port()) + ", " + addr(r2.port()) + "]";
  Proxy px(servers,
           "  pool_mode: transaction\n  routing: {max_lag_bytes: 64k, max_lag: 1h}\n"
           "  health: {interval: 200ms}\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  PgConn c(px.port);
  ASSERT_EQ(c.Login("app", "secret", "app"), "");
  EXPECT_EQ(c.Query("CREATE TABLE t AS SELECT 1 AS x RETURNING"), "ERROR 42601");
  EXPECT_EQ(c.Query("CREATE TABLE t (x int)"), "");  // on the primary, wherever it is listed
  auto reads = [&] {
    std::set<std::string> ports;
    for (int i = 0; i < 6; ++i) ports.insert(c.Query("SELECT current_setting('port')"));
    return ports;
  };
  std::string p1 = std::to_string(r1.port()), p2 = std::to_string(r2.port());
  // Both replicas take reads once they have replayed the CREATE TABLE (until then reads may
  // fall back to the primary: slow under the sanitizers).
  std::set<std::string> both;
  for (int i = 0; i < 100 && both != std::set<std::string>{p1, p2}; ++i) {
    both = reads();
    if (both != std::set<std::string>{p1, p2}) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  EXPECT_EQ(both, (std::set<std::string>{p1, p2})) << HttpGet(px.admin, "/api/v1/pg").body;

  // r1 stops replaying; the primary writes ~1 MB of WAL.
  r1.Psql("SELECT pg_wal_replay_pause()");
  db.pg.Psql(
      "CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, "
      "5000) g",
      "app");
  std::string lag;
  for (int i = 0; i < 50; ++i) {
    lag = Metric(px.Metrics(), "bulwark_pg_replication_lag_bytes{server=\"127.0.0.1:" + p1 + "\"}");
    if (!lag.empty() && std::stoll(lag) > 65536) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GT(std::stoll(lag), 65536) << HttpGet(px.admin, "/api/v1/pg").body;
  // r1 (replay paused) gets no read from here on; r2 takes them once it has replayed the write
  // too (until then reads fall back to the primary: slow under the sanitizers).
  std::set<std::string> seen_now;
  bool r1_read = false;
  for (int i = 0; i < 100; ++i) {
    seen_now = reads();
    r1_read = r1_read || seen_now.count(p1) > 0;
    if (seen_now == std::set<std::string>{p2}) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_FALSE(r1_read);
  EXPECT_EQ(seen_now, (std::set<std::string>{p2})) << HttpGet(px.admin, "/api/v1/pg").body;
  // The roles the checker found are on the admin API.
  std::string status = HttpGet(px.admin, "/api/v1/pg").body;
  EXPECT_NE(status.find("\"address\":\"127.0.0.1:" + p1 + "\",\"check_failures\":0,\"checks\""),
            std::string::npos)
      << status;

  // Replay resumes; r1 catches up and gets reads again.
  r1.Psql("SELECT pg_wal_replay_resume()");
  std::set<std::string> seen;
  for (int i = 0; i < 50 && seen.size() < 2; ++i) {
    seen = reads();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(seen, (std::set<std::string>{p1, p2}));
}

// Failover safety: a replica further behind the old primary than maximum_lag_on_failover is not
// promoted (the commits in between would be lost); a caught-up one is, after the fence_command
// ran; and the old primary, back as a primary, never gets a write again.
TEST(PgProxy, FailoverRefusesALaggingReplicaFencesAndKeepsTheOldPrimaryOut) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  PostgresServer r1(PostgresServer::ReplicaOf{&db.pg});
  ASSERT_TRUE(r1.ok()) << r1.log();
  db.pg.Psql("CREATE TABLE t (id int); GRANT ALL ON t TO app", "app");
  std::string dir = MakeTempDir();
  const std::string old_name = db.pg.socket_address(), r1_name = r1.socket_address();
  Proxy px("['" + old_name + "', '" + r1_name + "']",
           "  pool_mode: transaction\n  health: {interval: 200ms, fails: 3, user: postgres}\n"
           "  failover: {enabled: true, single_instance: true, fence_command: [sh, -c, 'echo "
           "\"$BULWARK_OLD_PRIMARY -> $BULWARK_NEW_PRIMARY\" >> " +
               dir + "/fenced']}\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  auto status = [&] { return json::parse(HttpGet(px.admin, "/api/v1/pg").body, nullptr, false); };
  auto server = [&](const std::string& name) {
    json s = status();
    for (const json& j : s.value("servers", json::array())) {
      if (j.value("address", "") == name) return j;
    }
    return json::object();
  };
  auto wait_for = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 300 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return done();
  };
  const std::string lag_metric = "bulwark_pg_replication_lag_bytes{server=\"" + r1_name + "\"}";

  // r1 stops receiving WAL; the primary writes ~4 MB more, and the health checker sees it.
  std::string conninfo = r1.Psql("SHOW primary_conninfo");
  ASSERT_FALSE(conninfo.empty());
  r1.Psql("ALTER SYSTEM SET primary_conninfo = ''");
  r1.Psql("SELECT pg_reload_conf()");
  ASSERT_TRUE(
      wait_for([&] { return r1.Psql("SELECT count(*) FROM pg_stat_wal_receiver") == "0"; }));
  db.pg.Psql(
      "CREATE TABLE big AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 4000) g",
      "app");
  ASSERT_TRUE(wait_for([&] {
    std::string lag = Metric(px.Metrics(), lag_metric);
    return !lag.empty() && std::stoll(lag) > (3 << 20);
  })) << HttpGet(px.admin, "/api/v1/pg").body;
  db.pg.Stop(SIGQUIT);
  ASSERT_TRUE(wait_for([&] {
    return status().dump().find("\"refused\":true") != std::string::npos;
  })) << HttpGet(px.admin, "/api/v1/pg").body
      << px.bw->log();
  std::string refusal = status()["failovers"].back().value("error", "");
  EXPECT_NE(refusal.find("bytes behind the last position seen on " + old_name +
                         " (maximum_lag_on_failover: 1048576)"),
            std::string::npos)
      << refusal;
  EXPECT_EQ(r1.Psql("SELECT pg_is_in_recovery()"), "t");
  EXPECT_EQ(ReadFile(dir + "/fenced"), "");  // nothing to fence without a promotion
  // Tried again every round, recorded once.
  int64_t checks = server(r1_name).value("checks", 0);
  ASSERT_TRUE(wait_for([&] { return server(r1_name).value("checks", 0) >= checks + 5; }));
  std::string m = px.Metrics();
  EXPECT_EQ(Metric(m, "bulwark_pg_failovers_total{result=\"refused\"}"), "1");
  EXPECT_EQ(Metric(m, "bulwark_pg_failovers_total{result=\"ok\"}"), "0");
  EXPECT_NE(px.bw->log().find("refused: the most advanced replica"), std::string::npos);

  // The primary comes back; r1 streams again and catches up.
  ASSERT_TRUE(db.pg.Restart()) << db.pg.log();
  std::string quoted;
  for (char ch : conninfo) quoted += ch == '\'' ? std::string("''") : std::string(1, ch);
  r1.Psql("ALTER SYSTEM SET primary_conninfo = '" + quoted + "'");
  r1.Psql("SELECT pg_reload_conf()");
  ASSERT_TRUE(wait_for([&] { return r1.Psql("SELECT count(*) FROM big", "app") == "4000"; }))
      << r1.log();
  ASSERT_TRUE(wait_for([&] {
    json s = server(old_name);
    return s.value("up", false) && s.value("role", "") == "primary" && !s.value("demoted", true) &&
           Metric(px.Metrics(), lag_metric) == "0";
  })) << HttpGet(px.admin, "/api/v1/pg").body;

  // Lost again: now r1 is close enough. The fence runs first, then r1 is promoted.
  db.pg.Stop(SIGQUIT);
  ASSERT_TRUE(wait_for([&] {
    return status().dump().find("\"new_primary\":\"" + r1_name + "\"") != std::string::npos;
  })) << HttpGet(px.admin, "/api/v1/pg").body
      << px.bw->log();
  json ev = status()["failovers"].back();
  EXPECT_TRUE(ev.value("fenced", false)) << ev.dump();
  EXPECT_FALSE(ev.contains("error")) << ev.dump();
  EXPECT_EQ(ReadFile(dir + "/fenced"), old_name + " -> " + r1_name + "\n");
  EXPECT_EQ(r1.Psql("SELECT pg_is_in_recovery()"), "f");
  m = px.Metrics();
  EXPECT_EQ(Metric(m, "bulwark_pg_failovers_total{result=\"ok\"}"), "1");
  EXPECT_EQ(Metric(m, "bulwark_pg_failovers_total{result=\"refused\"}"), "1");

  // The old primary returns, still a primary (split brain): it is fenced off from writes.
  ASSERT_TRUE(db.pg.Restart()) << db.pg.log();
  ASSERT_TRUE(wait_for([&] {
    json s = server(old_name);
    return s.value("up", false) && s.value("role", "") == "primary";
  })) << HttpGet(px.admin, "/api/v1/pg").body;
  EXPECT_TRUE(server(old_name).value("demoted", false));
  PgConn c(px.port);
  ASSERT_EQ(c.Login("app", "secret", "app"), "");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(c.Query("INSERT INTO t VALUES (42)"), "");
  }
  EXPECT_EQ(r1.Psql("SELECT count(*) FROM t WHERE id = 42", "app"), "5");
  EXPECT_EQ(db.pg.Psql("SELECT count(*) FROM t WHERE id = 42", "app"), "0");
}

TEST(PgProxy, FailoverPromotesTheMostAdvancedReplicaAndLosesNoAcknowledgedCommit) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  PostgresServer r1(PostgresServer::ReplicaOf{&db.pg, {"cluster_name = 'r1'"}});
  PostgresServer r2(PostgresServer::ReplicaOf{&db.pg});
  ASSERT_TRUE(r1.ok() && r2.ok()) << r1.log() << r2.log();
  // r1 is synchronous: every commit the primary acknowledges is on r1 first.
  db.pg.Psql("ALTER SYSTEM SET synchronous_standby_names = 'r1'");
  db.pg.Psql("SELECT pg_reload_conf()");
  for (int i = 0; i < 100; ++i) {
    if (db.pg.Psql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'r1'") ==
        "sync") {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(db.pg.Psql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'r1'"),
            "sync");
  db.pg.Psql("CREATE TABLE acked (id int PRIMARY KEY); GRANT ALL ON acked TO app", "app");
  // Over the Unix sockets, where the harness trusts local logins: the health checker logs in as
  // the superuser that pg_promote() and ALTER SYSTEM need.
  std::string servers = "['" + db.pg.socket_address() + "', '" + r1.socket_address() + "', '" +
                        r2.socket_address() + "']";
  Proxy px(servers,
           "  pool_mode: transaction\n  health: {interval: 200ms, fails: 3, user: postgres}\n"
           "  failover: {enabled: true, single_instance: true}\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  std::string init = Pgbench(px.port, {"-i", "-s", "1", "-q"});
  ASSERT_NE(init.find("done in"), std::string::npos) << init << px.bw->log();

  // Load: pgbench, and a writer that remembers every commit bulwark acknowledged.
  std::string load_dir = MakeTempDir();
  Process load({"pgbench", "-h", "127.0.0.1", "-p", std::to_string(px.port), "-U", "app", "-c", "4",
                "-T", "8", "-n", "app"},
               {{"PGPASSWORD", "secret"}}, load_dir + "/pgbench.out");
  std::atomic<bool> stop{false};
  std::vector<int> acked;
  int errors = 0;
  std::thread writer([&] {
    auto conn = std::make_unique<PgConn>(px.port);
    bool in = conn->Login("app", "secret", "app").empty();
    for (int id = 1; !stop.load(); ++id) {
      if (!in) {
        conn = std::make_unique<PgConn>(px.port);
        in = conn->Login("app", "secret", "app").empty();
        if (!in) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
      }
      std::string r = conn->Query("INSERT INTO acked VALUES (" + std::to_string(id) + ")");
      if (r.empty()) {
        acked.push_back(id);
      } else {
        ++errors;
        if (r == "closed") in = false;
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto killed = Clock::now();
  db.pg.Stop(SIGQUIT);  // immediate shutdown: the primary is gone
  std::string status;
  for (int i = 0; i < 150; ++i) {
    status = HttpGet(px.admin, "/api/v1/pg").body;
    if (status.find("\"new_primary\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto failed_over = Clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // writes on the new primary
  stop = true;
  writer.join();
  // pgbench (-T 8) ends on time: no client is left waiting on bulwark after the failover.
  int load_rc = load.Wait(15000);
  EXPECT_NE(load_rc, -1) << HttpGet(px.admin, "/api/v1/pg").body
                         << ReadFile(load_dir + "/pgbench.out") << px.bw->log();
  if (load_rc == -1) load.Wait(60000);
  // The replica holding the most WAL is promoted: r1 unless r2 received strictly more (ties go
  // to r1, listed first). Either way it holds every commit r1 acknowledged.
  PostgresServer* np = nullptr;
  PostgresServer* other = nullptr;
  if (status.find("\"new_primary\":\"" + r1.socket_address() + "\"") != std::string::npos) {
    np = &r1;
    other = &r2;
  } else if (status.find("\"new_primary\":\"" + r2.socket_address() + "\"") != std::string::npos) {
    np = &r2;
    other = &r1;
  }
  ASSERT_NE(np, nullptr) << status << px.bw->log();
  EXPECT_EQ(status.find("\"error\""), std::string::npos) << status;
  EXPECT_LT(failed_over - killed, std::chrono::seconds(10));
  EXPECT_EQ(np->Psql("SELECT pg_is_in_recovery()"), "f");

  // Every acknowledged commit, before and after the failover, is on the new primary.
  ASSERT_GT(acked.size(), 20u) << errors;
  std::string ids = np->Psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM acked", "app");
  std::set<int> have;
  for (const std::string& t : Split(ids, ',', true)) have.insert(std::stoi(t));
  int missing = 0;
  std::string missing_ids;
  for (int id : acked) {
    if (have.count(id) != 0) continue;
    ++missing;
    missing_ids += " " + std::to_string(id);
  }
  // Seen once beside two CPU hogs under ASan (one of 724): the ids, the failover record and the
  // log say which commit and what bulwark did around it.
  EXPECT_EQ(missing, 0) << acked.size() << " acknowledged, " << have.size()
                        << " on the new primary; missing:" << missing_ids << " (last acked "
                        << acked.back() << ", " << errors << " errors)\n"
                        << status << "\n"
                        << px.bw->log();
  EXPECT_GT(acked.back(), acked[acked.size() / 2]);  // writes went on after the failover

  // New transactions succeed through the same address, and the other replica follows the new
  // primary.
  std::string out = Pgbench(px.port, {"-c", "2", "-j", "2", "-t", "50"});
  EXPECT_NE(out.find("number of failed transactions: 0 "), std::string::npos) << out;
  PgConn c(px.port);
  ASSERT_EQ(c.Login("app", "secret", "app"), "");
  EXPECT_EQ(c.Query("INSERT INTO acked VALUES (-1)"), "");
  std::string on_r2;
  for (int i = 0; i < 100 && on_r2 != "1"; ++i) {
    on_r2 = other->Psql("SELECT count(*) FROM acked WHERE id = -1", "app");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(on_r2, "1") << other->log();
  std::string m = px.Metrics();
  EXPECT_EQ(Metric(m, "bulwark_pg_failovers_total{result=\"ok\"}"), "1");
  EXPECT_NE(HttpGet(px.admin, "/api/v1/pg").body.find("\"demoted\":true"), std::string::npos);
  // The operator takes the old primary back.
  EXPECT_EQ(HttpPost(px.admin, "/api/v1/pg/readd?server=" + db.pg.socket_address(), "").status,
            200);
  EXPECT_EQ(HttpGet(px.admin, "/api/v1/pg").body.find("\"demoted\":true"), std::string::npos);
}

// The app role's server connections (the health checker's own login is not one of them).
std::string Backends(PostgresServer& pg) {
  return pg.Psql(
      "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND application_name <> "
      "'bulwark health check'");
}

// Polls `f` until it returns `want` or `ms` pass; returns its last answer.
template <typename F>
std::string WaitForValue(F f, const std::string& want, int ms) {
  auto until = Clock::now() + std::chrono::milliseconds(ms);
  std::string v = f();
  while (v != want && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    v = f();
  }
  return v;
}

TEST(PgProxy, PoolSizesAndServerTimersAsPgBouncer) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  auto backends = [&] { return Backends(db.pg); };
  {
    SCOPED_TRACE("min_pool_size and server_idle_timeout");
    Proxy px(One(db.pg.port()),
             "  pool_mode: transaction\n  default_pool_size: 3\n  min_pool_size: 2\n"
             "  server_idle_timeout: 2s\n");
    ASSERT_TRUE(px.Ready()) << px.bw->log();
    PgConn a(px.port), b(px.port), c(px.port);
    ASSERT_EQ(a.Login("app", "secret", "app"), "");
    ASSERT_EQ(b.Login("app", "secret", "app"), "");
    ASSERT_EQ(c.Login("app", "secret", "app"), "");
    // Once the pool exists it is filled up to min_pool_size, though one client used one.
    EXPECT_EQ(a.Query("SELECT 1"), "1");
    EXPECT_EQ(WaitForValue(backends, "2", 5000), "2");
    // Three transactions at once: three server connections (default_pool_size).
    for (PgConn* k : {&a, &b, &c}) EXPECT_EQ(k->Query("BEGIN"), "");
    EXPECT_EQ(backends(), "3");
    for (PgConn* k : {&a, &b, &c}) EXPECT_EQ(k->Query("COMMIT"), "");
    EXPECT_EQ(backends(), "3");
    // Unused for server_idle_timeout: closed down to min_pool_size, and never below it.
    EXPECT_EQ(WaitForValue(backends, "2", 6000), "2");
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    EXPECT_EQ(backends(), "2");
  }
  EXPECT_EQ(WaitForValue(backends, "0", 5000), "0");
  {
    SCOPED_TRACE("server_lifetime");
    Proxy px(One(db.pg.port()),
             "  pool_mode: transaction\n  default_pool_size: 1\n  server_lifetime: 1s\n");
    ASSERT_TRUE(px.Ready()) << px.bw->log();
    PgConn a(px.port);
    ASSERT_EQ(a.Login("app", "secret", "app"), "");
    std::string pid = a.Query("SELECT pg_backend_pid()");
    EXPECT_EQ(a.Query("SELECT pg_backend_pid()"), pid);  // young: the same connection again
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    std::string next = a.Query("SELECT pg_backend_pid()");
    EXPECT_NE(next, pid);  // too old to be given out again: a new one
    EXPECT_FALSE(next.empty());
  }
  {
    SCOPED_TRACE("reserve_pool_size and reserve_pool_timeout");
    Proxy px(One(db.pg.port()),
             "  pool_mode: transaction\n  default_pool_size: 1\n  reserve_pool_size: 1\n"
             "  reserve_pool_timeout: 500ms\n");
    ASSERT_TRUE(px.Ready()) << px.bw->log();
    PgConn a(px.port), b(px.port), c(px.port);
    ASSERT_EQ(a.Login("app", "secret", "app"), "");
    ASSERT_EQ(b.Login("app", "secret", "app"), "");
    ASSERT_EQ(c.Login("app", "secret", "app"), "");
    EXPECT_EQ(a.Query("BEGIN"), "");  // holds the pool's one connection
    auto start = Clock::now();
    EXPECT_EQ(b.Query("SELECT 2"), "2");  // after waiting reserve_pool_timeout: the reserve
    EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(450));
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
    // The reserve is one connection: with both taken, the next client waits for one back.
    EXPECT_EQ(b.Query("BEGIN"), "");
    ASSERT_TRUE(c.SendQuery("SELECT 3"));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    EXPECT_EQ(backends(), "2");
    EXPECT_EQ(a.Query("COMMIT"), "");
    EXPECT_EQ(c.Finish(), "3");
    EXPECT_EQ(b.Query("COMMIT"), "");
  }
  {
    SCOPED_TRACE("idle_transaction_timeout");
    Proxy px(One(db.pg.port()), "  pool_mode: transaction\n  idle_transaction_timeout: 1s\n");
    ASSERT_TRUE(px.Ready()) << px.bw->log();
    PgConn idle(px.port), busy(px.port);
    ASSERT_EQ(idle.Login("app", "secret", "app"), "");
    ASSERT_EQ(busy.Login("app", "secret", "app"), "");
    EXPECT_EQ(idle.Query("BEGIN"), "");
    EXPECT_EQ(busy.Query("BEGIN"), "");
    for (int i = 0; i < 8; ++i) {  // 2.4 s in a transaction, never 1 s without a query
      EXPECT_EQ(busy.Query("SELECT 1"), "1");
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    // PgBouncer's behaviour: the idle one is disconnected with the reason.
    EXPECT_EQ(idle.NextError(), "08P01 idle_transaction_timeout");
    EXPECT_EQ(idle.NextError(), "closed");
    EXPECT_EQ(busy.Query("COMMIT"), "");
  }
}

TEST(PgProxy, ReadYourWritesAndReadsFallBackToThePrimary) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  db.pg.Psql("CREATE TABLE t (id int); GRANT ALL ON t TO app", "app");
  PostgresServer r1(PostgresServer::ReplicaOf{&db.pg}), r2(PostgresServer::ReplicaOf{&db.pg});
  ASSERT_TRUE(r1.ok() && r2.ok()) << r1.log() << r2.log();
  auto addr = [](int port) { return "127.0.0.1:" + std::to_string(port); };
  std::string servers = "[{address: '" + addr(db.pg.port()) + "', role: primary}, {address: '" +
                        addr(r1.port()) + "', role: replica}, {address: '" + addr(r2.port()) +
                        "', role: replica}]";
  Proxy px(servers,
           "  pool_mode: transaction\n  routing: {read_your_writes: 1500ms}\n"
           "  health: {interval: 200ms, fails: 2}\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  PgConn c(px.port), other(px.port);
  ASSERT_EQ(c.Login("app", "secret", "app"), "");
  ASSERT_EQ(other.Login("app", "secret", "app"), "");
  EXPECT_EQ(c.Query("SELECT pg_is_in_recovery()"), "t");
  EXPECT_EQ(c.Query("INSERT INTO t VALUES (1)"), "");
  // Within the window the writer's reads stay on the primary and see its write...
  EXPECT_EQ(c.Query("SELECT count(*)::text || pg_is_in_recovery()::text FROM t"), "1false");
  // ...while other clients' reads still go to the replicas.
  EXPECT_EQ(other.Query("SELECT pg_is_in_recovery()"), "t");
  std::this_thread::sleep_for(std::chrono::milliseconds(1700));
  EXPECT_EQ(c.Query("SELECT pg_is_in_recovery()"), "t");

  // Every replica down: reads go to the primary and succeed.
  r1.Stop(SIGINT);
  r2.Stop(SIGINT);
  auto down = [&] {
    std::string m = px.Metrics();
    return Metric(m, "bulwark_pg_server_up{server=\"" + addr(r1.port()) + "\",role=\"replica\"}") +
           Metric(m, "bulwark_pg_server_up{server=\"" + addr(r2.port()) + "\",role=\"replica\"}");
  };
  ASSERT_EQ(WaitForValue(down, "00", 5000), "00") << px.Metrics();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(c.Query("SELECT count(*)::text || pg_is_in_recovery()::text FROM t"), "1false");
  }
  EXPECT_EQ(other.Query("SELECT pg_is_in_recovery()"), "f");
}

TEST(PgProxy, ReloadKeepsUnchangedPoolsAndAddsUsersWithCleartextServerAuth) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  // A role the server asks for its password in clear text (allowed here by
  // server_auth_methods), and the log line that says which method each login used.
  AddCleartextRole(db.pg, "plain", "pw");
  Proxy px(One(db.pg.port()),
           "  pool_mode: transaction\n  server_auth_methods: [scram-sha-256, md5, password]\n");
  ASSERT_TRUE(px.Ready()) << px.bw->log();
  PgConn a(px.port);
  ASSERT_EQ(a.Login("app", "secret", "app"), "");
  std::string pid = a.Query("SELECT pg_backend_pid()");
  {
    PgConn p(px.port);
    EXPECT_EQ(p.Login("plain", "pw", "app"),
              "28P01 password authentication failed for user \"plain\"");
  }
  auto reload = [&](const std::string& block, const std::string& users) {
    std::string cfg = ProxyConfig(px.port, px.admin, One(db.pg.port()), block);
    cfg.replace(cfg.find("    - {name: app, password: secret}\n"),
                std::string("    - {name: app, password: secret}\n").size(), users);
    {
      std::ofstream f(px.bw->config_path(), std::ios::trunc);
      f << cfg;
    }
    return HttpPost(px.admin, "/api/v1/reload", "").status;
  };
  // A new user: the running pool of app is left as it is (same server connection).
  ASSERT_EQ(
      reload("  pool_mode: transaction\n  server_auth_methods: [scram-sha-256, md5, password]\n",
             "    - {name: app, password: secret}\n    - {name: plain, password: pw}\n"),
      200)
      << px.bw->log();
  EXPECT_EQ(a.Query("SELECT pg_backend_pid()"), pid) << px.bw->log();
  // A login half-way through SCRAM when a reload derives the users' verifiers again finishes
  // with the verifier it started with (it once kept a pointer into the replaced map).
  {
    PgConn mid(px.port);
    mid.at_sasl = [&] {
      EXPECT_EQ(reload("  pool_mode: transaction\n  server_auth_methods: [scram-sha-256, md5, "
                       "password]\n",
                       "    - {name: app, password: secret}\n    - {name: plain, password: pw}\n"),
                200);
    };
    EXPECT_EQ(mid.Login("app", "secret", "app"), "") << px.bw->log();
    EXPECT_TRUE(mid.verified());
    EXPECT_EQ(mid.Query("SELECT 1"), "1");
  }
  PgConn p(px.port);
  ASSERT_EQ(p.Login("plain", "pw", "app"), "");
  EXPECT_EQ(p.Query("SELECT current_user"), "plain");
  EXPECT_NE(db.pg.log().find("identity=\"plain\" method=password"), std::string::npos)
      << db.pg.log();
  // A bad file changes nothing.
  {
    std::ofstream f(px.bw->config_path(), std::ios::trunc);
    f << "pg: [\n";
  }
  EXPECT_EQ(HttpPost(px.admin, "/api/v1/reload", "").status, 400);
  EXPECT_EQ(a.Query("SELECT pg_backend_pid()"), pid);
  // A changed pool setting: the pool is rebuilt; its clients carry on with new connections,
  // and a removed user can no longer log in.
  ASSERT_EQ(reload("  pool_mode: transaction\n  default_pool_size: 5\n  server_auth_methods: "
                   "[scram-sha-256, md5, password]\n",
                   "    - {name: app, password: secret}\n"),
            200);
  std::string next = a.Query("SELECT pg_backend_pid()");
  EXPECT_NE(next, pid);
  EXPECT_FALSE(next.empty());
  PgConn gone(px.port);
  EXPECT_NE(gone.Login("plain", "pw", "app"), "");
  EXPECT_EQ(WaitForValue([&] { return Backends(db.pg); }, "1", 5000), "1");
}

// Towards servers, libpq's require_auth: no cleartext password unless server_auth_methods
// lists `password`, and an impostor that answers AuthenticationOk in the middle of SCRAM (never
// proving it knows the password) gets no query.
TEST(PgProxy, ServerAuthMethodsAndAnImpostorServer) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  AddCleartextRole(db.pg, "plain", "pw");
  {
    int port = FreePort(), admin = FreePort();
    std::string cfg = ProxyConfig(port, admin, One(db.pg.port()), "  pool_mode: transaction\n");
    cfg.replace(cfg.find("    - {name: app, password: secret}\n"),
                std::string("    - {name: app, password: secret}\n").size(),
                "    - {name: plain, password: pw}\n");
    Bulwark bw(cfg);
    ASSERT_TRUE(bw.Ready(port, admin)) << bw.log();
    PgConn p(port);  // the pool's first server login happens as the client logs in
    EXPECT_EQ(p.Login("plain", "pw", "app"),
              "08006 bulwark could not log in to server 127.0.0.1:" + std::to_string(db.pg.port()) +
                  ": the server asks for a cleartext password; pg.server_auth_methods does not "
                  "allow password (libpq's require_auth)");
    EXPECT_EQ(db.pg.log().find("identity=\"plain\" method=password"), std::string::npos);
  }
  // The impostor: offers SCRAM, takes the first message, and says "OK" at once.
  int fake_port = FreePort();
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(fake_port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  ASSERT_EQ(listen(lfd, 16), 0);
  std::atomic<int> queries{0};
  std::atomic<bool> stop{false};
  std::thread fake([&] {
    while (!stop) {
      pollfd pf{lfd, POLLIN, 0};
      if (poll(&pf, 1, 100) <= 0) continue;
      int c = accept(lfd, nullptr, nullptr);
      if (c < 0) continue;
      timeval tv{2, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      char buf[4096];
      ssize_t first = read(c, buf, sizeof(buf));
      // An SSLRequest (server_tls_sslmode prefer, the default) is declined, as a server
      // without ssl does; then comes the startup message.
      if (first == 8 && buf[4] == 0x04 && static_cast<unsigned char>(buf[5]) == 0xd2) {
        (void)!write(c, "N", 1);
        first = read(c, buf, sizeof(buf));
      }
      if (first <= 0) {  // the startup message
        close(c);
        continue;
      }
      // The health checker (libpq 15, which has no require_auth) is fooled too; what must not
      // happen is a client's query reaching the impostor through the proxy.
      bool checker = std::string(buf, static_cast<size_t>(first)).find("bulwark health check") !=
                     std::string::npos;
      std::string out;
      std::string sasl;
      pg::AppendInt32(&sasl, 10);
      sasl += std::string("SCRAM-SHA-256\0\0", 15);
      pg::AppendMessage(&out, 'R', sasl);
      (void)!write(c, out.data(), out.size());
      if (read(c, buf, sizeof(buf)) <= 0) {  // SASLInitialResponse
        close(c);
        continue;
      }
      out.clear();
      std::string ok;
      pg::AppendInt32(&ok, 0);
      pg::AppendMessage(&out, 'R', ok);
      pg::AppendReadyForQuery(&out, 'I');
      (void)!write(c, out.data(), out.size());
      ssize_t n;
      while ((n = read(c, buf, sizeof(buf))) > 0) {
        if ((buf[0] == 'Q' || buf[0] == 'P') && !checker) ++queries;
        out.clear();
        pg::AppendMessage(&out, 'C', std::string("SELECT 0\0", 9));
        pg::AppendReadyForQuery(&out, 'I');
        (void)!write(c, out.data(), out.size());
      }
      close(c);
    }
  });
  {
    int port = FreePort(), admin = FreePort();
    Bulwark bw(ProxyConfig(port, admin, One(fake_port), "  pool_mode: transaction\n"));
    ASSERT_TRUE(bw.Ready(port, admin)) << bw.log();
    PgConn c(port);
    std::string r = c.Login("app", "secret", "app");
    if (r.empty()) r = c.Query("SELECT 1");
    EXPECT_NE(r.find("the server ended SCRAM authentication early"), std::string::npos) << r;
  }
  stop = true;
  fake.join();
  close(lfd);
  EXPECT_EQ(queries.load(), 0);
}

TEST(PgProxy, WithEtcdOnlyTheLeaseHolderFailsOver) {
  EtcdServer etcd;
  ASSERT_TRUE(etcd.ok());
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  db.pg.Psql("CREATE TABLE t (id int); GRANT ALL ON t TO app", "app");
  PostgresServer r1(PostgresServer::ReplicaOf{&db.pg});
  ASSERT_TRUE(r1.ok()) << r1.log();
  std::string servers = "['" + db.pg.socket_address() + "', '" + r1.socket_address() + "']";
  auto cluster = [&](const std::string& name) {
    return "cluster:\n  name: " + name + "\n  etcd: {endpoints: ['" + etcd.endpoint() +
           "'], key_prefix: /bulwark-pg-test, lease_ttl: 3s}\n";
  };
  const std::string block =
      "  pool_mode: transaction\n  health: {interval: 200ms, fails: 3, user: postgres}\n"
      "  failover: {enabled: true}\n";
  int port_a = FreePort(), admin_a = FreePort(), port_b = FreePort(), admin_b = FreePort();
  Bulwark a(cluster("a") + ProxyConfig(port_a, admin_a, servers, block));
  ASSERT_TRUE(a.Ready(port_a, admin_a)) << a.log();
  auto leader = [](int admin) {
    return HttpGet(admin, "/api/v1/cluster").body.find("\"leader\":true") != std::string::npos;
  };
  // Campaigning is a lease grant and a transaction against etcd, each retried a lease_ttl/3
  // later on failure; 20 s covers an etcd still starting on a loaded machine (it returns as
  // soon as the lease is held). It once took more than 5 s while three builds ran beside it.
  ASSERT_EQ(WaitForValue([&] { return std::string(leader(admin_a) ? "y" : "n"); }, "y", 20000), "y")
      << HttpGet(admin_a, "/api/v1/cluster").body << a.log();
  Bulwark b(cluster("b") + ProxyConfig(port_b, admin_b, servers, block));
  ASSERT_TRUE(b.Ready(port_b, admin_b)) << b.log();
  EXPECT_NE(HttpGet(admin_b, "/api/v1/cluster").body.find("\"holder\":\"a\""), std::string::npos)
      << HttpGet(admin_b, "/api/v1/cluster").body;
  EXPECT_FALSE(leader(admin_b));

  db.pg.Stop(SIGQUIT);
  EXPECT_EQ(WaitForValue([&] { return r1.Psql("SELECT pg_is_in_recovery()"); }, "f", 10000), "f");
  // Both instances see the server as down; only the leader acted, the other learnt the new
  // role from its checks.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::string sa = HttpGet(admin_a, "/api/v1/pg").body, sb = HttpGet(admin_b, "/api/v1/pg").body;
  EXPECT_NE(sa.find("\"new_primary\":\"" + r1.socket_address() + "\""), std::string::npos) << sa;
  EXPECT_EQ(sb.find("new_primary"), std::string::npos) << sb << b.log();
  EXPECT_EQ(Metric(HttpGet(admin_a, "/metrics").body, "bulwark_pg_failovers_total{result=\"ok\"}"),
            "1");
  EXPECT_NE(b.log().find("marked down"), std::string::npos) << b.log();
  size_t at = sb.find("\"address\":\"" + r1.socket_address() + "\"", sb.find("\"servers\""));
  ASSERT_NE(at, std::string::npos) << sb;
  EXPECT_NE(sb.substr(at, sb.find('}', at) - at).find("\"role\":\"primary\""), std::string::npos)
      << sb;
  // Writes through either instance land on the new primary. A health round that times out on
  // a slow (sanitizer) build can leave an instance without an up primary for a moment, and a
  // login then goes to the old one and fails; the instance must converge within a few rounds.
  for (int port : {port_a, port_b}) {
    std::string inserted = WaitForValue(
        [&] {
          PgConn c(port);
          if (!c.Login("app", "secret", "app").empty()) return std::string("login failed");
          return c.Query("INSERT INTO t VALUES (1) RETURNING NOT pg_is_in_recovery()");
        },
        "t", 10000);
    EXPECT_EQ(inserted, "t") << "port " << port << "\n" << a.log() << b.log();
  }
}

TEST(PgProxy, ShardRoutingForEveryKeySourceWithTheAlkaidSysShardMap) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  // The AlkaidSYS shard map as it is: db_tenant_0000..0007, users and orders split by month.
  for (int i = 0; i < 8; ++i) {
    std::string name = "db_tenant_000" + std::to_string(i);
    db.pg.Psql("CREATE DATABASE " + name + " OWNER app");
    std::string ddl;
    for (const char* month : {"2025_01", "2025_02", "2025_03"}) {
      ddl += std::string("CREATE TABLE users_") + month +
             " (id int, tenant_id int, created_at date, name text);" + "CREATE TABLE orders_" +
             month + " (id int, tenant_id int, created_at date);";
    }
    db.pg.Psql(ddl + "GRANT ALL ON ALL TABLES IN SCHEMA public TO app;", name);
  }
  int port = FreePort(), admin = FreePort();
  std::string shard_map =
      std::string(BULWARK_SOURCE_DIR) + "/../shared/fixtures/seeds/000-sharding.yml";
  std::string cfg = "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
                    "}\npg:\n  listen: 127.0.0.1:" + std::to_string(port) +
                    "\n  pool_mode: transaction\n  users: [{name: app, password: secret}]\n"
                    "  databases:\n    tenants:\n      sharding_file: " +
                    shard_map + "\n      servers: " + One(db.pg.port()) + "\n";
  Bulwark bw(cfg);
  ASSERT_TRUE(bw.Ready(port, admin)) << bw.log();
  auto on = [&](int shard, const std::string& sql) {
    return db.pg.Psql(sql, "db_tenant_000" + std::to_string(shard));
  };
  PgConn c(port);
  ASSERT_EQ(c.Login("app", "secret", "tenants"), "");
  // WHERE / INSERT values: tenant 11 -> db_tenant_${11 % 8} = db_tenant_0003, March's table.
  EXPECT_EQ(c.Query("INSERT INTO users (id, tenant_id, created_at, name) VALUES "
                    "(1, 11, '2025-03-14', 'eleven')"),
            "");
  EXPECT_EQ(on(3, "SELECT name FROM users_2025_03 WHERE id = 1"), "eleven");
  EXPECT_EQ(c.Query("SELECT name FROM users WHERE tenant_id = 11 AND created_at = '2025-03-14'"),
            "eleven");
  // The session's tenant.
  EXPECT_EQ(c.Query("SET bulwark.tenant_id = 5"), "");
  EXPECT_EQ(c.Query("INSERT INTO orders (id, created_at) VALUES (7, '2025-01-02')"), "");
  EXPECT_EQ(on(5, "SELECT count(*) FROM orders_2025_01 WHERE id = 7"), "1");
  // A comment, over the session's.
  EXPECT_EQ(c.Query("/* tenant_id: 2 */ INSERT INTO orders (id, created_at) VALUES (8, "
                    "'2025-02-01')"),
            "");
  EXPECT_EQ(on(2, "SELECT count(*) FROM orders_2025_02 WHERE id = 8"), "1");
  // The statement's own tenant must agree with the session's and with a hint, and the sharding
  // column is never assigned: each refused with its reason, the connection going on.
  ASSERT_TRUE(
      c.SendQuery("SELECT count(*) FROM orders WHERE tenant_id = 6 AND created_at = '2025-01-02'"));
  EXPECT_EQ(c.NextError(),
            "22023 the query names tenant_id 6 but the session's bulwark.tenant_id is 5");
  EXPECT_EQ(c.Finish(), "");
  ASSERT_TRUE(c.SendQuery(
      "/* tenant_id: 2 */ DELETE FROM orders WHERE tenant_id = 5 AND created_at = '2025-01-02'"));
  EXPECT_EQ(c.NextError(),
            "22023 the query names tenant_id 5 but its /* tenant_id: 2 */ comment another tenant");
  EXPECT_EQ(c.Finish(), "");
  ASSERT_TRUE(
      c.SendQuery("UPDATE orders SET tenant_id = 6 WHERE tenant_id = 5 AND id = 7 AND created_at = "
                  "'2025-01-02'"));
  EXPECT_EQ(c.NextError().substr(0, 50), "0A000 the query assigns the sharding column tenant");
  EXPECT_EQ(c.Finish(), "");
  EXPECT_EQ(on(5, "SELECT count(*) FROM orders_2025_01 WHERE id = 7 AND tenant_id IS NULL"), "1");
  EXPECT_EQ(c.Query("SELECT count(*) FROM orders WHERE id = 7 AND created_at = '2025-01-02'"), "1");
  // Parameters of the extended protocol (pgbench -M extended sends :t as $1).
  std::string dir = MakeTempDir();
  WriteFile(dir + "/ins.sql",
            "\\set t 13\nINSERT INTO users (id, tenant_id, created_at, name) VALUES (2, :t, "
            "'2025-01-20', 'thirteen');\n");
  std::string out;
  RunProgram({"pgbench", "-h", "127.0.0.1", "-p", std::to_string(port), "-U", "app", "-n", "-t",
              "1", "-M", "extended", "-f", dir + "/ins.sql", "tenants"},
             {{"PGPASSWORD", "secret"}}, &out);
  EXPECT_NE(out.find("actually processed: 1/1"), std::string::npos) << out;
  EXPECT_EQ(on(5, "SELECT name FROM users_2025_01 WHERE id = 2"), "thirteen");  // 13 % 8
  // A named prepared statement cannot follow the months: refused with the reason.
  RunProgram({"pgbench", "-h", "127.0.0.1", "-p", std::to_string(port), "-U", "app", "-n", "-t",
              "1", "-M", "prepared", "-f", dir + "/ins.sql", "tenants"},
             {{"PGPASSWORD", "secret"}}, &out);
  EXPECT_NE(out.find("tables split by month need the unnamed statement"), std::string::npos) << out;
  // No key at all: refused, and the connection goes on.
  PgConn d(port);
  ASSERT_EQ(d.Login("app", "secret", "tenants"), "");
  ASSERT_TRUE(d.SendQuery("SELECT count(*) FROM users WHERE created_at = '2025-01-01'"));
  EXPECT_EQ(d.NextError().substr(0, 19), "0A000 no shard key:");
  EXPECT_EQ(d.Finish(), "");
  EXPECT_EQ(
      d.Query("/* tenant_id: 3 */ SELECT count(*) FROM users WHERE created_at = '2025-03-14'"),
      "1");
  std::string status = HttpGet(admin, "/api/v1/pg").body;
  EXPECT_NE(status.find("\"dbname\":\"db_tenant_0005\""), std::string::npos) << status;
}

TEST(PgProxy, ScatterGatherEqualsOneDatabase) {
  AppDatabase db;
  ASSERT_TRUE(db.pg.ok()) << db.pg.log();
  // Four shards (a map of our own) and a reference database holding every row.
  std::string ddl =
      "CREATE TABLE payments (id int, tenant_id int, amount numeric(10,2), note text);";
  db.pg.Psql("CREATE DATABASE ref OWNER app");
  db.pg.Psql(ddl + "GRANT ALL ON payments TO app;", "ref");
  for (int i = 0; i < 4; ++i) {
    db.pg.Psql("CREATE DATABASE shard_" + std::to_string(i) + " OWNER app");
    db.pg.Psql(ddl + "GRANT ALL ON payments TO app;", "shard_" + std::to_string(i));
  }
  for (int t = 0; t < 22; ++t) {
    std::string values;
    for (int k = 0; k < 4; ++k) {
      int id = t * 10 + k;
      values += (k ? "," : "") + std::string("(") + std::to_string(id) + "," + std::to_string(t) +
                "," + std::to_string((t * 7 + k * 3) % 50) + "." + std::to_string(25 * k % 100) +
                "," + (k == 2 ? "NULL" : "'n" + std::to_string(id % 7) + "'") + ")";
    }
    std::string insert = "INSERT INTO payments VALUES " + values;
    db.pg.Psql(insert, "ref");
    db.pg.Psql(insert, "shard_" + std::to_string(t % 4));
  }
  int port = FreePort(), admin = FreePort();
  std::string cfg =
      "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
      "}\npg:\n  listen: 127.0.0.1:" + std::to_string(port) +
      "\n  pool_mode: transaction\n  default_pool_size: 2\n"
      "  routing: {allow_scatter: true}\n"
      "  users: [{name: app, password: secret}]\n  databases:\n    tenants:\n"
      "      servers: " +
      One(db.pg.port()) +
      "\n      sharding:\n        databases: [shard_0, shard_1, shard_2, shard_3]\n"
      "        tables:\n          payments:\n            database_strategy: "
      "{sharding_column: tenant_id, algorithm_expression: 'shard_${tenant_id % 4}'}\n";
  Bulwark bw(cfg);
  ASSERT_TRUE(bw.Ready(port, admin)) << bw.log();
  auto via = [&](const std::string& sql) {
    std::string out;
    RunProgram({"psql", "-X", "-At", "-h", "127.0.0.1", "-p", std::to_string(port), "-U", "app",
                "-d", "tenants", "-c", sql},
               {{"PGPASSWORD", "secret"}}, &out);
    return out;
  };
  for (const char* sql : {
           "SELECT count(*), sum(amount), avg(amount), min(amount), max(amount), count(note) "
           "FROM payments",
           "SELECT tenant_id, count(*), sum(amount), avg(amount) FROM payments GROUP BY "
           "tenant_id ORDER BY tenant_id",
           "SELECT note, count(*) AS n, max(id) FROM payments GROUP BY note ORDER BY n DESC, "
           "note NULLS FIRST",
           "SELECT id, amount FROM payments ORDER BY amount DESC, id LIMIT 5 OFFSET 3",
           "SELECT id FROM payments WHERE amount > 40 ORDER BY 1",
           "SELECT avg(id), min(note), max(note) FROM payments WHERE tenant_id < 0",
       }) {
    std::string want = db.pg.Psql(sql, "ref");
    EXPECT_EQ(via(sql), want + (want.empty() ? "" : "\n")) << sql;
  }
  // What cannot be merged exactly is refused with the reason.
  EXPECT_NE(via("SELECT DISTINCT note FROM payments")
                .find("cannot scatter to every shard: "
                      "SELECT DISTINCT"),
            std::string::npos);
  // A tenant still goes to its one shard.
  EXPECT_EQ(via("SELECT count(*) FROM payments WHERE tenant_id = 5"), "4\n");
  EXPECT_EQ(Metric(HttpGet(admin, "/metrics").body,
                   "bulwark_pg_scatter_queries_total{database=\"tenants\"}"),
            "6");
}

}  // namespace
}  // namespace bulwark::testing
