// An asynchronous Redis client on one EventLoop: pipelined commands, replies in order,
// reconnection with backoff, and a per-command deadline.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/event_loop.h"
#include "core/net.h"
#include "core/resp.h"
#include "core/tls.h"

namespace bulwark {

// A Redis server as a configuration names it: a host name or a literal address, and a port.
struct RedisEndpoint {
  std::string host;
  int port = 6379;
  std::string where;  // "FILE:LINE:COL" it is written at, for errors found after parsing
  bool operator==(const RedisEndpoint& o) const { return host == o.host && port == o.port; }
};

// How a host name becomes an address when a connection is about to be tried: nullopt while it
// has none. The gateway's answers from its Resolver without blocking; the default asks the
// system (getaddrinfo), which may block the loop for as long as DNS takes.
using RedisLookup = std::function<std::optional<SocketAddress>(const std::string& host, int port)>;
RedisLookup SystemRedisLookup();

// A RedisOptions::resolve that answers the next of `endpoints` that looks up, one further at
// each call, so a connection's attempts go round them and a dead (or unresolvable) one is
// skipped (Sentinel discovery, cluster seeds).
std::function<std::optional<SocketAddress>()> EndpointsInTurn(std::vector<RedisEndpoint> endpoints,
                                                              RedisLookup lookup);

struct RedisOptions {
  SocketAddress address;
  std::string username;  // AUTH username password (Redis 6 ACL) when set
  std::string password;  // AUTH when set
  // TLS (Redis 6 --tls-port) when set: `tls_sni` is sent as SNI (none when empty) and
  // `tls_verify_name` checked in the server's certificate (its IP when empty).
  std::shared_ptr<TlsClient> tls;
  std::string tls_sni;
  std::string tls_verify_name;
  int db = 0;  // SELECT when not 0
  int64_t connect_timeout_ms = 500;
  int64_t command_timeout_ms = 100;  // a reply later than this fails the command (and the link)
  int64_t reconnect_min_ms = 100;    // backoff between attempts, doubling up to the max
  int64_t reconnect_max_ms = 2000;
  // When set, asked for the address before every connection attempt (Sentinel discovery);
  // nullopt means "no server known yet" and the attempt fails into the usual backoff.
  std::function<std::optional<SocketAddress>()> resolve;
  // With `resolve`: while connected, asked again this often (0: never); when the answer is
  // another server (Sentinel names a new master, a name moved) the link reconnects there, as
  // Sentinel-aware clients do on +switch-master.
  int64_t recheck_ms = 0;
};

// A RedisClient owns one connection and belongs to the thread that runs its loop. Commands sent
// while connected are pipelined; their callbacks run in order, on the loop, never inside
// Command(). When the connection fails every pending callback gets an error reply, the client
// reports !connected() (callers fall back to local decisions at once instead of queueing) and it
// reconnects by itself with exponential backoff.
class RedisClient : private IoHandler {
 public:
  using Callback = std::function<void(const RedisReply&)>;

  RedisClient(EventLoop* loop, RedisOptions options, std::string name = "redis");
  ~RedisClient() override;

  void Start();
  bool connected() const { return state_ == State::kReady; }
  // The server connected to (or last tried).
  const SocketAddress& address() const { return opt_.address; }
  // Sends a command. If not connected the callback gets an error after the current batch.
  void Command(const std::vector<std::string_view>& args, Callback cb);
  // EVALSHA with the script's SHA-1; loads the script (EVAL) when the server answers NOSCRIPT.
  void Eval(const std::string& script, const std::string& sha1,
            const std::vector<std::string_view>& keys, const std::vector<std::string_view>& args,
            Callback cb);
  void Close();

  // Pub/sub: messages ("message", channel, payload) pushed by the server are handed to `fn`
  // instead of being matched to a command. `on_ready` runs after every (re)connect, e.g. to
  // SUBSCRIBE again and reload state missed while disconnected.
  using PushHandler = std::function<void(std::string_view channel, std::string_view payload)>;
  void SetPushHandler(PushHandler fn) { push_ = std::move(fn); }
  void SetOnReady(std::function<void()> fn) { on_ready_ = std::move(fn); }
  // Runs when an established connection is lost (not on failed connection attempts).
  void SetOnDown(std::function<void()> fn) { on_down_ = std::move(fn); }
  // Whether commands may be sent with no reply expected within the command timeout (a
  // subscribed connection is quiet for long stretches).
  bool subscribed() const { return subscribed_; }

  // Counters for metrics (read from other threads: relaxed, single writer).
  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  uint64_t reconnects() const { return reconnects_.load(std::memory_order_relaxed); }
  bool up() const { return up_.load(std::memory_order_relaxed); }

  // The SHA-1 of a script, as Redis names it (hex).
  static std::string ScriptSha1(std::string_view script);
  // EVALSHA sha1 numkeys keys... args..., and the same call as EVAL with the script, which
  // Eval sends when the server answers NOSCRIPT. Shared with RedisClusterClient.
  struct EvalCalls {
    std::vector<std::string> evalsha, eval;
  };
  static EvalCalls MakeEvalCalls(const std::string& script, const std::string& sha1,
                                 const std::vector<std::string_view>& keys,
                                 const std::vector<std::string_view>& args);

 private:
  enum class State { kIdle, kConnecting, kHandshaking, kReady, kBackoff, kClosed };
  struct Pending {
    Callback cb;
    int64_t deadline_ms;
    bool internal;  // AUTH/SELECT during the handshake
  };

  void OnIo(uint32_t events) override;
  void Connect();
  void OnConnected();
  void Fail(std::string_view why);
  void Flush();
  void ReadAvailable();
  void OnTimer();
  void ArmDeadline();

  EventLoop* loop_;
  RedisOptions opt_;
  std::string name_;
  State state_ = State::kIdle;
  int fd_ = -1;
  TlsStream tls_;
  std::string out_;
  size_t out_off_ = 0;
  std::string in_;
  std::deque<Pending> pending_;
  Timer timer_;
  Timer recheck_timer_;
  int64_t backoff_ms_ = 0;
  RespLimits limits_;
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<bool> up_{false};
  bool logged_down_ = false;
  PushHandler push_;
  std::function<void()> on_ready_;
  std::function<void()> on_down_;
  bool subscribed_ = false;
};

}  // namespace bulwark
