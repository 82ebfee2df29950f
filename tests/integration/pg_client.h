// A blocking PostgreSQL protocol client for tests: logs in (md5, SCRAM) and runs simple
// queries, byte by byte as the protocol says, so tests see exactly what a server or bulwark sends.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pg/auth.h"
#include "pg/protocol.h"
#include "tests/integration/harness.h"

namespace bulwark::testing {

// A PostgreSQL server with the `app` role (password "secret", SCRAM) owning database `app`.
struct AppDatabase {
  PostgresServer pg;
  AppDatabase() {
    if (!pg.ok()) return;
    pg.Psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE app LOGIN PASSWORD 'secret'");
    pg.Psql("CREATE DATABASE app OWNER app");
  }
};

// A blocking protocol client: enough to log in and run simple queries.
class PgConn {
 public:
  explicit PgConn(int port) { fd_ = ConnectLoopback(port, 10000); }
  ~PgConn() {
    if (fd_ >= 0) close(fd_);
  }
  bool Send(const std::string& data) {
    return fd_ >= 0 && write(fd_, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  }
  // The next message, or type 0 on EOF/timeout/garbage.
  pg::Message Next() {
    for (;;) {
      auto m = pg::NextMessage(buf_, pg::kDefaultMaxMessage);
      if (!m.ok()) return {};
      if (m->has_value()) {
        last_.assign(buf_.data(), (*m)->size);
        buf_.erase(0, (*m)->size);
        pg::Message out = **m;
        out.body = std::string_view(last_).substr(5);
        return out;
      }
      char tmp[65536];
      ssize_t n = read(fd_, tmp, sizeof(tmp));
      if (n <= 0) return {};
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  // Logs in; returns "" or the reason it failed.
  std::string Login(const std::string& user, const std::string& password, const std::string& db,
                    std::vector<std::pair<std::string, std::string>> extra = {}) {
    std::string out;
    extra.insert(extra.begin(), {{"user", user}, {"database", db}});
    pg::AppendStartup(&out, extra);
    if (!Send(out)) return "send failed";
    std::unique_ptr<pg::ScramClient> scram;
    for (;;) {
      pg::Message m = Next();
      if (m.type == 0) return "connection closed";
      if (m.type == 'E')
        return pg::ParseErrorFields(m.body)->Get('C') + " " +
               pg::ParseErrorFields(m.body)->Get('M');
      if (m.type == 'Z') return "";
      if (m.type == 'K') {
        auto k = pg::ParseBackendKeyData(m.body);
        if (k.ok()) key_ = *k;
      }
      if (m.type != 'R') continue;  // ParameterStatus, BackendKeyData
      auto auth = pg::ParseAuthentication(m.body);
      if (!auth.ok()) return std::string(auth.status().message());
      std::string reply;
      switch (auth->code) {
        case 0:
          break;
        case 3: {
          std::string body = password;
          body.push_back('\0');
          pg::AppendMessage(&reply, 'p', body);
          used_ = "plain";
          break;
        }
        case 5: {
          std::string body = pg::Md5Response(user, password, auth->data);
          body.push_back('\0');
          pg::AppendMessage(&reply, 'p', body);
          used_ = "md5";
          break;
        }
        case 10: {
          if (at_sasl) at_sasl();
          scram = std::make_unique<pg::ScramClient>(password, "nonce-from-the-test-0123");
          std::string first = scram->ClientFirst();
          std::string body = "SCRAM-SHA-256";
          body.push_back('\0');
          pg::AppendInt32(&body, static_cast<int32_t>(first.size()));
          body += first;
          pg::AppendMessage(&reply, 'p', body);
          used_ = "scram";
          break;
        }
        case 11: {
          auto final_msg = scram->ClientFinal(auth->data);
          if (!final_msg.ok()) return std::string(final_msg.status().message());
          pg::AppendMessage(&reply, 'p', *final_msg);
          break;
        }
        case 12: {
          absl::Status st = scram->Verify(auth->data);
          if (!st.ok()) return std::string(st.message());
          verified_ = true;
          break;
        }
        default:
          return "unexpected authentication code " + std::to_string(auth->code);
      }
      if (!reply.empty() && !Send(reply)) return "send failed";
    }
  }

  // Runs a simple query; returns the first column of each row, '|'-joined, or "ERROR <code>".
  std::string Query(const std::string& sql) {
    if (!SendQuery(sql)) return "send failed";
    return Finish();
  }

  // Sends a query without waiting for its answer (for cancel tests).
  bool SendQuery(const std::string& sql) {
    std::string q;
    pg::AppendQuery(&q, sql);
    return Send(q);
  }
  // Reads until ReadyForQuery; returns like Query.
  std::string Finish() {
    std::string out;
    for (;;) {
      pg::Message m = Next();
      if (m.type == 0) return "closed";
      if (m.type == 'D') {
        auto row = pg::ParseDataRow(m.body);
        if (!out.empty()) out += "|";
        out += row.ok() && !row->empty() && (*row)[0] ? std::string(*(*row)[0]) : "NULL";
      }
      if (m.type == 'E') out = "ERROR " + pg::ParseErrorFields(m.body)->Get('C');
      if (m.type == 'Z') return out;
    }
  }
  // An ErrorResponse's SQLSTATE and message from the next messages, or "" at ReadyForQuery.
  std::string NextError() {
    for (;;) {
      pg::Message m = Next();
      if (m.type == 0) return "closed";
      if (m.type == 'E') {
        auto f = pg::ParseErrorFields(m.body);
        return f->Get('C') + " " + f->Get('M');
      }
      if (m.type == 'Z') return "";
    }
  }

  // Runs when the server has offered SASL and before the client answers: a test changes the
  // world in the middle of a login.
  std::function<void()> at_sasl;

  const std::string& used() const { return used_; }
  bool verified() const { return verified_; }
  const pg::BackendKeyData& key() const { return key_; }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  pg::BackendKeyData key_;
  std::string buf_, last_, used_;
  bool verified_ = false;
};

}  // namespace bulwark::testing
