// The admin listener: a small HTTP/1.1 server for /health, /ready, /metrics and the JSON API.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/event_loop.h"
#include "core/net.h"

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
};

using Handler = std::function<AdminResponse(const AdminRequest&)>;

// The AdminServer serves a table of (method, pattern) -> handler on the control thread's loop.
// Patterns are paths whose "{name}" segments match one path segment each. When a token is set,
// every route but /health and /ready needs "Authorization: Bearer <token>". One request per
// connection (Connection: close): admin traffic is light and this keeps the code obvious.
class AdminServer {
 public:
  static constexpr size_t kMaxConnections = 64;
  AdminServer(EventLoop* loop, std::string token);
  ~AdminServer();

  absl::Status Listen(const SocketAddress& addr);
  void Route(std::string method, std::string pattern, Handler h);
  int port() const { return port_; }
  void Close();

  // Exposed for tests: finds the handler for a request.
  const Handler* Find(const std::string& method, const std::string& path,
                      std::vector<std::string>* params, bool* path_exists) const;

 private:
  class Conn;
  class Acceptor;
  void OnAccept();
  void PauseAccepting();
  AdminResponse Dispatch(const AdminRequest& req, std::string_view authorization) const;

  EventLoop* loop_;
  std::string token_;
  int fd_ = -1;
  int port_ = 0;
  std::unique_ptr<Acceptor> acceptor_;
  // Out of descriptors, the level-triggered listener would wake the loop again at once for the
  // connection still queued; it is taken out of the loop for a moment instead, as the workers'
  // listeners are (nginx does the same).
  bool accept_paused_ = false;
  Timer accept_timer_;
  int64_t last_accept_error_log_ms_ = -1000000;
  struct Entry {
    std::string method;
    std::vector<std::string> segments;
    Handler handler;
  };
  std::vector<Entry> routes_;
  std::vector<std::unique_ptr<Conn>> conns_;
};

AdminResponse Json(int status, const std::string& body);
AdminResponse Text(int status, std::string body);

}  // namespace bulwark::admin
