// Where archives are kept. An object is written through an ObjectWriter and exists under its
// name only after Commit(): a failed or interrupted backup never leaves a half object that
// looks complete.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vault/archive.h"
#include "vault/config.h"

namespace bulwark::vault {

class ObjectWriter : public ByteSink {
 public:
  virtual absl::Status Commit() = 0;
  virtual void Abort() = 0;  // removes what was written; also what the destructor does
};

class Storage {
 public:
  virtual ~Storage() = default;
  virtual const std::string& name() const = 0;
  virtual absl::StatusOr<std::unique_ptr<ObjectWriter>> Create(const std::string& object) = 0;
  virtual absl::Status Read(const std::string& object, ByteSink* out) = 0;
  virtual absl::Status Remove(const std::string& object) = 0;
  // Removes the leftovers of an interrupted write of `object`, if any.
  virtual void RemovePartial(const std::string& object) = 0;
  // Where `object` is, for messages ("/backup/app/x.bwv", "s3://bucket/key").
  virtual std::string Locate(const std::string& object) const = 0;
};

// A directory: objects are files; NAME.partial until committed (fsync, rename, fsync of the
// directory), mode 0600.
class LocalStorage final : public Storage {
 public:
  explicit LocalStorage(StorageConfig cfg) : cfg_(std::move(cfg)) {}
  const std::string& name() const override { return cfg_.name; }
  absl::StatusOr<std::unique_ptr<ObjectWriter>> Create(const std::string& object) override;
  absl::Status Read(const std::string& object, ByteSink* out) override;
  absl::Status Remove(const std::string& object) override;
  void RemovePartial(const std::string& object) override;
  std::string Locate(const std::string& object) const override { return cfg_.path + "/" + object; }

 private:
  StorageConfig cfg_;
};

std::unique_ptr<Storage> MakeStorage(const StorageConfig& cfg);

}  // namespace bulwark::vault
