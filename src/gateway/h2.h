// HTTP/2 to clients (RFC 9113): a client connection that speaks h2 carries an H2Session, and
// each request on it is an H2Stream, a Downstream that drives its own Exchange. libnghttp2 does
// the framing, HPACK and the protocol's state machine; bulwark owns the streams, the flow-control
// policy (a stream's window opens only as its exchange forwards the body), the budgets against
// floods and the mapping to exchanges. An exchange sees an HTTP/1.1 request head built from the
// stream's headers and writes an HTTP/1.1 response that the stream turns into HEADERS and DATA,
// as nginx's HTTP/2 module feeds its HTTP/1.1 request pipeline. Worker thread only.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/proxy.h"
#include "http/h2_request.h"

namespace bulwark::gateway {

class H2Session;

class H2Stream final : public Downstream {
 public:
  // Streams are pooled by their worker (Worker::TakeH2Stream): constructed once, then Reset for
  // each request, as connections are.
  explicit H2Stream(Worker* worker);
  ~H2Stream() override;
  void Reset(H2Session* session, int32_t id);
  H2Stream(const H2Stream&) = delete;
  H2Stream& operator=(const H2Stream&) = delete;

  // Downstream
  const http::RequestHead& request_head() const override { return req_; }
  Buffer& input() override { return in_; }
  void ResumeRead() override;
  OutQueue& output() override { return out_; }
  void Write() override;
  void ExchangeDone(bool keep_alive) override;
  void Abort() override;
  // A stream that ended normally (its last DATA went before ExchangeDone) still counts as open:
  // only a reset, from either side, stops the exchange.
  bool open() const override { return !aborted_ && close_code_ == 0; }
  // HTTP/2 has no Upgrade (RFC 9113 8.6): the header never reaches an exchange.
  void StartTunnel() override { Abort(); }
  void Tunnel() override {}
  void ArmTimer(int64_t ms) override;
  void CancelTimer() override;
  const SocketAddress& peer() const override;
  std::string_view peer_ip() const override;
  bool secure() const override;
  int listener_index() const override;
  int requests() const override;
  uint32_t stream_id() const override { return static_cast<uint32_t>(id_); }
  VerifiedToken& verified_token() override;

 private:
  friend class H2Session;
  friend struct H2Callbacks;

  // The request's headers are complete: build the HTTP/1.1 head the exchange reads.
  void HeadersDone(bool end_stream);
  // Moves received DATA into in_ as far as it fits.
  void PumpInput();
  // Opens the stream's window by the body bytes the exchange has forwarded since last time.
  void GiveBackWindow();
  // The response head(s) in out_: submits 1xx and the final HEADERS.
  bool SubmitHeads();
  // Sends the chunked body's trailer fields as trailing HEADERS; false when none are usable.
  bool SubmitTrailers();
  // nghttp2's data source: the next DATA payload from out_.
  ssize_t ReadBody(uint8_t* buf, size_t length, uint32_t* flags);
  // The stream is gone (closed by both sides, reset by either, or the connection ended).
  void Closed(uint32_t error_code);

