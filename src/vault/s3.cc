#include "vault/s3.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <memory>

#include "core/event_loop.h"
#include "core/strings.h"

namespace bulwark::vault {
namespace {

std::string Sha256Hex(std::string_view data) {
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return HexDigest(md, 32);
}

std::string Hmac(std::string_view key, std::string_view msg) {
  unsigned char md[32];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), md, &n);
  return std::string(reinterpret_cast<char*>(md), 32);
}

// The text between <tag> and </tag>, first occurrence ("" when absent). S3's answers here are
// small documents with unique tags; a full XML parser would add nothing.
std::string XmlValue(std::string_view xml, std::string_view tag) {
  std::string open = StrCat("<", tag, ">"), close = StrCat("</", tag, ">");
  size_t a = xml.find(open);
  if (a == std::string_view::npos) return "";
  a += open.size();
  size_t b = xml.find(close, a);
  if (b == std::string_view::npos) return "";
  return std::string(xml.substr(a, b - a));
}

size_t ToString(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

struct SinkTarget {
  ByteSink* sink;
  std::string* body;  // non-200 answers are collected here instead
  long status = 0;
  CURL* curl;
  absl::Status error;
};

size_t ToSink(char* p, size_t size, size_t n, void* arg) {
  auto* t = static_cast<SinkTarget*>(arg);
  if (t->status == 0) curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &t->status);
  if (t->status != 200) {
    if (t->body->size() < 65536) t->body->append(p, size * n);
    return size * n;
  }
  t->error = t->sink->Write(std::string_view(p, size * n));
  return t->error.ok() ? size * n : 0;  // 0 stops the transfer
}

size_t HeaderLine(char* p, size_t size, size_t n, void* arg) {
  std::string_view line(p, size * n);
  if (line.size() > 5 && (line.substr(0, 5) == "ETag:" || line.substr(0, 5) == "etag:" ||
                          line.substr(0, 5) == "Etag:")) {
    *static_cast<std::string*>(arg) = std::string(Trim(line.substr(5)));
  }
  return size * n;
}

std::string AmzDate() { return FormatUtc(WallMicros() / 1000, "%Y%m%dT%H%M%SZ"); }

}  // namespace

std::string UriEncode(std::string_view s, bool keep_slash) {
  std::string out;
  for (unsigned char c : s) {
    if (IsUriUnreserved(c) || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      AppendHexEscape(&out, '%', c);
    }
  }
  return out;
}

std::string SigV4Authorization(const SigV4Request& r, const std::string& access_key,
                               const std::string& secret_key, const std::string& region,
                               const std::string& service, const std::string& amz_date) {
  std::vector<std::pair<std::string, std::string>> headers = r.headers;
  headers.emplace_back("host", r.host);
  std::sort(headers.begin(), headers.end());
  std::string canonical_headers, signed_headers;
  for (const auto& [k, v] : headers) {
    StrAppend(&canonical_headers, k, ":", Trim(v), "\n");
    StrAppend(&signed_headers, signed_headers.empty() ? "" : ";", k);
  }
  std::string canonical = StrCat(r.method, "\n", r.path, "\n", r.query, "\n", canonical_headers,
                                 "\n", signed_headers, "\n", r.payload_sha256);
  std::string date = amz_date.substr(0, 8);
  std::string scope = StrCat(date, "/", region, "/", service, "/aws4_request");
  std::string to_sign =
      StrCat("AWS4-HMAC-SHA256\n", amz_date, "\n", scope, "\n", Sha256Hex(canonical));
  std::string k = Hmac("AWS4" + secret_key, date);
  k = Hmac(k, region);
  k = Hmac(k, service);
  k = Hmac(k, "aws4_request");
  std::string sig = Hmac(k, to_sign);
  return StrCat(
      "AWS4-HMAC-SHA256 Credential=", access_key, "/", scope, ", SignedHeaders=", signed_headers,
      ", Signature=", HexDigest(reinterpret_cast<const unsigned char*>(sig.data()), sig.size()));
}

