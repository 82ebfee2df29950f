// The client side of the proxy: startup, TLS, authentication, and the forwarding of messages to
// whichever server the client is attached to, with prepared statements carried across servers in
// transaction mode.
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "core/log.h"
#include "core/strings.h"
#include "pg/protocol.h"
#include "pg/proxy_internal.h"

namespace bulwark::pg {
namespace {

constexpr size_t kReadChunk = 16 * 1024;
// Above this much data queued towards a peer, stop reading from the other side.
constexpr size_t kHighWater = 512 * 1024;
// Bytes a client may send ahead while it waits for a server.
constexpr size_t kWaitingInputLimit = 256 * 1024;

// The parameters a client may set and PostgreSQL reports (GUC_REPORT): PgBouncer's tracked set.
bool Tracked(std::string_view name) {
  return name == "client_encoding" || name == "DateStyle" || name == "TimeZone" ||
         name == "IntervalStyle" || name == "standard_conforming_strings" ||
         name == "application_name";
}

uint64_t Fnv1a(std::string_view a, std::string_view b) {
  uint64_t h = 1469598103934665603ull;
  for (char c : a) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  h = (h ^ 0xff) * 1099511628211ull;
  for (char c : b) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

Operation OperationOf(std::string_view tag) {
  auto starts = [&](std::string_view w) {
    return tag.size() >= w.size() && tag.compare(0, w.size(), w) == 0;
  };
  if (starts("SELECT")) return kOpSelect;
  if (starts("INSERT")) return kOpInsert;
  if (starts("UPDATE")) return kOpUpdate;
  if (starts("DELETE")) return kOpDelete;
  if (starts("COPY")) return kOpCopy;
  return kOpOther;
}

}  // namespace

ClientConn::ClientConn(ProxyImpl* p, int f, const SocketAddress& a)
    : proxy(p), fd(f), peer(a), in(8192) {
  connected_ms = proxy->loop.now_ms();
  timer.set_callback([this] {
    if (state == State::kStartup || state == State::kTls || state == State::kAuth ||
        state == State::kWelcome || state == State::kAuthQuery) {
      Fatal("08P01", "client_login_timeout: login took too long");
    }
  });
}

ClientConn::~ClientConn() {
  tls_stream.End();  // before the descriptor goes: close_notify must not reach a reused one
  if (fd >= 0) close(fd);
}

void ClientConn::OnIo(uint32_t events) {
  if (state == State::kClosed) return;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) peer_hup = true;
  bool readable = (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  bool writable = (events & EPOLLOUT) != 0;
  // TLS writes may need the socket readable first and reads writable (handshakes, key
  // updates): each goes on at the event it waited for, as in the gateway's connections.
  if (writable || (readable && tls_stream.write_wants_read())) {
    if (!Flush()) return;
  }
  if (readable || (writable && tls_stream.read_wants_write())) TryRecv();
}

void ClientConn::TryRecv() {
  while (state != State::kClosed && !reading_paused) {
    char* p = in.Reserve(kReadChunk);
    size_t room = in.tail_room();
    ssize_t n = RecvOn(tls_stream, fd, p, room);
    if (n > 0) {
      in.Commit(static_cast<size_t>(n));
      ProcessInput();
      // A short read drained the socket: the next byte brings a new edge (nginx's rule) — but
      // a hang-up that came with the data shows only at the next recv().
      if (!tls_stream.active() && static_cast<size_t>(n) < room && !peer_hup) return;
      continue;
    }
    if (n == 0) {
      Close("client closed the connection");
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (tls_stream.read_wants_write()) Flush();
      return;
    }
    if (errno == EPROTO && tls_stream.active()) {
      Close(StrCat("TLS error: ", tls_stream.failure_reason()));
    } else {
      Close(StrCat("read error: ", std::strerror(errno)));
    }
    return;
  }
}

void ClientConn::ResumeReading() {
  if (!reading_paused || state == State::kClosed) return;
  reading_paused = false;
  if (!in.empty()) ProcessInput();
  TryRecv();
}

bool ClientConn::Flush() {
  while (out.pending() > 0) {
    const char* p = out.buf.data() + out.off;
    ssize_t n = SendOn(tls_stream, fd, p, out.pending());
    if (n > 0) {
      out.Consumed(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    Close(StrCat("write error: ", std::strerror(errno)));
    return false;
  }
  if (close_after_flush) {
    Close("closed after error");
    return false;
  }
  // The client caught up: the server may send again.
  if (server != nullptr && server->reading_paused) {
    server->reading_paused = false;
    server->ReadAndForward();
  }
  return state != State::kClosed;
}

void ClientConn::Close(std::string_view why) {
  if (state == State::kClosed) return;
  LogDebug("pg: client ", peer.ToString(), " closed: ", why);
  state = State::kClosed;
  proxy->ClientGone(this);
}

void ClientConn::Fatal(std::string_view sqlstate, std::string_view message) {
  if (state == State::kClosed) return;
  if (sqlstate != "57P01") {
    LogInfo("pg: client ", peer.ToString(), user.empty() ? "" : " user ", user,
            database.empty() ? "" : " database ", database, ": ", message);
  }
  AppendError(&out.buf, "FATAL", sqlstate, message);
  close_after_flush = true;
  reading_paused = true;
  Flush();
}

void ClientConn::ProcessInput() {
  while (state != State::kClosed) {
    switch (state) {
      case State::kStartup: {
        auto m = NextStartupPacket(in.view());
        if (!m.ok()) {
          proxy->protocol_errors.Add(1);
          Fatal("08P01", ToStd(m.status().message()));
          return;
        }
        if (!m->has_value()) return;
        auto sp = ParseStartup((*m)->body);
        size_t size = (*m)->size;
        if (!sp.ok()) {
          std::string_view why = ToStd(sp.status().message());
          if (StartsWith(why, "unsupported frontend protocol")) {
            // PostgreSQL's answer to protocol 2 and 4+ (not a malformed packet).
            Fatal("0A000", why);
            return;
          }
          proxy->protocol_errors.Add(1);
          Fatal("08P01", why);
          return;
        }
        in.Consume(size);
        if (sp->code == kSslRequest || sp->code == kGssEncRequest) {
          bool tls = sp->code == kSslRequest && proxy->tls != nullptr && !tls_stream.active();
          // Bytes after the request would be read in the clear before the handshake
          // (CVE-2021-23222's lesson): refuse them.
          if (!in.empty()) {
            proxy->protocol_errors.Add(1);
            Fatal("08P01", "received unencrypted data after SSL request");
            return;
          }
          out.buf.push_back(tls ? 'S' : 'N');
          if (!Flush()) return;
          if (tls) {
            if (!tls_stream.Start(proxy->tls, fd)) {
              Close("TLS setup failed");
              return;
            }
          }
          continue;
        }
        if (sp->code == kCancelRequest) {
          proxy->Cancel(sp->cancel_pid, sp->cancel_key);
          Close("cancel request");
          return;
        }
        // 3.x asks for protocol extensions: like PostgreSQL, answer that 3.0 is what there is
        // and which _pq_ options were not understood (NegotiateProtocolVersion).
        std::vector<std::string> unknown;
        for (const auto& [k, v] : sp->params) {
          if (StartsWith(k, "_pq_.")) unknown.push_back(k);
        }
        if (sp->code != kProtocolV3 || !unknown.empty()) {
          std::string body;
          AppendInt32(&body, kProtocolV3);
          AppendInt32(&body, static_cast<int32_t>(unknown.size()));
          for (const auto& k : unknown) {
            body += k;
            body.push_back('\0');
          }
          AppendMessage(&out.buf, 'v', body);
        }
        startup_params.clear();
        for (auto& kv : sp->params) {
          if (!StartsWith(kv.first, "_pq_.")) startup_params.push_back(std::move(kv));
        }
        OnStartup();
        continue;
      }
      case State::kAuth: {
        auto m = NextMessage(in.view(), 64 * 1024);
        if (!m.ok()) {
          proxy->protocol_errors.Add(1);
          Fatal("08P01", ToStd(m.status().message()));
          return;
        }
        if (!m->has_value()) return;
        Message msg = **m;
        if (msg.type != 'p') {
          proxy->protocol_errors.Add(1);
          Fatal("08P01", StrCat("expected a password response, got message type '",
                                std::string(1, msg.type), "'"));
          return;
        }
        std::string body(msg.body);
        in.Consume(msg.size);
        OnAuthMessage(msg.type, body);
        continue;
      }
      case State::kIdle: {
        if (in.size() < 5) return;
        if (in.view()[0] == 'X') {
          Close("client terminated");
          return;
        }
        if (proxy->draining && group->mode == PoolMode::kTransaction) {
          Fatal("57P01", "bulwark is shutting down");
          return;
        }
        if (!RouteAndAcquire()) return;  // waiting for a server or for more bytes
        continue;                        // linked, or answered here
      }
      case State::kLinked:
        ForwardInput();
        return;
      case State::kWaiting:
      case State::kWelcome:
      case State::kScatter:
      case State::kAuthQuery:
      case State::kTls:
        if (in.size() > kWaitingInputLimit) reading_paused = true;
        return;
      case State::kClosed:
        return;
    }
  }
}

void ClientConn::OnStartup() {
  for (const auto& [k, v] : startup_params) {
    if (k == "user") {
      user = v;
    } else if (k == "database") {
      database = v;
    } else if (k == "replication") {
      Fatal("08P01", "bulwark does not proxy replication connections; connect to the server");
      return;
    } else if (k == "options") {
      if (!v.empty()) {
        // PgBouncer refuses these too: they would apply to whichever server is linked.
        Fatal("08P01", StrCat("unsupported startup parameter: options=", v,
                              " (set parameters with SET, or per database in bulwark's config)"));
        return;
      }
    }
  }
  if (user.empty()) {
    Fatal("28000", "no PostgreSQL user name specified in startup packet");
    return;
  }
  if (database.empty()) database = user;
  if (proxy->tls != nullptr && !tls_stream.active() &&
      proxy->cfg->client_tls_sslmode == "require") {
    Fatal("28000", "SSL required");
    return;
  }
  // A user not in the config is asked of the server at every login (PgBouncer's auth_query),
  // so a password changed there counts at once. When the query cannot run (no server to ask),
  // the login fails, as in PgBouncer: a password remembered from an earlier login may belong
  // to a role that has since been dropped.
  if (proxy->cfg->FindUser(user) == nullptr && proxy->cfg->databases.count(database) &&
      !proxy->cfg->auth_user.empty()) {
    if (!proxy->StartAuthQuery(this)) {
      proxy->login_failures.Add(1);
      Fatal("08006", StrCat("bulwark could not look up user \"", user,
                            "\": no server is available for auth_query"));
      return;
    }
    state = State::kAuthQuery;
    return;
  }
  std::string error;
  group = proxy->FindGroup(database, user, &error);
  if (group == nullptr) {
    proxy->login_failures.Add(1);
    Fatal(error.rfind("no such database", 0) == 0 ? "3D000" : "28P01", error);
    return;
  }
  group->clients++;
  group->stats->clients.fetch_add(1, std::memory_order_relaxed);
  StartAuth();
}

void ClientConn::StartAuth() {
  const PgConfig& cfg = *group->cfg;
  state = State::kAuth;
  if (cfg.auth_type == AuthType::kTrust) {
    AuthOk();
    return;
  }
  const std::string& secret = group->user_cfg->password;
  if (secret.empty()) {
    proxy->login_failures.Add(1);
    Fatal("28P01", StrCat("password authentication failed for user \"", user, "\""));
    return;
  }
  bool md5_secret = StartsWith(secret, "md5") && secret.size() == 35;
  auto vit = proxy->verifiers.find(user);
  verifier.reset();
  if (vit != proxy->verifiers.end()) verifier = vit->second;
  AuthType type = cfg.auth_type;
  // What the stored secret allows decides, as in PgBouncer: an md5 hash cannot do SCRAM, and
  // a SCRAM verifier cannot do md5.
  if (type == AuthType::kScram && md5_secret) type = AuthType::kMd5;
  if (type == AuthType::kMd5 && verifier.has_value() && StartsWith(secret, "SCRAM-SHA-256$")) {
    type = AuthType::kScram;
  }
  if (type == AuthType::kScram) {
    std::string data = "SCRAM-SHA-256";
    data.push_back('\0');
    data.push_back('\0');
    AppendAuthentication(&out.buf, 10, data);
    auth_step = 1;
  } else if (type == AuthType::kMd5) {
    md5_salt = proxy->RandomBytes(4);
    AppendAuthentication(&out.buf, 5, md5_salt);
    auth_step = 10;
  } else {
    AppendAuthentication(&out.buf, 3);
    auth_step = 20;
  }
  Flush();
}

void ClientConn::OnAuthMessage(char, std::string_view body) {
  auto fail = [this] {
    proxy->login_failures.Add(1);
    Fatal("28P01", StrCat("password authentication failed for user \"", user, "\""));
  };
  const std::string& secret = group->user_cfg->password;
  if (auth_step == 1) {  // SASLInitialResponse: mechanism, length, client-first
    size_t z = body.find('\0');
    if (z == std::string_view::npos || body.substr(0, z) != "SCRAM-SHA-256" ||
        body.size() < z + 5) {
      proxy->protocol_errors.Add(1);
      Fatal("08P01", "malformed SASLInitialResponse (bulwark offers SCRAM-SHA-256)");
      return;
    }
    std::string_view data = body.substr(z + 5);
    if (!verifier.has_value()) {
      fail();
      return;
    }
    scram_server = std::make_unique<ScramServer>(*verifier);
    auto first = scram_server->ServerFirst(data, proxy->RandomBytes(18));
    if (!first.ok()) {
      proxy->protocol_errors.Add(1);
      Fatal("08P01", ToStd(first.status().message()));
      return;
    }
    AppendAuthentication(&out.buf, 11, *first);
    auth_step = 2;
    Flush();
    return;
  }
  if (auth_step == 2) {
    auto final_msg = scram_server->ServerFinal(body);
    if (!final_msg.ok()) {
      fail();
      return;
    }
    AppendAuthentication(&out.buf, 12, *final_msg);
    // Kept for logging in to servers that hold the same verifier (auth_query users).
    group->scram_client_key = scram_server->client_key();
    group->scram_server_key = scram_server->verifier().server_key;
    scram_server.reset();
    AuthOk();
    return;
  }
  std::string_view given = body;
  if (!given.empty() && given.back() == '\0') given.remove_suffix(1);
  bool ok = false;
  if (auth_step == 10) {  // md5
    if (StartsWith(secret, "md5") && secret.size() == 35) {
      ok = given == Md5ResponseFromHash(secret, md5_salt);
    } else {
      ok = given == Md5Response(user, secret, md5_salt);
    }
  } else {  // cleartext
    if (StartsWith(secret, "md5") && secret.size() == 35) {
      ok = StrCat("md5", Md5Response(user, given, "").substr(3)) == secret ||
           Md5ResponseFromHash(secret, "x") == Md5Response(user, given, "x");
    } else if (StartsWith(secret, "SCRAM-SHA-256$") && verifier.has_value()) {
      ScramVerifier v = MakeScramVerifier(given, verifier->salt, verifier->iterations);
      ok = v.stored_key == verifier->stored_key;
    } else {
      ok = given == secret;
    }
  }
  if (!ok) {
    fail();
    return;
  }
  AuthOk();
}

void ClientConn::AuthOk() {
  AppendAuthentication(&out.buf, 0);
  if (group->welcome_ready) {
    WelcomeReady();
    return;
  }
  state = State::kWelcome;
  group->login_waiters.push_back(this);
  Flush();
  proxy->MaybeConnect(proxy->ChoosePool(group, false));
}

void ClientConn::WelcomeReady() {
  // The pool's parameters, with the client's own startup values where it gave them.
  vars.clear();
  for (const auto& [k, v] : group->welcome) {
    std::string value = v;
    for (const auto& [sk, sv] : startup_params) {
      if (EqualsIgnoreCase(sk, k)) value = sv;
    }
    AppendParameterStatus(&out.buf, k, value);
    if (Tracked(k)) vars.emplace_back(k, value);
  }
  for (const auto& [sk, sv] : startup_params) {
    if (sk == "user" || sk == "database" || sk == "options") continue;
    bool known = false;
    for (const auto& [k, v] : vars) known = known || EqualsIgnoreCase(k, sk);
    if (!known) vars.emplace_back(sk, sv);  // e.g. extra_float_digits: set on each server
  }
  do {
    key_pid = static_cast<int32_t>(proxy->Random() & 0x7fffffff);
    key_secret = static_cast<int32_t>(proxy->Random());
  } while (key_pid == 0 ||
           proxy->by_cancel_key.count((uint64_t(uint32_t(key_pid)) << 32) | uint32_t(key_secret)));
  proxy->by_cancel_key[(uint64_t(uint32_t(key_pid)) << 32) | uint32_t(key_secret)] = this;
  AppendBackendKeyData(&out.buf, key_pid, key_secret);
  AppendReadyForQuery(&out.buf, 'I');
  state = State::kIdle;
  idle_since_ms = proxy->loop.now_ms();
  proxy->loop.CancelTimer(&timer);
  if (!Flush()) return;
  if (!in.empty()) ProcessInput();
}

void ClientConn::WaitTimedOut(const std::string& why) { Fatal("08P01", why); }

void ClientConn::AuthQueryAnswered(bool found) {
  std::string error;
  group = found ? proxy->FindGroup(database, user, &error) : nullptr;
  if (group == nullptr) {
    proxy->login_failures.Add(1);
    Fatal("28P01", StrCat("password authentication failed for user \"", user, "\""));
    return;
  }
  group->clients++;
  group->stats->clients.fetch_add(1, std::memory_order_relaxed);
  StartAuth();
  if (state != State::kClosed && !in.empty()) ProcessInput();
}

void ClientConn::ScatterDone() {
  job = nullptr;
  state = State::kIdle;
  idle_since_ms = proxy->loop.now_ms();
  group->stats->transactions.Add(1);
  if (!Flush()) return;
  if (reading_paused && !close_after_flush) {
    reading_paused = false;
    TryRecv();
  }
  if (state == State::kIdle && !in.empty()) ProcessInput();
}

void ClientConn::WelcomeFailed(const std::string& error) {
  proxy->login_failures.Add(1);
  Fatal("08006", error);
}

bool ClientConn::ParseWrites(std::string_view query) {
  // The router reads a batch's Parse before the server is chosen and again when it forwards
  // it: the second time is answered from here, so one statement costs one parse.
  if (parse_memo_valid_ && parse_memo_functions_ == group->functions.get() &&
      parse_memo_query_ == query) {
    return parse_memo_write_;
  }
  bool write = !proxy->IsRead(query, group);
  parse_memo_valid_ = query.size() <= proxy->classify_options.max_bytes;
  if (parse_memo_valid_) {
    parse_memo_functions_ = group->functions.get();
    parse_memo_query_.assign(query.data(), query.size());
    parse_memo_write_ = write;
  }
  return write;
}

bool ClientConn::RouteAndAcquire() {
  const PgConfig& cfg = *group->cfg;
  // Only transaction pooling can split: a session keeps the server its first query chose.
  bool split = cfg.routing.read_write_split && group->has_replicas &&
               group->mode == PoolMode::kTransaction &&
               !(cfg.routing.read_your_writes_ms > 0 && last_write_ms >= 0 &&
                 proxy->loop.now_ms() - last_write_ms < cfg.routing.read_your_writes_ms);
  bool sharded = group->sharding != nullptr;
  bool read = false;
  shard_next = -1;
  rewrite.clear();
  rewrite_skip = 0;
  if (split || sharded) {
    // The first request decides: a simple Query, or an extended-protocol batch up to its
    // Sync (or Flush). A read only when every statement in it is one.
    std::string_view v = in.view();
    read = true;
    size_t at = 0;
    bool complete = false;
    // Statement names the batch's Parse messages give (views into `in`; no allocation).
    std::array<std::string_view, 8> batch_parses;
    size_t n_parses = 0;
    auto parsed_here = [&](std::string_view name) {
      for (size_t i = 0; i < n_parses; ++i) {
        if (batch_parses[i] == name) return true;
      }
      return false;
    };
    while (at + 5 <= v.size()) {
      char type = v[at];
      uint32_t len = ReadU32(v.data() + at + 1);
      if (len < 4 || len > static_cast<uint64_t>(cfg.max_packet_size)) {
        proxy->protocol_errors.Add(1);
        Fatal("08P01", StrCat("invalid message length ", len));
        return false;
      }
      if (v.size() - at < 1 + size_t{len}) {
        in.Reserve(1 + size_t{len} - (v.size() - at));
        break;
      }
      std::string_view body = v.substr(at + 5, len - 4);
      at += 1 + size_t{len};
      if (type == 'Q') {
        auto q = ParseQuery(body);
        read = read && q.ok() && proxy->IsRead(*q, group);
        complete = true;
        break;
      }
      if (type == 'P') {
        auto p = ParseParse(body);
        read = read && p.ok() && !ParseWrites(p->query);
        if (p.ok() && !p->statement.empty()) {
          if (n_parses == batch_parses.size()) {
            read = false;  // more named statements than we track: the primary
          } else {
            batch_parses[n_parses++] = p->statement;
          }
        }
      } else if (type == 'B') {
        auto b = ParseBind(body);
        // A statement parsed earlier in this batch was judged above; one prepared before, by
        // its remembered verdict.
        if (b.ok() && !b->statement.empty() && !parsed_here(b->statement)) {
          auto it = prepared.find(std::string(b->statement));
          read = read && it != prepared.end() && !it->second.write;
        }
      } else if (type == 'S' || type == 'H') {
        complete = true;
        break;
      } else if (type != 'D' && type != 'E' && type != 'C') {
        read = false;  // function calls, COPY data: the primary
        complete = true;
        break;
      }
    }
    if (!complete) return false;  // wait for the rest of the request
    if (sharded) {
      bool answered = false;
      if (!RouteShardRequest(&answered)) return answered;
    }
    read = read && split;
  }
  read_next = read;
  Pool* p = proxy->ChoosePool(group, read, shard_next);
  if (p == nullptr) {
    Fatal("08006", StrCat("no server of database \"", database, "\" can take queries"));
    return false;
  }
  wanted = p;
  state = State::kWaiting;
  wait_start_ms = proxy->loop.now_ms();
  group->stats->clients_waiting.fetch_add(1, std::memory_order_relaxed);
  proxy->Acquire(p, this);
  return state == State::kLinked;
}

namespace {

std::string_view SqlStateFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kFailedPrecondition:
      return "0A000";  // feature_not_supported: the query cannot be routed as written
    case absl::StatusCode::kOutOfRange:
      return "22008";  // datetime_field_overflow: outside the monthly tables' range
    case absl::StatusCode::kInvalidArgument:
      return "22023";  // invalid_parameter_value
    default:
      return "XX000";
  }
}

// A Bind's parameters as text: text-format values as they are, binary int2/int4/int8 decoded.
std::vector<std::optional<std::string>> BindParams(const Bind& b) {
  std::vector<std::optional<std::string>> out;
  for (size_t i = 0; i < b.params.size(); ++i) {
    int16_t fmt = b.param_formats.empty()       ? 0
                  : b.param_formats.size() == 1 ? b.param_formats[0]
                  : i < b.param_formats.size()  ? b.param_formats[i]
                                                : 0;
    const auto& v = b.params[i];
    if (!v) {
      out.push_back(std::nullopt);
    } else if (fmt == 0) {
      out.push_back(std::string(*v));
    } else if (v->size() == 2 || v->size() == 4 || v->size() == 8) {
      int64_t n = static_cast<int8_t>((*v)[0]);
      for (size_t k = 1; k < v->size(); ++k) n = (n << 8) | static_cast<unsigned char>((*v)[k]);
      out.push_back(std::to_string(n));
    } else {
      out.push_back(std::nullopt);
    }
  }
  return out;
}

}  // namespace

bool ClientConn::RouteShardRequest(bool* answered) {
  const PgConfig& cfg = *group->cfg;
  std::string_view v = in.view();
  char type = v[0];
  uint32_t len = ReadU32(v.data() + 1);
  std::string_view body = v.substr(5, len - 4);
  auto reject = [&](const absl::Status& st) {
    RejectRequest(SqlStateFor(st), ToStd(st.message()));
    *answered = true;
    return false;
  };
  if (type == 'Q') {
    auto q = ParseQuery(body);
    if (!q.ok()) return reject(q.status());
    Classification c = proxy->Classify(*q, group->shard_options, group);
    if (c.set_tenant) {
      tenant = *c.set_tenant;
      if (c.statements == 1) {
        // The session's tenant is bulwark's to keep: answered here, as PostgreSQL would.
        in.Consume(1 + size_t{len});
        AppendMessage(&out.buf, 'C', std::string_view("SET\0", 4));
        AppendReadyForQuery(&out.buf, 'I');
        Flush();
        *answered = true;
        return false;
      }
    }
    auto r = RouteShard(*group->sharding, c, *q, {}, tenant, cfg.routing.allow_scatter);
    if (!r.ok()) return reject(r.status());
    if (r->scatter) {
      auto plan = PlanScatter(*q);
      if (!plan.ok()) return reject(plan.status());
      bool read = cfg.routing.read_write_split && group->has_replicas && proxy->IsRead(*q, group);
      in.Consume(1 + size_t{len});
      group->stats->queries.Add(1);
      proxy->StartScatter(this, std::move(*plan), read);
      *answered = true;
      return false;
    }
    shard_next = r->shard;
    if (!r->sql.empty()) {
      AppendQuery(&rewrite, r->sql);
      rewrite_skip = 1 + size_t{len};
    }
    return true;
  }
  // Extended protocol: the statement's text, from this Parse or the prepared statement a Bind
  // names, and the values of the batch's first Bind.
  std::string query;
  bool named = false;
  std::optional<Bind> bind;
  std::string bind_stmt;
  size_t at = 0;
  bool have_parse = false;
  std::string parse_name;
  while (at + 5 <= v.size()) {
    char t = v[at];
    uint32_t l = ReadU32(v.data() + at + 1);
    std::string_view b = v.substr(at + 5, l - 4);
    at += 1 + size_t{l};
    if (t == 'P' && !have_parse) {
      auto p = ParseParse(b);
      if (!p.ok()) return reject(p.status());
      query = std::string(p->query);
      parse_name = std::string(p->statement);
      named = !parse_name.empty();
      have_parse = true;
    } else if (t == 'B' && !bind) {
      auto bb = ParseBind(b);
      if (!bb.ok()) return reject(bb.status());
      bind = *bb;
      bind_stmt = std::string(bb->statement);
      if (!have_parse) {
        auto it = prepared.find(bind_stmt);
        if (it == prepared.end()) break;  // the server will say it does not exist
        query = it->second.query;
        named = true;
      }
    } else if (t == 'S' || t == 'H') {
      break;
    }
  }
  Classification c = proxy->Classify(query, group->shard_options, group);
  if (!bind) {
    // Only preparing (Parse, Describe, Sync): any shard can, and the Bind that executes it is
    // routed by its values (the statement is prepared again there if needed) — unless its
    // text names a table split by month, which a named statement cannot follow.
    bool monthly = false;
    for (const TableRef& t : c.table_refs) {
      auto it = group->sharding->tables.find(t.name);
      monthly = monthly || (it != group->sharding->tables.end() && it->second.monthly);
    }
    if (monthly && named) {
      return reject(absl::FailedPreconditionError(
          "tables split by month need the unnamed statement (or a simple query): a named "
          "prepared statement would keep one month's table"));
    }
    shard_next = 0;
    return true;
  }
  std::vector<std::optional<std::string>> params;
  if (bind && (!have_parse || bind_stmt == parse_name)) params = BindParams(*bind);
  auto r = RouteShard(*group->sharding, c, query, params, tenant, cfg.routing.allow_scatter);
  if (!r.ok()) return reject(r.status());
  if (r->scatter) {
    return reject(absl::FailedPreconditionError(
        "no shard key: a query for every shard must be a simple query (the extended protocol "
        "needs a tenant)"));
  }
  shard_next = r->shard;
  if (!r->sql.empty()) {
    if (named || type != 'P') {
      return reject(absl::FailedPreconditionError(
          "tables split by month need the unnamed statement (or a simple query): a named "
          "prepared statement would keep one month's table"));
    }
    auto p = ParseParse(body);
    std::string nb;
    nb.push_back('\0');  // the unnamed statement
    nb += r->sql;
    nb.push_back('\0');
    AppendInt16(&nb, static_cast<int16_t>(p->param_types.size()));
    for (uint32_t t : p->param_types) AppendInt32(&nb, static_cast<int32_t>(t));
    AppendMessage(&rewrite, 'P', nb);
    rewrite_skip = 1 + size_t{len};
  }
  return true;
}

void ClientConn::RejectRequest(std::string_view sqlstate, std::string_view message) {
  // Drop the request: one Query, or the extended messages through the first Sync.
  bool simple = !in.empty() && in.view()[0] == 'Q';
  while (in.size() >= 5) {
    std::string_view v = in.view();
    uint32_t len = ReadU32(v.data() + 1);
    if (v.size() < 1 + size_t{len}) break;
    char t = v[0];
    in.Consume(1 + size_t{len});
    if (simple || t == 'S') break;
  }
  AppendError(&out.buf, "ERROR", sqlstate, message);
  AppendReadyForQuery(&out.buf, 'I');
  Flush();
}

void ClientConn::Attach(ServerConn* s) {
  int64_t now = proxy->loop.now_ms();
  if (state == State::kWaiting) {
    group->stats->clients_waiting.fetch_sub(1, std::memory_order_relaxed);
    group->stats->wait_us.Add(static_cast<uint64_t>(now - wait_start_ms) * 1000);
  }
  if (read_next) {
    group->stats->routed_replica.Add(1);
  } else {
    group->stats->routed_primary.Add(1);
  }
  server = s;
  s->client = this;
  state = State::kLinked;
  wanted = nullptr;
  // Bring the server's parameters to the client's values (PgBouncer's varcache).
  std::string sets = s->SetsFor(vars);
  if (!sets.empty()) {
    AppendQuery(&s->out.buf, sets);
    Expect e;
    e.kind = Expect::kDrop;
    e.type = 'Q';
    expects.push_back(std::move(e));
    s->at_sync = false;
  }
  ForwardInput();
}

void ClientConn::ForwardInput() {
  ServerConn* s = server;
  const bool tx_mode = group->mode == PoolMode::kTransaction;
  const size_t max_packet = static_cast<size_t>(group->cfg->max_packet_size);
  size_t forwarded = 0;
  if (!rewrite.empty()) {  // the router's version of the first message
    if (expects.empty()) query_start_ms = proxy->loop.now_ms();
    Expect e;
    e.type = rewrite[0];
    expects.push_back(std::move(e));
    if (rewrite[0] == 'Q') group->stats->queries.Add(1);
    s->at_sync = false;
    s->out.buf += rewrite;
    forwarded += rewrite.size();
    in.Consume(rewrite_skip);
    rewrite.clear();
    rewrite_skip = 0;
  }
  while (state == State::kLinked && server == s) {
    if (pass_left > 0) {  // the rest of a large message (COPY data)
      size_t n = std::min(pass_left, in.size());
      if (n == 0) break;
      s->out.buf.append(in.read_ptr(), n);
      in.Consume(n);
      pass_left -= n;
      forwarded += n;
      continue;
    }
    std::string_view v = in.view();
    if (v.size() < 5) break;
    char type = v[0];
    uint32_t len = ReadU32(v.data() + 1);
    if (len < 4 || len > max_packet) {
      proxy->protocol_errors.Add(1);
      Fatal("08P01", len < 4 ? StrCat("invalid message length ", len)
                             : StrCat("message of ", len, " bytes is over max_packet_size"));
      return;
    }
    size_t total = 1 + size_t{len};
    bool whole = v.size() >= total;
    switch (type) {
      case 'Q':
      case 'S':
      case 'F': {
        if (!whole && type != 'Q') {
          in.Reserve(total - v.size());
          goto out;
        }
        if (expects.empty()) query_start_ms = proxy->loop.now_ms();
        Expect e;
        e.type = type;
        expects.push_back(std::move(e));
        s->at_sync = false;
        if (type == 'Q') group->stats->queries.Add(1);
        break;
      }
      case 'P':
      case 'B':
      case 'D':
      case 'C':
      case 'E': {
        if (!whole) {
          in.Reserve(total - v.size());
          goto out;
        }
        if (expects.empty()) query_start_ms = proxy->loop.now_ms();
        s->at_sync = false;
        if (tx_mode && type != 'E') {
          if (HandleExtended(type, v.substr(0, total), v.substr(5, len - 4))) {
            in.Consume(total);
            continue;
          }
          if (state != State::kLinked) return;
        }
        Expect e;
        e.type = type;
        expects.push_back(std::move(e));
        if (type == 'E') group->stats->queries.Add(1);
        break;
      }
      case 'H':
        break;
      case 'd':
      case 'c':
      case 'f':
        s->at_sync = false;
        break;
      case 'X':
        in.Consume(total);
        Close("client terminated");
        return;
      default:
        proxy->protocol_errors.Add(1);
        Fatal("08P01", StrCat("invalid frontend message type ", static_cast<int>(type)));
        return;
    }
    if (whole) {
      s->out.buf.append(v.data(), total);
      in.Consume(total);
      forwarded += total;
    } else {  // only COPY data and simple queries pass through in parts
      s->out.buf.append(v.data(), v.size());
      pass_left = total - v.size();
      forwarded += v.size();
      in.Consume(v.size());
    }
    if (s->out.pending() > kHighWater) {
      reading_paused = true;
      break;
    }
  }
out:
  if (state != State::kLinked || server != s) return;
  DrainSynthetic();
  if (forwarded > 0 || s->out.pending() > 0) {
    s->pool->stats->bytes_out.Add(forwarded);
    s->Flush();
  }
  if (out.pending() > 0) Flush();
}

// Transaction mode: named prepared statements live in the client, not on any one server. A
// Parse is sent to the server under a name derived from its text (so servers share one copy per
// distinct statement); a server that already has it gets nothing and the client a ParseComplete
// from bulwark; a Bind, Describe or Close naming it is renamed, after a Parse on a server that
// lacks it. PgBouncer 1.21's max_prepared_statements works the same way.
bool ClientConn::HandleExtended(char type, std::string_view msg, std::string_view body) {
  ServerConn* s = server;
  if (type == 'P') {
    auto p = ParseParse(body);
    if (!p.ok()) {
      proxy->protocol_errors.Add(1);
      Fatal("08P01", ToStd(p.status().message()));
      return false;
    }
    if (p->statement.empty()) return false;
    std::string types;
    for (uint32_t t : p->param_types) AppendInt32(&types, static_cast<int32_t>(t));
    uint64_t h = Fnv1a(p->query, types);
    PreparedStatement ps;
    ps.hash = h;
    ps.query = std::string(p->query);
    std::string name = ServerConn::StatementName(h);
    ps.parse_body = name;
    ps.parse_body.push_back('\0');
    ps.parse_body.append(p->query.data(), p->query.size());
    ps.parse_body.push_back('\0');
    AppendInt16(&ps.parse_body, static_cast<int16_t>(p->param_types.size()));
    ps.parse_body += types;
    ps.write = group->has_replicas ? ParseWrites(p->query) : true;
    std::string client_name(p->statement);
    Expect e;
    e.type = 'P';
    if (s->prepared.count(h)) {
      e.kind = Expect::kSynthetic;
      e.synthetic.assign("1\0\0\0\4", 5);
    } else {
      AppendMessage(&s->out.buf, 'P', ps.parse_body);
      s->AddPrepared(h);
      e.stmt_hash = h;
    }
    expects.push_back(std::move(e));
    prepared[client_name] = std::move(ps);
    return true;
  }
  // B, D and C: which statement do they name?
  std::string_view name;
  size_t name_at = 0;
  if (type == 'B') {
    size_t z = body.find('\0');  // portal
    if (z == std::string_view::npos) return false;
    name_at = z + 1;
    size_t z2 = body.find('\0', name_at);
    if (z2 == std::string_view::npos) return false;
    name = body.substr(name_at, z2 - name_at);
  } else {
    if (body.empty() || body[0] != 'S') return false;  // portals pass through
    name_at = 1;
    size_t z = body.find('\0', 1);
    if (z == std::string_view::npos) return false;
    name = body.substr(1, z - 1);
  }
  if (name.empty()) return false;
  auto it = prepared.find(std::string(name));
  if (type == 'C') {
    // The server keeps its copy for the next client; the client's name goes.
    if (it != prepared.end()) prepared.erase(it);
    Expect e;
    e.type = 'C';
    e.kind = Expect::kSynthetic;
    e.synthetic.assign("3\0\0\0\4", 5);
    expects.push_back(std::move(e));
    return true;
  }
  if (it == prepared.end()) return false;  // the server says it does not exist
  const PreparedStatement& ps = it->second;
  if (!s->prepared.count(ps.hash)) {
    AppendMessage(&s->out.buf, 'P', ps.parse_body);
    s->AddPrepared(ps.hash);
    Expect e;
    e.type = 'P';
    e.kind = Expect::kDrop;
    e.stmt_hash = ps.hash;
    expects.push_back(std::move(e));
  }
  std::string server_name = ServerConn::StatementName(ps.hash);
  std::string rebuilt;
  rebuilt.reserve(body.size() + server_name.size());
  rebuilt.append(body.data(), name_at);
  rebuilt += server_name;
  rebuilt.append(body.data() + name_at + name.size(), body.size() - name_at - name.size());
  AppendMessage(&s->out.buf, type, rebuilt);
  Expect e;
  e.type = type;
  expects.push_back(std::move(e));
  (void)msg;
  return true;
}

void ClientConn::DrainSynthetic() {
  while (!expects.empty() && expects.front().kind == Expect::kSynthetic) {
    if (!abandon) out.buf += expects.front().synthetic;
    expects.pop_front();
  }
}

// One whole message from the linked server.
void ClientConn::FromServer(char type, std::string_view msg, std::string_view body) {
  DrainSynthetic();
  Expect* head = expects.empty() ? nullptr : &expects.front();
  bool drop = head != nullptr && head->kind == Expect::kDrop;
  bool ends = false;
  switch (type) {
    case 'S': {
      auto ps = ParseParameterStatus(body);
      if (ps.ok()) {
        server->SetParam(ps->name, ps->value);
        if (!drop) {
          for (auto& [k, v] : vars) {
            if (k == ps->name) v = std::string(ps->value);
          }
        }
      }
      break;
    }
    case 'E':
      if (head != nullptr && head->type != 'Q' && head->type != 'S' && head->type != 'F') {
        // An extended-protocol error: the server skips to the next Sync.
        if (head->stmt_hash != 0) server->ForgetPrepared(head->stmt_hash);
        if (head->kind == Expect::kDrop && head->type == 'P') drop = false;  // the client's
        expects.pop_front();
        while (!expects.empty() && expects.front().type != 'S' && expects.front().type != 'Q') {
          expects.pop_front();
        }
        abandon = true;
        head = nullptr;
      } else if (drop) {
        auto f = ParseErrorFields(body);
        LogWarn("pg: setting the client's parameters on ", server->pool->server->Name(),
                " failed: ", f.ok() ? f->Get('M') : "malformed error");
      }
      break;
    case 'Z':
      ends = head != nullptr && (head->type == 'Q' || head->type == 'S' || head->type == 'F');
      if (!body.empty()) server->tx_status = body[0];
      abandon = false;
      break;
    case '1':
      ends = head != nullptr && head->type == 'P';
      break;
    case '2':
      ends = head != nullptr && head->type == 'B';
      break;
    case '3':
      ends = head != nullptr && head->type == 'C';
      break;
    case 'n':
    case 'T':
      ends = head != nullptr && head->type == 'D';
      break;
    case 'C':
      last_op = OperationOf(body);
      ends = head != nullptr && head->type == 'E';
      break;
    case 'I':
    case 's':
      ends = head != nullptr && head->type == 'E';
      break;
    default:
      break;
  }
  if (!drop) out.buf.append(msg.data(), msg.size());
  if (ends) expects.pop_front();
  if (type == 'Z' && expects.empty()) {
    server->at_sync = true;
    int64_t now = proxy->loop.now_ms();
    auto& h = group->stats->ops[last_op];
    double secs = static_cast<double>(now - query_start_ms) / 1000.0;
    int b = 0;
    while (b < kQueryBucketCount && secs > kQueryBuckets[b]) ++b;
    if (b < kQueryBucketCount) h.buckets[b].Add(1);
    h.count.Add(1);
    h.sum_us.Add(static_cast<uint64_t>(now - query_start_ms) * 1000);
    last_op = kOpOther;
    if (server->tx_status == 'I') {
      group->stats->transactions.Add(1);
      if (!read_next) last_write_ms = now;
    }
  }
  DrainSynthetic();
}

// Called by the server connection after a batch of its messages.
void ClientConn::AfterServerBatch() {
  if (state != State::kLinked) return;
  ServerConn* s = server;
  if (s != nullptr && group->mode == PoolMode::kTransaction && s->at_sync && s->tx_status == 'I' &&
      expects.empty() && pass_left == 0 && s->pass_left == 0) {
    // The server goes to the next waiting client (whose query is sent now) before this
    // client's answer is written: the server works while the answer travels.
    Release();
    if (!Flush()) return;
    if (state == State::kIdle && proxy->draining) {
      Fatal("57P01", "bulwark is shutting down");  // its transaction is done; nothing is lost
      return;
    }
    if (state == State::kIdle && !in.empty()) ProcessInput();
    return;
  }
  // Everything asked is answered: idle_transaction_timeout counts from here (PgBouncer's
  // "idle in transaction" is the time since the client's last answer).
  if (expects.empty()) idle_since_ms = proxy->loop.now_ms();
  Flush();
}

void ClientConn::Release() {
  ServerConn* s = server;
  server = nullptr;
  s->client = nullptr;
  state = State::kIdle;
  idle_since_ms = proxy->loop.now_ms();
  proxy->Release(s);
  if (reading_paused && !close_after_flush) {
    reading_paused = false;
    TryRecv();
  }
}

void ClientConn::ServerLost(std::string_view why) {
  server = nullptr;
  if (state != State::kLinked) return;
  if (group->mode == PoolMode::kSession) {
    Fatal("08006", StrCat("server connection lost: ", why));
    return;
  }
  if (pass_left > 0) {
    // The rest of a message already half sent is still coming from the client: nothing can
    // tell where its next message starts.
    Fatal("08006", StrCat("server connection lost: ", why));
    return;
  }
  // Transaction mode: this transaction fails; the client may go on with the next one on
  // another server (after a failover, on the new primary).
  bool first = true;
  for (const Expect& e : expects) {
    if (e.type == 'Q' || e.type == 'S' || e.type == 'F') {
      if (first) AppendError(&out.buf, "ERROR", "08006", StrCat("server connection lost: ", why));
      first = false;
      AppendReadyForQuery(&out.buf, 'I');
    }
  }
  expects.clear();
  abandon = false;
  pass_left = 0;
  state = State::kIdle;
  idle_since_ms = proxy->loop.now_ms();
  if (Flush() && !in.empty()) ProcessInput();
}

}  // namespace bulwark::pg
