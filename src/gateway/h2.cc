// HTTP/2 to clients: the session (nghttp2 callbacks, budgets, flushing) and its streams (the
// request head an exchange reads, the response it writes turned into HEADERS and DATA).
#include "gateway/h2.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "core/strings.h"
#include "core/units.h"
#include "gateway/proxy_internal.h"
#include "gateway/worker.h"

namespace bulwark::gateway {

namespace {

constexpr size_t kOutBatch = 64 * 1024;  // bytes of frames gathered before one write
constexpr size_t kChunkFraming = 24;     // "<hex>\r\n" + "\r\n" + the last "0\r\n\r\n"
constexpr int32_t kMaxWindow = 0x7fffffff;

bool Is(std::string_view a, std::string_view lower) {
  return a.size() == lower.size() && http::EqualsLower(a, lower);
}

// Connection-specific fields have no place in HTTP/2 (RFC 9113 8.2.2).
bool HopByHop(std::string_view name, std::string_view connection) {
  return Is(name, "connection") || Is(name, "keep-alive") || Is(name, "proxy-connection") ||
         Is(name, "transfer-encoding") || Is(name, "upgrade") ||
         NamedInConnection(connection, name);
}

}  // namespace

// The nghttp2 callbacks, as static functions with access to the session and its streams.
struct H2Callbacks {
  static H2Stream* Stream(nghttp2_session* s, int32_t id) {
    return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(s, id));
  }

  static int OnBeginHeaders(nghttp2_session* s, const nghttp2_frame* f, void* ud) {
    auto* h = static_cast<H2Session*>(ud);
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    H2Stream* st = h->worker_->TakeH2Stream();
    st->Reset(h, f->hd.stream_id);
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    h->live_.push_back(st);
    ++h->streams_;
    h->worker_->stats().h2_streams.Add(1);
    // A header block that never ends would hold the connection: client_header_timeout.
    h->worker_->loop().ArmTimer(&st->timer_, h->worker_->config().http.client_header_timeout_ms);
    h->worker_->loop().CancelTimer(&h->conn_->timer());
    return 0;
  }

  static int OnHeader(nghttp2_session* s, const nghttp2_frame* f, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void*) {
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    H2Stream* st = Stream(s, f->hd.stream_id);
    if (st == nullptr) return 0;
    st->request_.Add({reinterpret_cast<const char*>(name), namelen},
                     {reinterpret_cast<const char*>(value), valuelen},
                     st->session_->worker()->config().http.limits.max_header_bytes);
    return 0;
  }

  static int OnFrameRecv(nghttp2_session* s, const nghttp2_frame* f, void* ud) {
    auto* h = static_cast<H2Session*>(ud);
    switch (f->hd.type) {
      case NGHTTP2_HEADERS: {
        H2Stream* st = Stream(s, f->hd.stream_id);
        if (st == nullptr) return 0;
        bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
          st->HeadersDone(end);
        } else if (end) {  // trailers end the body (their fields are not passed on)
          st->end_stream_ = true;
          st->want_input_ = true;
          h->Queue(st);
        }
        return 0;
      }
      case NGHTTP2_DATA: {
        H2Stream* st = Stream(s, f->hd.stream_id);
        bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        // Empty DATA frames cost work and carry nothing (CVE-2019-9518).
        if (f->hd.length == 0 && !end && !h->ControlFrame()) {
          h->Refuse(NGHTTP2_ENHANCE_YOUR_CALM, h->worker()->stats().h2_floods,
                    "empty DATA frame flood");
          return 0;
        }
        if (st != nullptr && end) {
          st->end_stream_ = true;
          st->want_input_ = true;
          h->Queue(st);
        }
        return 0;
      }
      case NGHTTP2_RST_STREAM:
        if (!h->SpendReset())
          h->Refuse(NGHTTP2_ENHANCE_YOUR_CALM, h->worker()->stats().h2_rapid_resets, "rapid reset");
        return 0;
      case NGHTTP2_SETTINGS:
      case NGHTTP2_PING:
        if ((f->hd.flags & NGHTTP2_FLAG_ACK) == 0 && !h->ControlFrame())
          h->Refuse(NGHTTP2_ENHANCE_YOUR_CALM, h->worker()->stats().h2_floods,
                    "SETTINGS or PING flood");
        return 0;
      case NGHTTP2_PRIORITY:
        if (!h->ControlFrame())
          h->Refuse(NGHTTP2_ENHANCE_YOUR_CALM, h->worker()->stats().h2_floods, "PRIORITY flood");
        return 0;
      default:
        return 0;
    }
  }

  static int OnDataChunk(nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len,
                         void* ud) {
    auto* h = static_cast<H2Session*>(ud);
    H2Stream* st = Stream(s, id);
    if (st == nullptr || st->closed_) {
      nghttp2_session_consume_connection(s, len);
      return 0;
    }
    st->staged_.append(reinterpret_cast<const char*>(data), len);
    st->unconsumed_ += len;
    st->want_input_ = true;
    h->Queue(st);
    return 0;
  }

  static int OnStreamClose(nghttp2_session* s, int32_t id, uint32_t error_code, void* ud) {
    auto* h = static_cast<H2Session*>(ud);
    H2Stream* st = Stream(s, id);
    if (st == nullptr) return 0;
    st->Closed(error_code);
    h->Queue(st);
    return 0;
  }

  // A GOAWAY with an error that no bulwark defence sent: nghttp2 found a protocol error.
  static int OnFrameSend(nghttp2_session*, const nghttp2_frame* f, void* ud) {
    auto* h = static_cast<H2Session*>(ud);
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR && !h->refused_) {
      h->refused_ = true;
      h->worker_->stats().h2_protocol_errors.Add(1);
      LogDebug("http2: ", h->conn_->peer_ip(), ": protocol error ", f->goaway.error_code,
               ", GOAWAY sent");
    }
    return 0;
  }

  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
    return static_cast<H2Stream*>(source->ptr)->ReadBody(buf, length, flags);
  }
};

