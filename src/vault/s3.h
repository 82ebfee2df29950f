// S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Aliyun OSS's S3 API, ...) over
// libcurl, requests signed with AWS Signature Version 4. Objects larger than one part go up as
// a multipart upload, which S3 makes visible only when completed: a failed or interrupted backup
// never leaves a readable half object (an interrupted upload is aborted by RemovePartial).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vault/storage.h"

namespace bulwark::vault {

// One request to sign. `path` and `query` are already in canonical form (UriEncode'd; the query
// sorted by key); header names are lower case.
struct SigV4Request {
  std::string method, host, path, query;
  std::vector<std::pair<std::string, std::string>> headers;  // besides host
  std::string payload_sha256;                                // hex
};

// RFC 3986 unreserved characters stay; everything else is %XX (upper case), as SigV4 wants.
std::string UriEncode(std::string_view s, bool keep_slash);

// The Authorization header's value for `r` at `amz_date` (YYYYMMDDTHHMMSSZ).
std::string SigV4Authorization(const SigV4Request& r, const std::string& access_key,
                               const std::string& secret_key, const std::string& region,
                               const std::string& service, const std::string& amz_date);

class S3Storage final : public Storage {
 public:
  explicit S3Storage(StorageConfig cfg);
  const std::string& name() const override { return cfg_.name; }
  absl::StatusOr<std::unique_ptr<ObjectWriter>> Create(const std::string& object) override;
  absl::Status Read(const std::string& object, ByteSink* out) override;
  absl::Status Remove(const std::string& object) override;
  void RemovePartial(const std::string& object) override;
  std::string Locate(const std::string& object) const override;

  struct Response {
    long status = 0;
    std::string body;
    std::string etag;   // the ETag header (an uploaded part's)
    std::string error;  // transport error, or S3's <Code>: <Message>
  };
  // One signed request; `sink` (optional) receives a 200 body instead of Response::body.
  Response Request(const std::string& method, const std::string& key,
                   std::vector<std::pair<std::string, std::string>> query, std::string_view body,
                   ByteSink* sink = nullptr) const;

 private:
  StorageConfig cfg_;
  std::string scheme_host_;  // "http://127.0.0.1:4569" or "https://bucket.s3.region..."
  std::string host_;         // the Host header
  std::string base_path_;    // "/bucket" (path style) or ""
};

}  // namespace bulwark::vault
