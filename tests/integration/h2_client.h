// A raw HTTP/2 client for tests: frames are written byte by byte, so a test can send what a
// well-behaved client never would (floods, resets, malformed headers), and frames are read back
// as they come, header blocks decoded by nghttp2's HPACK inflater.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"

namespace bulwark::testing {

inline constexpr uint8_t kH2Data = 0, kH2Headers = 1, kH2Priority = 2, kH2RstStream = 3,
                         kH2Settings = 4, kH2Ping = 6, kH2Goaway = 7, kH2WindowUpdate = 8,
                         kH2Continuation = 9;
inline constexpr uint8_t kH2EndStream = 1, kH2Ack = 1, kH2EndHeaders = 4;

class H2Raw {
 public:
  using Fields = std::vector<std::pair<std::string, std::string>>;

  // Connects to 127.0.0.1:port and, with `preface`, sends the preface and an empty SETTINGS.
  explicit H2Raw(int port, bool preface = true) {
    fd_ = ConnectLoopback(port, 10000);
    nghttp2_hd_inflate_new(&inflater_);
    if (preface) {
      Send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      Frame(kH2Settings, 0, 0, "");
    }
  }
  ~H2Raw() {
    if (fd_ >= 0) close(fd_);
    nghttp2_hd_inflate_del(inflater_);
  }
  bool ok() const { return fd_ >= 0; }