// H2Stream

H2Stream::H2Stream(Worker* worker) : ex_(worker, this) {
  timer_.set_callback([this] {
    if (closed_) return;
    if (!begun_) {
      session_->worker()->stats().timeouts.Add(1);
      session_->Refuse(NGHTTP2_PROTOCOL_ERROR, session_->worker()->stats().h2_protocol_errors,
                       "client header timeout");
      session_->Flush();
      return;
    }
    ex_.OnTimeout();
  });
  send_timer_.set_callback([this] {
    if (closed_ || aborted_) return;
    // The client's window stayed shut for send_timeout: the stream goes (nginx closes the
    // connection; here the others on it carry on).
    if (ex_.phase() != Exchange::Phase::kProxy) session_->worker()->stats().timeouts.Add(1);
    ex_.OnTimeout();  // logged 499 when the body was still coming, and reset
    if (!aborted_ && !closed_) Abort();
  });
}

H2Stream::~H2Stream() = default;

void H2Stream::Reset(H2Session* session, int32_t id) {
  session_ = session;
  id_ = id;
  request_.Reset();
  header_bytes_ = 0;
  too_large_ = chunked_ = false;
  staged_.clear();
  unconsumed_ = 0;
  end_stream_ = body_ended_ = begun_ = false;
  out_.Clear();
  scanner_.Reset();
  submitted_ = false;
  body_kind_ = http::BodyKind::kNone;
  body_left_ = 0;
  chunks_.Reset();
  body_complete_ = deferred_ = exchange_done_ = aborted_ = closed_ = false;
  close_code_ = 0;
  given_back_ = 0;
  queued_ = want_begin_ = want_input_ = want_drained_ = false;
  ex_.request().bytes_in = 0;
}

void H2Stream::HeadersDone(bool end_stream) {
  end_stream_ = end_stream;
  const GatewayConfig& cfg = session_->worker()->config();
  // The head goes straight into the input buffer, which keeps its size from request to request
  // (it grows for a larger head or a body, up to max_header_bytes + initial_window_size).
  std::string& head = session_->head_scratch_;
  head.clear();
  request_.Build(end_stream, &chunked_, &head);
  size_t body_room =
      end_stream ? 0 : static_cast<size_t>(cfg.http.http2.initial_window_size) + kChunkFraming;
  if (in_.cap < head.size() + body_room) {
    in_.Init(head.size() + body_room);
  } else {
    in_.rpos = in_.wpos = 0;
  }
  std::memcpy(in_.write_ptr(), head.data(), head.size());
  in_.wpos = head.size();
  body_ended_ = end_stream;
  header_bytes_ = request_.list_bytes();
  too_large_ = request_.too_large();
  request_.Reset();
  want_begin_ = true;
  session_->Queue(this);
}

