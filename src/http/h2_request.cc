#include "http/h2_request.h"

namespace bulwark::http {

void H2RequestBuilder::Reset() {
  method_.clear();
  path_.clear();
  authority_.clear();
  host_.clear();
  fields_.clear();
  cookie_.clear();
  list_bytes_ = 0;
  has_length_ = false;
  too_large_ = false;
}

void H2RequestBuilder::Add(std::string_view name, std::string_view value, size_t max_bytes) {
  list_bytes_ += name.size() + value.size() + 32;
  if (list_bytes_ > max_bytes) {
    too_large_ = true;
    return;
  }
  if (name.empty()) return;
  if (name.front() == ':') {
    // :scheme is not carried: the connection says whether it is https.
    if (name == ":method") method_.assign(value);
    if (name == ":path") path_.assign(value);
    if (name == ":authority") authority_.assign(value);
    return;
  }
  // Several cookie fields are one Cookie header (RFC 9113 8.2.3).
  if (name == "cookie") {
    if (!cookie_.empty()) cookie_.append("; ");
    cookie_.append(value);
    return;
  }
  if (name == "host") {
    if (host_.empty()) host_.assign(value);
    return;
  }
  if (name == "content-length") has_length_ = true;
  fields_.append(name);
  fields_.append(": ");
  fields_.append(value);
  fields_.append("\r\n");
}

void H2RequestBuilder::Build(bool end_stream, bool* chunked, std::string* out) const {
  std::string& head = *out;
  head.reserve(head.size() + method_.size() + path_.size() + authority_.size() + fields_.size() +
               cookie_.size() + 96);
  head.append(method_);
  head.push_back(' ');
  // CONNECT has no :path (RFC 9113 8.5): its target is the authority.
  head.append(path_.empty() ? authority_ : path_);
  head.append(" HTTP/1.1\r\n");
  // :authority stands for Host (RFC 9113 8.3.1); a host field serves when it is absent.
  const std::string& host = authority_.empty() ? host_ : authority_;
  if (!host.empty()) {
    head.append("host: ");
    head.append(host);
    head.append("\r\n");
  }
  head.append(fields_);
  if (!cookie_.empty()) {
    head.append("cookie: ");
    head.append(cookie_);
    head.append("\r\n");
  }
  *chunked = !end_stream && !has_length_;
  if (*chunked) head.append("transfer-encoding: chunked\r\n");
  head.append("\r\n");
}

}  // namespace bulwark::http