S3Storage::S3Storage(StorageConfig cfg) : cfg_(std::move(cfg)) {
  std::string endpoint = cfg_.endpoint;
  bool path_style = cfg_.path_style;
  if (endpoint.empty()) endpoint = StrCat("https://s3.", cfg_.region, ".amazonaws.com");
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  size_t scheme_end = endpoint.find("://");
  std::string scheme = endpoint.substr(0, scheme_end);
  std::string host = endpoint.substr(scheme_end + 3);
  if (path_style) {
    host_ = host;
    base_path_ = "/" + cfg_.bucket;
  } else {
    host_ = cfg_.bucket + "." + host;
  }
  scheme_host_ = scheme + "://" + host_;
}

std::string S3Storage::Locate(const std::string& object) const {
  return StrCat("s3://", cfg_.bucket, "/", cfg_.prefix, object);
}

S3Storage::Response S3Storage::Request(const std::string& method, const std::string& key,
                                       std::vector<std::pair<std::string, std::string>> query,
                                       std::string_view body, ByteSink* sink) const {
  Response resp;
  std::string path = base_path_ + "/" + UriEncode(cfg_.prefix + key, true);
  if (key.empty()) path = base_path_.empty() ? "/" : base_path_;
  std::sort(query.begin(), query.end());
  std::string q;
  for (const auto& [k, v] : query) {
    StrAppend(&q, q.empty() ? "" : "&", UriEncode(k, false), "=", UriEncode(v, false));
  }
  SigV4Request sr;
  sr.method = method;
  sr.host = host_;
  sr.path = path;
  sr.query = q;
  sr.payload_sha256 = Sha256Hex(body);
  std::string date = AmzDate();
  sr.headers = {{"x-amz-content-sha256", sr.payload_sha256}, {"x-amz-date", date}};
  std::string auth =
      SigV4Authorization(sr, cfg_.access_key, cfg_.secret_key, cfg_.region, "s3", date);
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    resp.error = "curl: out of memory";
    return resp;
  }
  CURL* c = curl.get();
  std::string url = scheme_host_ + path + (q.empty() ? "" : "?" + q);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  // No overall timeout (a large GET streams for as long as it takes); a stalled transfer is cut.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (method == "PUT" || method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_slist* h = nullptr;
  h = curl_slist_append(h, ("Authorization: " + auth).c_str());
  h = curl_slist_append(h, ("x-amz-content-sha256: " + sr.payload_sha256).c_str());
  h = curl_slist_append(h, ("x-amz-date: " + date).c_str());
  h = curl_slist_append(h, "Expect:");  // no 100-continue round trip
  h = curl_slist_append(h, "Content-Type:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, HeaderLine);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp.etag);
  SinkTarget target{sink, &resp.body, 0, c, absl::OkStatus()};
  if (sink != nullptr) {
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ToSink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &target);
  } else {
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ToString);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp.body);
  }
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(h);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  if (!target.error.ok()) {
    resp.error = std::string(target.error.message());
  } else if (rc != CURLE_OK) {
    resp.error = StrCat(method, " ", url, ": ", curl_easy_strerror(rc));
  } else if (resp.status < 200 || resp.status > 299) {
    std::string code = XmlValue(resp.body, "Code"), msg = XmlValue(resp.body, "Message");
    resp.error =
        StrCat(method, " ", Locate(key), ": HTTP ", resp.status,
               code.empty() ? "" : StrCat(" ", code), msg.empty() ? "" : StrCat(": ", msg));
  }
  return resp;
}

namespace {

// Buffers one part; the first full part starts a multipart upload, each further one is sent as
// it fills; Commit sends the rest (one plain PUT when everything fit in one part).
class S3Writer final : public ObjectWriter {
 public:
  S3Writer(const S3Storage* s, std::string key, size_t part_size)
      : s_(s), key_(std::move(key)), part_size_(part_size) {}
  ~S3Writer() override { Abort(); }

  absl::Status Write(std::string_view data) override {
    if (done_) return absl::FailedPreconditionError("object already committed or aborted");
    buf_.append(data);
    while (buf_.size() >= part_size_) {
      if (auto st = SendPart(std::string_view(buf_).substr(0, part_size_)); !st.ok()) return st;
      buf_.erase(0, part_size_);
    }
    return absl::OkStatus();
  }