void H2Stream::PumpInput() {
  if (exchange_done_ || !begun_) {
    if (exchange_done_ && unconsumed_ > 0) {
      // The response is out: what the client still sends is dropped, its window given back.
      nghttp2_session_consume(session_->session(), id_, unconsumed_);
      unconsumed_ = 0;
      staged_.clear();
    }
    if (!begun_) return;
  }
  Exchange::Request& r = ex_.request();
  // As DownstreamConn::DoRead: a body that outgrew the buffer loses what was forwarded.
  if (!staged_.empty() && in_.writable() < staged_.size() + kChunkFraming) {
    ex_.DropForwardedBody(in_);
  }
  size_t moved = 0;
  if (!staged_.empty()) {
    size_t room = in_.writable();
    if (chunked_) room = room > kChunkFraming ? room - kChunkFraming : 0;
    moved = std::min(room, staged_.size());
    if (moved > 0) {
      if (chunked_) {
        std::string size;
        AppendHex(&size, moved);
        size.append("\r\n");
        std::memcpy(in_.write_ptr(), size.data(), size.size());
        in_.wpos += size.size();
      }
      std::memcpy(in_.write_ptr(), staged_.data(), moved);
      in_.wpos += moved;
      if (chunked_) {
        std::memcpy(in_.write_ptr(), "\r\n", 2);
        in_.wpos += 2;
      }
      staged_.erase(0, moved);
      r.bytes_in += moved;
    }
  }
  if (end_stream_ && staged_.empty() && !body_ended_) {
    body_ended_ = true;
    if (chunked_ && in_.writable() >= 5) {
      std::memcpy(in_.write_ptr(), "0\r\n\r\n", 5);
      in_.wpos += 5;
    }
  }
}

void H2Stream::GiveBackWindow() {
  // The window reopens by what the exchange has forwarded (body_bytes counts the body's bytes
  // sent on, decoded), never by what merely sits in a buffer: a client is held to one window
  // ahead of the server, which is flow control used as back-pressure.
  uint64_t forwarded = ex_.request().body_bytes;
  if (forwarded <= given_back_ || unconsumed_ == 0 || closed_) return;
  uint64_t n = std::min<uint64_t>(forwarded - given_back_, unconsumed_);
  nghttp2_session_consume(session_->session(), id_, n);
  unconsumed_ -= n;
  given_back_ += n;
}

void H2Stream::ResumeRead() {
  if (closed_) return;
  size_t before = in_.wpos;
  PumpInput();
  if (in_.wpos != before) ex_.OnInput();
  GiveBackWindow();
  session_->FlushSoon();
}

bool H2Stream::SubmitHeads() {
  http::Limits limits;
  limits.max_header_bytes = 2 * kUpstreamBufferBytes;
  limits.max_request_line = 2 * kUpstreamBufferBytes;
  limits.max_headers = 512;
  while (!submitted_) {
    size_t end = 0;
    http::ParseError err;
    http::ParseStatus st = scanner_.Scan(out_.data(), out_.pending(), limits, false, &end, &err);
    if (st == http::ParseStatus::kNeedMore) return true;
    if (st == http::ParseStatus::kDone)
      st = http::ParseResponseHead(out_.data(), end, limits, ex_.request().method, &resp_, &err);
    if (st == http::ParseStatus::kError) {
      LogWarn("http2: a response head bulwark built did not parse: ", err.reason);
      return false;
    }
    // Lowercase names (RFC 9113 8.2.1), without the connection's own fields.
    std::string& names = names_;
    size_t total = 0;
    for (const auto& h : resp_.headers) total += h.name.size();
    names.clear();
    names.reserve(total);  // no reallocation below: the pointers into it stay valid
    std::vector<nghttp2_nv>& nva = nva_;
    nva.clear();
    char status[4] = {static_cast<char>('0' + resp_.status / 100 % 10),
                      static_cast<char>('0' + resp_.status / 10 % 10),
                      static_cast<char>('0' + resp_.status % 10), 0};
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(":status")),
                   reinterpret_cast<uint8_t*>(status), 7, 3, NGHTTP2_NV_FLAG_NONE});
    for (const auto& h : resp_.headers) {
      if (HopByHop(h.name, resp_.connection)) continue;
      size_t at = names.size();
      for (char c : h.name) names.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
      nva.push_back({reinterpret_cast<uint8_t*>(names.data() + at),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(h.value.data())), h.name.size(),
                     h.value.size(), NGHTTP2_NV_FLAG_NONE});
    }
    nghttp2_session* s = session_->session();
    if (resp_.status < 200) {  // 100 Continue and other interim answers: HEADERS, no END_STREAM
      int rv = nghttp2_submit_headers(s, NGHTTP2_FLAG_NONE, id_, nullptr, nva.data(), nva.size(),
                                      nullptr);
      out_.Consumed(end);
      scanner_.Reset();
      if (rv != 0) return false;
      continue;
    }
    body_kind_ = resp_.body;
    body_left_ = resp_.content_length;
    chunks_.Reset();
    bool empty = body_kind_ == http::BodyKind::kNone ||
                 (body_kind_ == http::BodyKind::kLength && body_left_ == 0);
    int rv;
    if (empty) {
      body_complete_ = true;
      rv = nghttp2_submit_response(s, id_, nva.data(), nva.size(), nullptr);
    } else {
      nghttp2_data_provider dp;
      dp.source.ptr = this;
      dp.read_callback = &H2Callbacks::ReadBody;
      rv = nghttp2_submit_response(s, id_, nva.data(), nva.size(), &dp);
    }
    out_.Consumed(end);
    submitted_ = true;
    if (rv != 0) return false;
  }
  return true;
}

