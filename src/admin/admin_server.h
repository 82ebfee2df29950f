// The admin listener: a small HTTP/1.1 server for /health, /ready, /metrics and the JSON API.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/event_loop.h"
#include "core/net.h"
#include "security/audit_log.h"

namespace bulwark::admin {

struct AdminRequest {
  std::string method;
  std::string path;
  std::string query;
  std::string body;
  std::vector<std::string> params;  // values of {placeholders} in the matched pattern
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string extra_headers;  // whole lines ("Name: value\r\n"), e.g. the dashboard's CSP
};

// Who may use the admin API and where its mutations are recorded.
struct AdminOptions {
  std::string token;     // required as "Authorization: Bearer <token>" (see AdminServer)
  std::string token_id;  // names the token in the audit log
  std::vector<std::string> server_names;  // Host names allowed besides IPs and loopback names
  bool protect_metrics = false;           // /metrics needs the token too
  security::AuditLog* audit = nullptr;    // every mutation, when set
};

using Handler = std::function<AdminResponse(const AdminRequest&)>;
// A handler that answers later (a query running on another thread): it calls `respond` once, on
// the control thread. The connection stays open up to the route's timeout meanwhile.
using Responder = std::function<void(AdminResponse)>;
using AsyncHandler = std::function<void(const AdminRequest&, Responder respond)>;

// The AdminServer serves a table of (method, pattern) -> handler on the control thread's loop.
// Patterns are paths whose "{name}" segments match one path segment each. Every route but
// /health, /ready, /metrics and the dashboard page needs "Authorization: Bearer <token>".
// Browsers cannot be turned against it: a Host that is not an IP literal, a loopback name or one
// of server_names is refused (DNS rebinding), and so is a cross-origin Origin; a browser never
// sends the bearer token by itself, so no form or image on another site can drive a mutation.
// Every request that is not a GET or HEAD (bar alerts posted to /api/v2/alerts) goes to the
// audit log, refused ones included. One request per connection (Connection: close): admin
// traffic is light and this keeps the code obvious.
class AdminServer {
 public:
  static constexpr size_t kMaxConnections = 64;
  AdminServer(EventLoop* loop, AdminOptions options);
  ~AdminServer();

  absl::Status Listen(const SocketAddress& addr);
  void Route(std::string method, std::string pattern, Handler h);
  // `timeout_ms()`: how long the connection waits for the answer (the handler's own limit plus
  // a margin, read at each request: a reload may change it); then it is closed.
  void RouteAsync(std::string method, std::string pattern, AsyncHandler h,
                  std::function<int64_t()> timeout_ms);
  // Requests under `prefix` (the path itself or below it) that no route matches are answered
  // 404 with {"error": `error`}: the API of a plane the configuration leaves out says so.
  void Absent(std::string prefix, std::string error);
  int port() const { return port_; }
  void Close();

  struct Entry {
    std::string method;
    std::vector<std::string> segments;
    Handler handler;
    AsyncHandler async;  // set instead of `handler` for RouteAsync routes
    std::function<int64_t()> timeout_ms;
  };
  // Exposed for tests: finds the route for a request.
  const Entry* Find(const std::string& method, const std::string& path,
                    std::vector<std::string>* params, bool* path_exists) const;

 private:
  class Conn;
  class Acceptor;
  void OnAccept();
  void PauseAccepting();
  struct Meta {
    std::string peer;
    std::string_view host, origin, authorization;
  };
  // The answer, or nullopt when an async handler will give it (through RespondTo).
  std::optional<AdminResponse> Dispatch(const AdminRequest& req, const Meta& meta,
                                        uint64_t conn_id);
  std::optional<AdminResponse> Decide(const AdminRequest& req, const Meta& meta, uint64_t conn_id,
                                      bool* token_ok);
  void RespondTo(uint64_t conn_id, AdminResponse r);
  bool HostAllowed(std::string_view host) const;

  EventLoop* loop_;
  AdminOptions options_;
  int fd_ = -1;
  int port_ = 0;
  std::unique_ptr<Acceptor> acceptor_;
  // Out of descriptors, the level-triggered listener would wake the loop again at once for the
  // connection still queued; it is taken out of the loop for a moment instead, as the workers'
  // listeners are (nginx does the same).
  bool accept_paused_ = false;
  Timer accept_timer_;
  int64_t last_accept_error_log_ms_ = -1000000;
  std::vector<Entry> routes_;
  std::vector<std::pair<std::string, std::string>> absent_;  // prefix, error
  uint64_t next_conn_id_ = 1;
  std::vector<std::unique_ptr<Conn>> conns_;
};

AdminResponse Json(int status, const std::string& body);
AdminResponse Text(int status, std::string body);
// A query-string parameter, decoded (+ and %XX); nullopt when absent.
std::optional<std::string> QueryParam(std::string_view query, std::string_view name);

}  // namespace bulwark::admin
