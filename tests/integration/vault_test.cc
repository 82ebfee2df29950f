// Backups end to end with real programs: pg_dump from a real PostgreSQL 15 (run as the postgres
// user) through `bulwark backup run`, restored with pg_restore from `bulwark backup cat`, and
// the catalog's answers when an archive is corrupted, the key is wrong or a backup is killed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

const char* kKeyA = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const char* kKeyB = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

struct VaultSetup {
  std::string dir = MakeTempDir();
  std::string config = dir + "/bulwark.yml";
  void Write(const std::string& text) {
    std::ofstream f(config, std::ios::trunc);
    f << text;
  }
  // Runs `bulwark ARGS -c config`; returns the exit code, output in `out`.
  int Run(std::vector<std::string> args, std::string* out) {
    args.push_back("-c");
    args.push_back(config);
    return RunBulwark(args, out);
  }
  nlohmann::json List() {
    std::string out;
    EXPECT_EQ(Run({"backup", "list", "--json"}, &out), 0) << out;
    auto j = nlohmann::json::parse(out.substr(out.find('[')), nullptr, false);
    return j.is_array() ? j : nlohmann::json::array();
  }
};

std::string VaultConfig(const std::string& dir, const std::string& key, const std::string& plans) {
  return "vault:\n  catalog: " + dir + "/catalog.db\n  keys: [{value: " + key +
         "}]\n  storage:\n    disk: {path: " + dir + "/store}\n    copy: {path: " + dir +
         "/copy}\n  plans:\n" + plans;
}

