// The HTTP/1.1 request head that an HTTP/2 request stands for (RFC 9113 8.3, 8.2.3), built
// from the fields of its header block: what lets an HTTP/2 stream drive the same request
// pipeline as an HTTP/1.1 connection (nginx's HTTP/2 module does the same). The fields arrive
// validated by the HTTP/2 codec (lowercase names, no CR, LF or NUL, pseudo-header rules).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace bulwark::http {

class H2RequestBuilder {
 public:
  // Ready for the next request; the strings keep their capacity.
  void Reset();
  // One field. Past `max_bytes` of header list (name + value + 32 per field, RFC 9113 6.5.2)
  // the rest is dropped and too_large() says so.
  void Add(std::string_view name, std::string_view value, size_t max_bytes);
  bool too_large() const { return too_large_; }
  size_t list_bytes() const { return list_bytes_; }
  // The head, "METHOD target HTTP/1.1" and its fields: Host from :authority (or the host
  // field), the cookie fields joined with "; ", and Transfer-Encoding: chunked when the request
  // has a body without a content-length (`end_stream` false) -- *chunked says so.
  // Appends it to *out.
  void Build(bool end_stream, bool* chunked, std::string* out) const;

 private:
  std::string method_, path_, authority_, host_, fields_, cookie_;
  size_t list_bytes_ = 0;
  bool has_length_ = false;
  bool too_large_ = false;
};

}  // namespace bulwark::http
