// The PromQL syntax tree, as Prometheus 2.42 defines the language: literals, instant and range
// selectors (with offset and @), subqueries, function calls, aggregations, unary and binary
// operators with vector matching. Built by Parse() (parser.h), read by the evaluator. A tree is
// immutable once built and may be shared by threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "observe/go_strings.h"
#include "observe/model/labels.h"

namespace re2 {
class RE2;
}

namespace bulwark::observe::promql {

enum class ValueType : uint8_t { kNone, kScalar, kVector, kMatrix, kString };
// "scalar", "instant vector", "range vector", "string", as Prometheus names them in errors.
const char* ValueTypeName(ValueType t);

// Go's %q, which Prometheus uses to print strings and label values (observe/go_strings.h).
using observe::GoQuote;

enum class BinOp : uint8_t {
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kPow,
  kAtan2,  // arithmetic
  kEql,
  kNeq,
  kGtr,
  kLss,
  kGte,
  kLte,  // comparison
  kAnd,
  kOr,
  kUnless,  // set
};
const char* BinOpName(BinOp op);  // "+", "==", "and", ...
bool IsComparison(BinOp op);
bool IsSetOperator(BinOp op);

enum class AggOp : uint8_t {
  kSum,
  kAvg,
  kMin,
  kMax,
  kCount,
  kGroup,
  kStddev,
  kStdvar,
  kTopk,
  kBottomk,
  kQuantile,
  kCountValues,
};
const char* AggOpName(AggOp op);  // "sum", ...

// How the two sides of a binary operation between vectors are paired.
struct VectorMatching {
  enum class Card : uint8_t { kOneToOne, kManyToOne, kOneToMany, kManyToMany };
  Card card = Card::kOneToOne;
  bool on = false;                   // on(labels): match on these; otherwise ignoring(labels)
  std::vector<std::string> labels;   // the on/ignoring list
  std::vector<std::string> include;  // group_left/group_right(labels) copied from the "one" side
};

struct FunctionInfo;

struct Expr {
  enum class Kind : uint8_t {
    kNumber,     // 1.5, Inf, 0x1f
    kString,     // "text"
    kSelector,   // name{matchers} [offset] [@]
    kMatrix,     // selector[range]; offset/@ live on the inner selector
    kSubquery,   // expr[range:step] [offset] [@]
    kCall,       // func(args)
    kAggregate,  // op [by|without (labels)] ([param,] expr)
    kBinary,     // lhs op rhs
    kUnary,      // -expr (+expr is dropped by the parser)
    kParen,      // (expr)
  };
  // @ start() / @ end() are resolved at evaluation; @ <number> is a fixed time.
  enum class At : uint8_t { kNone, kTime, kStart, kEnd };

  Kind kind = Kind::kNumber;
  int pos = 0;  // byte offset in the query, for errors

  double number = 0;  // kNumber
  std::string str;    // kString

  // kSelector
  std::string name;               // the metric name, when given outside the braces
  std::vector<Matcher> matchers;  // including __name__ when the name was given
  // kSelector, kSubquery: evaluation time shifts.
  int64_t offset_ms = 0;
  At at = At::kNone;
  int64_t at_ms = 0;

  // kMatrix, kSubquery
  int64_t range_ms = 0;
  int64_t step_ms = 0;  // kSubquery; 0 = the rule group's evaluation interval

  // kCall
  const FunctionInfo* func = nullptr;
  std::vector<std::unique_ptr<Expr>> args;

  // kAggregate
  AggOp agg = AggOp::kSum;
  bool without = false;
  std::vector<std::string> grouping;
  std::unique_ptr<Expr> param;  // topk/bottomk/quantile's number, count_values' label

  // kBinary
  BinOp op = BinOp::kAdd;
  bool return_bool = false;
  std::optional<VectorMatching> matching;  // set when both sides are vectors
  std::unique_ptr<Expr> lhs, rhs;

  // kMatrix (the selector), kSubquery, kAggregate, kUnary, kParen: the operand.
  std::unique_ptr<Expr> child;

  ValueType type() const;
  // The expression written back in PromQL (parenthesized where the tree needs it).
  std::string String() const;
};

}  // namespace bulwark::observe::promql
