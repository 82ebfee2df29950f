// The proxy's two connection types and the exchange between them.
#pragma once

#include <zlib.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "cache/http_policy.h"
#include "core/buffers.h"
#include "core/event_loop.h"
#include "core/net.h"
#include "core/resp.h"
#include "core/tls.h"
#include "gateway/balancer.h"
#include "gateway/rate_limit.h"
#include "gateway/router.h"
#include "http/chunked.h"
#include "http/parser.h"
#include "security/jwt.h"

namespace bulwark::gateway {

class Worker;
struct WorkerView;
class DownstreamConn;
class H2Session;
class Exchange;

enum class UpstreamFailure { kConnect, kWrite, kRead, kTimeout, kInvalidResponse, kClosed };

// A connection to one upstream server: active for one exchange at a time, or idle in the
// worker's keep-alive pool. Owned by its Worker (pooled objects); worker thread only.
class UpstreamConn : public IoHandler {
 public:
  enum class State { kFree, kConnecting, kHandshaking, kActive, kIdle };

  explicit UpstreamConn(Worker* w);
  void OnIo(uint32_t events) override;

  // Starts a new connection to `server` as `config` says (its address in the snapshot), over
  // TLS when `tls` is enabled (the owner hears OnUpstreamConnected after the handshake).
  absl::Status Connect(ServerState* server, int server_index, const ServerConfig& config,
                       const UpstreamTlsConfig& tls, int64_t connect_timeout_ms);
  // Writes as much of out_ as the socket takes.
  void Flush();
  // Reads what is available into in_ and hands it to the owner.
  void ReadAvailable();
  void Close();
  void MakeIdle(int64_t keepalive_timeout_ms);
  void ArmTimer(int64_t ms);
  // Drives the TLS handshake: on success the owner hears OnUpstreamConnected, on failure
  // OnUpstreamFailure(kConnect).
  void Handshake();

  Worker* worker_;
  int fd_ = -1;
  State state_ = State::kFree;
  ServerState* server_ = nullptr;
  int server_index_ = -1;
  SocketAddress address_;  // where it is connected: a server whose name moved is not reused
  TlsStream tls_;
  std::shared_ptr<TlsClient> tls_client_;  // what it was made with: a reload that changes it
                                           // retires the connection (Worker::PutIdle)
  Exchange* owner_ = nullptr;
  Buffer in_;
  OutQueue out_;
  int requests_ = 0;  // exchanges on this connection
  bool read_paused_ = false;
  bool eof_ = false;
  bool rdhup_ = false;      // the last event said the peer closed: read to EOF
  bool wrote_any_ = false;  // any request byte written in the current exchange
  bool got_any_ = false;    // any response byte read in the current exchange
  Timer timer_;
  int64_t send_timeout_ms_ = 60000;
  int64_t read_timeout_ms_ = 60000;
  int64_t deadline_ms_ = 0;  // a retry policy's per-try timeout (0: none)
};

// What an exchange needs from what carries it: the request head and the bytes that follow it,
// a place for the response, a timer, and facts about the client. A DownstreamConn (HTTP/1.1)
// is one; an HTTP/2 stream will be another, several on one connection. Worker thread only.
class Downstream {
 public:
  virtual ~Downstream() = default;

  // The request head, valid while the exchange runs.
  virtual const http::RequestHead& request_head() const = 0;
  // The request's bytes as received: the body starts at Exchange::request().body_start and
  // grows at wpos. The exchange forwards from it; the carrier compacts it (see DoRead).
  virtual Buffer& input() = 0;
  // Resumes reading input the exchange has now made room for.
  virtual void ResumeRead() = 0;
  // The response, in HTTP/1.1 wire form: bytes appended are sent in order by Write().
  virtual OutQueue& output() = 0;
  virtual void Write() = 0;
  // The response is complete in output(): send it, then carry on (the next request, or close
  // when `keep_alive` is false).
  virtual void ExchangeDone(bool keep_alive) = 0;
  // The exchange cannot go on (the client left, a broken upstream mid-response): close.
  virtual void Abort() = 0;
  virtual bool open() const = 0;
  // A 101 answer: from now on the carrier pumps bytes between the client and the exchange's
  // upstream connection (Tunnel), and the exchange hands upstream events to it.
  virtual void StartTunnel() = 0;
  virtual void Tunnel() = 0;
  // One timer for the exchange's waits (limit_req delay, cache lock, client body); its expiry
  // calls Exchange::OnTimeout.
  virtual void ArmTimer(int64_t ms) = 0;
  virtual void CancelTimer() = 0;