ssize_t H2Stream::ReadBody(uint8_t* buf, size_t length, uint32_t* flags) {
  size_t n = 0;
  switch (body_kind_) {
    case http::BodyKind::kLength: {
      n = static_cast<size_t>(std::min<uint64_t>({length, out_.pending(), body_left_}));
      std::memcpy(buf, out_.data(), n);
      out_.Consumed(n);
      body_left_ -= n;
      if (body_left_ == 0) body_complete_ = true;
      break;
    }
    case http::BodyKind::kChunked:
      while (n == 0 && out_.pending() > 0 && !body_complete_) {
        size_t consumed = 0;
        size_t take = std::min(out_.pending(), length);
        auto r = chunks_.Feed(out_.data(), take, &consumed, [&](const char* d, size_t k) {
          std::memcpy(buf + n, d, k);
          n += k;
        });
        out_.Consumed(consumed);
        if (r == http::ChunkedDecoder::Result::kError) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        if (r == http::ChunkedDecoder::Result::kDone) body_complete_ = true;
      }
      break;
    default:  // until the exchange says the response ended
      n = std::min(length, out_.pending());
      std::memcpy(buf, out_.data(), n);
      out_.Consumed(n);
      if (out_.pending() == 0 && exchange_done_) body_complete_ = true;
      break;
  }
  if (body_complete_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    // A chunked body's trailers (gRPC's grpc-status, grpc-message) end the stream as trailing
    // HEADERS (RFC 9113 8.1).
    if (body_kind_ == http::BodyKind::kChunked && !chunks_.trailers().empty() && SubmitTrailers())
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    out_.Clear();
  } else if (n == 0) {
    deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  // send_timeout measures the time between two successful sends, as nginx's: progress
  // re-arms it, an empty queue (nothing waiting for the client's window) stops it.
  if (body_complete_ || out_.pending() == 0) {
    session_->worker()->loop().CancelTimer(&send_timer_);
  } else if (n > 0) {
    session_->worker()->loop().ArmTimer(&send_timer_,
                                        session_->worker()->config().http.send_timeout_ms);
  }
  if (out_.pending() == 0 && !exchange_done_) {
    want_drained_ = true;
    session_->Queue(this);
  }
  return static_cast<ssize_t>(n);
}

bool H2Stream::SubmitTrailers() {
  std::vector<std::pair<std::string, std::string>> fields = http::TrailerFields(chunks_.trailers());
  if (fields.empty()) return false;
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
  for (auto& [name, value] : fields) {
    nva.push_back({reinterpret_cast<uint8_t*>(name.data()),
                   reinterpret_cast<uint8_t*>(value.data()), name.size(), value.size(),
                   NGHTTP2_NV_FLAG_NONE});
  }
  // nghttp2 copies the fields.
  return nghttp2_submit_trailer(session_->session(), id_, nva.data(), nva.size()) == 0;
}

void H2Stream::Write() {
  if (closed_ || aborted_) {
    out_.Clear();
    return;
  }
  if (!submitted_ && !SubmitHeads()) {
    Abort();
    return;
  }
  if (submitted_ && deferred_ && (out_.pending() > 0 || exchange_done_)) {
    deferred_ = false;
    nghttp2_session_resume_data(session_->session(), id_);
  }
  // Body waiting to go: send_timeout starts; ReadBody re-arms it on progress and stops it once
  // the queue is empty (so a client that keeps its window shut is cut off).
  if (submitted_ && !body_complete_ && out_.pending() > 0 && !send_timer_.armed()) {
    session_->worker()->loop().ArmTimer(&send_timer_,
                                        session_->worker()->config().http.send_timeout_ms);
  }
  session_->FlushSoon();
}

void H2Stream::ExchangeDone(bool) {
  // keep_alive does not apply: the connection goes on (keepalive_requests is the session's).
  exchange_done_ = true;
  if (closed_) {  // everything was sent already (see RunQueue)
    session_->Queue(this);
    session_->FlushSoon();
    return;
  }
  if (!body_ended_ || !staged_.empty()) PumpInput();
  Write();
}

void H2Stream::Abort() {
  if (closed_ || aborted_) return;
  aborted_ = true;
  nghttp2_submit_rst_stream(session_->session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_INTERNAL_ERROR);
  session_->Flush();
}

void H2Stream::Closed(uint32_t error_code) {
  closed_ = true;
  close_code_ = error_code;
}

void H2Stream::ArmTimer(int64_t ms) { session_->worker()->loop().ArmTimer(&timer_, ms); }
void H2Stream::CancelTimer() { session_->worker()->loop().CancelTimer(&timer_); }
const SocketAddress& H2Stream::peer() const { return session_->conn()->peer(); }
std::string_view H2Stream::peer_ip() const { return session_->conn()->peer_ip(); }
bool H2Stream::secure() const { return session_->conn()->secure(); }
int H2Stream::listener_index() const { return session_->conn()->listener_index(); }
// Each stream is the first request of its own (keepalive_requests is counted by the session).
int H2Stream::requests() const { return 1; }
Downstream::VerifiedToken& H2Stream::verified_token() { return session_->conn()->verified_token(); }

// H2Session

H2Session::H2Session(DownstreamConn* conn, Worker* worker) : conn_(conn), worker_(worker) {}

H2Session::~H2Session() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

bool H2Session::Start() {
  const HttpConfig& http = worker_->config().http;
  const Http2Config& c = http.http2;
  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &H2Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cb, &H2Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &H2Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &H2Callbacks::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, &H2Callbacks::OnStreamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, &H2Callbacks::OnFrameSend);
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cb);
    return false;
  }
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, static_cast<size_t>(c.max_continuations));
  // nghttp2's own reset limiter stays behind bulwark's (which counts and logs) as a backstop.
  nghttp2_option_set_stream_reset_rate_limit(opt, static_cast<uint64_t>(c.reset_burst) * 2,
                                             static_cast<uint64_t>(c.reset_rate) * 2);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  int rv = nghttp2_session_server_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) return false;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, static_cast<uint32_t>(c.max_concurrent_streams)},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(c.initial_window_size)},
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, static_cast<uint32_t>(c.header_table_size)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(http.limits.max_header_bytes)},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv)) != 0) return false;
  // The connection's window covers every stream's; each stream's own window is the bound.
  int64_t conn_window = std::min<int64_t>(
      kMaxWindow, int64_t{c.initial_window_size} * std::max(1, c.max_concurrent_streams));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(conn_window));
  int64_t now = worker_->loop().now_ms();
  reset_tokens_ = int64_t{c.reset_burst} * 1000;
  control_tokens_ = int64_t{c.control_burst} * 1000;
  reset_at_ms_ = control_at_ms_ = now;
  worker_->stats().h2_connections.Add(1);
  Arm();
  return true;
}