  absl::Status Commit() override {
    if (done_) return absl::FailedPreconditionError("object already committed or aborted");
    if (upload_id_.empty()) {
      auto r = s_->Request("PUT", key_, {}, buf_);
      if (!r.error.empty()) return absl::UnavailableError(r.error);
      done_ = true;
      return absl::OkStatus();
    }
    if (!buf_.empty()) {
      if (auto st = SendPart(buf_); !st.ok()) return st;
      buf_.clear();
    }
    std::string xml = "<CompleteMultipartUpload>";
    for (size_t i = 0; i < etags_.size(); ++i) {
      StrAppend(&xml, "<Part><PartNumber>", i + 1, "</PartNumber><ETag>", etags_[i],
                "</ETag></Part>");
    }
    xml += "</CompleteMultipartUpload>";
    auto r = s_->Request("POST", key_, {{"uploadId", upload_id_}}, xml);
    // S3 may answer 200 with an <Error> document when completion fails late.
    if (r.error.empty() && r.body.find("<Error>") != std::string::npos) {
      r.error = StrCat("complete ", s_->Locate(key_), ": ", XmlValue(r.body, "Code"), ": ",
                       XmlValue(r.body, "Message"));
    }
    if (!r.error.empty()) return absl::UnavailableError(r.error);
    done_ = true;
    return absl::OkStatus();
  }

  void Abort() override {
    if (done_) return;
    done_ = true;
    if (!upload_id_.empty()) s_->Request("DELETE", key_, {{"uploadId", upload_id_}}, "");
  }

 private:
  absl::Status SendPart(std::string_view part) {
    if (upload_id_.empty()) {
      auto r = s_->Request("POST", key_, {{"uploads", ""}}, "");
      if (!r.error.empty()) return absl::UnavailableError(r.error);
      upload_id_ = XmlValue(r.body, "UploadId");
      if (upload_id_.empty()) {
        return absl::UnavailableError(
            StrCat("no UploadId in the answer to starting a multipart "
                   "upload of ",
                   s_->Locate(key_)));
      }
    }
    auto r = s_->Request(
        "PUT", key_, {{"partNumber", std::to_string(etags_.size() + 1)}, {"uploadId", upload_id_}},
        part);
    if (!r.error.empty()) return absl::UnavailableError(r.error);
    etags_.push_back(r.etag);
    if (etags_.back().empty()) {
      return absl::UnavailableError(
          StrCat("no ETag for part ", etags_.size(), " of ", s_->Locate(key_)));
    }
    return absl::OkStatus();
  }
  const S3Storage* s_;
  std::string key_;
  size_t part_size_;
  std::string buf_, upload_id_;
  std::vector<std::string> etags_;
  bool done_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ObjectWriter>> S3Storage::Create(const std::string& object) {
  return std::unique_ptr<ObjectWriter>(
      new S3Writer(this, object, static_cast<size_t>(cfg_.part_size)));
}

absl::Status S3Storage::Read(const std::string& object, ByteSink* out) {
  auto r = Request("GET", object, {}, "", out);
  if (!r.error.empty()) return absl::UnavailableError(r.error);
  return absl::OkStatus();
}

absl::Status S3Storage::Remove(const std::string& object) {
  auto r = Request("DELETE", object, {}, "");
  if (!r.error.empty() && r.status != 404) return absl::UnavailableError(r.error);
  return absl::OkStatus();
}

void S3Storage::RemovePartial(const std::string& object) {
  // Multipart uploads of this key left open by an interrupted backup.
  auto r = Request("GET", "", {{"prefix", cfg_.prefix + object}, {"uploads", ""}}, "");
  if (!r.error.empty()) return;
  size_t at = 0;
  while ((at = r.body.find("<Upload>", at)) != std::string::npos) {
    size_t end = r.body.find("</Upload>", at);
    std::string_view up = std::string_view(r.body).substr(at, end - at);
    std::string key = XmlValue(up, "Key"), id = XmlValue(up, "UploadId");
    if (key == cfg_.prefix + object && !id.empty()) {
      Request("DELETE", object, {{"uploadId", id}}, "");
    }
    at = end;
  }
}

}  // namespace bulwark::vault
