// Incremental decoder for the chunked transfer coding (RFC 9112 7.1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"

namespace bulwark::http {

// Decodes chunked framing a piece at a time. Sizes are at most 15 hex digits (no overflow),
// extensions and trailers are bounded, and every line must end in CRLF. Trailers are consumed
// and dropped. One decoder per message; Reset() for the next.
class ChunkedDecoder {
 public:
  enum class Result { kNeedMore, kDone, kError };

  void Reset() { *this = ChunkedDecoder(); }
  // Consumes from data[0..len); calls on_data for each piece of chunk data. Sets *consumed to the
  // bytes used (on kDone, the bytes after it belong to the next message).
  Result Feed(const char* data, size_t len, size_t* consumed,
              absl::FunctionRef<void(const char*, size_t)> on_data);
  const char* error() const { return error_; }
  uint64_t body_bytes() const { return body_bytes_; }
  // The trailer section's lines as received ("Name: value\r\n" each; empty when there were
  // none), at most 16 KiB: an HTTP/2 client gets them as trailing HEADERS (gRPC's status).
  const std::string& trailers() const { return trailers_; }

 private:
  enum class State : uint8_t {
    kSize,
    kSizeWs,
    kExt,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailerStart,
    kTrailer,
    kTrailerLf,
    kFinalLf,
    kDone
  };
  Result Fail(const char* why) {
    error_ = why;
    return Result::kError;
  }

  State state_ = State::kSize;
  uint64_t remaining_ = 0;
  int digits_ = 0;
  size_t line_bytes_ = 0;
  size_t trailer_bytes_ = 0;
  uint64_t body_bytes_ = 0;
  const char* error_ = nullptr;
  std::string trailers_;
};

}  // namespace bulwark::http