  // Facts about the client.
  virtual const SocketAddress& peer() const = 0;
  virtual std::string_view peer_ip() const = 0;
  virtual bool secure() const = 0;  // TLS ($scheme https, X-Forwarded-Proto)
  // The listener's index in the worker's current snapshot, -1 when a reload removed it. An
  // exchange reads it once, with the snapshot it acquires (Exchange::listener_).
  virtual int listener_index() const = 0;
  virtual int requests() const = 0;  // requests the connection carried, this one included
  // The HTTP/2 stream carrying the request; 0 for HTTP/1.x.
  virtual uint32_t stream_id() const { return 0; }

  // The last token this connection verified (clients send the same one on every request of a
  // keep-alive connection): the signature is not checked again, only the times (Envoy caches
  // verified tokens in the same spirit). The verifier is held, not just compared: a reload's
  // new verifier can never reuse this one's address.
  struct VerifiedToken {
    std::string token;
    std::shared_ptr<const security::JwtVerifier> verifier;
  };
  virtual VerifiedToken& verified_token() = 0;
};

// The life of one request, from its head to its access-log line, in phases as nginx runs its
// request phases and Envoy its filters: route and admission (exchange.cc, admission.cc), the
// cache (exchange_cache.cc), the server choice (sticky.cc), the attempts (upstream_exchange.cc),
// the response filters (response_filters.cc) and the log record. It holds no socket: its
// Downstream carries the bytes, so a connection can carry several. Worker thread only.
class Exchange {
 public:
  enum class Phase {
    kNone,       // no request, or its head is being read
    kLimiting,   // a shared limit_req zone is asking Redis
    kDelayed,    // limit_req delays the request
    kSticky,     // the session table is being asked
    kCacheWait,  // another request is fetching the same cache key (proxy_cache_lock)
    kCacheL2,    // the cache's Redis level is being asked
    kProxy,      // at an upstream server
    kTunnel,     // after a 101: the carrier pumps bytes
    kDone,       // the response is complete (or being written)
  };

  // The request, copied out of its head (whose bytes may be overwritten), and its body.
  struct Request {
    http::Method method = http::Method::kGet;
    int version_minor = 1;
    bool keep_alive = true;
    // The normalised path (http/path.h): what routes, access lists, limits, cache keys and $uri
    // see, and the path that goes upstream (the client's own with upstream_path: original).
    // Views into the head when the path was already normal, else into the buffers below
    // (reused from request to request).
    std::string_view path;
    std::string_view upstream_path;
    std::string path_buf;
    std::string upstream_path_buf;
    // The query ($args): the client's, or what a rewrite made of it.
    std::string_view args;
    std::string args_buf;
    bool rewritten = false;  // a rewrite changed the path: it goes upstream in escaped form
    http::BodyKind body_kind = http::BodyKind::kNone;
    bool has_body = false;
    uint64_t body_left = 0;  // Content-Length bytes not yet forwarded
    size_t body_start = 0;   // offset of the body in the connection's input (at head time)
    size_t body_pos = 0;     // absolute input offset of the next body byte to forward
    bool body_done = false;
    bool body_retained = true;  // every body byte is still buffered, so a retry can resend
    uint64_t body_bytes = 0;
    http::ChunkedDecoder chunks;
    bool upgrade_requested = false;
    bool accept_gzip = false;  // Accept-Encoding allows gzip
    bool via = false;          // it came through a proxy (nginx gzip_proxied)
    uint64_t bytes_in = 0;
    int64_t start_us = 0;
    int64_t start_ms = 0;
  };

