#include "vault/archive.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>

#include "core/base64.h"
#include "core/strings.h"

namespace bulwark::vault {
namespace {

constexpr char kMagic[8] = {'B', 'W', 'V', 'A', 'U', 'L', 'T', '\n'};
constexpr uint8_t kVersion = 1;
constexpr uint8_t kCipherNone = 0, kCipherAes256Gcm = 1;
constexpr size_t kTagSize = 16;
constexpr size_t kTrailerSize = 8 + 32;  // original size, original SHA-256
constexpr uint32_t kMinChunk = 4096, kMaxChunk = 64u << 20;
constexpr size_t kMaxMetadata = 16384, kMaxKeyId = 64;
constexpr uint32_t kLastFlag = 0x80000000u;
constexpr size_t kSaltSize = 16;
// Fixed part of the header: magic, version, compression, cipher, reserved, chunk size.
constexpr size_t kFixedHeader = 8 + 1 + 1 + 1 + 1 + 4;

void PutU32(std::string* out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out->push_back(static_cast<char>((v >> s) & 0xff));
}
void PutU64(std::string* out, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out->push_back(static_cast<char>((v >> s) & 0xff));
}
uint32_t GetU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}
uint64_t GetU64(const char* p) { return (uint64_t{GetU32(p)} << 32) | GetU32(p + 4); }


std::string Sha256(std::string_view data) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), 32);
}

}  // namespace

// Running SHA-256 of the original bytes and of the archive's bytes.
struct Digests {
  EVP_MD_CTX* raw = EVP_MD_CTX_new();
  EVP_MD_CTX* stored = EVP_MD_CTX_new();
  Digests() {
    EVP_DigestInit_ex(raw, EVP_sha256(), nullptr);
    EVP_DigestInit_ex(stored, EVP_sha256(), nullptr);
  }
  ~Digests() {
    EVP_MD_CTX_free(raw);
    EVP_MD_CTX_free(stored);
  }
  static std::string Final(EVP_MD_CTX* c, bool hex) {
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(c, md, &n);
    return hex ? HexLower(md, 32) : std::string(reinterpret_cast<char*>(md), 32);
  }
};

// Seals and opens chunks. Each archive has its own AES key, HMAC-SHA256(key, "bulwark archive
// v1" ‖ salt) with a random 16-byte salt from the header, so the chunk counter alone is a
// safe GCM nonce: no (key, nonce) pair ever repeats across archives sealed with one key. The
// associated data of chunk i is SHA-256(header) ‖ i ‖ last, so a chunk only opens at its own
// place in its own archive. Without a key the tag is the first 16
// bytes of SHA-256(associated data ‖ payload): corruption is still found, forgery is not
// prevented (that is what the key is for).
struct ChunkCipher {
  bool encrypted = false;
  std::array<uint8_t, 32> key{};  // this archive's key (derived)
  std::string salt;               // 16 bytes, random per archive
  std::string header_hash;        // 32 bytes
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~ChunkCipher() { EVP_CIPHER_CTX_free(ctx); }

