// The server side of the proxy: connecting and logging in to PostgreSQL (trust, cleartext, md5,
// SCRAM-SHA-256), and passing the server's messages to the attached client.
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "core/log.h"
#include "core/net.h"
#include "core/strings.h"
#include "pg/protocol.h"
#include "pg/proxy_internal.h"

namespace bulwark::pg {
namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kHighWater = 512 * 1024;
// Statements one server connection keeps prepared for clients (PgBouncer's
// max_prepared_statements is 200 by default since 1.22); the oldest goes first.
constexpr size_t kMaxPreparedPerServer = 1000;

bool IsMd5Hash(const std::string& s) { return s.size() == 35 && StartsWith(s, "md5"); }

}  // namespace

ServerConn::ServerConn(ProxyImpl* p, Pool* pl) : pool(pl), proxy(p), in(16 * 1024) {
  created_ms = last_used_ms = proxy->loop.now_ms();
  timer.set_callback([this] {
    if (state == State::kConnecting || state == State::kLogin) {
      LoginFailed(StrCat("server_connect_timeout: no login within ",
                         pool->group->cfg->server_connect_timeout_ms, " ms"));
    }
  });
}

ServerConn::~ServerConn() {
  if (fd >= 0) close(fd);
}

std::string ServerConn::FindParam(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return "";
}

void ServerConn::SetParam(std::string_view name, std::string_view value) {
  for (auto& [k, v] : params) {
    if (k == name) {
      v = std::string(value);
      return;
    }
  }
  params.emplace_back(std::string(name), std::string(value));
}

std::string ServerConn::StatementName(uint64_t h) {
  static const char kHex[] = "0123456789abcdef";
  std::string s = "bulwark_";
  for (int i = 60; i >= 0; i -= 4) s.push_back(kHex[(h >> i) & 15]);
  return s;
}

std::string ServerConn::SetsFor(const std::vector<std::pair<std::string, std::string>>& vars) {
  std::string sets;
  for (const auto& [k, v] : vars) {
    if (FindParam(k) == v) continue;
    sets += StrCat("SET ", k, " TO '");
    for (char c : v) {  // a string literal (standard_conforming_strings: quotes double)
      if (c == '\'') sets.push_back('\'');
      sets.push_back(c);
    }
    sets += "';";
    SetParam(k, v);
  }
  return sets;
}

void ServerConn::AddPrepared(uint64_t h) {
  if (!prepared.insert(h).second) return;
  prepared_order.push_back(h);
  while (prepared_order.size() > kMaxPreparedPerServer) {
    uint64_t old = prepared_order.front();
    prepared_order.pop_front();
    prepared.erase(old);
    // Closed with the next batch; its CloseComplete is dropped like any injected answer.
    std::string body = "S" + StatementName(old);
    body.push_back('\0');
    AppendMessage(&out.buf, 'C', body);
    if (client != nullptr) {
      Expect e;
      e.kind = Expect::kDrop;
      e.type = 'C';
      client->expects.push_back(std::move(e));
    }
  }
}

void ServerConn::ForgetPrepared(uint64_t h) {
  if (prepared.erase(h) == 0) return;
  for (auto it = prepared_order.begin(); it != prepared_order.end(); ++it) {
    if (*it == h) {
      prepared_order.erase(it);
      break;
    }
  }
}

void ServerConn::Connect() {
  const ServerConfig& sc = *pool->server;
  int s;
  if (!sc.unix_path.empty()) {
    s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, sc.unix_path.c_str(), sizeof(sa.sun_path) - 1);
    if (s >= 0 && connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0 &&
        errno != EINPROGRESS && errno != EAGAIN) {
      int e = errno;
      close(s);
      s = -1;
      errno = e;
    }
  } else if (!sc.resolved) {
    state = State::kConnecting;
    fd = -1;
    LoginFailed(StrCat("\"", sc.host, "\" does not resolve (yet)"));
    return;
  } else {
    auto r = ConnectTcp(sc.address);
    s = r.ok() ? *r : -1;
    if (s >= 0) SetNoDelay(s);
  }
  state = State::kConnecting;
  if (s < 0) {
    fd = -1;
    LoginFailed(StrCat("connect: ", std::strerror(errno)));
    return;
  }
  fd = s;
  auth_seen = false;
  scram.reset();
  tls.End();
  // libpq's sslmode as PgBouncer's server_tls_sslmode: everything but disable asks for TLS
  // first. Not over a Unix socket (PostgreSQL refuses it there).
  bool ask_tls = sc.unix_path.empty() && proxy->cfg->server_tls_client != nullptr &&
                 proxy->cfg->server_tls_sslmode != "disable";
  if (ask_tls) {
    static constexpr char kSslRequest[8] = {0, 0, 0, 8, 0x04, static_cast<char>(0xd2), 0x16, 0x2f};
    out.buf.append(kSslRequest, sizeof(kSslRequest));
    tls_phase = TlsPhase::kAwaitAnswer;
  } else {
    tls_phase = TlsPhase::kNone;
    SendStartup();
  }
  auto st = proxy->loop.Add(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, this);
  if (!st.ok()) {
    LoginFailed(std::string(st.message()));
    return;
  }
  proxy->loop.ArmTimer(&timer, pool->group->cfg->server_connect_timeout_ms);
}