  H2Session* session_ = nullptr;
  int32_t id_ = 0;
  // The request as the exchange reads it: an HTTP/1.1 head, then the body (chunked when the
  // client gave no content-length and did not end the stream with its headers).
  Buffer in_;
  http::RequestHead req_;
  http::H2RequestBuilder request_;
  size_t header_bytes_ = 0;  // the header list's size (RFC 9113 6.5.2)
  bool too_large_ = false;   // over http.max_header_bytes: answered 431
  bool chunked_ = false;     // the body in in_ is chunked by the stream
  std::string staged_;       // DATA received, not yet in in_
  uint64_t unconsumed_ = 0;  // DATA bytes received whose window is not yet given back
  uint64_t given_back_ = 0;  // DATA bytes whose window was given back
  bool end_stream_ = false;  // the client's END_STREAM arrived...
  bool body_ended_ = false;  // ...and the body in in_ is complete
  bool begun_ = false;       // the exchange has the request
  // The response.
  OutQueue out_;
  http::HeadScanner scanner_;
  http::ResponseHead resp_;
  bool submitted_ = false;  // the final HEADERS
  http::BodyKind body_kind_ = http::BodyKind::kNone;
  uint64_t body_left_ = 0;
  http::ChunkedDecoder chunks_;
  bool body_complete_ = false;
  bool deferred_ = false;       // the data source said "later": resume when out_ grows
  bool exchange_done_ = false;  // ExchangeDone was called
  bool aborted_ = false;        // bulwark reset it (Abort)
  bool closed_ = false;
  uint32_t close_code_ = 0;  // the RST_STREAM code it closed with (0: a normal end)
  bool queued_ = false;      // in the session's work list
  bool want_begin_ = false, want_input_ = false, want_drained_ = false;
  std::string names_;            // scratch: the response's lowercased names
  std::vector<nghttp2_nv> nva_;  // scratch: the response's fields for nghttp2
  Timer timer_;                  // the exchange's (and, before it starts, client_header_timeout)
  Timer send_timer_;             // send_timeout while the body waits for the client's window
  Exchange ex_;
};

class H2Session {
 public:
  // `conn` carries the bytes (and TLS); the session lives inside it until Close.
  H2Session(DownstreamConn* conn, Worker* worker);
  ~H2Session();
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  // Starts the session: sends SETTINGS. False when nghttp2 cannot allocate.
  bool Start();
  // Bytes from the client. False when the connection must close (after what is queued is sent).
  bool Receive(const char* data, size_t n);
  // Runs the streams' pending work and writes what nghttp2 has to send into the connection.
  void Flush();
  // Flush once the worker's current batch of events is handled: the responses of streams that
  // finish in the same batch leave in one write and one TLS record (as HAProxy's mux does),
  // not one each.
  void FlushSoon();
  // Sends GOAWAY (the in-flight streams finish; no new ones start).
  void Drain();
  // Whether the connection may close: nothing in flight, nothing to send, or the peer is done.
  bool Finished() const;
  // The connection closes: every stream ends.
  void Shutdown();
  // The connection's timer fired.
  void OnTimeout();
  size_t open_streams() const { return streams_; }
  bool failed() const { return failed_; }

  DownstreamConn* conn() const { return conn_; }
  Worker* worker() const { return worker_; }
  nghttp2_session* session() const { return session_; }

 private:
  friend class H2Stream;
  friend struct H2Callbacks;

  void Queue(H2Stream* s);
  void RunQueue();
  // The stream's headers are in: parse the head and hand it to its exchange.
  void Begin(H2Stream* s);
  // A closed stream's exchange ends; the stream is freed after the event batch.
  void EndStream(H2Stream* s);
  bool SpendReset();  // one RST_STREAM token; false when the budget is gone
  // Ends the connection with GOAWAY(error) after a defence tripped, counted in `counter`.
  void Refuse(uint32_t error, observe::ShardValue& counter, const char* why);
  bool ControlFrame();  // spends one control-frame token; false when the budget is gone
  void Arm();           // the idle or first-request timer when no stream is open

  DownstreamConn* conn_;
  Worker* worker_;
  nghttp2_session* session_ = nullptr;
  std::vector<H2Stream*> queue_, work_;
  std::string head_scratch_;  // a request head being built
  std::vector<H2Stream*> live_;
  size_t streams_ = 0;  // H2Streams alive
  int requests_ = 0;
  bool in_flush_ = false, flush_again_ = false;
  bool flush_soon_ = false;  // a FlushSoon is pending
  bool draining_ = false;
  bool refused_ = false;
  bool failed_ = false;  // the connection must close (write failure, nghttp2 error, timeout)
  // Token buckets (tokens scaled by 1000 for integer refill).
  int64_t reset_tokens_ = 0, control_tokens_ = 0;
  int64_t reset_at_ms_ = 0, control_at_ms_ = 0;
};

}  // namespace bulwark::gateway