  // Who the client is and what access lists, bans, limits and JWT decided.
  struct Admission {
    std::string client_ip;  // after trusted proxies (nginx real_ip), text
    IpAddress client_addr;  // the same, binary
    bool trusted_peer = false;
    std::string key_buf;  // rate-limit keys of the request
    std::string ban_key;  // the route's ban key for it (empty: no ban rule)
    bool limit_rejected = false;
    bool ban_counted = false;
    int limit_n = 0;
    LimitRequest limit_reqs[16];  // the request's rules (keys view key_buf)
    int limit_result = -1;        // LimitResult of the request, -1 when no limit applied
    // limit_conn counts the exchange holds: zone and key (in held_conn_keys).
    struct HeldConn {
      ConnZone* zone;
      size_t offset, len;
    };
    std::array<HeldConn, kMaxConnRules> held_conn{};
    int held_conn_n = 0;
    std::string held_conn_keys;
    bool jwt_ok = false;  // the route's JWT verified; claims below
    nlohmann::json jwt_claims;
    std::string jwt_headers;  // claim headers to send upstream
  };

  // The route's HTTP cache.
  struct Cache {
    HttpCacheZone* zone = nullptr;  // null: not cached
    std::string key;
    const char* status = nullptr;  // X-Cache: HIT, MISS, STALE or BYPASS
    bool leader = false;           // this request leads the zone's fetch of the key
    bool store = false;            // its response may be stored
    bool capture = false;          // the response is being captured for storing
    uint64_t wait_token = 0;
    std::shared_ptr<const std::string> stale;  // a stale copy for stale-if-error...
    int64_t stale_until = 0;                   // ...usable until then (loop ms)
    cache::StorageDecision decision;
    cache::HttpObject obj;                       // the response being captured
    std::shared_ptr<const std::string> handoff;  // what this request put in its L1...
    cache::PutOptions handoff_opts;              // ...and its deadlines, for waiters
  };

  // Sticky sessions.
  struct Sticky {
    uint64_t cookie_id = 0;          // the server the request's sticky cookie names (0: none)
    uint64_t session_server_id = 0;  // the server Redis maps its session to (0: none)
    std::string session_value;       // the request's application session cookie
  };

  // The attempts at upstream servers.
  struct Upstream {
    int index = -1;  // of the route's upstream in the snapshot
    UpstreamConn* conn = nullptr;
    std::string head;  // the request head as sent upstream, kept for retries
    TriedSet tried;
    int attempts = 0;
    std::optional<uint64_t> key_hash;
    int64_t start_us = 0;
    int64_t us = 0;
    bool probe = false;                   // the current attempt is a half-open breaker probe...
    ServerState* probe_server = nullptr;  // ...of this server
    int retry_status = 502;               // the answer if no server is left after a backoff
    bool counted_active = false;          // counted in the upstream's active requests (budget)
    bool counted_retry = false;           // counted in its active retries
    Timer retry_timer;                    // backoff before the next attempt
  };

  // The response on its way to the client.
  struct Response {
    bool started = false;
    http::HeadScanner scanner;
    http::ResponseHead head;
    int status = 0;
    http::BodyKind body_kind = http::BodyKind::kNone;
    uint64_t left = 0;
    bool dechunk = false;  // HTTP/1.0 client: chunked bodies are sent decoded
    bool gzip = false;     // the body is being gzipped (sent chunked)
    bool done = false;
    http::ChunkedDecoder chunks;
    uint64_t bytes_out = 0;
  };

  // The access-log record (copied out of the head, whose bytes may be overwritten).
  struct Log {
    bool logged = false;
    std::string path;
    std::string method;
    std::string upstream;
    char request_id[33] = {};
    size_t request_id_len = 0;
    char trace_id[33] = {};
    bool incoming_trace = false;
  };

  Exchange(Worker* worker, Downstream* down);
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // The carrier read a request head (request_head()) at input().rpos: route it, admit it, answer
  // it. request().start_us/start_ms and bytes_in are the carrier's to set before.
  void Begin();
  // Refuses a request whose head could not be read (bad syntax, header timeout).
  void RefuseUnparsed(int status, std::string_view reason);
  // More request bytes arrived in input().
  void OnInput();
  // output() has room again.
  void OnOutputDrained();
  // The client went away before the response was complete: at EOF (`eof`), or its socket
  // failed. The carrier closes next.
  void OnClientGone(bool eof);
  // The carrier's timer (ArmTimer) expired.
  void OnTimeout();
  // The response was written: let go of the request (its snapshot, its cache claim).
  void Finish();
  // The carrier closes: release everything the exchange holds. Idempotent.
  void End();