void ServerConn::SendStartup() {
  std::vector<std::pair<std::string, std::string>> sp = {{"user", pool->group->server_user},
                                                         {"database", pool->dbname}};
  AppendStartup(&out.buf, sp);
}

bool ServerConn::NegotiateTls() {
  const std::string& mode = proxy->cfg->server_tls_sslmode;
  if (tls_phase == TlsPhase::kAwaitAnswer) {
    // Exactly one byte: anything the server sent after an 'S' must come through TLS, or a
    // man in the middle could inject it (CVE-2021-23222).
    char answer;
    ssize_t n = recv(fd, &answer, 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n <= 0) {
      LoginFailed("the server closed the connection after SSLRequest");
      return false;
    }
    if (answer == 'N') {
      if (mode == "require" || StartsWith(mode, "verify-")) {
        LoginFailed(StrCat("the server does not support TLS (server_tls_sslmode ", mode, ")"));
        return false;
      }
      tls_phase = TlsPhase::kNone;  // prefer: plain, as libpq
      SendStartup();
      return Flush();
    }
    if (answer != 'S') {
      LoginFailed(StrCat("unexpected answer to SSLRequest: 0x",
                         static_cast<unsigned>(static_cast<unsigned char>(answer))));
      return false;
    }
    const ServerConfig& sc = *pool->server;
    // verify-full checks the name the server is written with (its IP when written as one);
    // verify-ca only the chain. SNI carries the host name either way.
    std::string verify_name =
        mode == "verify-full" ? (sc.host.empty() ? sc.address.IpString() : sc.host) : "";
    if (!tls.StartClient(proxy->cfg->server_tls_client, fd, sc.host, verify_name,
                         sc.address.ToString())) {
      LoginFailed("TLS: out of memory");
      return false;
    }
    tls_phase = TlsPhase::kHandshake;
  }
  int r = tls.Handshake();
  if (r == 0) return true;
  if (r < 0) {
    LoginFailed(StrCat("TLS handshake: ", tls.failure_reason()));
    return false;
  }
  tls_phase = TlsPhase::kNone;
  SendStartup();
  return Flush();
}

void ServerConn::OnIo(uint32_t events) {
  if (state == State::kClosed) return;
  if (state == State::kConnecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      LoginFailed(StrCat("connect: ", std::strerror(err)));
      return;
    }
    state = State::kLogin;
    if (tls_phase == TlsPhase::kAwaitAnswer) {
      if (!Flush()) return;  // the SSLRequest
    }
  }
  if (tls_phase != TlsPhase::kNone) {
    if (!NegotiateTls() || tls_phase != TlsPhase::kNone) return;
  }
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) peer_hup = true;
  if (events & EPOLLOUT) {
    if (!Flush()) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ReadAndForward();
}

bool ServerConn::Flush() {
  while (out.pending() > 0) {
    ssize_t n = SendOn(tls, fd, out.buf.data() + out.off, out.pending());
    if (n > 0) {
      out.Consumed(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN)) return true;
    Close(StrCat("write error: ", std::strerror(errno)));
    return false;
  }
  // The server took everything: the client may send more.
  if (client != nullptr && client->reading_paused && !client->close_after_flush) {
    client->ResumeReading();
  }
  return state != State::kClosed;
}

void ServerConn::ResumeReading() {
  if (!reading_paused) return;
  reading_paused = false;
  ReadAndForward();
}

