// The environment config tests load with: only the variables given are set.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/config_reader.h"

namespace bulwark::testing {

inline EnvLookup FakeEnv(std::map<std::string, std::string> vars = {}) {
  return [vars = std::move(vars)](std::string_view n) -> std::optional<std::string> {
    auto it = vars.find(std::string(n));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace bulwark::testing
