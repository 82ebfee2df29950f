// Fuzzes the archive reader two ways:
//   1. the input itself as an archive (any bytes: an error or a complete read, never a crash);
//   2. the input as the original bytes of a new archive, written with options taken from its
//      first byte, read back (must equal the input), then read again with one byte flipped at a
//      position taken from the input (must be refused: every byte is authenticated).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "vault/archive.h"

using bulwark::vault::ArchiveKey;
using bulwark::vault::ArchiveOptions;
using bulwark::vault::ArchiveReader;
using bulwark::vault::ArchiveWriter;
using bulwark::vault::Compression;
using bulwark::vault::ParseKey;
using bulwark::vault::StringSink;

namespace {

const ArchiveKey& TestKey() {
  static const ArchiveKey k =
      *ParseKey("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  return k;
}

bool ReadAll(const std::string& archive, size_t piece, std::string* out) {
  StringSink sink;
  ArchiveReader r({TestKey()}, &sink);
  for (size_t at = 0; at < archive.size(); at += piece) {
    if (!r.Write(std::string_view(archive).substr(at, piece)).ok()) return false;
  }
  if (!r.Finish().ok()) return false;
  *out = sink.data;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  std::string out;
  ReadAll(in, 1 + size % 17, &out);
  if (size < 3) return 0;

  uint8_t opts = data[0];
  ArchiveOptions o;
  o.compression = static_cast<Compression>(opts % 3);
  o.key = (opts & 4) ? &TestKey() : nullptr;
  o.chunk_size = 4096;
  o.level = 1;
  if (opts & 8) o.metadata = "{\"fuzz\":true}";
  std::string raw = in.substr(3);
  StringSink sink;
  auto w = ArchiveWriter::Create(o, &sink);
  if (!w.ok() || !(*w)->Write(raw).ok() || !(*w)->Finish().ok()) std::abort();
  if (!ReadAll(sink.data, 4096, &out) || out != raw) std::abort();
  size_t pos = ((size_t{data[1]} << 8) | data[2]) % sink.data.size();
  std::string bad = sink.data;
  bad[pos] = static_cast<char>(bad[pos] ^ (1 + (opts >> 4)));
  if (ReadAll(bad, 4096, &out)) std::abort();  // a changed byte went unnoticed
  return 0;
}