  // Called by the UpstreamConn.
  void OnUpstreamConnected();
  void OnUpstreamData();
  void OnUpstreamEof();
  void OnUpstreamFailure(UpstreamFailure why);
  void OnUpstreamDrained();  // its out_ emptied
  // The fetch this request waited for is over (posted by the leader's worker), with what it
  // stored (for per-worker zones, whose waiters keep their own copy).
  void OnCacheWake(uint64_t token, std::shared_ptr<const std::string> value,
                   cache::PutOptions options);
  // The carrier's input is full while the body streams to the server: drops the part already
  // forwarded and moves the rest to the front of `in` (from then on the request can no longer be
  // resent to another server). False when nothing could be dropped.
  bool DropForwardedBody(Buffer& in);
  // Drops an upstream connection (pooled again when `reusable`).
  void ReleaseUpstream(bool reusable);

  Phase phase() const { return phase_; }
  Request& request() { return request_; }
  const Response& response() const { return response_; }
  const Log& log_record() const { return log_; }
  UpstreamConn* upstream_conn() const { return upstream_.conn; }
  // Counts and logs the exchange (once) with `status`.
  void LogAndCount(int status);

 private:
  void HandleRequest();
  // Resets what the access-log record and the metrics of a new request start from.
  void StartRecord();
  // Access lists, bans and rate limits; false when the request was answered here.
  bool Protect(const GatewayConfig& cfg);
  // Sets the request's path and upstream path; answers 400 and returns false for a path nginx
  // refuses.
  bool NormalizeRequestPath(const GatewayConfig& cfg);
  // nginx limit_conn: counts this request in the route's zones; answers and returns false when
  // one is at its maximum. ReleaseConnLimits (idempotent) ends the count with the exchange.
  bool AcquireConnLimits();
  void ReleaseConnLimits();
  // Appends the key `spec` names for this request; client IPs in binary when `binary_ip`.
  bool AppendKey(const KeySpec& spec, bool binary_ip, std::string* out) const;
  // After the protections (and any limit_req delay): answer or proxy the request.
  void Proceed();
  // The part of Proceed after the cache: build the upstream request and pick a server.
  void ProceedUpstream();
  // The route's cache: true when the request was answered (a hit) or is waiting for another
  // request's fetch. `first` is false after a wait, when the request may not lead a new fetch.
  bool CacheLookup(bool first);
  bool VaryMatches(const cache::HttpObjectView& v) const;
  // The zone's Redis level answered the leader's lookup (or failed).
  void OnCacheL2(uint64_t seq, const RedisReply& r);
  void ServeCached(const std::shared_ptr<const std::string>& value, const cache::HttpObjectView& v,
                   const char* status);
  // stale-if-error: answers with the stale copy instead of an error; false if there is none.
  bool ServeStaleOnError();
  // Decides whether the upstream's response is stored and starts capturing it.
  void CacheDecide();
  void CaptureBody(const char* d, size_t n);
  // Stores a captured response, then wakes the requests that waited for it (idempotent).
  void CacheComplete(bool store);
  void ResetCacheState();
  // Picks the server (a sticky one first when it is usable) and starts the first attempt.
  void ChooseAndStart(uint64_t session_server);
  void OnStickyLookup(uint64_t seq, const RedisReply& r);
  // Adds Set-Cookie / records the session when the answering server is not the pinned one.
  void StickyResponse(std::string* head);
  std::string_view StickySecret() const;
  void StrikeBan(std::string_view what);
  void BanStatus(int status);
  // Fills in the nginx variables (NginxVariable) of a `return` or a cache key; an unknown one
  // is left as written.
  std::string ExpandVariables(std::string_view t) const;
  // The route's JWT check: false when the request was answered (401).
  bool VerifyJwt(const JwtProviderConfig& p);
  // Acts on a limit_req decision: false when the request was answered or is being delayed.
  bool ApplyLimitOutcome(const LimitOutcome& out);
  // A shared zone's decision came back from Redis (or failed).
  void OnSharedLimit(uint64_t seq, const RedisReply& r);
  // What a shared zone does while Redis cannot decide.
  LimitOutcome FallbackDecision();
  void StartAttempt(int server_index);
  bool RetryOrFail(UpstreamFailure why, bool sent);
  // Whether the request may go to another server (nginx rules, the retry policy, its budget).
  bool MayRetry(bool sent);
  // Picks the next server now, or after the retry policy's backoff.
  bool RetryNext(int status_if_none);
  void OnRetryTimer();
  // Breaker and outlier accounting of the current attempt (status 0: no response).
  void RecordAttemptOutcome(ServerState* s, int status);
  void EndUpstreamAccounting();
  void ForwardBody();
  bool ParseUpstreamHead();
  void ForwardResponseBody();
  void BrokenUpstreamFraming();
  void FinishExchange();
  // The response is complete in the carrier's output.
  void Done();
  void SendLocal(int status, std::string_view body, std::string_view content_type,
                 std::string_view location, bool close, std::string_view extra_headers = {});
  void SendError(int status, std::string_view reason, bool close,
                 std::string_view extra_headers = {});
  void BuildUpstreamHead(const Router::Route& route, bool trusted);
  // Appends a proxy_set_header value with its variables filled in.
  void AppendTemplate(const VarTemplate& t, std::string* out) const;
  void AppendVariable(const VarTemplate::Part& p, std::string* out) const;
  // Whether the route's proxy_hide_header names the response header `name`.
  bool HiddenHeader(std::string_view name) const;
  // client_max_body_size for this request: its route's (or listener's), else http's; 0 is no
  // limit, as nginx.
  int64_t MaxBodyBytes() const;
  // nginx rewrite: applies `rules` to the path. kAnswered: a redirect was sent; kSearch: the
  // path changed and the route is to be found again (`last`, or no flag); kStay: no change, or
  // `break`.
  enum class RewriteOutcome { kStay, kSearch, kAnswered };
  RewriteOutcome ApplyRewrites(const std::vector<RewriteRule>& rules);
  void BuildResponseHead();
  // nginx's gzip filter conditions for the current response.
  bool ShouldGzip() const;
  // Compresses body bytes into chunks on the output; `finish` ends the stream and the body.
  void GzipFeed(const char* d, size_t n, bool finish);
  std::optional<uint64_t> AffinityHash(const UpstreamConfig& cfg);