namespace {
// A token bucket in thousandths of a token: `rate` tokens a second up to `burst`.
bool Spend(int64_t* tokens, int64_t* at_ms, int64_t now, int rate, int burst) {
  int64_t elapsed = std::max<int64_t>(0, now - *at_ms);
  *at_ms = now;
  *tokens = std::min<int64_t>(int64_t{burst} * 1000, *tokens + elapsed * rate);
  if (*tokens < 1000) return false;
  *tokens -= 1000;
  return true;
}
}  // namespace

bool H2Session::SpendReset() {
  const Http2Config& c = worker_->config().http.http2;
  return Spend(&reset_tokens_, &reset_at_ms_, worker_->loop().now_ms(), c.reset_rate,
               c.reset_burst);
}

bool H2Session::ControlFrame() {
  const Http2Config& c = worker_->config().http.http2;
  return Spend(&control_tokens_, &control_at_ms_, worker_->loop().now_ms(), c.control_rate,
               c.control_burst);
}

void H2Session::Refuse(uint32_t error, observe::ShardValue& counter, const char* why) {
  if (refused_) return;
  refused_ = true;
  counter.Add(1);
  LogInfo("http2: ", conn_->peer_ip(), ": ", why, "; GOAWAY sent and the connection closed");
  nghttp2_session_terminate_session(session_, error);
}

