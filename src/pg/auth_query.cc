// auth_query (PgBouncer's): a user the config does not list is looked up on the server
// through an internal pool user, and logs in with the verifier it returns.
#include <errno.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>

#include "core/log.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "pg/protocol.h"
#include "pg/proxy.h"
#include "pg/proxy_internal.h"

namespace bulwark::pg {

bool ProxyImpl::StartAuthQuery(ClientConn* c) {
  if (cfg->auth_user.empty()) return false;
  std::string error;
  PoolGroup* g = FindGroup(c->database, cfg->auth_user, &error);
  if (g == nullptr) return false;
  Pool* p = ChoosePool(g, false);
  if (p == nullptr) return false;
  auto owned = std::make_unique<AuthQuery>(this, c, c->user);
  AuthQuery* q = owned.get();
  auth_queries[q] = std::move(owned);
  c->auth_query = q;
  q->waiting = true;
  q->wanted = p;
  q->wait_start_ms = loop.now_ms();
  Acquire(p, q);
  return true;
}

void AuthQuery::Attach(ServerConn* s) {
  waiting = false;
  server = s;
  s->internal = this;
  // Extended protocol, so the user name travels as a parameter, never inside the SQL.
  std::string parse;
  parse.push_back('\0');
  parse += proxy->cfg->auth_query;
  parse.push_back('\0');
  AppendInt16(&parse, 0);
  AppendMessage(&s->out.buf, 'P', parse);
  std::string bind("\0\0", 2);
  AppendInt16(&bind, 0);
  AppendInt16(&bind, 1);
  AppendInt32(&bind, static_cast<int32_t>(user.size()));
  bind += user;
  AppendInt16(&bind, 0);
  AppendMessage(&s->out.buf, 'B', bind);
  std::string exec("\0", 1);
  AppendInt32(&exec, 0);
  AppendMessage(&s->out.buf, 'E', exec);
  AppendMessage(&s->out.buf, 'S', "");
  s->at_sync = false;
  s->Flush();
}

void AuthQuery::WaitTimedOut(const std::string& why) {
  LeaveQueue();
  waiting = false;
  if (error.empty()) error = why;
  Finish();
}

void AuthQuery::FromServer(char type, std::string_view, std::string_view body) {
  if (TrackServer(server, type, body, &done)) return;
  if (type == 'D' && !found) {
    auto row = ParseDataRow(body);
    // PgBouncer's contract: two columns, the name and the password (NULL: no password).
    if (row.ok() && row->size() >= 2 && (*row)[1]) {
      found = true;
      password = std::string(*(*row)[1]);
    }
  } else if (type == 'E' && error.empty()) {
    auto f = ParseErrorFields(body);
    error = f.ok() ? f->Get('M') : "malformed error";
  }
}

void AuthQuery::AfterServerBatch() {
  if (!done || server == nullptr) return;
  ServerConn* s = server;
  server = nullptr;
  s->internal = nullptr;
  proxy->Release(s);
  Finish();
}

void AuthQuery::ServerLost(std::string_view why) {
  server = nullptr;
  if (done) return;
  done = true;
  if (error.empty()) error = StrCat("server connection lost: ", why);
  Finish();
}

void AuthQuery::Finish() {
  done = true;
  proxy->AuthQueryDone(this);
}

void ProxyImpl::AuthQueryDone(AuthQuery* q) {
  ClientConn* c = q->client;
  if (c != nullptr && c->state == ClientConn::State::kAuthQuery) {
    c->auth_query = nullptr;
    if (!q->error.empty()) {
      LogWarn("pg: auth_query for user ", q->user, " failed: ", q->error);
      login_failures.Add(1);
      c->Fatal("28000", StrCat("bulwark could not look up user \"", q->user,
                               "\" (auth_query failed: ", q->error, ")"));
    } else {
      if (!q->found) {
        // Dropped on the server: nothing of it stays (its pools are not used for logins).
        learnt_users.erase(q->user);
        verifiers.erase(q->user);
      } else {
        UserConfig& u = learnt_users[q->user];
        u.name = q->user;
        u.password = q->password;
        auto v = ParseScramVerifier(q->password);
        if (v.ok()) {
          verifiers[q->user] = *v;
        } else {
          verifiers.erase(q->user);
        }
      }
      c->AuthQueryAnswered(q->found);
    }
  }
  AuthQuery* self = q;
  loop.Defer([this, self] { auth_queries.erase(self); });
}

}  // namespace bulwark::pg