void ServerConn::ReadAndForward() {
  while (state != State::kClosed && !reading_paused) {
    char* p = in.Reserve(kReadChunk);
    size_t room = in.tail_room();
    ssize_t n = RecvOn(tls, fd, p, room);
    if (n == 0) {
      Close("the server closed the connection");
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      Close(StrCat("read error: ", std::strerror(errno)));
      return;
    }
    in.Commit(static_cast<size_t>(n));
    pool->stats->bytes_in.Add(static_cast<uint64_t>(n));
    ClientConn* c = client;
    InternalUser* sp = internal;
    // Whole messages (DataRow and CopyData may pass in parts).
    while (state != State::kClosed) {
      if (pass_left > 0) {
        size_t k = std::min(pass_left, in.size());
        if (k == 0) break;
        if (c != nullptr && !pass_drop) c->out.buf.append(in.read_ptr(), k);
        in.Consume(k);
        pass_left -= k;
        continue;
      }
      std::string_view v = in.view();
      if (v.size() < 5) break;
      char type = v[0];
      uint32_t len = ReadU32(v.data() + 1);
      if (len < 4 || len > static_cast<uint64_t>(pool->group->cfg->max_packet_size)) {
        Close(StrCat("protocol violation: message length ", len));
        return;
      }
      size_t total = 1 + size_t{len};
      if (v.size() < total) {
        if ((type == 'D' || type == 'd') && state == State::kActive && c != nullptr &&
            !c->expects.empty() && c->expects.front().kind == Expect::kForward &&
            c->expects.front().type != 'P') {
          c->DrainSynthetic();
          c->out.buf.append(v.data(), v.size());
          pass_left = total - v.size();
          pass_drop = false;
          in.Consume(v.size());
          continue;
        }
        in.Reserve(total - v.size());
        break;
      }
      std::string_view body = v.substr(5, len - 4);
      if (state == State::kActive && c != nullptr) {
        c->FromServer(type, v.substr(0, total), body);
      } else if (state == State::kActive && sp != nullptr) {
        sp->FromServer(type, v.substr(0, total), body);
      } else {
        OnLoginMessage(type, body);
      }
      in.Consume(total);
      if (c != client || sp != internal) break;  // released or lost
    }
    if (c != nullptr && c == client) {
      if (c->out.pending() > kHighWater) reading_paused = true;
      c->AfterServerBatch();
    } else if (sp != nullptr && sp == internal) {
      sp->AfterServerBatch();
    }
    // A short read drained the socket (the next byte brings a new edge), unless the server
    // hung up: then its EOF came in the same event and only the next recv() shows it. (Not
    // over TLS: a read returns one record and OpenSSL may hold more.)
    if (static_cast<size_t>(n) < room && !peer_hup && !tls.active()) return;
  }
}

void ServerConn::LoginFailed(std::string why) {
  if (state == State::kClosed) return;
  std::string msg = StrCat("server ", pool->server->Name(), ": ", why);
  pool->last_failure_ms = proxy->loop.now_ms();
  pool->last_error = msg;
  pool->stats->connect_failures.Add(1);
  LogWarn("pg: ", pool->group->database, "/", pool->group->user, ": login to ", msg);
  Close(msg);
}

void ServerConn::Close(std::string_view why) {
  if (state == State::kClosed) return;
  bool login = state == State::kConnecting || state == State::kLogin;
  LogDebug("pg: server connection to ", pool->server->Name(), " closed: ", why);
  State was = state;
  state = State::kClosed;
  proxy->loop.CancelTimer(&timer);
  if (fd >= 0) proxy->loop.Remove(fd);
  tls.End();  // close_notify before the descriptor goes
  proxy->ServerGone(this, was, login ? std::string(why) : "");
  if (client != nullptr) {
    ClientConn* c = client;
    client = nullptr;
    c->ServerLost(why);
  }
  if (internal != nullptr) {
    InternalUser* u = internal;
    internal = nullptr;
    u->ServerLost(why);
  }
}

