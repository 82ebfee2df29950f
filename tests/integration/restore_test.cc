// Restores, drills and recovery plans end to end against real servers: PostgreSQL 15 (run as
// the postgres user), MariaDB (as the mysql user), real tar, real bulwark processes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace bulwark::testing {
namespace {

const char* kKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

struct VaultDir {
  std::string dir = MakeTempDir();
  std::string config = dir + "/bulwark.yml";
  std::string top;  // top-level keys written before `vault:`
  // `vault:` with one local storage, then `extra` (plans, drills, recovery, indented 2).
  void Write(const std::string& extra) {
    std::ofstream f(config, std::ios::trunc);
    f << top << "vault:\n  catalog: " << dir << "/catalog.db\n  keys: [{value: " << kKey
      << "}]\n  storage:\n    disk: {path: " << dir << "/store}\n"
      << extra;
  }
  int Run(std::vector<std::string> args, std::string* out) {
    args.push_back("-c");
    args.push_back(config);
    return RunBulwark(args, out);
  }
  nlohmann::json Json(std::vector<std::string> args, int want_rc = 0) {
    std::string out;
    args.push_back("--json");
    EXPECT_EQ(Run(args, &out), want_rc) << out;
    size_t at = out.find_first_of("[{");
    auto j = nlohmann::json::parse(at == std::string::npos ? "" : out.substr(at), nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << out;
    return j;
  }
};

std::string PgSource(const PostgresServer& pg, const std::string& db) {
  return "{type: pg_dump, host: " + pg.dir() + ", port: " + std::to_string(pg.port()) +
         ", user: postgres, database: " + db + "}";
}

const char* kOrders =
    "SELECT count(*), sum(amount), md5(string_agg(note, ',' ORDER BY id)) FROM orders";

TEST(Restore, PgSafetyBackupRollBackDryRunAndScratchVerify) {
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.log();
  pg.Psql("CREATE DATABASE app");
  pg.Psql(
      "CREATE TABLE orders (id int PRIMARY KEY, note text, amount numeric);"
      "INSERT INTO orders SELECT g, md5(g::text), g * 1.5 FROM generate_series(1, 1000) g;",
      "app");
  std::string want = pg.Psql(kOrders, "app");
  VaultDir s;
  std::string plan = "  plans:\n    app:\n      source: " + PgSource(pg, "app") +
                     "\n      checks:\n        - {table: orders, min_rows: 1000}\n"
                     "        - {sql: \"SELECT sum(amount) = 750750 FROM orders\"}\n";
  s.Write(plan);
  std::string out;
  ASSERT_EQ(s.Run({"backup", "run", "app"}, &out), 0) << out;

  // verify restores a scratch copy and runs the checks there, then drops it.
  ASSERT_EQ(s.Run({"backup", "verify", "1"}, &out), 0) << out;
  EXPECT_EQ(pg.Psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'bulwark_verify%'"), "0");

  // The database drifts: rows lost, a table added.
  pg.Psql("DELETE FROM orders WHERE id > 990; CREATE TABLE marker (x int);", "app");

  // A dry run lists the steps and changes nothing.
  ASSERT_EQ(s.Run({"restore", "1", "--dry-run"}, &out), 0) << out;
  EXPECT_NE(out.find("dry run: restoring backup 1 (plan app) into postgres://postgres@"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("take a safety backup of"), std::string::npos) << out;
  EXPECT_NE(out.find("check: orders has at least 1000 rows"), std::string::npos) << out;
  EXPECT_NE(out.find("nothing was changed"), std::string::npos) << out;
  EXPECT_EQ(pg.Psql("SELECT count(*) FROM orders", "app"), "990");
  EXPECT_EQ(s.Json({"backup", "list"}).size(), 1u);

  // The restore: safety backup 2 of what was there, then the data of backup 1.
  nlohmann::json r = s.Json({"restore", "1"});
  EXPECT_EQ(r["status"], "ok") << r.dump(2);
  EXPECT_EQ(r["safety_backup_id"], 2) << r.dump(2);
  EXPECT_EQ(pg.Psql(kOrders, "app"), want);
  EXPECT_EQ(pg.Psql("SELECT count(*) FROM pg_tables WHERE tablename = 'marker'", "app"), "0");
  nlohmann::json list = s.Json({"backup", "list"});
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["trigger"], "safety");
  EXPECT_EQ(list[0]["status"], "ok");

  // A check that fails after the restore: the safety backup is put back.
  pg.Psql("UPDATE orders SET note = 'changed' WHERE id = 7; CREATE TABLE marker2 (x int);", "app");
  std::string drifted = pg.Psql(kOrders, "app");
  s.Write(plan + "        - {sql: \"SELECT count(*) FROM orders\", expect: \"5\", name: five}\n");
  EXPECT_EQ(s.Run({"restore", "1"}, &out), 1) << out;
  EXPECT_NE(out.find("FAILED, rolled back to the safety backup"), std::string::npos) << out;
  EXPECT_NE(out.find("check \"five\": expected 5, got 1000"), std::string::npos) << out;
  EXPECT_EQ(pg.Psql(kOrders, "app"), drifted);
  EXPECT_EQ(pg.Psql("SELECT count(*) FROM pg_tables WHERE tablename = 'marker2'", "app"), "1");
  // ... and verify's scratch restore fails on the same check, naming it.
  EXPECT_EQ(s.Run({"backup", "verify", "1"}, &out), 1) << out;
  EXPECT_NE(out.find("check \"five\""), std::string::npos) << out;

  // --target is a database name, never a connection string that would send the restore to
  // another server.
  EXPECT_EQ(s.Run({"restore", "1", "--target", "dbname=copy host=127.0.0.2"}, &out), 2) << out;
  EXPECT_NE(out.find("is not a database name"), std::string::npos) << out;
  // Into another database of the same server; it did not exist, so no safety backup.
  s.Write(plan);
  r = s.Json({"restore", "1", "--target", "copy"});
  EXPECT_EQ(r["status"], "ok") << r.dump(2);
  EXPECT_FALSE(r.contains("safety_backup_id"));
  EXPECT_EQ(pg.Psql(kOrders, "copy"), want);
  // Again, over a changed copy: its safety backup is of `copy`, and restoring that backup
  // without --target goes back to `copy`, not to the plan's database.
  pg.Psql("UPDATE orders SET note = 'copy' WHERE id = 1", "copy");
  r = s.Json({"restore", "1", "--target", "copy"});
  ASSERT_EQ(r["status"], "ok") << r.dump(2);
  int64_t copy_safety = r["safety_backup_id"];
  EXPECT_EQ(s.Json({"backup", "list"})[0]["database"], "copy");
  std::string app_now = pg.Psql(kOrders, "app");
  r = s.Json({"restore", std::to_string(copy_safety)});
  ASSERT_EQ(r["status"], "ok") << r.dump(2);
  EXPECT_EQ(pg.Psql("SELECT note FROM orders WHERE id = 1", "copy"), "copy");
  EXPECT_EQ(pg.Psql(kOrders, "app"), app_now);

  // A backup that does not verify is refused before anything is touched.
  std::string object = s.Json({"backup", "list", "--plan", "app"}).back()["object"];
  {
    std::fstream f(s.dir + "/store/" + object, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x5a');
  }
  EXPECT_EQ(s.Run({"restore", "1"}, &out), 1) << out;
  EXPECT_NE(out.find("did not verify"), std::string::npos) << out;
  EXPECT_EQ(pg.Psql("SELECT count(*) FROM pg_tables WHERE tablename = 'marker2'", "app"), "1");
  // The catalog keeps every restore.
  EXPECT_EQ(s.Run({"backup", "list"}, &out), 0);
}

// A restore applies a copy staged and verified before the target is touched, not the storage as
// it is later: an object truncated once the restore has begun (here by the safety backup's own
// source command) changes nothing, and the restore program never sees an unverified byte. An
// unencrypted plan, the weakest case: its bytes carry no authentication of their own, only the
// catalog's SHA-256.
TEST(Restore, AppliesTheVerifiedStagedCopyNotTheStorageAsItIsLater) {
  VaultDir s;
  const std::string data = s.dir + "/data", got = s.dir + "/got";
  std::string bytes(3 << 20, '\0');
  std::mt19937_64 rng(7);
  for (char& c : bytes) c = static_cast<char>(rng());  // incompressible
  WriteFile(data, bytes);
  s.Write("  plans:\n    blob:\n      encrypt: false\n      source: {type: command, command: "
          "[sh, -c, 'cat " + data + "; if [ -e " + s.dir + "/truncate ]; then truncate -s 4096 " +
          s.dir + "/store/$(cat " + s.dir + "/object); fi'], restore_command: [sh, -c, 'cat > " +
          got + "']}\n");
  std::string out;
  ASSERT_EQ(s.Run({"backup", "run", "blob"}, &out), 0) << out;
  std::string object = s.Json({"backup", "list"})[0]["object"];
  WriteFile(s.dir + "/object", object);
  WriteFile(s.dir + "/truncate", "");
  nlohmann::json r = s.Json({"restore", "1"});
  EXPECT_EQ(r["status"], "ok") << r.dump(2);
  EXPECT_GT(r.value("safety_backup_id", 0), 1) << r.dump(2);
  EXPECT_EQ(ReadFile(s.dir + "/store/" + object).size(), 4096u);  // cut while the restore ran
  EXPECT_TRUE(ReadFile(got) == bytes) << ReadFile(got).size() << " bytes restored";
  // The staging copy is gone; the next restore finds the object cut and touches nothing.
  std::string left;
  RunProgram({"sh", "-c", "ls -A " + s.dir + "/staging"}, {}, &left);
  EXPECT_EQ(left, "");
  ASSERT_EQ(unlink(got.c_str()), 0);
  unlink((s.dir + "/truncate").c_str());
  EXPECT_EQ(s.Run({"restore", "1"}, &out), 1) << out;
  EXPECT_NE(out.find("did not verify"), std::string::npos) << out;
  EXPECT_NE(access(got.c_str(), F_OK), 0) << "the restore program ran on an unverified object";
}

TEST(Restore, PgBasebackupIntoADataDirectoryThatStarts) {
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.log();
  pg.Psql(
      "CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, 'v' || g FROM "
      "generate_series(1, 5000) g;");
  std::string want = pg.Psql("SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM t");
  VaultDir s;
  s.Write("  plans:\n    cluster:\n      source: {type: pg_basebackup, host: " + pg.dir() +
          ", port: " + std::to_string(pg.port()) + ", user: postgres}\n");
  std::string out;
  ASSERT_EQ(s.Run({"backup", "run", "cluster"}, &out), 0) << out;
  // Without --target it refuses (a data directory is never restored over a running one).
  EXPECT_EQ(s.Run({"restore", "1"}, &out), 2) << out;
  EXPECT_NE(out.find("give --target DIR"), std::string::npos) << out;
  std::string target = s.dir + "/restored";
  nlohmann::json r = s.Json({"restore", "1", "--target", target});
  ASSERT_EQ(r["status"], "ok") << r.dump(2);
  // A non-empty directory is refused.
  EXPECT_EQ(s.Run({"restore", "1", "--target", target}, &out), 2) << out;
  EXPECT_NE(out.find("is not empty"), std::string::npos) << out;
  PostgresServer copy(PostgresServer::FromDataDir{target});
  ASSERT_TRUE(copy.ok()) << copy.log();
  EXPECT_EQ(copy.Psql("SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM t"), want);
}

TEST(Restore, PgAllDatabasesComeBackWithTheirContents) {
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.log();
  pg.Psql("CREATE DATABASE one");
  pg.Psql("CREATE DATABASE two");
  pg.Psql("CREATE TABLE t (v text); INSERT INTO t VALUES ('one');", "one");
  pg.Psql("CREATE TABLE t (v text); INSERT INTO t VALUES ('two');", "two");
  VaultDir s;
  s.Write("  plans:\n    server:\n      source: {type: pg_dump, all_databases: true, host: " +
          pg.dir() + ", port: " + std::to_string(pg.port()) + ", user: postgres}\n"
          "      checks: [{table: t, min_rows: 1, database: two}]\n");
  std::string out;
  ASSERT_EQ(s.Run({"backup", "run", "server"}, &out), 0) << out;
  EXPECT_EQ(s.Run({"restore", "1", "--target", "x"}, &out), 2) << out;  // the server, not a db
  pg.Psql("DROP DATABASE two");
  pg.Psql("UPDATE t SET v = 'changed'", "one");
  nlohmann::json r = s.Json({"restore", "1"});
  EXPECT_EQ(r["status"], "ok") << r.dump(2);
  EXPECT_EQ(r["safety_backup_id"], 2);
  EXPECT_EQ(pg.Psql("SELECT v FROM t", "one"), "one");
  EXPECT_EQ(pg.Psql("SELECT v FROM t", "two"), "two");
}

TEST(Restore, FilesInPlaceIntoADirectoryAndRolledBackByACheck) {
  VaultDir s;
  std::string data = s.dir + "/data";
  ASSERT_EQ(system(("mkdir -p " + data + "/certs && echo one > " + data +
                    "/app.conf && echo key > " + data + "/certs/a.pem")
                       .c_str()),
            0);
  std::string plan = "  plans:\n    conf:\n      source: {type: files, paths: [" + data + "]}\n";
  s.Write(plan);
  std::string out;
  ASSERT_EQ(s.Run({"backup", "run", "conf"}, &out), 0) << out;
  // Into a new directory: the tree under it, paths without the leading /.
  nlohmann::json r = s.Json({"restore", "1", "--target", s.dir + "/copy"});
  EXPECT_EQ(r["status"], "ok") << r.dump(2);
  EXPECT_EQ(ReadFile(s.dir + "/copy" + data + "/certs/a.pem"), "key\n");
  // In place, with a safety backup of the paths as they are.
  WriteFile(data + "/app.conf", "two\n");
  r = s.Json({"restore", "1"});
  EXPECT_EQ(r["status"], "ok") << r.dump(2);
  EXPECT_EQ(r["safety_backup_id"], 2);
  EXPECT_EQ(ReadFile(data + "/app.conf"), "one\n");
  // A failing check (any command) puts the files back as they were before the restore.
  WriteFile(data + "/app.conf", "three\n");
  s.Write(plan + "      checks:\n        - {command: [grep, -q, never, " + data +
          "/app.conf], name: grep}\n");
  EXPECT_EQ(s.Run({"restore", "1"}, &out), 1) << out;
  EXPECT_NE(out.find("rolled back"), std::string::npos) << out;
  EXPECT_EQ(ReadFile(data + "/app.conf"), "three\n");
}

TEST(Restore, MysqlDumpRoundTripAndTheAlkaidSysDrill) {
  MysqlServer my;
  ASSERT_TRUE(my.ok()) << my.log();
  my.Sql(
      "CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(50), "
      "price DECIMAL(10,2)); INSERT INTO shop.items VALUES (1,'a',1.50),(2,'b\\'s',2.25),"
      "(3,NULL,0);");
  const char* q =
      "SELECT GROUP_CONCAT(CONCAT_WS('|', id, IFNULL(name, 'NULL'), price) ORDER BY id) "
      "FROM shop.items";
  std::string want = my.Sql(q);
  ASSERT_FALSE(want.empty());
  VaultDir s;
  // A user with a password that needs quoting in MySQL's option file (it reaches the clients
  // through --defaults-extra-file, never MYSQL_PWD).
  my.Sql("CREATE USER 'shop'@'localhost' IDENTIFIED BY 'sh\\\\op\"1'; GRANT ALL ON *.* TO "
         "'shop'@'localhost'");
  std::string src = "{type: mysqldump, host: " + my.socket() +
                    ", user: shop, password: 'sh\\op\"1', database: shop}";
  s.Write(
      "  plans:\n    shop:\n      source: " + src +
      "\n      checks: [{table: items, min_rows: 3}]\n"
      "  drills:\n    alkaidsys:\n      plan: shop\n      database: drill_test\n      rows: 100\n"
      "      targets: {rto: 10m, rpo: 1h}\n");
  std::string out;
  ASSERT_EQ(s.Run({"backup", "run", "shop"}, &out), 0) << out;
  ASSERT_EQ(s.Run({"backup", "verify", "1"}, &out), 0) << out;  // scratch restore + check
  my.Sql("DELETE FROM shop.items WHERE id = 2");
  nlohmann::json r = s.Json({"restore", "1"});
  EXPECT_EQ(r["status"], "ok") << r.dump(2);
  EXPECT_EQ(my.Sql(q), want);

  // The AlkaidSYS drill: 100 rows, backed up, the database dropped, restored, every row checked.
  nlohmann::json d = s.Json({"drill", "alkaidsys"});
  EXPECT_EQ(d["status"], "passed") << d.dump(2);
  EXPECT_EQ(d["rows"], 100);
  EXPECT_GE(d["rto_ms"].get<int64_t>(), 0);
  EXPECT_GE(d["rpo_ms"].get<int64_t>(), 0);
  EXPECT_EQ(my.Sql("SELECT count(*) FROM information_schema.schemata WHERE schema_name = "
                   "'drill_test'"),
            "0");  // cleaned up
}

TEST(Drill, PgDrillMeasuresRtoAndRpoAndJudgesTargets) {
  PostgresServer pg;
  ASSERT_TRUE(pg.ok()) << pg.log();
  pg.Psql("CREATE DATABASE app");
  VaultDir s;
  s.Write("  plans:\n    app:\n      source: " + PgSource(pg, "app") +
          "\n      schedule: '0 2 * * *'\n"
          "  drills:\n    nightly:\n      plan: app\n      rows: 100\n"
          "      targets: {rto: 5m, rpo: 25h}\n"
          "    strict:\n      plan: app\n      targets: {rto: 1ms, rpo: 1h}\n");
  std::string out;
  ASSERT_EQ(s.Run({"drill", "nightly"}, &out), 0) << out;
  EXPECT_NE(out.find("drill nightly (plan app, postgres://postgres@"), std::string::npos) << out;
  EXPECT_NE(out.find("PASSED"), std::string::npos) << out;
  EXPECT_NE(out.find("seed 100 rows into bulwark_drill"), std::string::npos) << out;
  EXPECT_NE(out.find("break: drop database bulwark_drill"), std::string::npos) << out;
  EXPECT_NE(out.find("24h00m by the plan's schedule"), std::string::npos) << out;
  // The daily schedule cannot meet a 1 h RPO, and nothing restores in 1 ms.
  nlohmann::json d = s.Json({"drill", "strict"}, 1);
  EXPECT_EQ(d["status"], "failed");
  ASSERT_TRUE(d.contains("problems")) << d.dump(2);
  EXPECT_EQ(d["problems"].size(), 2u) << d.dump(2);
  EXPECT_EQ(d["schedule_rpo_ms"], 86400000);
  // The drill database and its backup are gone; the reports stay in the catalog.
  EXPECT_EQ(pg.Psql("SELECT count(*) FROM pg_database WHERE datname = 'bulwark_drill'"), "0");
  nlohmann::json list = s.Json({"backup", "list"});
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["trigger"], "drill");
  EXPECT_EQ(list[0]["status"], "deleted");

  // Under serve: the admin API queues a drill, lists its report, and the metrics say it passed.
  int admin = FreePort();
  std::string config = ReadFile(s.config);
  Bulwark bw("admin: {listen: 127.0.0.1:" + std::to_string(admin) + "}\n" + config);
  ASSERT_TRUE(bw.Ready(admin, admin)) << bw.log();
  EXPECT_EQ(HttpPost(admin, "/api/v1/drills/run?drill=nightly", "").status, 202);
  EXPECT_EQ(HttpPost(admin, "/api/v1/drills/run?drill=nope", "").status, 400);
  std::string m;
  for (int i = 0; i < 300; ++i) {
    m = HttpGet(admin, "/metrics").body;
    if (Metric(m, "bulwark_drill_last_passed{drill=\"nightly\"}") == "1") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Metric(m, "bulwark_drill_last_passed{drill=\"nightly\"}"), "1") << m << bw.log();
  EXPECT_EQ(Metric(m, "bulwark_drill_last_passed{drill=\"strict\"}"), "0");
  auto reports = nlohmann::json::parse(HttpGet(admin, "/api/v1/drills").body, nullptr, false);
  ASSERT_TRUE(reports.is_array());
  ASSERT_EQ(reports.size(), 3u);  // two from the CLI, one from serve, newest first
  EXPECT_EQ(reports[0]["name"], "nightly");
  EXPECT_EQ(reports[0]["status"], "passed");
  EXPECT_EQ(reports[0]["detail"]["rows"], 100);
}

TEST(RecoveryPlan, AFailingThirdStepRollsBackStepsTwoAndOne) {
  VaultDir s;
  std::string journal = s.dir + "/journal.txt";
  auto echo = [&](const std::string& word) {
    return "[sh, -c, 'echo " + word + " >> " + journal + "']";
  };
  // An upstream in a running bulwark: step 2 drains its server, its undo enables it again.
  int admin = FreePort(), listen = FreePort(), backend = FreePort();
  std::string serve_config = "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
                             "}\nlisteners:\n  - listen: 127.0.0.1:" + std::to_string(listen) +
                             "\n    routes:\n      - {name: app, prefix: /, upstream: app}\n"
                             "upstreams:\n  app:\n    servers: [127.0.0.1:" +
                             std::to_string(backend) + "]\n";
  Bulwark bw(serve_config);
  ASSERT_TRUE(bw.Ready(listen, admin)) << bw.log();
  // The CLI finds the running bulwark's admin token in the state directory they share.
  s.top = "state_dir: " + bw.state_dir() + "\n";
  std::string url = "http://127.0.0.1:" + std::to_string(admin);
  std::string server = "127.0.0.1:" + std::to_string(backend);
  s.Write(
      "  recovery:\n    primary-failure:\n      description: the IAM plan\n      steps:\n"
      "        - id: step-1\n          action: command\n          command: " +
      echo("one") + "\n          undo: {action: command, command: " + echo("undo-one") +
      "}\n"
      "        - id: step-2\n          depends: [step-1]\n          action: drain-upstream\n"
      "          url: " +
      url + "\n          upstream: app\n          server: " + server +
      "\n          undo: {action: undrain-upstream, url: " + url + ", upstream: app, server: '" +
      server +
      "'}\n"
      "        - id: step-3\n          depends: [step-2]\n          action: command\n"
      "          command: [sh, -c, 'echo three >> " +
      journal +
      "; exit 3']\n"
      "          retries: 2\n          retry_delay: 10ms\n"
      "        - id: step-4\n          depends: [step-3]\n          action: command\n"
      "          command: " +
      echo("four") +
      "\n"
      "      rollback:\n        - {id: notify, action: command, command: " +
      echo("rollback") + "}\n");
  std::string out;
  EXPECT_EQ(s.Run({"plan", "run", "primary-failure"}, &out), 1) << out;
  EXPECT_NE(out.find("FAILED, rolled back"), std::string::npos) << out;
  EXPECT_NE(out.find("step step-3 failed after 3 attempts: sh exited with status 3"),
            std::string::npos)
      << out;
  // Step 3 ran three times; step 4 never; undo of 2 (enable) then 1; then the rollback list.
  EXPECT_EQ(ReadFile(journal), "one\nthree\nthree\nthree\nundo-one\nrollback\n");
  auto ups = nlohmann::json::parse(HttpGet(admin, "/api/v1/upstreams").body, nullptr, false);
  EXPECT_NE(ups.dump().find("\"drained\":false"), std::string::npos) << ups.dump();
  // The journal, in order, from `plan status`.
  nlohmann::json st = s.Json({"plan", "status"});
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0]["status"], "rolled_back");
  std::vector<std::string> seen;
  for (const auto& e : st[0]["journal"]) {
    seen.push_back(e["phase"].get<std::string>() + ":" + e["id"].get<std::string>() + ":" +
                   (e["ok"].get<bool>() ? "ok" : "fail"));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"run:step-1:ok", "run:step-2:ok", "run:step-3:fail",
                                            "run:step-3:fail", "run:step-3:fail", "undo:step-2:ok",
                                            "undo:step-1:ok", "rollback:notify:ok"}))
      << st.dump(2);
  // While step 2 had run, the server was drained: the journal says it answered 200.
  EXPECT_EQ(st[0]["journal"][1]["output"], "HTTP 200");
}

