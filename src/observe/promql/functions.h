// The PromQL functions Prometheus 2.42 knows for float samples: their argument and return
// types, used by the parser's type checks and by the evaluator to find the implementation.
#pragma once

#include <string_view>
#include <vector>

#include "observe/promql/ast.h"

namespace bulwark::observe::promql {

struct FunctionInfo {
  std::string_view name;
  std::vector<ValueType> arg_types;
  // 0: exactly arg_types.size() arguments. n > 0: the last n... may be left out, i.e. between
  // size()-1 and size()-1+n arguments, extra ones of the last type. -1: size()-1 or more.
  // (Prometheus's `Variadic`, with its counting.)
  int variadic = 0;
  ValueType return_type = ValueType::kVector;
};

// nullptr for an unknown name.
const FunctionInfo* LookupFunction(std::string_view name);

}  // namespace bulwark::observe::promql