  std::string Aad(uint64_t index, bool last) const {
    std::string aad = header_hash;
    PutU64(&aad, index);
    aad.push_back(last ? 1 : 0);
    return aad;
  }
  void Derive(const std::array<uint8_t, 32>& master) {
    std::string msg = "bulwark archive v1" + salt;
    unsigned int n = 0;
    HMAC(EVP_sha256(), master.data(), static_cast<int>(master.size()),
         reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), key.data(), &n);
  }
  static void Nonce(uint64_t index, unsigned char nonce[12]) {
    std::memset(nonce, 0, 4);
    for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<unsigned char>(index >> (56 - 8 * i));
  }
  // Appends the sealed payload and its tag to `out`.
  bool Seal(uint64_t index, bool last, std::string_view payload, std::string* out) {
    std::string aad = Aad(index, last);
    if (!encrypted) {
      out->append(payload);
      std::string sum = Sha256(aad + std::string(payload));
      out->append(sum.data(), kTagSize);
      return true;
    }
    unsigned char nonce[12];
    Nonce(index, nonce);
    size_t at = out->size();
    out->resize(at + payload.size() + kTagSize);
    auto* dst = reinterpret_cast<unsigned char*>(out->data() + at);
    int len = 0;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nonce) != 1) return false;
    if (EVP_EncryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) != 1) {
      return false;
    }
    if (!payload.empty() &&
        EVP_EncryptUpdate(ctx, dst, &len, reinterpret_cast<const unsigned char*>(payload.data()),
                          static_cast<int>(payload.size())) != 1) {
      return false;
    }
    if (EVP_EncryptFinal_ex(ctx, dst + payload.size(), &len) != 1) return false;
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagSize, dst + payload.size()) == 1;
  }
  // The original payload into `out`, or false when the tag does not match.
  bool Open(uint64_t index, bool last, std::string_view payload, std::string_view tag,
            std::string* out) {
    std::string aad = Aad(index, last);
    if (!encrypted) {
      std::string sum = Sha256(aad + std::string(payload));
      if (CRYPTO_memcmp(sum.data(), tag.data(), kTagSize) != 0) return false;
      out->assign(payload);
      return true;
    }
    unsigned char nonce[12];
    Nonce(index, nonce);
    out->resize(payload.size());
    auto* dst = reinterpret_cast<unsigned char*>(out->data());
    int len = 0;
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nonce) != 1) return false;
    if (EVP_DecryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) != 1) {
      return false;
    }
    if (!payload.empty() &&
        EVP_DecryptUpdate(ctx, dst, &len, reinterpret_cast<const unsigned char*>(payload.data()),
                          static_cast<int>(payload.size())) != 1) {
      return false;
    }
    std::string t(tag);
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagSize, t.data()) != 1) return false;
    return EVP_DecryptFinal_ex(ctx, dst + payload.size(), &len) == 1;
  }
};

class Compressor {
 public:
  virtual ~Compressor() = default;
  virtual absl::Status Feed(std::string_view in, std::string* out) = 0;
  virtual absl::Status End(std::string* out) = 0;
};

class Decompressor {
 public:
  virtual ~Decompressor() = default;
  // Output goes to `out` (may be null) and into the raw digest/count via `emit`.
  virtual absl::Status Feed(std::string_view in) = 0;
  virtual absl::Status End() = 0;  // the compressed stream ended where it should
};

namespace {

class NoCompressor final : public Compressor {
 public:
  absl::Status Feed(std::string_view in, std::string* out) override {
    out->append(in);
    return absl::OkStatus();
  }
  absl::Status End(std::string*) override { return absl::OkStatus(); }
};

class ZstdCompressor final : public Compressor {
 public:
  ZstdCompressor() : ctx_(ZSTD_createCCtx()) {}
  ~ZstdCompressor() override { ZSTD_freeCCtx(ctx_); }
  absl::Status Init(int level, int threads, int window_log) {
    if (ctx_ == nullptr) return absl::ResourceExhaustedError("zstd: out of memory");
    size_t r = ZSTD_CCtx_setParameter(ctx_, ZSTD_c_compressionLevel, level);
    if (ZSTD_isError(r))
      return absl::InvalidArgumentError(StrCat("zstd level: ", ZSTD_getErrorName(r)));
    if (window_log > 0) {
      r = ZSTD_CCtx_setParameter(ctx_, ZSTD_c_windowLog, window_log);
      if (ZSTD_isError(r)) {
        return absl::InvalidArgumentError(StrCat("zstd window_log: ", ZSTD_getErrorName(r)));
      }
    }
    if (threads > 0) {
      r = ZSTD_CCtx_setParameter(ctx_, ZSTD_c_nbWorkers, threads);
      if (ZSTD_isError(r)) {
        return absl::InvalidArgumentError(StrCat("zstd threads: ", ZSTD_getErrorName(r)));
      }
    }
    return absl::OkStatus();
  }
  absl::Status Feed(std::string_view in, std::string* out) override {
    return Run(in, ZSTD_e_continue, out);
  }
  absl::Status End(std::string* out) override { return Run({}, ZSTD_e_end, out); }