TEST(Vault, PgDumpBackupVerifyAndRestoreRoundTrip) {
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.log();
  pg.Psql("CREATE DATABASE app");
  pg.Psql(
      "CREATE TABLE orders (id int PRIMARY KEY, tenant_id int, note text, amount numeric);"
      "INSERT INTO orders SELECT g, g % 8, md5(g::text), g * 1.25 FROM generate_series(1, "
      "20000) g;"
      "CREATE TABLE users (id int PRIMARY KEY, name text);"
      "INSERT INTO users VALUES (1, 'ada'), (2, 'grace'), (3, NULL);",
      "app");
  VaultSetup v;
  std::string plans = "    app-db:\n      source: {type: pg_dump, host: " + pg.dir() +
                      ", port: " + std::to_string(pg.port()) +
                      ", user: postgres, database: app}\n      threads: 2\n";
  v.Write(VaultConfig(v.dir, kKeyA, plans));
  std::string out;
  ASSERT_EQ(v.Run({"backup", "run", "app-db"}, &out), 0) << out;
  EXPECT_NE(out.find("backup 1 of plan app-db: ok"), std::string::npos) << out;
  nlohmann::json list = v.List();
  ASSERT_EQ(list.size(), 1u);
  const nlohmann::json& b = list[0];
  EXPECT_EQ(b["status"], "ok");
  EXPECT_EQ(b["source"], "pg_dump");
  EXPECT_EQ(b["compression"], "zstd");
  EXPECT_EQ(b["storage"], nlohmann::json({"copy", "disk"}));
  EXPECT_GT(b["raw_bytes"].get<int64_t>(), 500000);
  EXPECT_LT(b["stored_bytes"].get<int64_t>(), b["raw_bytes"].get<int64_t>());
  std::string object = b["object"];
  // The same bytes in both storages, under the final name only; the data is not readable.
  std::string a = ReadFile(v.dir + "/store/" + object), c = ReadFile(v.dir + "/copy/" + object);
  EXPECT_EQ(a, c);
  EXPECT_EQ(a.size(), b["stored_bytes"].get<size_t>());
  EXPECT_EQ(a.find("grace"), std::string::npos);
  struct stat sb;
  EXPECT_NE(stat((v.dir + "/store/" + object + ".partial").c_str(), &sb), 0) << "partial object";
  ASSERT_EQ(stat((v.dir + "/store/" + object).c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);

  ASSERT_EQ(v.Run({"backup", "verify", "1"}, &out), 0) << out;
  EXPECT_NE(out.find("backup 1: verified (2 copies"), std::string::npos) << out;
  EXPECT_EQ(v.List()[0]["verified"], "ok");

  // Restore into a new database with pg_restore fed by `backup cat`; the tables are equal.
  pg.Psql("CREATE DATABASE restored");
  std::string restore_out;
  int rc = RunProgram({"sh", "-c",
                       std::string(BULWARK_BINARY) + " backup cat 1 -c " + v.config +
                           " | pg_restore --no-owner -h " + pg.dir() + " -p " +
                           std::to_string(pg.port()) + " -U postgres -d restored"},
                      {}, &restore_out);
  ASSERT_EQ(rc, 0) << restore_out;
  for (const char* q : {"SELECT count(*), sum(amount), md5(string_agg(note, ',' ORDER BY id)) "
                        "FROM orders",
                        "SELECT string_agg(id || ':' || coalesce(name, 'NULL'), ',' ORDER BY id) "
                        "FROM users"}) {
    std::string want = pg.Psql(q, "app");
    EXPECT_FALSE(want.empty());
    EXPECT_EQ(pg.Psql(q, "restored"), want) << q;
  }

  // One corrupt byte in one copy: verify names the copy and the chunk, and exits 1.
  {
    std::fstream f(v.dir + "/copy/" + object, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(a.size() / 2));
    char ch = a[a.size() / 2] ^ 0x20;
    f.write(&ch, 1);
  }
  EXPECT_EQ(v.Run({"backup", "verify", "1"}, &out), 1) << out;
  EXPECT_NE(out.find("verification failed: " + v.dir + "/copy/" + object + ": chunk "),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("does not authenticate"), std::string::npos) << out;
  EXPECT_EQ(v.List()[0]["verified"], "failed");

  // A configuration with another key cannot read it, and says which key it needs.
  {
    v.Write(VaultConfig(v.dir, kKeyB, plans));
    EXPECT_EQ(v.Run({"backup", "cat", "1"}, &out), 1);
    EXPECT_NE(out.find("the archive is encrypted with key k-"), std::string::npos) << out;
    EXPECT_NE(out.find("; the key given is k-"), std::string::npos) << out;
  }
}

TEST(Vault, AFailedOrKilledBackupLeavesNoObjectAndTheCatalogSaysSo) {
  VaultSetup v;
  std::string plans =
      "    fails:\n      source: {type: command, command: [sh, -c, 'seq 1 100000; echo "
      "\"pg_dump: error: connection refused\" >&2; exit 1']}\n"
      "    slow:\n      source: {type: command, command: [sh, -c, 'seq 1 200000; sleep 30']}\n"
      "      storage: [disk]\n"
      "    files:\n      source: {type: files, paths: ['" +
      v.dir +
      "/data']}\n      compression: gzip\n      encrypt: false\n"
      "      retention: {count: 1}\n";
  v.Write(VaultConfig(v.dir, kKeyA, plans));
  std::string out;
  EXPECT_EQ(v.Run({"backup", "run", "fails"}, &out), 1);
  EXPECT_NE(out.find("backup 1 of plan fails failed: sh exited with status 1: pg_dump: error: "
                     "connection refused"),
            std::string::npos)
      << out;
  nlohmann::json list = v.List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["status"], "failed");
  // Nothing was left in either storage (the directories exist, their plan folders are empty).
  std::string find;
  RunProgram({"find", v.dir + "/store", v.dir + "/copy", "-type", "f"}, {}, &find);
  EXPECT_EQ(find, "");
  EXPECT_EQ(v.Run({"backup", "verify", "1"}, &out), 2);
  EXPECT_NE(out.find("backup 1 is failed; only complete backups can be verified"),
            std::string::npos)
      << out;

  // Killed in the middle (SIGKILL: no cleanup of its own): the row says running until the next
  // bulwark looks, which marks it failed and removes the partial object.
  Process slow({BULWARK_BINARY, "backup", "run", "slow", "-c", v.config}, {}, v.dir + "/slow.out");
  std::string partial;
  for (int i = 0; i < 100 && partial.empty(); ++i) {
    RunProgram({"find", v.dir + "/store", "-name", "*.partial", "-size", "+0"}, {}, &partial);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(partial.empty()) << ReadFile(v.dir + "/slow.out");
  // A second instance meanwhile leaves the running backup alone.
  list = v.List();
  EXPECT_EQ(list[0]["status"], "running");
  kill(slow.pid(), SIGKILL);
  slow.Wait(5000);
  list = v.List();  // this call recovers it
  EXPECT_EQ(list[0]["status"], "failed");
  EXPECT_NE(list[0]["error"].get<std::string>().find("interrupted"), std::string::npos);
  RunProgram({"find", v.dir + "/store", "-type", "f"}, {}, &find);
  EXPECT_EQ(find, "");

  // Files, gzip, no key: round trip through tar.
  mkdir((v.dir + "/data").c_str(), 0700);
  {
    std::ofstream f(v.dir + "/data/app.yml");
    f << "listen: 8080\n";
  }
  ASSERT_EQ(v.Run({"backup", "run", "files"}, &out), 0) << out;
  EXPECT_NE(out.find("gzip, not encrypted"), std::string::npos) << out;
  std::string listing;
  ASSERT_EQ(
      RunProgram({"sh", "-c",
                  std::string(BULWARK_BINARY) + " backup cat 3 -c " + v.config + " | tar -tvf -"},
                 {}, &listing),
      0)
      << listing;
  EXPECT_NE(listing.find(v.dir.substr(1) + "/data/app.yml"), std::string::npos) << listing;

  // retention {count: 1}: the next backup of the plan deletes this one, object and all.
  std::string first = v.List()[0]["object"];
  ASSERT_EQ(v.Run({"backup", "run", "files"}, &out), 0) << out;
  EXPECT_NE(out.find("retention deleted backup 3"), std::string::npos) << out;
  list = v.List();
  EXPECT_EQ(list[0]["status"], "ok");
  EXPECT_EQ(list[1]["status"], "deleted");
  struct stat sb;
  EXPECT_NE(stat((v.dir + "/store/" + first).c_str(), &sb), 0);
  EXPECT_NE(stat((v.dir + "/copy/" + first).c_str(), &sb), 0);
  EXPECT_EQ(stat((v.dir + "/store/" + list[0]["object"].get<std::string>()).c_str(), &sb), 0);
}

TEST(Vault, ServeRunsBackupsOnRequestAndReportsThem) {
  VaultSetup v;
  int admin = FreePort();
  std::string plans =
      "    ok:\n      source: {type: command, command: [sh, -c, 'seq 1 1000']}\n"
      "      schedule: '0 3 * * *'\n"
      "    broken:\n      source: {type: command, command: [sh, -c, 'exit 5']}\n";
  v.Write(VaultConfig(v.dir, kKeyA, plans));  // the same vault for the CLI
  Bulwark bw("admin: {listen: 127.0.0.1:" + std::to_string(admin) + "}\n" +
             VaultConfig(v.dir, kKeyA, plans));
  ASSERT_TRUE(bw.Ready(admin, admin)) << bw.log();
  EXPECT_EQ(HttpPost(admin, "/api/v1/backups/run?plan=ok", "").status, 202);
  EXPECT_EQ(HttpPost(admin, "/api/v1/backups/run?plan=broken", "").status, 202);
  EXPECT_EQ(HttpPost(admin, "/api/v1/backups/run?plan=nope", "").status, 400);
  // Both runs end (each on its own thread, in either order: under load the one that fails at
  // once is not always first).
  std::string m;
  WaitFor(
      [&] {
        m = HttpGet(admin, "/metrics").body;
        return Metric(m, "bulwark_backup_runs_total{plan=\"broken\",result=\"failed\"}") == "1" &&
               Metric(m, "bulwark_backup_runs_total{plan=\"ok\",result=\"ok\"}") == "1";
      },
      30000);
  EXPECT_EQ(Metric(m, "bulwark_backup_runs_total{plan=\"broken\",result=\"failed\"}"), "1") << m;
  EXPECT_EQ(Metric(m, "bulwark_backup_runs_total{plan=\"ok\",result=\"ok\"}"), "1") << m;
  EXPECT_EQ(Metric(m, "bulwark_backup_failing{plan=\"broken\"}"), "1") << m;
  EXPECT_EQ(Metric(m, "bulwark_backup_failing{plan=\"ok\"}"), "0");
  EXPECT_EQ(Metric(m, "bulwark_backup_last_raw_bytes{plan=\"ok\"}"), "3893");  // seq 1 1000
  auto list = nlohmann::json::parse(HttpGet(admin, "/api/v1/backups").body, nullptr, false);
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 2u);
  // The two plans ran at the same time, each on its own thread: either may be first.
  if (list[0]["plan"] == "ok") std::swap(list[0], list[1]);
  EXPECT_EQ(list[0]["status"], "failed");
  EXPECT_EQ(list[0]["error"], "sh exited with status 5");
  EXPECT_EQ(list[1]["status"], "ok");
  EXPECT_EQ(list[1]["trigger"], "manual");
  // One backup, inspected.
  auto one = nlohmann::json::parse(
      HttpGet(admin, "/api/v1/backups/" + std::to_string(list[1]["id"].get<int>())).body, nullptr,
      false);
  EXPECT_EQ(one["plan"], "ok") << one.dump();
  EXPECT_EQ(one["raw_sha256"].get<std::string>().size(), 64u) << one.dump();
  EXPECT_EQ(HttpGet(admin, "/api/v1/backups/999").status, 404);
  // The CLI sees the same catalog while serve runs.
  std::string out;
  EXPECT_EQ(v.Run({"backup", "verify", std::to_string(list[1]["id"].get<int>())}, &out), 0) << out;
}