bool H2Session::Receive(const char* data, size_t n) {
  ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), n);
  if (rv < 0) {
    if (!refused_) {
      refused_ = true;
      if (rv == NGHTTP2_ERR_FLOODED) {
        worker_->stats().h2_floods.Add(1);
      } else {
        worker_->stats().h2_protocol_errors.Add(1);
      }
      LogDebug("http2: ", conn_->peer_ip(), ": ", nghttp2_strerror(static_cast<int>(rv)));
    }
    return false;
  }
  return true;
}

void H2Session::Queue(H2Stream* s) {
  if (s->queued_) return;
  s->queued_ = true;
  queue_.push_back(s);
}

void H2Session::RunQueue() {
  while (!queue_.empty()) {
    // Two vectors trade places so that neither allocates once warm.
    std::vector<H2Stream*> work = std::move(queue_);
    queue_ = std::move(work_);
    queue_.clear();
    for (H2Stream* s : work) {
      s->queued_ = false;
      if (s->closed_) {
        // The last DATA can leave before the exchange has called ExchangeDone (it writes the
        // body, then finishes): the stream waits for it.
        if (s->begun_ && !s->exchange_done_ && !s->aborted_ && s->close_code_ == 0 &&
            s->body_complete_) {
          continue;
        }
        EndStream(s);
        continue;
      }
      if (s->want_begin_) {
        s->want_begin_ = s->want_input_ = false;
        Begin(s);
      } else if (s->want_input_) {
        s->want_input_ = false;
        size_t before = s->in_.wpos;
        s->PumpInput();
        if (s->begun_ && s->in_.wpos != before && !s->closed_) s->ex_.OnInput();
        if (s->begun_) s->GiveBackWindow();
      }
      if (s->want_drained_ && !s->closed_ && !s->aborted_) {
        s->want_drained_ = false;
        s->ex_.OnOutputDrained();
      }
    }
    work.clear();
    work_ = std::move(work);
    if (conn_ == nullptr || !conn_->open_) return;
  }
}

void H2Session::Begin(H2Stream* s) {
  worker_->loop().CancelTimer(&s->timer_);
  s->begun_ = true;
  ++requests_;
  Exchange::Request& r = s->ex_.request();
  r.start_us = MonotonicUs();
  r.start_ms = worker_->loop().now_ms();
  r.bytes_in = s->header_bytes_;
  const HttpConfig& http = worker_->config().http;
  // keepalive_requests applies to streams as nginx (since 1.19.7) applies it: after that many,
  // GOAWAY, and the requests in flight finish.
  if (requests_ >= http.keepalive_requests && !draining_) Drain();
  if (s->too_large_) {
    worker_->stats().parse_errors.Add(1);
    s->ex_.RefuseUnparsed(431, "request header fields too large");
    return;
  }
  size_t end = 0;
  http::ParseError err;
  http::HeadScanner scanner;
  http::ParseStatus st =
      scanner.Scan(s->in_.read_ptr(), s->in_.readable(), http.limits, true, &end, &err);
  if (st == http::ParseStatus::kDone)
    st = http::ParseRequestHead(s->in_.read_ptr(), end, http.limits, &s->req_, &err);
  if (st != http::ParseStatus::kDone) {
    worker_->stats().parse_errors.Add(1);
    s->ex_.RefuseUnparsed(st == http::ParseStatus::kError ? err.status : 431,
                          st == http::ParseStatus::kError ? err.reason : "header too large");
    return;
  }
  s->PumpInput();
  s->ex_.Begin();
  s->GiveBackWindow();
}