 private:
  absl::Status Run(std::string_view in, ZSTD_EndDirective mode, std::string* out) {
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    const size_t step = ZSTD_CStreamOutSize();
    for (;;) {
      size_t at = out->size();
      out->resize(at + step);
      ZSTD_outBuffer ob{out->data() + at, step, 0};
      size_t left = ZSTD_compressStream2(ctx_, &ob, &ib, mode);
      out->resize(at + ob.pos);
      if (ZSTD_isError(left)) return absl::InternalError(StrCat("zstd: ", ZSTD_getErrorName(left)));
      bool done = mode == ZSTD_e_end ? left == 0 : ib.pos == ib.size;
      if (done) return absl::OkStatus();
    }
  }
  ZSTD_CCtx* ctx_;
};

class GzipCompressor final : public Compressor {
 public:
  ~GzipCompressor() override {
    if (ready_) deflateEnd(&z_);
  }
  absl::Status Init(int level) {
    // windowBits 15 + 16: a gzip wrapper, what `gzip -d` reads.
    if (deflateInit2(&z_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      return absl::InvalidArgumentError(StrCat("gzip level ", level, " is not 1..9"));
    }
    ready_ = true;
    return absl::OkStatus();
  }
  absl::Status Feed(std::string_view in, std::string* out) override {
    return Run(in, Z_NO_FLUSH, out);
  }
  absl::Status End(std::string* out) override { return Run({}, Z_FINISH, out); }

 private:
  absl::Status Run(std::string_view in, int flush, std::string* out) {
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    for (;;) {
      size_t at = out->size();
      out->resize(at + 65536);
      z_.next_out = reinterpret_cast<Bytef*>(out->data() + at);
      z_.avail_out = 65536;
      int r = deflate(&z_, flush);
      out->resize(at + 65536 - z_.avail_out);
      if (r == Z_STREAM_ERROR) return absl::InternalError("gzip: stream error");
      if (flush == Z_FINISH ? r == Z_STREAM_END : (z_.avail_in == 0 && z_.avail_out != 0)) {
        return absl::OkStatus();
      }
    }
  }
  z_stream z_{};
  bool ready_ = false;
};

// Passes decompressed bytes on, counting and hashing them.
struct RawOut {
  ByteSink* sink;
  EVP_MD_CTX* digest;
  uint64_t* count;
  absl::Status Put(std::string_view data) {
    if (data.empty()) return absl::OkStatus();
    EVP_DigestUpdate(digest, data.data(), data.size());
    *count += data.size();
    return sink != nullptr ? sink->Write(data) : absl::OkStatus();
  }
};

class NoDecompressor final : public Decompressor {
 public:
  explicit NoDecompressor(RawOut out) : out_(out) {}
  absl::Status Feed(std::string_view in) override { return out_.Put(in); }
  absl::Status End() override { return absl::OkStatus(); }

 private:
  RawOut out_;
};

class ZstdDecompressor final : public Decompressor {
 public:
  explicit ZstdDecompressor(RawOut out) : out_(out), ctx_(ZSTD_createDCtx()) {
    // Refuse frames needing more than a 128 MiB window (zstd's own default limit).
    if (ctx_ != nullptr) ZSTD_DCtx_setParameter(ctx_, ZSTD_d_windowLogMax, 27);
    buf_.resize(ZSTD_DStreamOutSize());
  }
  ~ZstdDecompressor() override { ZSTD_freeDCtx(ctx_); }
  absl::Status Feed(std::string_view in) override {
    if (ctx_ == nullptr) return absl::ResourceExhaustedError("zstd: out of memory");
    if (in.empty()) return absl::OkStatus();
    if (frame_done_) return absl::DataLossError("zstd: data after the end of the frame");
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    for (;;) {
      ZSTD_outBuffer ob{buf_.data(), buf_.size(), 0};
      size_t r = ZSTD_decompressStream(ctx_, &ob, &ib);
      if (ZSTD_isError(r)) return absl::DataLossError(StrCat("zstd: ", ZSTD_getErrorName(r)));
      if (auto st = out_.Put(std::string_view(buf_.data(), ob.pos)); !st.ok()) return st;
      if (r == 0) {
        frame_done_ = true;
        if (ib.pos < ib.size) return absl::DataLossError("zstd: data after the end of the frame");
        return absl::OkStatus();
      }
      // All input taken and the output not full: zstd holds nothing more for now.
      if (ib.pos == ib.size && ob.pos < ob.size) return absl::OkStatus();
    }
  }
  absl::Status End() override {
    return frame_done_ ? absl::OkStatus()
                       : absl::DataLossError("zstd: the compressed stream ends early");
  }