  Worker* worker_;
  Downstream* down_;
  const http::RequestHead* req_ = nullptr;  // down_->request_head() while the exchange runs
  Phase phase_ = Phase::kNone;
  WorkerView* view_ = nullptr;  // the configuration snapshot, held until the exchange ends
  int listener_ = 0;            // the client's listener in view_'s snapshot
  const Router::Route* route_ = nullptr;
  Request request_;
  Admission admission_;
  Cache cache_;
  Sticky sticky_;
  Upstream upstream_;
  Response response_;
  Log log_;

  // The scratch for shared-limit commands, and the number that matches a Redis reply (shared
  // limits, sticky sessions, the cache's Redis level) to the request that asked: it only
  // grows, so a reply for a request that has gone matches nothing.
  std::string redis_buf_;
  uint64_t redis_seq_ = 0;
  std::unique_ptr<z_stream> gz_;  // kept between responses (deflateReset), freed by End
  int gz_level_ = 0;
};

// The client's connection (the downstream side, in Envoy's words): bytes in and out (TLS
// included), HTTP/1.1 framing, keep-alive and pipelining, timeouts. It carries one exchange at
// a time; pipelined requests are served in order. Owned by its Worker (pooled); worker thread
// only.
class DownstreamConn final : public IoHandler, public Downstream {
 public:
  explicit DownstreamConn(Worker* w);
  ~DownstreamConn() override;
  void OnIo(uint32_t events) override;

