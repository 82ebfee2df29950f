#include "http/chunked.h"

#include <algorithm>

#include "core/strings.h"

namespace bulwark::http {
namespace {
constexpr size_t kMaxExtBytes = 4096;
constexpr size_t kMaxTrailerBytes = 16384;
}  // namespace

ChunkedDecoder::Result ChunkedDecoder::Feed(const char* data, size_t len, size_t* consumed,
                                            absl::FunctionRef<void(const char*, size_t)> on_data) {
  size_t i = 0;
  while (i < len) {
    char c = data[i];
    switch (state_) {
      case State::kSize: {
        int h = HexDigitValue(c);
        if (h >= 0) {
          if (++digits_ > 15) return Fail("chunk size too large");
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(h);
          ++i;
          break;
        }
        if (digits_ == 0) return Fail("invalid chunk size");
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == ';') {
          state_ = State::kExt;
        } else if (c == ' ' || c == '\t') {
          state_ = State::kSizeWs;  // BWS before a chunk extension
        } else {
          return Fail("invalid chunk size");
        }
        ++i;
        break;
      }
      case State::kSizeWs:
        if (c == ' ' || c == '\t') {
          if (++line_bytes_ > kMaxExtBytes) return Fail("chunk extension too long");
        } else if (c == ';') {
          state_ = State::kExt;
        } else {
          return Fail("invalid chunk size");
        }
        ++i;
        break;
      case State::kExt:
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == '\n') {
          return Fail("bare LF in chunk extension");
        } else if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
          return Fail("invalid character in chunk extension");
        } else if (++line_bytes_ > kMaxExtBytes) {
          return Fail("chunk extension too long");
        }
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') return Fail("chunk size line not ended by CRLF");
        ++i;
        line_bytes_ = 0;
        digits_ = 0;
        if (remaining_ == 0) {
          state_ = State::kTrailerStart;
        } else {
          state_ = State::kData;
        }
        break;
      case State::kData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, len - i));
        on_data(data + i, n);
        body_bytes_ += n;
        remaining_ -= n;
        i += n;
        if (remaining_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        if (c != '\r') return Fail("chunk data not followed by CRLF");
        state_ = State::kDataLf;
        ++i;
        break;
      case State::kDataLf:
        if (c != '\n') return Fail("chunk data not followed by CRLF");
        state_ = State::kSize;
        ++i;
        break;
      case State::kTrailerStart:
        if (c == '\r') {
          state_ = State::kFinalLf;
        } else if (c == '\n') {
          return Fail("bare LF after last chunk");
        } else {
          state_ = State::kTrailer;
          continue;  // re-examine c as part of a trailer line
        }
        ++i;
        break;
      case State::kTrailer:
        if (++trailer_bytes_ > kMaxTrailerBytes) return Fail("trailer section too large");
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n') {
          return Fail("bare LF in trailer");
        }
        trailers_.push_back(c);
        ++i;
        break;
      case State::kTrailerLf:
        if (c != '\n') return Fail("trailer line not ended by CRLF");
        trailers_.push_back(c);
        state_ = State::kTrailerStart;
        ++i;
        break;
      case State::kFinalLf:
        if (c != '\n') return Fail("last chunk not ended by CRLF");
        state_ = State::kDone;
        ++i;
        *consumed = i;
        return Result::kDone;
      case State::kDone:
        *consumed = i;
        return Result::kDone;
    }
  }
  *consumed = i;
  return state_ == State::kDone ? Result::kDone : Result::kNeedMore;
}

}  // namespace bulwark::http