 private:
  RawOut out_;
  ZSTD_DCtx* ctx_;
  std::string buf_;
  bool frame_done_ = false;
};

class GzipDecompressor final : public Decompressor {
 public:
  explicit GzipDecompressor(RawOut out) : out_(out) {
    ready_ = inflateInit2(&z_, 15 + 16) == Z_OK;
    buf_.resize(65536);
  }
  ~GzipDecompressor() override {
    if (ready_) inflateEnd(&z_);
  }
  absl::Status Feed(std::string_view in) override {
    if (!ready_) return absl::ResourceExhaustedError("gzip: out of memory");
    if (in.empty()) return absl::OkStatus();
    if (done_) return absl::DataLossError("gzip: data after the end of the stream");
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    for (;;) {
      z_.next_out = reinterpret_cast<Bytef*>(buf_.data());
      z_.avail_out = static_cast<uInt>(buf_.size());
      int r = inflate(&z_, Z_NO_FLUSH);
      if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) {
        return absl::DataLossError(StrCat("gzip: ", z_.msg ? z_.msg : "corrupt stream"));
      }
      if (auto st = out_.Put(std::string_view(buf_.data(), buf_.size() - z_.avail_out)); !st.ok()) {
        return st;
      }
      if (r == Z_STREAM_END) {
        done_ = true;
        if (z_.avail_in > 0) return absl::DataLossError("gzip: data after the end of the stream");
        return absl::OkStatus();
      }
      if (z_.avail_in == 0 && z_.avail_out != 0) return absl::OkStatus();
      if (r == Z_BUF_ERROR && z_.avail_out != 0) return absl::OkStatus();
    }
  }
  absl::Status End() override {
    return done_ ? absl::OkStatus() : absl::DataLossError("gzip: the compressed stream ends early");
  }

 private:
  RawOut out_;
  z_stream z_{};
  std::string buf_;
  bool ready_ = false;
  bool done_ = false;
};

}  // namespace

std::string HexDigest(const unsigned char* p, size_t n) { return HexLower(p, n); }

const char* CompressionName(Compression c) {
  switch (c) {
    case Compression::kNone:
      return "none";
    case Compression::kZstd:
      return "zstd";
    case Compression::kGzip:
      return "gzip";
  }
  return "unknown";
}

std::string KeyId(const std::array<uint8_t, 32>& bytes) {
  std::string in("bulwark archive key id", 23);  // with its terminating NUL
  in.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::string d = Sha256(in);
  return "k-" + HexLower(reinterpret_cast<const unsigned char*>(d.data()), 8);
}

absl::StatusOr<ArchiveKey> ParseKey(std::string_view text) {
  std::string_view t = Trim(text);
  std::string raw;
  bool hex = t.size() == 64;
  for (char c : t) hex = hex && HexDigitValue(c) >= 0;
  if (hex) {
    for (size_t i = 0; i < 64; i += 2) {
      raw.push_back(static_cast<char>(HexDigitValue(t[i]) * 16 + HexDigitValue(t[i + 1])));
    }
  } else {
    auto b = Base64Decode(t);
    if (b.ok()) raw = *b;
  }
  if (raw.size() != 32) {
    return absl::InvalidArgumentError(
        "an archive key is 32 bytes written as 64 hex digits or base64 (make one with `openssl "
        "rand -hex 32`)");
  }
  ArchiveKey k;
  std::memcpy(k.bytes.data(), raw.data(), 32);
  k.id = KeyId(k.bytes);
  return k;
}

absl::Status StringSink::Write(std::string_view d) {
  data.append(d);
  return absl::OkStatus();
}

// ---- writer ----