  bool Send(const std::string& bytes) {
    size_t off = 0;
    while (fd_ >= 0 && off < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return off == bytes.size();
  }
  static std::string FrameBytes(uint8_t type, uint8_t flags, uint32_t stream,
                                const std::string& payload) {
    std::string f;
    size_t n = payload.size();
    f.push_back(static_cast<char>(n >> 16));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n));
    f.push_back(static_cast<char>(type));
    f.push_back(static_cast<char>(flags));
    for (int i = 3; i >= 0; --i) f.push_back(static_cast<char>((stream >> (8 * i)) & 0xff));
    return f + payload;
  }
  bool Frame(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
    return Send(FrameBytes(type, flags, stream, payload));
  }
  static std::string U32(uint32_t v) {
    std::string s;
    for (int i = 3; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return s;
  }
  // HPACK integers (RFC 7541 5.1) with a 7-bit prefix.
  static void AppendInt(std::string* out, size_t v, uint8_t first) {
    if (v < 127) {
      out->push_back(static_cast<char>(first | v));
      return;
    }
    out->push_back(static_cast<char>(first | 127));
    v -= 127;
    while (v >= 128) {
      out->push_back(static_cast<char>(0x80 | (v & 0x7f)));
      v >>= 7;
    }
    out->push_back(static_cast<char>(v));
  }
  // A header block of literal fields without indexing, no Huffman: exactly the bytes given.
  static std::string Block(const Fields& fields) {
    std::string b;
    for (const auto& [name, value] : fields) {
      b.push_back(0);
      AppendInt(&b, name.size(), 0);
      b += name;
      AppendInt(&b, value.size(), 0);
      b += value;
    }
    return b;
  }
  static Fields Get(const std::string& path, int port = 0) {
    return {{":method", "GET"},
            {":scheme", "http"},
            {":path", path},
            {":authority", "127.0.0.1:" + std::to_string(port)}};
  }
  bool Headers(uint32_t stream, const Fields& fields, bool end_stream) {
    return Frame(kH2Headers, static_cast<uint8_t>(kH2EndHeaders | (end_stream ? kH2EndStream : 0)),
                 stream, Block(fields));
  }

  struct Frame_ {
    bool ok = false;
    uint8_t type = 0, flags = 0;
    uint32_t stream = 0;
    std::string payload;
    uint32_t code() const {  // RST_STREAM's or GOAWAY's error code, WINDOW_UPDATE's increment
      size_t at = type == kH2Goaway ? 4 : 0;
      if (payload.size() < at + 4) return 0xffffffff;
      uint32_t v = 0;
      for (size_t i = at; i < at + 4; ++i) v = (v << 8) | static_cast<uint8_t>(payload[i]);
      return v;
    }
  };
  // The next frame; ok=false at EOF or after timeout_ms. SETTINGS are acknowledged and DATA's
  // window given back (auto_window) as a client library would.
  Frame_ Next(int timeout_ms = 5000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      if (buf_.size() >= 9) {
        size_t len = (static_cast<uint8_t>(buf_[0]) << 16) | (static_cast<uint8_t>(buf_[1]) << 8) |
                     static_cast<uint8_t>(buf_[2]);
        if (buf_.size() >= 9 + len) {
          Frame_ f;
          f.ok = true;
          f.type = static_cast<uint8_t>(buf_[3]);
          f.flags = static_cast<uint8_t>(buf_[4]);
          for (int i = 5; i < 9; ++i) f.stream = (f.stream << 8) | static_cast<uint8_t>(buf_[i]);
          f.stream &= 0x7fffffff;
          f.payload = buf_.substr(9, len);
          buf_.erase(0, 9 + len);
          if (f.type == kH2Settings && !(f.flags & kH2Ack)) Frame(kH2Settings, kH2Ack, 0, "");
          if (f.type == kH2Data && auto_window && !f.payload.empty()) {
            Frame(kH2WindowUpdate, 0, 0, U32(static_cast<uint32_t>(f.payload.size())));
            Frame(kH2WindowUpdate, 0, f.stream, U32(static_cast<uint32_t>(f.payload.size())));
          }
          return f;
        }
      }
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      if (left <= 0 || fd_ < 0) return {};
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, left) <= 0) return {};
      char tmp[65536];
      ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) {
        eof = true;
        return {};
      }
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }
  // Frames until a GOAWAY (its error code) or the end of the connection (-1).
  int64_t UntilGoaway(int timeout_ms = 5000) {
    for (;;) {
      Frame_ f = Next(timeout_ms);
      if (!f.ok) return -1;
      if (f.type == kH2Goaway) return f.code();
    }
  }
  // Decodes a header block.
  std::map<std::string, std::string> Decode(const std::string& block) {
    std::map<std::string, std::string> out;
    const auto* in = reinterpret_cast<const uint8_t*>(block.data());
    size_t left = block.size();
    for (;;) {
      nghttp2_nv nv;
      int flags = 0;
      ssize_t n = nghttp2_hd_inflate_hd2(inflater_, &nv, &flags, in, left, 1);
      if (n < 0) {
        out["!error"] = "hpack";
        return out;
      }
      in += n;
      left -= static_cast<size_t>(n);
      if (flags & NGHTTP2_HD_INFLATE_EMIT) {
        std::string name(reinterpret_cast<char*>(nv.name), nv.namelen);
        std::string value(reinterpret_cast<char*>(nv.value), nv.valuelen);
        if (out.count(name))
          out[name] += ", " + value;
        else
          out[name] = value;
      }
      if (flags & NGHTTP2_HD_INFLATE_FINAL) {
        nghttp2_hd_inflate_end_headers(inflater_);
        break;
      }
      if ((flags & NGHTTP2_HD_INFLATE_EMIT) == 0 && left == 0) break;
    }
    return out;
  }

  struct Result {
    int status = 0;                               // the final :status (0: none)
    std::vector<int> interim;                     // 1xx statuses
    std::map<std::string, std::string> headers;   // the final response's
    std::map<std::string, std::string> trailers;  // a HEADERS after the final response's
    std::string body;
    int64_t rst = -1;     // RST_STREAM code on the stream
    int64_t goaway = -1;  // GOAWAY code
    bool ended = false;   // END_STREAM seen
  };
  // Reads the response on `stream` until its END_STREAM, its RST_STREAM, a GOAWAY or EOF.
  Result Response(uint32_t stream, int timeout_ms = 5000) {
    Result r;
    for (;;) {
      Frame_ f = Next(timeout_ms);
      if (!f.ok) return r;
      if (f.type == kH2Goaway) {
        r.goaway = f.code();
        return r;
      }
      if (f.stream != stream) continue;
      if (f.type == kH2RstStream) {
        r.rst = f.code();
        return r;
      }
      if (f.type == kH2Headers) {
        std::string block = f.payload;
        if (f.flags & 0x8)
          block = block.substr(1, block.size() - 1 - static_cast<uint8_t>(f.payload[0]));
        if (f.flags & 0x20) block = block.substr(5);
        auto h = Decode(block);
        int st = h.count(":status") ? std::stoi(h[":status"]) : 0;
        if (st >= 100 && st < 200) {
          r.interim.push_back(st);
        } else if (r.status == 0) {
          r.status = st;
          r.headers = h;
        } else {
          r.trailers = h;
        }
      }
      if (f.type == kH2Data) r.body += f.payload;
      if ((f.type == kH2Data || f.type == kH2Headers) && (f.flags & kH2EndStream)) {
        r.ended = true;
        return r;
      }
    }
  }

  bool auto_window = true;
  bool eof = false;

 private:
  int fd_ = -1;
  std::string buf_;
  nghttp2_hd_inflater* inflater_ = nullptr;
};

}  // namespace bulwark::testing