// A local S3 server (s3rver from npm, pinned in tests/s3) on a free port, with bucket `backups`.
// It knows one access key (S3RVER) but does not check V4 signatures themselves: the signer is
// checked against AWS's own worked example in the unit tests (SigV4.*).
struct S3rver {
  int port = FreePort();
  std::string dir = MakeTempDir();
  std::unique_ptr<Process> proc;
  S3rver() {
    std::string bin = std::string(BULWARK_SOURCE_DIR) + "/tests/s3/node_modules/.bin/s3rver";
    proc = std::make_unique<Process>(
        std::vector<std::string>{"node", bin, "-d", dir, "-a", "127.0.0.1", "-p",
                                 std::to_string(port), "-s", "--configure-bucket", "backups"},
        std::map<std::string, std::string>{}, dir + "/s3rver.log");
  }
  bool Ready() {
    for (int i = 0; i < 100; ++i) {
      if (HttpGet(port, "/backups").status > 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  std::string log() { return ReadFile(dir + "/s3rver.log"); }
};

// A source that hangs (and leaves a background child holding its output) is stopped at its
// timeout, its whole process group with it, while another plan runs meanwhile; children start
// with no blocked or ignored signals (bulwark blocks SIGTERM/SIGINT/SIGHUP, ignores SIGPIPE)
// and a scrubbed environment (bulwark's own secrets stay behind).
TEST(Vault, AHungSourceIsStoppedWithItsChildrenAndHoldsUpNoOtherPlan) {
  VaultSetup v;
  int admin = FreePort();
  // A sleep no other test (nor this one in another build running beside it) starts.
  std::string sleep = "sleep " + std::to_string(100000 + getpid());
  std::string plans =
      "    hung:\n      source: {type: command, command: [sh, -c, '" + sleep + " & " + sleep +
      "']}\n"
      "      timeout: 5s\n"
      "    quick:\n      source: {type: command, command: [sh, -c, 'seq 1 100']}\n"
      "    signals:\n      source: {type: command, command: [sh, -c, "
      "'grep -E \"^Sig(Blk|Ign)\" /proc/self/status; env'], pass_env: [BULWARK_TEST_PASSED]}\n"
      "      encrypt: false\n";
  v.Write(VaultConfig(v.dir, kKeyA, plans));
  // bulwark's own environment holds a secret (as one interpolated into its config would be).
  Bulwark bw("admin: {listen: 127.0.0.1:" + std::to_string(admin) + "}\n" +
                 VaultConfig(v.dir, kKeyA, plans),
             {{"BULWARK_TEST_SECRET", "s3cr3t"}, {"BULWARK_TEST_PASSED", "yes"}});
  ASSERT_TRUE(bw.Ready(admin, admin)) << bw.log();
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(HttpPost(admin, "/api/v1/backups/run?plan=hung", "").status, 202);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(HttpPost(admin, "/api/v1/backups/run?plan=quick", "").status, 202);
  ASSERT_EQ(HttpPost(admin, "/api/v1/backups/run?plan=signals", "").status, 202);
  std::string m;
  auto runs = [&](const std::string& plan, const std::string& result) {
    return Metric(m, "bulwark_backup_runs_total{plan=\"" + plan + "\",result=\"" + result + "\"}");
  };
  for (int i = 0; i < 300; ++i) {
    m = HttpGet(admin, "/metrics").body;
    if (runs("quick", "ok") == "1" && runs("signals", "ok") == "1") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(runs("quick", "ok"), "1") << m;
  EXPECT_EQ(runs("hung", "failed"), "0");  // still running: the others did not wait for it
  double hung_s = 0;
  for (int i = 0; i < 600; ++i) {
    m = HttpGet(admin, "/metrics").body;
    if (runs("hung", "failed") == "1") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  hung_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(runs("hung", "failed"), "1") << bw.log();
  EXPECT_GE(hung_s, 4.5);  // not before its timeout...
  EXPECT_LT(hung_s, 15.0);  // ...and not when the background sleep would have ended
  std::string out;
  EXPECT_NE(RunProgram({"pgrep", "-f", sleep}, {}, &out), 0) << "left behind: " << out;
  auto list = nlohmann::json::parse(HttpGet(admin, "/api/v1/backups").body, nullptr, false);
  ASSERT_TRUE(list.is_array());
  int64_t signals_id = -1;
  for (const auto& b : list) {
    if (b["plan"] == "hung") {
      EXPECT_EQ(b["error"].get<std::string>().rfind("sh did not finish in time and was stopped", 0),
                0u)
          << b.dump();
    }
    if (b["plan"] == "signals") signals_id = b["id"].get<int64_t>();
  }
  ASSERT_GE(signals_id, 0);
  ASSERT_EQ(v.Run({"backup", "cat", std::to_string(signals_id)}, &out), 0) << out;
  EXPECT_NE(out.find("SigBlk:\t0000000000000000"), std::string::npos) << out;
  // No standard signal (1-31) ignored; glibc keeps its own two (32, 33) as it likes.
  size_t ign = out.find("SigIgn:\t");
  ASSERT_NE(ign, std::string::npos) << out;
  uint64_t ignored = std::stoull(out.substr(ign + 8, 16), nullptr, 16);
  EXPECT_EQ(ignored & 0x7fffffffull, 0u) << out;
  // A scrubbed environment: PATH, and what the plan passes on; not bulwark's secrets.
  EXPECT_NE(out.find("\nPATH="), std::string::npos) << out;
  EXPECT_NE(out.find("\nBULWARK_TEST_PASSED=yes"), std::string::npos) << out;
  EXPECT_EQ(out.find("s3cr3t"), std::string::npos) << out;
  EXPECT_EQ(out.find("STATE_DIRECTORY"), std::string::npos) << out;
  // The catalog (and its WAL) is 0600.
  for (const char* f : {"/catalog.db", "/catalog.db-wal"}) {
    struct stat st {};
    ASSERT_EQ(stat((v.dir + f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 07777, 0600u) << f;
  }
}

// A source's password reaches pg_dump through a 0600 passfile (PGPASSFILE) that is gone once
// the run ends, never through the environment, where every process of the user can read it.
TEST(Vault, PasswordsReachClientsThroughAFileNeverTheEnvironment) {
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.log();
  pg.Psql("CREATE DATABASE app");
  pg.Psql("CREATE ROLE dumper LOGIN SUPERUSER PASSWORD 'pa:ss\\w0rd'");
  pg.Psql("CREATE TABLE t AS SELECT 1 AS x", "app");
  VaultSetup v;
  // A pg_dump first on PATH that records what it was given, then runs the real one.
  std::string wrap = v.dir + "/bin";
  ASSERT_EQ(mkdir(wrap.c_str(), 0755), 0);
  WriteFile(wrap + "/pg_dump",
            "#!/bin/sh\n{ env; echo \"mode=$(stat -c %a \"$PGPASSFILE\")\"; "
            "printf 'file=%s\\n' \"$(cat \"$PGPASSFILE\")\"; } > " +
                v.dir + "/seen\nPATH=${PATH#*:} exec pg_dump \"$@\"\n");
  ASSERT_EQ(chmod((wrap + "/pg_dump").c_str(), 0755), 0);
  std::string plans = "    app-db:\n      source: {type: pg_dump, host: 127.0.0.1, port: " +
                      std::to_string(pg.port()) +
                      ", user: dumper, password: 'pa:ss\\w0rd', database: app}\n";
  v.Write(VaultConfig(v.dir, kKeyA, plans));
  std::string out;
  ASSERT_EQ(RunProgram({std::string(BULWARK_BINARY), "backup", "run", "app-db", "-c", v.config},
                       {{"PATH", wrap + ":" + std::getenv("PATH")}}, &out, 60000),
            0)
      << out;
  EXPECT_NE(out.find("backup 1 of plan app-db: ok"), std::string::npos) << out;
  std::string seen = ReadFile(v.dir + "/seen");
  EXPECT_EQ(seen.find("PGPASSWORD"), std::string::npos) << seen;
  EXPECT_NE(seen.find("\nmode=600\n"), std::string::npos) << seen;
  // The pgpass line: any host, port, database and user; ':' and '\' escaped.
  EXPECT_NE(seen.find("\nfile=*:*:*:*:pa\\:ss\\\\w0rd\n"), std::string::npos) << seen;
  size_t at = seen.find("PGPASSFILE=");
  ASSERT_NE(at, std::string::npos) << seen;
  std::string file = seen.substr(at + 11, seen.find('\n', at) - at - 11);
  struct stat st {};
  EXPECT_NE(stat(file.c_str(), &st), 0) << file << " outlived the run";
  EXPECT_NE(stat(file.substr(0, file.rfind('/')).c_str(), &st), 0);
  // A wrong password fails the run: the file is what pg_dump logged in with.
  v.Write(VaultConfig(v.dir, kKeyA,
                      "    app-db:\n      source: {type: pg_dump, host: 127.0.0.1, port: " +
                          std::to_string(pg.port()) +
                          ", user: dumper, password: nope, database: app}\n"));
  EXPECT_EQ(RunProgram({std::string(BULWARK_BINARY), "backup", "run", "app-db", "-c", v.config},
                       {{"PATH", wrap + ":" + std::getenv("PATH")}}, &out, 60000),
            1)
      << out;
  EXPECT_NE(out.find("password authentication failed"), std::string::npos) << out;
}

// An unencrypted archive put in the place of an encrypted backup (a downgrade, or another
// backup's object) is refused at its header: not a byte of it reaches `backup cat` or a restore.
TEST(Vault, ADowngradedObjectIsRefusedBeforeAnyByteIsPassedOn) {
  VaultSetup v;
  v.Write(VaultConfig(
      v.dir, kKeyA,
      "    enc:\n      source: {type: command, command: [sh, -c, 'echo the real backup']}\n"
      "      storage: [disk]\n"
      "    plain:\n      source: {type: command, command: [sh, -c, 'echo PLAINDATA-MARKER']}\n"
      "      storage: [disk]\n      encrypt: false\n"));
  std::string out;
  ASSERT_EQ(v.Run({"backup", "run", "enc"}, &out), 0) << out;
  ASSERT_EQ(v.Run({"backup", "run", "plain"}, &out), 0) << out;
  nlohmann::json list = v.List();
  ASSERT_EQ(list.size(), 2u);
  nlohmann::json enc = list[0]["plan"] == "enc" ? list[0] : list[1];
  nlohmann::json plain = list[0]["plan"] == "plain" ? list[0] : list[1];
  WriteFile(v.dir + "/store/" + enc["object"].get<std::string>(),
            ReadFile(v.dir + "/store/" + plain["object"].get<std::string>()));
  std::string id = std::to_string(enc["id"].get<int64_t>());
  EXPECT_NE(v.Run({"backup", "cat", id}, &out), 0) << out;
  EXPECT_EQ(out.find("PLAINDATA-MARKER"), std::string::npos) << out;
  EXPECT_NE(out.find("the catalog says this backup was encrypted"), std::string::npos) << out;
  EXPECT_NE(v.Run({"backup", "verify", id}, &out), 0) << out;
  EXPECT_NE(out.find("refused (a downgraded or swapped object)"), std::string::npos) << out;
}

TEST(Vault, S3StorageWithMultipartUploadsVerifiesAndPrunes) {
  S3rver s3;
  ASSERT_TRUE(s3.Ready()) << "s3rver did not start (scripts/test runs `npm ci` in tests/s3): "
                          << s3.log();
  VaultSetup v;
  std::string s3_storage =
      "    s3: {type: s3, endpoint: 'http://127.0.0.1:" + std::to_string(s3.port) +
      "', bucket: backups, access_key: S3RVER, secret_key: S3RVER, "
      "prefix: bulwark/, part_size: 5MiB}\n";
  std::string cfg = VaultConfig(v.dir, kKeyA,
                                "    big:\n      source: {type: command, command: [sh, -c, 'head "
                                "-c 12000000 /dev/urandom']}\n      compression: none\n"
                                "      storage: [s3, disk]\n      retention: {count: 1}\n"
                                "    small:\n      source: {type: command, command: [sh, -c, "
                                "'seq 1 5000']}\n      storage: [s3]\n"
                                "    stalls:\n      source: {type: command, command: [sh, -c, "
                                "'head -c 12000000 /dev/urandom; sleep 60']}\n"
                                "      compression: none\n      storage: [s3]\n");
  cfg.replace(cfg.find("  plans:\n"), 0, s3_storage);
  v.Write(cfg);
  std::string out;
  // 12 MB of noise: three parts of a multipart upload; a small one: one PUT.
  ASSERT_EQ(v.Run({"backup", "run", "big"}, &out), 0) << out << s3.log();
  ASSERT_EQ(v.Run({"backup", "run", "small"}, &out), 0) << out << s3.log();
  auto list = v.List();
  ASSERT_EQ(list.size(), 2u);
  for (int id : {1, 2}) {
    EXPECT_EQ(v.Run({"backup", "verify", std::to_string(id)}, &out), 0) << out;
  }
  std::string small_sum, want_sum;
  RunProgram(
      {"sh", "-c", std::string(BULWARK_BINARY) + " backup cat 2 -c " + v.config + " | sha256sum"},
      {}, &small_sum);
  RunProgram({"sh", "-c", "seq 1 5000 | sha256sum"}, {}, &want_sum);
  EXPECT_EQ(small_sum, want_sum);
  // The objects are where they should be, under the prefix (s3rver keeps them on disk).
  std::string files;
  RunProgram({"find", s3.dir, "-name", "*.bwv*"}, {}, &files);
  EXPECT_NE(files.find("backups/bulwark/big/big-"), std::string::npos) << files;
  EXPECT_NE(files.find("backups/bulwark/small/small-"), std::string::npos) << files;

  // Retention ({count: 1}) never deletes the newest verified backup: backup 1 stays until a
  // newer one is verified; then it goes, from S3 too.
  ASSERT_EQ(v.Run({"backup", "run", "big"}, &out), 0) << out;
  EXPECT_EQ(out.find("retention deleted"), std::string::npos) << out;
  ASSERT_EQ(v.Run({"backup", "verify", "3"}, &out), 0) << out;
  ASSERT_EQ(v.Run({"backup", "run", "big"}, &out), 0) << out;
  EXPECT_NE(out.find("retention deleted backup 1\n"), std::string::npos) << out;
  std::string first = list[1]["object"];
  std::string files2;
  RunProgram({"find", s3.dir, "-path", "*" + first + "*"}, {}, &files2);
  EXPECT_EQ(files2, "") << files2;

  // Killed in the middle of a multipart upload (two parts sent, the source stalled): S3 shows
  // nothing under the name, and the next bulwark marks the row failed.
  Process stalls({BULWARK_BINARY, "backup", "run", "stalls", "-c", v.config}, {},
                 v.dir + "/stalls.out");
  bool parts = false;
  for (int i = 0; i < 150 && !parts; ++i) {
    std::string found;
    // s3rver keeps the parts of open uploads as .../uploads/<upload id>/<part number>.
    RunProgram({"find", s3.dir, "-path", "*uploads*", "-name", "2", "-size", "+0"}, {}, &found);
    parts = !found.empty();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(parts) << ReadFile(v.dir + "/stalls.out");
  kill(stalls.pid(), SIGKILL);
  stalls.Wait(5000);
  EXPECT_EQ(HttpGet(s3.port, "/backups?prefix=bulwark/stalls/").body.find("<Key>"),
            std::string::npos);
  nlohmann::json after = v.List();  // this call recovers it
  EXPECT_EQ(after[0]["plan"], "stalls");
  EXPECT_EQ(after[0]["status"], "failed");
  EXPECT_NE(after[0]["error"].get<std::string>().find("interrupted"), std::string::npos);

  // Unknown credentials: the backup fails with S3's own reason.
  std::string bad = cfg;
  bad.replace(bad.find("access_key: S3RVER"), 18, "access_key: NOBODY");
  v.Write(bad);
  EXPECT_EQ(v.Run({"backup", "run", "small"}, &out), 1);
  EXPECT_NE(out.find("HTTP 403 InvalidAccessKeyId"), std::string::npos) << out;
  EXPECT_EQ(v.List()[0]["status"], "failed");
}

TEST(Vault, ConfigErrorsNameTheProblem) {
  VaultSetup v;
  v.Write("vault:\n  catalog: " + v.dir +
          "/c.db\n  storage: {disk: {path: /tmp/x}}\n  plans:\n"
          "    a: {source: {type: pg_dump}, schedule: '61 * * * *', storage: [nope]}\n");
  std::string out;
  EXPECT_EQ(RunBulwark({"check-config", v.config}, &out), 1);
  EXPECT_NE(out.find("vault.plans.a.source: give either database or all_databases: true"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("vault.plans.a.schedule:"), std::string::npos) << out;
  EXPECT_NE(out.find("no storage named \"nope\""), std::string::npos) << out;
  EXPECT_NE(out.find("vault.keys is empty"), std::string::npos) << out;
  v.Write("vault:\n  keys: [{value: short}]\n");
  EXPECT_EQ(RunBulwark({"check-config", v.config}, &out), 1);
  EXPECT_NE(out.find("an archive key is 32 bytes"), std::string::npos) << out;
}

}  // namespace
}  // namespace bulwark::testing
