// Reading YAML configuration with errors a user can act on.
//
// Every error names FILE:LINE:COL and says what was expected. Errors are collected, not thrown,
// so one `bulwark check-config` run reports all of them. Unknown keys are errors with a
// "did you mean" suggestion drawn from the keys the reader asked for. Scalars go through
// `${VAR}` / `${VAR:-default}` / `${VAR-default}` interpolation (shell semantics).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "yaml-cpp/yaml.h"

namespace bulwark {

// Looks up an environment variable; injectable for tests. Returns nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;
EnvLookup ProcessEnv();

// Expands ${VAR}, ${VAR:-default} (default when unset or empty), ${VAR-default} (default when
// unset) and $$ (a literal $). An unset variable without a default is an error.
absl::Status Interpolate(std::string_view in, const EnvLookup& env, std::string* out);

// Levenshtein distance, used for "did you mean" suggestions.
int EditDistance(std::string_view a, std::string_view b);

// Shared state of one config load: file name, environment and the error list.
class ConfigContext {
 public:
  ConfigContext(std::string file, EnvLookup env)
      : file_(std::move(file)), env_(std::move(env)), dir_(DirOf(file_)) {}

  void Error(const YAML::Mark& mark, std::string_view message);
  void Error(std::string_view message);  // an error without a position (e.g. a file-level problem)
  // An error in another file the configuration refers to, already prefixed with its own
  // FILE:LINE:COL.
  void ForeignError(std::string message) { errors_.push_back(std::move(message)); }
  bool ok() const { return errors_.empty(); }
  const std::vector<std::string>& errors() const { return errors_; }
  // All errors, one per line.
  std::string ErrorText() const;
  const std::string& file() const { return file_; }
  // "FILE:LINE:COL" of `mark` (what Error puts before a message), for checks made after parsing.
  std::string Where(const YAML::Mark& mark) const;
  const EnvLookup& env() const { return env_; }
  // A file the configuration names (a certificate, a rule file, a shard map, a key, the
  // catalog): a relative path is taken from the configuration file's directory, as Prometheus
  // takes rule_files; an absolute one stays.
  std::string Resolve(std::string_view path) const { return ResolveConfigPath(dir_, path); }
  // Relative paths are taken from `dir` instead (tests whose text has no file of its own).
  void set_dir(std::string dir) { dir_ = std::move(dir); }

  // The directory part of `file` ("" for a bare name: the current directory).
  static std::string DirOf(std::string_view file);
  // `path` taken from `dir` unless it is absolute (or `dir` is empty).
  static std::string ResolveConfigPath(std::string_view dir, std::string_view path);

 private:
  std::string file_;
  EnvLookup env_;
  std::string dir_;
  std::vector<std::string> errors_;
};

// Reads the scalar at `node` with interpolation applied. Reports an error and returns false if
// the node is not a scalar.
bool ReadScalar(ConfigContext& ctx, const YAML::Node& node, std::string_view what,
                std::string* out);

// A boolean as configurations write it: true/yes/on or false/no/off, any case; nullopt else.
std::optional<bool> ParseBoolWord(std::string_view text);

// A view of one YAML mapping that remembers which keys were read, so Finish() can report the
// rest as unknown. Typed getters report errors themselves and return false on a bad value; a
// missing optional key leaves the output untouched (the caller's default stands).
class MapReader {
 public:
  // `what` names the section in errors ("upstream \"app\"").
  MapReader(ConfigContext& ctx, const YAML::Node& node, std::string what);

  bool valid() const { return valid_; }
  const YAML::Node& node() const { return node_; }
  std::string_view what() const { return what_; }
  ConfigContext& ctx() const { return ctx_; }

  // Returns the node for `key` (marking it known), or an undefined node when absent.
  YAML::Node Get(std::string_view key);
  bool Has(std::string_view key);
  // Reports an error at the mapping itself when `key` is missing.
  bool Require(std::string_view key);

  bool String(std::string_view key, std::string* out);
  bool Int(std::string_view key, int64_t* out, int64_t min, int64_t max);
  bool Int(std::string_view key, int* out, int min, int max);
  bool Bool(std::string_view key, bool* out);
  bool Duration(std::string_view key, int64_t* ms);
  bool Size(std::string_view key, int64_t* bytes);
  bool Rate(std::string_view key, int64_t* milli_per_second);
  // One of `choices`, with a "did you mean" on a near miss.
  bool Enum(std::string_view key, const std::vector<std::string_view>& choices, std::string* out);
  bool StringList(std::string_view key, std::vector<std::string>* out);

  // Reports every key not asked for with Get/Has/typed getters.
  void Finish();

  // Marks a key as known without reading it (for keys handled elsewhere).
  void Known(std::string_view key) { known_.emplace_back(key); }

 private:
  ConfigContext& ctx_;
  YAML::Node node_;
  std::string what_;
  bool valid_ = false;
  std::vector<std::string> known_;
};

// Calls `each(name, value)` for every entry of the mapping `node` ("name: {...}" sections such as
// vault.plans). Nothing for an undefined node; an error "WHAT: SHAPE" when it is not a mapping,
// and "WHAT: each name must be a plain string" for a key that is a list or a mapping.
void ForEachNamed(ConfigContext& ctx, const YAML::Node& node, std::string_view what,
                  std::string_view shape,
                  const std::function<void(const std::string&, const YAML::Node&)>& each);

// Suggests the closest of `candidates` to `word`, or "" if none is close enough.
std::string Suggest(std::string_view word, const std::vector<std::string>& candidates);

// Parses a YAML file (or text) and reports syntax errors as FILE:LINE:COL.
std::optional<YAML::Node> LoadYamlFile(ConfigContext& ctx, const std::string& path);
std::optional<YAML::Node> LoadYamlText(ConfigContext& ctx, const std::string& text);

}  // namespace bulwark