TEST(RecoveryPlan, PromoteMakesTheStandbyThePrimaryAndChecksIt) {
  PostgresServer primary;
  ASSERT_TRUE(primary.ok()) << primary.log();
  PostgresServer standby(PostgresServer::ReplicaOf{&primary});
  ASSERT_TRUE(standby.ok()) << standby.log();
  ASSERT_EQ(standby.Psql("SELECT pg_is_in_recovery()"), "t");
  primary.Stop(SIGQUIT);  // the primary is lost
  VaultDir s;
  s.Write(
      "  recovery:\n    failover:\n      steps:\n"
      "        - {id: promote, action: promote, host: " +
      standby.dir() + ", port: " + std::to_string(standby.port()) +
      ", timeout: 90s}\n"
      "        - {id: writable, depends: [promote], action: command, command: [psql, -X, -At, "
      "-h, " +
      standby.dir() + ", -p, '" + std::to_string(standby.port()) +
      "', -U, postgres, -c, 'CREATE TABLE after_failover (x int)']}\n");
  std::string out;
  ASSERT_EQ(s.Run({"plan", "run", "failover"}, &out), 0) << out << standby.log();
  EXPECT_NE(out.find("failover: done"), std::string::npos) << out;
  EXPECT_EQ(standby.Psql("SELECT pg_is_in_recovery()"), "f");
  EXPECT_EQ(standby.Psql("SELECT count(*) FROM pg_tables WHERE tablename = 'after_failover'"), "1");
  // Promoting it again fails (it is no standby), and the journal says why.
  EXPECT_EQ(s.Run({"plan", "run", "failover"}, &out), 1) << out;
  EXPECT_NE(out.find("recovery is not in progress"), std::string::npos) << out;
}

TEST(RecoveryPlan, ConfigErrorsNameTheStep) {
  VaultDir s;
  s.Write(
      "  recovery:\n    p:\n      steps:\n        - {id: a, action: command, command: [true], "
      "depends: [b]}\n        - {id: b, action: command, command: [true], depends: [a]}\n"
      "    q:\n      steps:\n        - {id: x, action: restore, plan: nope}\n"
      "        - {id: y, action: http}\n");
  std::string out;
  EXPECT_EQ(RunBulwark({"check-config", s.config}, &out), 1);
  EXPECT_NE(out.find("vault.recovery.p.steps: the steps' dependencies form a cycle"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("step \"x\": no backup plan named \"nope\""), std::string::npos) << out;
  EXPECT_NE(out.find("action http needs url"), std::string::npos) << out;
}

}  // namespace
}  // namespace bulwark::testing