// Messages before the server is ready, and anything an idle server says.
void ServerConn::OnLoginMessage(char type, std::string_view body) {
  if (state == State::kIdle || state == State::kReset) {
    if (type == 'S') {
      auto ps = ParseParameterStatus(body);
      if (ps.ok()) SetParam(ps->name, ps->value);
      return;
    }
    if (type == 'Z') {
      tx_status = body.empty() ? 'I' : body[0];
      if (state == State::kReset) {
        at_sync = true;
        proxy->ServerReady(this);
      }
      return;
    }
    if (type == 'E') {
      auto f = ParseErrorFields(body);
      std::string m = f.ok() ? f->Get('M') : "malformed error";
      if (f.ok() && (f->Get('S') == "FATAL" || f->Get('S') == "PANIC")) {
        Close(m);
      } else if (state == State::kReset) {
        LogWarn("pg: server_reset_query on ", pool->server->Name(), " failed: ", m);
      }
      return;
    }
    return;  // notices, notifications, the reset query's results
  }
  const PoolGroup& g = *pool->group;
  switch (type) {
    case 'R': {
      auto a = ParseAuthentication(body);
      if (!a.ok()) {
        LoginFailed(std::string(a.status().message()));
        return;
      }
      // Read at each login: an auth_query user's secret is refreshed in place.
      const std::string& pw = g.db->user.empty() ? g.user_cfg->password : g.db->password;
      bool plain = !pw.empty() && !IsMd5Hash(pw) && !StartsWith(pw, "SCRAM-SHA-256$");
      unsigned allowed = proxy->cfg->server_auth_methods;
      auto refuse = [&](std::string_view method, std::string_view name) {
        LoginFailed(StrCat("the server asks for ", method,
                           "; pg.server_auth_methods does not "
                           "allow ",
                           name, " (libpq's require_auth)"));
      };
      switch (a->code) {
        case 0:
          // AuthenticationOk. In the middle of SCRAM it would skip the server's proof that it
          // knows the password (an impostor's shortcut): refused, as libpq refuses it.
          if (scram) {
            LoginFailed(
                "the server ended SCRAM authentication early (AuthenticationOk before "
                "proving it knows the password)");
            return;
          }
          if (!auth_seen && !(allowed & kServerAuthNone)) {
            refuse("no authentication", "none");
            return;
          }
          return;
        case 3:
          auth_seen = true;
          if (!(allowed & kServerAuthPassword)) {
            refuse("a cleartext password", "password");
            return;
          }
          if (!plain) {
            LoginFailed(StrCat("the server asks for user \"", g.server_user,
                               "\"'s password in clear text; bulwark knows only a hash"));
            return;
          }
          {
            std::string b = pw;
            b.push_back('\0');
            AppendMessage(&out.buf, 'p', b);
          }
          break;
        case 5: {
          auth_seen = true;
          if (!(allowed & kServerAuthMd5)) {
            refuse("md5", "md5");
            return;
          }
          if (a->data.size() != 4 || (!plain && !IsMd5Hash(pw))) {
            LoginFailed(
                StrCat("the server asks for md5; bulwark has no password or md5 hash "
                       "for user \"",
                       g.server_user, "\""));
            return;
          }
          std::string b =
              plain ? Md5Response(g.server_user, pw, a->data) : Md5ResponseFromHash(pw, a->data);
          b.push_back('\0');
          AppendMessage(&out.buf, 'p', b);
          break;
        }
        case 10: {
          auth_seen = true;
          if (!(allowed & kServerAuthScram)) {
            refuse("SCRAM-SHA-256", "scram-sha-256");
            return;
          }
          bool offered = false;
          for (auto m : a->mechanisms) offered = offered || m == "SCRAM-SHA-256";
          if (!offered) {
            LoginFailed("the server offers no SASL mechanism bulwark knows (SCRAM-SHA-256)");
            return;
          }
          if (plain) {
            scram = std::make_unique<ScramClient>(pw, proxy->RandomBytes(18));
          } else if (!g.scram_client_key.empty()) {
            scram = std::make_unique<ScramClient>(ScramClient::FromKeys(
                g.scram_client_key, g.scram_server_key, proxy->RandomBytes(18)));
          } else {
            LoginFailed(StrCat("the server asks for SCRAM; bulwark has no password for user \"",
                               g.server_user,
                               "\" (a verifier works once a client has logged in with SCRAM)"));
            return;
          }
          std::string first = scram->ClientFirst();
          std::string b = "SCRAM-SHA-256";
          b.push_back('\0');
          AppendInt32(&b, static_cast<int32_t>(first.size()));
          b += first;
          AppendMessage(&out.buf, 'p', b);
          break;
        }
        case 11: {
          if (!scram) {
            LoginFailed("unexpected SASL continue");
            return;
          }
          auto fin = scram->ClientFinal(a->data);
          if (!fin.ok()) {
            LoginFailed(std::string(fin.status().message()));
            return;
          }
          AppendMessage(&out.buf, 'p', *fin);
          break;
        }
        case 12: {
          if (!scram) {
            LoginFailed("unexpected SASL final");
            return;
          }
          auto st = scram->Verify(a->data);
          scram.reset();
          if (!st.ok()) {
            LoginFailed(std::string(st.message()));
            return;
          }
          return;
        }
        default:
          LoginFailed(
              StrCat("the server asks for an authentication method bulwark does not "
                     "speak (code ",
                     a->code, ")"));
          return;
      }
      Flush();
      return;
    }
    case 'S': {
      auto ps = ParseParameterStatus(body);
      if (ps.ok()) SetParam(ps->name, ps->value);
      return;
    }
    case 'K': {
      auto k = ParseBackendKeyData(body);
      if (k.ok()) {
        backend_pid = k->pid;
        backend_key = k->key;
      }
      return;
    }
    case 'E': {
      auto f = ParseErrorFields(body);
      LoginFailed(f.ok() ? StrCat(f->Get('S'), ": ", f->Get('M')) : "malformed error");
      return;
    }
    case 'Z':
      if (state != State::kLogin) return;
      proxy->loop.CancelTimer(&timer);
      at_sync = true;
      tx_status = body.empty() ? 'I' : body[0];
      pool->last_failure_ms = -1;
      proxy->ServerReady(this);
      return;
    default:
      return;  // NoticeResponse and the like
  }
}

}  // namespace bulwark::pg
