// The backup archive: one streaming pipeline from the source's bytes to what storage keeps,
// never the whole backup in memory or in a temp file.
//
//   original bytes → compress (zstd or gzip) → cut into chunks → AES-256-GCM per chunk → store
//
// Each chunk is authenticated on its own (its index and whether it is the last are part of
// what is authenticated), so a reader notices a corrupt byte, a reordered, missing or extra chunk
// and a truncated archive at the chunk where it happens, and never passes unauthenticated bytes
// on. The last chunk carries the original size and SHA-256, so a complete read proves the end
// to end result too. The byte layout is docs/formats/archive.md.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/byte_sink.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bulwark::vault {

enum class Compression : uint8_t { kNone = 0, kZstd = 1, kGzip = 2 };
const char* CompressionName(Compression c);

// A 256-bit archive key. Its id is recorded in every archive it encrypts, so a reader given the
// wrong key says so before trying to decrypt anything.
struct ArchiveKey {
  std::array<uint8_t, 32> bytes{};
  std::string id;  // KeyId(bytes)
};

// "k-" and the first 16 hex digits of SHA-256("bulwark archive key id\0" + key): names the key
// without revealing it.
std::string KeyId(const std::array<uint8_t, 32>& bytes);

// A key as operators write it: 64 hex digits (`openssl rand -hex 32`) or base64 of 32 bytes,
// surrounding whitespace ignored.
absl::StatusOr<ArchiveKey> ParseKey(std::string_view text);

// Lower-case hex of `n` bytes (SHA-256 digests in the catalog and in messages).
std::string HexDigest(const unsigned char* p, size_t n);

// Keeps everything in memory (tests, small metadata).
class StringSink final : public ByteSink {
 public:
  absl::Status Write(std::string_view data) override;
  std::string data;
};

struct ArchiveOptions {
  Compression compression = Compression::kZstd;
  int level = 3;                    // zstd 1..19, gzip 1..9
  int threads = 0;                  // zstd worker threads; 0 compresses on the caller's thread
  int window_log = 0;               // zstd window 2^N bytes (10..27); 0: the level's own
  const ArchiveKey* key = nullptr;  // null: not encrypted (chunks still carry a checksum)
  uint32_t chunk_size = 1 << 20;    // compressed bytes per chunk, 4 KiB .. 64 MiB
  std::string metadata;             // stored in clear in the header (JSON), at most 16 KiB
};

// What an archive's header says.
struct ArchiveHeader {
  uint8_t version = 0;
  Compression compression = Compression::kNone;
  bool encrypted = false;
  uint32_t chunk_size = 0;
  std::string key_id;
  std::string metadata;
};

class Compressor;
class Decompressor;
struct ChunkCipher;

// Writes an archive of the bytes given to Write() into `out`. Nothing is complete until Finish()
// has returned OK: an archive without its final chunk is refused by every reader.
class ArchiveWriter final : public ByteSink {
 public:
  static absl::StatusOr<std::unique_ptr<ArchiveWriter>> Create(const ArchiveOptions& options,
                                                               ByteSink* out);
  ~ArchiveWriter() override;
  absl::Status Write(std::string_view raw) override;
  absl::Status Finish();

  uint64_t raw_bytes() const { return raw_bytes_; }
  uint64_t stored_bytes() const { return stored_bytes_; }
  // Hex SHA-256 of the original bytes and of the archive's bytes (valid after Finish()).
  const std::string& raw_sha256() const { return raw_sha256_; }
  const std::string& stored_sha256() const { return stored_sha256_; }

 private:
  ArchiveWriter() = default;
  absl::Status Emit(std::string_view payload, bool last);
  absl::Status Drain(bool last);

  ByteSink* out_ = nullptr;
  uint32_t chunk_size_ = 0;
  std::unique_ptr<Compressor> compressor_;
  std::unique_ptr<ChunkCipher> cipher_;
  std::string pending_;  // compressed bytes not yet in a chunk
  std::string chunk_;    // scratch for one encrypted chunk
  uint64_t index_ = 0;
  uint64_t raw_bytes_ = 0, stored_bytes_ = 0;
  std::unique_ptr<struct Digests> digests_;
  std::string raw_sha256_, stored_sha256_;
  bool finished_ = false;
  bool failed_ = false;
};

// Reads an archive pushed to it in pieces of any size and writes the original bytes to `out`
// (null: verify only). Every error names the chunk and the archive offset where it was found.
class ArchiveReader final : public ByteSink {
 public:
  ArchiveReader(std::vector<ArchiveKey> keys, ByteSink* out);
  ~ArchiveReader() override;
  // What the catalog says the archive is: encrypted with `key_id` ("" when it was not). An
  // archive that says otherwise is refused at its header, before a byte reaches `out` — an
  // unencrypted archive has no chunk authentication, so a downgraded or swapped object would
  // otherwise be passed on until the SHA-256 at its end.
  void Expect(std::string key_id) {
    expect_set_ = true;
    expect_key_id_ = std::move(key_id);
  }
  absl::Status Write(std::string_view stored) override;
  // The archive is complete: its final chunk was read and the original size and SHA-256 match.
  absl::Status Finish();

  const ArchiveHeader* header() const { return header_parsed_ ? &header_ : nullptr; }
  uint64_t raw_bytes() const { return raw_bytes_; }
  uint64_t stored_bytes() const { return stored_bytes_; }
  const std::string& raw_sha256() const { return raw_sha256_; }
  const std::string& stored_sha256() const { return stored_sha256_; }

 private:
  absl::Status ParseHeader(bool* done);
  absl::Status Chunk(std::string_view payload, std::string_view tag, bool last, uint64_t offset);
  absl::Status Fail(absl::Status st);

  std::vector<ArchiveKey> keys_;
  ByteSink* out_;
  bool expect_set_ = false;
  std::string expect_key_id_;
  std::string in_;  // stored bytes not yet used
  bool header_parsed_ = false;
  ArchiveHeader header_;
  std::unique_ptr<ChunkCipher> cipher_;
  std::unique_ptr<Decompressor> decompressor_;
  std::unique_ptr<struct Digests> digests_;
  std::string plain_;  // scratch for one decrypted chunk
  uint64_t index_ = 0;
  uint64_t consumed_ = 0;  // archive offset of in_[0]
  uint64_t raw_bytes_ = 0, stored_bytes_ = 0;
  std::string raw_sha256_, stored_sha256_;
  bool last_seen_ = false;
  absl::Status error_;
};

}  // namespace bulwark::vault
