#include "vault/archive.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <random>

namespace bulwark::vault {
namespace {

ArchiveKey Key(const char* hex) { return *ParseKey(hex); }
const char* kHexA = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const char* kHexB = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

// Compressible text with some noise, `n` bytes.
std::string Data(size_t n, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(n);
  while (out.size() < n) {
    out += "row " + std::to_string(rng() % 1000) + " tenant " + std::to_string(rng() % 8) + "\n";
    if (rng() % 4 == 0) out.push_back(static_cast<char>(rng()));
  }
  out.resize(n);
  return out;
}

std::string Sha256Hex(const std::string& s) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

struct Built {
  std::string archive, raw_sha, stored_sha;
};

Built Build(const std::string& raw, ArchiveOptions o, size_t piece = 7777) {
  StringSink sink;
  auto w = ArchiveWriter::Create(o, &sink);
  EXPECT_TRUE(w.ok()) << w.status();
  for (size_t at = 0; at < raw.size(); at += piece) {
    EXPECT_TRUE((*w)->Write(std::string_view(raw).substr(at, piece)).ok());
  }
  EXPECT_TRUE((*w)->Finish().ok());
  EXPECT_EQ((*w)->raw_bytes(), raw.size());
  EXPECT_EQ((*w)->stored_bytes(), sink.data.size());
  return {sink.data, (*w)->raw_sha256(), (*w)->stored_sha256()};
}

// Reads `archive` in pieces of `piece` bytes; returns the error text or "" with `out` filled.
std::string Read(const std::string& archive, std::vector<ArchiveKey> keys, std::string* out,
                 size_t piece = 1000) {
  StringSink sink;
  ArchiveReader r(std::move(keys), &sink);
  for (size_t at = 0; at < archive.size(); at += piece) {
    auto st = r.Write(std::string_view(archive).substr(at, piece));
    if (!st.ok()) return std::string(st.message());
  }
  auto st = r.Finish();
  if (!st.ok()) return std::string(st.message());
  if (out != nullptr) *out = sink.data;
  return "";
}

TEST(Archive, RoundTripsEveryCompressionWithAndWithoutAKey) {
  ArchiveKey key = Key(kHexA);
  for (Compression c : {Compression::kNone, Compression::kZstd, Compression::kGzip}) {
    for (bool encrypt : {false, true}) {
      // Empty, tiny, around the chunk size, and many chunks (incompressible too).
      for (size_t n :
           {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097}, size_t{300000}}) {
        for (bool noise : {false, true}) {
          std::string raw = noise ? Data(n, 7) : std::string(n, 'x');
          if (noise) {
            std::mt19937 rng(n);
            for (auto& ch : raw) ch = static_cast<char>(rng());  // incompressible
          }
          ArchiveOptions o;
          o.compression = c;
          o.key = encrypt ? &key : nullptr;
          o.chunk_size = 4096;
          o.metadata = R"({"source":"test"})";
          Built b = Build(raw, o);
          EXPECT_EQ(b.raw_sha, Sha256Hex(raw));
          EXPECT_EQ(b.stored_sha, Sha256Hex(b.archive));
          for (size_t piece : {size_t{1} << 20, size_t{333}, size_t{1}}) {
            if (piece == 1 && b.archive.size() > 50000) continue;
            std::string out;
            ASSERT_EQ(Read(b.archive, {key}, &out, piece), "")
                << CompressionName(c) << " encrypt=" << encrypt << " n=" << n;
            EXPECT_TRUE(out == raw) << CompressionName(c) << " n=" << n;
          }
          StringSink none;
          ArchiveReader r({key}, nullptr);  // verify only
          ASSERT_TRUE(r.Write(b.archive).ok());
          ASSERT_TRUE(r.Finish().ok());
          EXPECT_EQ(r.raw_sha256(), Sha256Hex(raw));
          EXPECT_EQ(r.stored_sha256(), Sha256Hex(b.archive));
          EXPECT_EQ(r.header()->metadata, o.metadata);
          EXPECT_EQ(r.header()->encrypted, encrypt);
        }
      }
    }
  }
}

TEST(Archive, CompressesAndUsesZstdThreads) {
  std::string raw = Data(4 << 20);
  ArchiveKey key = Key(kHexA);
  ArchiveOptions o;
  o.key = &key;
  o.threads = 2;
  o.level = 3;
  Built b = Build(raw, o, 1 << 16);
  EXPECT_LT(b.archive.size(), raw.size() / 3);
  std::string out;
  ASSERT_EQ(Read(b.archive, {key}, &out, 1 << 16), "");
  EXPECT_TRUE(out == raw);
  // The encrypted archive does not contain the text.
  EXPECT_EQ(b.archive.find("tenant"), std::string::npos);
}

TEST(Archive, EveryCorruptByteIsFound) {
  ArchiveKey key = Key(kHexA);
  for (bool encrypt : {true, false}) {
    std::string raw = Data(20000, 3);
    ArchiveOptions o;
    o.key = encrypt ? &key : nullptr;
    o.chunk_size = 4096;
    o.compression = Compression::kNone;  // several chunks
    Built b = Build(raw, o);
    // Each byte of the header, and bytes spread over the chunks (lengths, payloads, tags).
    for (size_t i = 0; i < b.archive.size(); i += (i < 64 ? 1 : 97)) {
      std::string bad = b.archive;
      bad[i] = static_cast<char>(bad[i] ^ 0x01);
      std::string out;
      std::string err = Read(bad, {key}, &out);
      EXPECT_NE(err, "") << "flipped byte " << i << " of " << b.archive.size()
                         << " went unnoticed (encrypt=" << encrypt << ")";
    }
  }
}

TEST(Archive, WrongKeyTruncationAndExtraDataAreClearErrors) {
  ArchiveKey a = Key(kHexA), b = Key(kHexB);
  EXPECT_NE(a.id, b.id);
  std::string raw = Data(50000, 5);
  ArchiveOptions o;
  o.key = &a;
  o.chunk_size = 4096;
  o.compression = Compression::kNone;
  Built built = Build(raw, o);
  std::string out;
  EXPECT_EQ(Read(built.archive, {b}, &out),
            "the archive is encrypted with key " + a.id + "; the key given is " + b.id);
  EXPECT_EQ(Read(built.archive, {}, &out),
            "the archive is encrypted with key " + a.id + "; no key was given");
  EXPECT_EQ(Read(built.archive, {b, a}, &out), "");  // a key ring: the right one is picked

  // Cut at every chunk boundary and inside chunks: never accepted.
  for (size_t cut : {size_t{3}, size_t{20}, size_t{100}, built.archive.size() / 2,
                     built.archive.size() - 17, built.archive.size() - 1}) {
    std::string err = Read(built.archive.substr(0, cut), {a}, &out);
    EXPECT_NE(err, "") << "cut at " << cut;
  }
  EXPECT_NE(Read(built.archive.substr(0, built.archive.size() / 2), {a}, &out)
                .find("the archive ends early: truncated after chunk"),
            std::string::npos);
  EXPECT_NE(Read(built.archive + "x", {a}, &out).find("data after the final chunk"),
            std::string::npos);
  // Two archives glued: the second starts after the first's final chunk.
  EXPECT_NE(Read(built.archive + built.archive, {a}, &out), "");
  EXPECT_EQ(Read("PGDMP custom dump", {a}, &out),
            "not a bulwark archive (no BWVAULT magic at its start)");
  EXPECT_EQ(Read("", {a}, &out), "the archive is empty");
}

TEST(Archive, ChunksCannotBeReorderedOrDropped) {
  ArchiveKey key = Key(kHexA);
  std::string raw = Data(3 * 4096, 9);
  ArchiveOptions o;
  o.key = &key;
  o.chunk_size = 4096;
  o.compression = Compression::kNone;
  Built b = Build(raw, o);
  // Header length: magic..chunk size (16) + key id (1 + 18) + metadata (2 + 0) + salt (16).
  size_t header = 16 + 1 + key.id.size() + 2 + 16;
  size_t chunk = 4 + 4096 + 16;
  ASSERT_EQ(b.archive.size(), header + 3 * chunk + 4 + 40 + 16);
  std::string swapped = b.archive.substr(0, header) + b.archive.substr(header + chunk, chunk) +
                        b.archive.substr(header, chunk) + b.archive.substr(header + 2 * chunk);
  std::string out;
  EXPECT_NE(Read(swapped, {key}, &out).find("chunk 0 at archive offset"), std::string::npos);
  std::string dropped = b.archive.substr(0, header) + b.archive.substr(header + chunk);
  EXPECT_NE(Read(dropped, {key}, &out), "");
}

TEST(Archive, KeysAndOptionsAreChecked) {
  EXPECT_TRUE(ParseKey(kHexA).ok());
  EXPECT_TRUE(ParseKey(std::string("  ") + kHexA + "\n").ok());
  auto b64 = ParseKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
  ASSERT_TRUE(b64.ok());
  EXPECT_EQ(b64->id, Key(kHexA).id);
  EXPECT_FALSE(ParseKey("secret").ok());
  EXPECT_FALSE(ParseKey(std::string(kHexA).substr(2)).ok());
  EXPECT_EQ(Key(kHexA).id.substr(0, 2), "k-");
  EXPECT_EQ(Key(kHexA).id.size(), 18u);
  StringSink s;
  ArchiveOptions o;
  o.chunk_size = 100;
  EXPECT_FALSE(ArchiveWriter::Create(o, &s).ok());
  o.chunk_size = 4096;
  o.metadata.assign(20000, 'm');
  EXPECT_FALSE(ArchiveWriter::Create(o, &s).ok());
  o.metadata.clear();
  o.compression = Compression::kGzip;
  o.level = 42;
  EXPECT_FALSE(ArchiveWriter::Create(o, &s).ok());
}

// A sink that fails: the writer reports it and refuses to go on.
class FailingSink : public ByteSink {
 public:
  absl::Status Write(std::string_view) override {
    return ++calls > 2 ? absl::UnavailableError("disk full") : absl::OkStatus();
  }
  int calls = 0;
};

TEST(Archive, AStorageErrorStopsTheWriter) {
  FailingSink sink;
  ArchiveOptions o;
  o.chunk_size = 4096;
  o.compression = Compression::kNone;
  auto w = ArchiveWriter::Create(o, &sink);
  ASSERT_TRUE(w.ok());
  absl::Status st;
  std::string raw = Data(40000);
  for (size_t at = 0; at < raw.size() && st.ok(); at += 1000) {
    st = (*w)->Write(std::string_view(raw).substr(at, 1000));
  }
  EXPECT_EQ(st.message(), "disk full");
  EXPECT_FALSE((*w)->Write("more").ok());
  EXPECT_FALSE((*w)->Finish().ok());
}

}  // namespace
}  // namespace bulwark::vault