void H2Session::EndStream(H2Stream* s) {
  worker_->loop().CancelTimer(&s->timer_);
  worker_->loop().CancelTimer(&s->send_timer_);
  if (s->begun_) {
    bool answered = s->exchange_done_ && s->body_complete_ && s->close_code_ == 0;
    // A reset from the client (or its connection ending) is its abort, logged 499 as nginx.
    if (!answered && !s->exchange_done_ && !s->aborted_) s->ex_.OnClientGone(/*eof=*/true);
    if (answered) s->ex_.Finish();
    s->ex_.End();
  }
  if (s->unconsumed_ > 0 && session_ != nullptr) {
    nghttp2_session_consume_connection(session_, s->unconsumed_);
    s->unconsumed_ = 0;
  }
  live_.erase(std::find(live_.begin(), live_.end(), s));
  --streams_;
  // Freed after the event batch: the exchange that ended may still be on the stack.
  Worker* w = worker_;
  w->loop().Defer([w, s] { w->ReturnH2Stream(s); });
  if (streams_ == 0) Arm();
}

void H2Session::FlushSoon() {
  if (flush_soon_ || conn_ == nullptr || !conn_->open_) return;
  flush_soon_ = true;
  conn_->FlushH2Soon();
}

void H2Session::Flush() {
  flush_soon_ = false;
  if (conn_ == nullptr || !conn_->open_) return;
  if (in_flush_) {
    flush_again_ = true;
    return;
  }
  in_flush_ = true;
  do {
    flush_again_ = false;
    RunQueue();
    if (!conn_->open_) break;
    OutQueue& out = conn_->output();
    for (;;) {
      while (out.pending() < kOutBatch) {
        const uint8_t* p = nullptr;
        ssize_t n = nghttp2_session_mem_send(session_, &p);
        if (n < 0) {
          failed_ = true;
          break;
        }
        if (n == 0) break;
        out.buf.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
      }
      if (out.pending() == 0 || failed_) break;
      if (!conn_->SendQueued()) {
        if (conn_->write_failed()) failed_ = true;
        break;
      }
    }
    RunQueue();  // streams whose output drained while frames were made
  } while (flush_again_ && !failed_ && conn_->open_);
  in_flush_ = false;
  if (conn_->open_ && (failed_ || Finished())) conn_->CloseSoon(/*linger=*/!failed_);
}

bool H2Session::Finished() const {
  if (failed_) return true;
  if (conn_->output().pending() > 0) return false;
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0)
    return true;
  return draining_ && streams_ == 0 && nghttp2_session_want_write(session_) == 0;
}

void H2Session::Drain() {
  if (draining_ || session_ == nullptr) return;
  draining_ = true;
  // One GOAWAY naming the last stream started: those finish, later ones are refused
  // (RFC 9113 6.8; nginx and HAProxy do the same on reload and keepalive_requests).
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

void H2Session::Arm() {
  if (streams_ > 0 || conn_ == nullptr || !conn_->open_) return;
  // Between requests the connection waits keepalive_timeout, as nginx since 1.19.7.
  worker_->loop().ArmTimer(&conn_->timer(), worker_->config().http.keepalive_timeout_ms);
}

void H2Session::OnTimeout() {
  if (conn_->output().pending() > 0) {
    // The socket took nothing for send_timeout.
    worker_->stats().timeouts.Add(1);
    failed_ = true;
    return;
  }
  if (streams_ > 0) return;
  // Idle: say goodbye politely, then close.
  Drain();
  Flush();
  failed_ = true;
}

void H2Session::Shutdown() {
  std::vector<H2Stream*> live = live_;
  for (H2Stream* s : live) {
    s->closed_ = true;
    if (s->close_code_ == 0 && !(s->exchange_done_ && s->body_complete_))
      s->close_code_ = NGHTTP2_CANCEL;
    EndStream(s);
  }
  queue_.clear();
  conn_ = nullptr;
  if (session_ != nullptr) {
    nghttp2_session_del(session_);
    session_ = nullptr;
  }
}

}  // namespace bulwark::gateway