absl::StatusOr<std::unique_ptr<ArchiveWriter>> ArchiveWriter::Create(const ArchiveOptions& o,
                                                                     ByteSink* out) {
  if (o.chunk_size < kMinChunk || o.chunk_size > kMaxChunk) {
    return absl::InvalidArgumentError(
        StrCat("chunk size ", o.chunk_size, " is not between 4 KiB and 64 MiB"));
  }
  if (o.metadata.size() > kMaxMetadata) {
    return absl::InvalidArgumentError("archive metadata over 16 KiB");
  }
  std::unique_ptr<ArchiveWriter> w(new ArchiveWriter());
  w->out_ = out;
  w->chunk_size_ = o.chunk_size;
  w->digests_ = std::make_unique<Digests>();
  switch (o.compression) {
    case Compression::kNone:
      w->compressor_ = std::make_unique<NoCompressor>();
      break;
    case Compression::kZstd: {
      auto z = std::make_unique<ZstdCompressor>();
      if (auto st = z->Init(o.level, o.threads, o.window_log); !st.ok()) return st;
      w->compressor_ = std::move(z);
      break;
    }
    case Compression::kGzip: {
      auto g = std::make_unique<GzipCompressor>();
      if (auto st = g->Init(o.level); !st.ok()) return st;
      w->compressor_ = std::move(g);
      break;
    }
    default:
      return absl::InvalidArgumentError("unknown compression");
  }
  w->cipher_ = std::make_unique<ChunkCipher>();
  w->cipher_->salt.resize(kSaltSize);
  if (RAND_bytes(reinterpret_cast<unsigned char*>(w->cipher_->salt.data()), kSaltSize) != 1) {
    return absl::InternalError("no random bytes for the archive salt");
  }
  std::string key_id;
  if (o.key != nullptr) {
    w->cipher_->encrypted = true;
    w->cipher_->Derive(o.key->bytes);
    key_id = o.key->id;
  }
  std::string header(kMagic, sizeof(kMagic));
  header.push_back(static_cast<char>(kVersion));
  header.push_back(static_cast<char>(o.compression));
  header.push_back(static_cast<char>(o.key != nullptr ? kCipherAes256Gcm : kCipherNone));
  header.push_back(0);
  PutU32(&header, o.chunk_size);
  header.push_back(static_cast<char>(key_id.size()));
  header += key_id;
  header.push_back(static_cast<char>(o.metadata.size() >> 8));
  header.push_back(static_cast<char>(o.metadata.size() & 0xff));
  header += o.metadata;
  header += w->cipher_->salt;
  w->cipher_->header_hash = Sha256(header);
  EVP_DigestUpdate(w->digests_->stored, header.data(), header.size());
  w->stored_bytes_ = header.size();
  if (auto st = out->Write(header); !st.ok()) return st;
  return w;
}

ArchiveWriter::~ArchiveWriter() = default;

absl::Status ArchiveWriter::Write(std::string_view raw) {
  if (finished_ || failed_)
    return absl::FailedPreconditionError("archive already finished or failed");
  EVP_DigestUpdate(digests_->raw, raw.data(), raw.size());
  raw_bytes_ += raw.size();
  if (auto st = compressor_->Feed(raw, &pending_); !st.ok()) {
    failed_ = true;
    return st;
  }
  return Drain(false);
}

absl::Status ArchiveWriter::Drain(bool last) {
  size_t at = 0;
  while (pending_.size() - at > chunk_size_) {
    if (auto st = Emit(std::string_view(pending_).substr(at, chunk_size_), false); !st.ok()) {
      return st;
    }
    at += chunk_size_;
  }
  if (!last && pending_.size() - at == chunk_size_) {
    if (auto st = Emit(std::string_view(pending_).substr(at, chunk_size_), false); !st.ok()) {
      return st;
    }
    at += chunk_size_;
  }
  pending_.erase(0, at);
  return absl::OkStatus();
}

absl::Status ArchiveWriter::Emit(std::string_view payload, bool last) {
  chunk_.clear();
  PutU32(&chunk_, static_cast<uint32_t>(payload.size()) | (last ? kLastFlag : 0));
  if (!cipher_->Seal(index_, last, payload, &chunk_)) {
    failed_ = true;
    return absl::InternalError("AES-256-GCM encryption failed");
  }
  ++index_;
  EVP_DigestUpdate(digests_->stored, chunk_.data(), chunk_.size());
  stored_bytes_ += chunk_.size();
  if (auto st = out_->Write(chunk_); !st.ok()) {
    failed_ = true;
    return st;
  }
  return absl::OkStatus();
}

absl::Status ArchiveWriter::Finish() {
  if (finished_ || failed_)
    return absl::FailedPreconditionError("archive already finished or failed");
  if (auto st = compressor_->End(&pending_); !st.ok()) {
    failed_ = true;
    return st;
  }
  if (auto st = Drain(true); !st.ok()) return st;
  // The last chunk: what is left of the compressed stream (at most one chunk) and the trailer.
  raw_sha256_ = Digests::Final(digests_->raw, false);
  PutU64(&pending_, raw_bytes_);
  pending_ += raw_sha256_;
  raw_sha256_ = HexLower(reinterpret_cast<const unsigned char*>(raw_sha256_.data()), 32);
  if (auto st = Emit(pending_, true); !st.ok()) return st;
  pending_.clear();
  stored_sha256_ = Digests::Final(digests_->stored, true);
  finished_ = true;
  return absl::OkStatus();
}

// ---- reader ----

ArchiveReader::ArchiveReader(std::vector<ArchiveKey> keys, ByteSink* out)
    : keys_(std::move(keys)), out_(out), digests_(std::make_unique<Digests>()) {}