  // `listen_fd`: the listening socket it came from, which names its listener across reloads.
  void Open(int fd, const SocketAddress& peer, int listen_fd, int listener_index);
  // A reload moved the connection's listener to `index` in the new snapshot, or (-1) removed
  // it: then the connection ends as on a drain (nginx's old workers do the same), after its
  // current request, and no request starts on it any more.
  void Relisten(int index);
  int listen_fd() const { return listen_fd_; }
  // True for a connection waiting for its next request with nothing buffered (drain closes it).
  bool IdleForDrain() const;
  // The worker drains: an idle HTTP/1.1 connection closes, an HTTP/2 one sends GOAWAY and
  // closes once its streams are done.
  void Drain();
  void Close();
  // Closes after the current event batch (from an HTTP/2 stream's call stack). `linger`: as
  // nginx's lingering_close, the write side closes first and what the client still sends is
  // read and dropped for a while, so its unread data cannot turn the close into a reset that
  // destroys the last responses on their way.
  void CloseSoon(bool linger);
  // Runs the HTTP/2 session's Flush after the current batch of events (H2Session::FlushSoon).
  void FlushH2Soon();

  // For the HTTP/2 session that the connection carries.
  Timer& timer() { return timer_; }
  // Writes out_; true when all of it went.
  bool SendQueued();
  bool write_failed() const { return write_failed_; }
  bool speaks_h2() const { return h2_ != nullptr && state_ == State::kH2; }

  // Downstream
  const http::RequestHead& request_head() const override { return req_; }
  Buffer& input() override { return in_; }
  void ResumeRead() override {
    if (read_paused_) DoRead();
  }
  OutQueue& output() override { return out_; }
  void Write() override { WriteOut(); }
  void ExchangeDone(bool keep_alive) override;
  void Abort() override { Close(); }
  bool open() const override { return open_; }
  void StartTunnel() override;
  void Tunnel() override { TunnelPump(); }
  void ArmTimer(int64_t ms) override { ArmClientTimer(ms); }
  void CancelTimer() override;
  const SocketAddress& peer() const override { return peer_; }
  std::string_view peer_ip() const override { return peer_ip_; }
  bool secure() const override { return tls_.active(); }
  int listener_index() const override { return listener_index_; }
  int requests() const override { return requests_; }
  VerifiedToken& verified_token() override { return verified_token_; }

  Worker* worker_;
  int fd_ = -1;
  bool open_ = false;

 private:
  enum class State { kIdle, kHead, kExchange, kTunnel, kH2, kClosing };

  void DoRead();
  void DoWrite();
  // The client socket, through TLS when the listener has it: >0 bytes, 0 at EOF, -1 with errno
  // (EAGAIN when it would block).
  ssize_t Recv(char* buf, size_t n);
  ssize_t Send(const char* buf, size_t n);
  void WriteOut();
  void OnClientEof();
  void Process();
  void StartNextRequest();
  void ArmClientTimer(int64_t ms);
  void OnClientTimeout();
  void TunnelPump();
  // HTTP/2: whether the connection starts it (ALPN h2, or the preface on a clear-text
  // listener with http2), and the session's reads and writes.
  bool MaybeStartH2();
  void H2Io(uint32_t events);

  State state_ = State::kIdle;
  TlsStream tls_;  // when the listener has TLS
  SocketAddress peer_;
  std::string peer_ip_;
  int listen_fd_ = -1;
  int listener_index_ = 0;  // in the worker's current snapshot; -1 once a reload removed it
  Buffer in_;
  OutQueue out_;
  http::HeadScanner scanner_;
  http::RequestHead req_;
  Timer timer_;
  int requests_ = 0;
  bool read_paused_ = false;
  bool eof_ = false;
  bool close_after_ = false;
  bool rdhup_ = false;
  bool in_write_ = false;
  bool write_again_ = false;
  bool write_failed_ = false;
  VerifiedToken verified_token_;
  std::unique_ptr<H2Session> h2_;
  bool lingering_ = false;
  uint64_t generation_ = 0;  // Opens so far: a deferred close meets the same connection

  Exchange ex_;
};

}  // namespace bulwark::gateway