ArchiveReader::~ArchiveReader() = default;

absl::Status ArchiveReader::Fail(absl::Status st) {
  error_ = st;
  return st;
}

absl::Status ArchiveReader::ParseHeader(bool* done) {
  *done = false;
  if (in_.size() < kFixedHeader) {
    if (std::memcmp(in_.data(), kMagic, std::min(in_.size(), sizeof(kMagic))) != 0) {
      return absl::DataLossError("not a bulwark archive (no BWVAULT magic at its start)");
    }
    return absl::OkStatus();
  }
  if (std::memcmp(in_.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError("not a bulwark archive (no BWVAULT magic at its start)");
  }
  const auto* u = reinterpret_cast<const unsigned char*>(in_.data());
  if (u[8] != kVersion) {
    return absl::DataLossError(StrCat("archive format version ", int{u[8]},
                                      " (this bulwark reads version ", int{kVersion}, ")"));
  }
  if (u[9] > static_cast<uint8_t>(Compression::kGzip)) {
    return absl::DataLossError(StrCat("unknown compression ", int{u[9]}, " in the header"));
  }
  if (u[10] > kCipherAes256Gcm) {
    return absl::DataLossError(StrCat("unknown cipher ", int{u[10]}, " in the header"));
  }
  uint32_t chunk = GetU32(in_.data() + 12);
  if (chunk < kMinChunk || chunk > kMaxChunk) {
    return absl::DataLossError(StrCat("chunk size ", chunk, " in the header is out of range"));
  }
  size_t at = kFixedHeader;
  if (in_.size() < at + 1) return absl::OkStatus();
  size_t key_len = u[at];
  if (key_len > kMaxKeyId) return absl::DataLossError("key id in the header is too long");
  if (in_.size() < at + 1 + key_len + 2) return absl::OkStatus();
  std::string key_id = in_.substr(at + 1, key_len);
  at += 1 + key_len;
  size_t meta_len = (size_t{u[at]} << 8) | u[at + 1];
  if (meta_len > kMaxMetadata) return absl::DataLossError("metadata in the header is too long");
  at += 2;
  if (in_.size() < at + meta_len + kSaltSize) return absl::OkStatus();
  header_.version = u[8];
  header_.compression = static_cast<Compression>(u[9]);
  header_.encrypted = u[10] == kCipherAes256Gcm;
  header_.chunk_size = chunk;
  header_.key_id = key_id;
  header_.metadata = in_.substr(at, meta_len);
  at += meta_len;
  if (header_.encrypted != !key_id.empty()) {
    return absl::DataLossError("the header's cipher and key id disagree");
  }
  if (expect_set_ && key_id != expect_key_id_) {
    return absl::DataLossError(
        expect_key_id_.empty()
            ? StrCat("the catalog says this backup was not encrypted, the archive is (key ",
                     key_id, "): refused (a swapped object)")
            : key_id.empty()
                  ? StrCat("the catalog says this backup was encrypted (key ", expect_key_id_,
                           "), the archive is not: refused (a downgraded or swapped object)")
                  : StrCat("the catalog says this backup was encrypted with key ",
                           expect_key_id_, ", the archive with ", key_id,
                           ": refused (a swapped object)"));
  }
  cipher_ = std::make_unique<ChunkCipher>();
  cipher_->salt = in_.substr(at, kSaltSize);
  at += kSaltSize;
  cipher_->header_hash = Sha256(std::string_view(in_).substr(0, at));
  if (header_.encrypted) {
    const ArchiveKey* k = nullptr;
    for (const ArchiveKey& c : keys_) {
      if (c.id == key_id) k = &c;
    }
    if (k == nullptr) {
      std::string given;
      for (const ArchiveKey& c : keys_) given += (given.empty() ? "" : ", ") + c.id;
      return absl::PermissionDeniedError(
          StrCat("the archive is encrypted with key ", key_id,
                 given.empty() ? "; no key was given" : StrCat("; the key given is ", given)));
    }
    cipher_->encrypted = true;
    cipher_->Derive(k->bytes);
  }
  RawOut raw{out_, digests_->raw, &raw_bytes_};
  switch (header_.compression) {
    case Compression::kNone:
      decompressor_ = std::make_unique<NoDecompressor>(raw);
      break;
    case Compression::kZstd:
      decompressor_ = std::make_unique<ZstdDecompressor>(raw);
      break;
    case Compression::kGzip:
      decompressor_ = std::make_unique<GzipDecompressor>(raw);
      break;
  }
  EVP_DigestUpdate(digests_->stored, in_.data(), at);
  in_.erase(0, at);
  consumed_ += at;
  header_parsed_ = true;
  *done = true;
  return absl::OkStatus();
}

absl::Status ArchiveReader::Write(std::string_view stored) {
  if (!error_.ok()) return error_;
  stored_bytes_ += stored.size();
  if (last_seen_ && !stored.empty()) {
    return Fail(absl::DataLossError(
        StrCat("data after the final chunk at archive offset ", consumed_ + in_.size())));
  }
  in_.append(stored);
  if (!header_parsed_) {
    bool done = false;
    if (auto st = ParseHeader(&done); !st.ok()) return Fail(st);
    if (!done) return absl::OkStatus();
  }
  size_t at = 0;
  const size_t max_payload = size_t{header_.chunk_size} + kTrailerSize;
  while (!last_seen_ && in_.size() - at >= 4) {
    uint32_t word = GetU32(in_.data() + at);
    bool last = (word & kLastFlag) != 0;
    size_t len = word & ~kLastFlag;
    if (len > max_payload) {
      return Fail(
          absl::DataLossError(StrCat("chunk ", index_, " at archive offset ", consumed_ + at,
                                     ": length ", len, " is over the archive's chunk size")));
    }
    if (in_.size() - at < 4 + len + kTagSize) break;
    std::string_view payload = std::string_view(in_).substr(at + 4, len);
    std::string_view tag = std::string_view(in_).substr(at + 4 + len, kTagSize);
    EVP_DigestUpdate(digests_->stored, in_.data() + at, 4 + len + kTagSize);
    if (auto st = Chunk(payload, tag, last, consumed_ + at); !st.ok()) return Fail(st);
    at += 4 + len + kTagSize;
  }
  in_.erase(0, at);
  consumed_ += at;
  if (last_seen_ && !in_.empty()) {
    return Fail(
        absl::DataLossError(StrCat("data after the final chunk at archive offset ", consumed_)));
  }
  return absl::OkStatus();
}

absl::Status ArchiveReader::Chunk(std::string_view payload, std::string_view tag, bool last,
                                  uint64_t offset) {
  if (!cipher_->Open(index_, last, payload, tag, &plain_)) {
    return absl::DataLossError(
        StrCat("chunk ", index_, " at archive offset ", offset,
               header_.encrypted ? " does not authenticate: the archive is corrupt (or was altered)"
                                 : " does not match its checksum: the archive is corrupt"));
  }
  ++index_;
  std::string_view data = plain_;
  if (last) {
    if (data.size() < kTrailerSize) {
      return absl::DataLossError(StrCat("final chunk at archive offset ", offset, " is too short"));
    }
    std::string trailer(data.substr(data.size() - kTrailerSize));
    data.remove_suffix(kTrailerSize);
    if (auto st = decompressor_->Feed(data); !st.ok()) return st;
    if (auto st = decompressor_->End(); !st.ok()) return st;
    std::string sha = Digests::Final(digests_->raw, false);
    uint64_t size = GetU64(trailer.data());
    if (size != raw_bytes_ || sha != trailer.substr(8)) {
      return absl::DataLossError(StrCat("the restored bytes (", raw_bytes_,
                                        ") do not match the archive's record of the original (",
                                        size, " bytes and its SHA-256)"));
    }
    raw_sha256_ = HexLower(reinterpret_cast<const unsigned char*>(sha.data()), 32);
    last_seen_ = true;
    return absl::OkStatus();
  }
  return decompressor_->Feed(data);
}

absl::Status ArchiveReader::Finish() {
  if (!error_.ok()) return error_;
  if (!header_parsed_) {
    return Fail(absl::DataLossError(stored_bytes_ == 0 ? "the archive is empty"
                                                       : "the archive ends inside its header"));
  }
  if (!last_seen_) {
    return Fail(absl::DataLossError(StrCat("the archive ends early: truncated after chunk ", index_,
                                           " at archive offset ", consumed_ + in_.size(),
                                           " (no final chunk)")));
  }
  if (stored_sha256_.empty()) stored_sha256_ = Digests::Final(digests_->stored, true);
  return absl::OkStatus();
}

}  // namespace bulwark::vault
