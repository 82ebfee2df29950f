#include "observe/promql/ast.h"

#include <re2/re2.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/strings.h"
#include "observe/promql/functions.h"
#include "observe/promql/parser.h"
#include "observe/model/duration.h"

namespace bulwark::observe::promql {
namespace {

std::string FormatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // The shortest form that reads back as the same double.
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

}  // namespace

namespace {

std::string JoinLabels(const std::vector<std::string>& labels) {
  return StrCat("(", Join(labels, ", "), ")");
}

void AppendModifiers(const Expr& e, std::string* out) {
  if (e.offset_ms != 0) StrAppend(out, " offset ", FormatDurationMs(e.offset_ms));
  switch (e.at) {
    case Expr::At::kNone:
      break;
    case Expr::At::kTime:
      StrAppend(out, " @ ", FormatNumber(e.at_ms / 1000.0));
      break;
    case Expr::At::kStart:
      out->append(" @ start()");
      break;
    case Expr::At::kEnd:
      out->append(" @ end()");
      break;
  }
}

std::string SelectorString(const Expr& e) {
  std::string out = e.name;
  std::vector<std::string> parts;
  for (const Matcher& m : e.matchers) {
    if (m.name == "__name__" && !e.name.empty()) continue;
    parts.push_back(StrCat(m.name, MatcherOpName(m.op), GoQuote(m.value)));
  }
  if (!parts.empty() || e.name.empty()) StrAppend(&out, "{", Join(parts, ", "), "}");
  return out;
}

}  // namespace

const char* ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kNone:
      return "none";
    case ValueType::kScalar:
      return "scalar";
    case ValueType::kVector:
      return "instant vector";
    case ValueType::kMatrix:
      return "range vector";
    case ValueType::kString:
      return "string";
  }
  return "?";
}

const char* BinOpName(BinOp op) {
  switch (op) {
    case BinOp::kAdd:
      return "+";
    case BinOp::kSub:
      return "-";
    case BinOp::kMul:
      return "*";
    case BinOp::kDiv:
      return "/";
    case BinOp::kMod:
      return "%";
    case BinOp::kPow:
      return "^";
    case BinOp::kAtan2:
      return "atan2";
    case BinOp::kEql:
      return "==";
    case BinOp::kNeq:
      return "!=";
    case BinOp::kGtr:
      return ">";
    case BinOp::kLss:
      return "<";
    case BinOp::kGte:
      return ">=";
    case BinOp::kLte:
      return "<=";
    case BinOp::kAnd:
      return "and";
    case BinOp::kOr:
      return "or";
    case BinOp::kUnless:
      return "unless";
  }
  return "?";
}

bool IsComparison(BinOp op) { return op >= BinOp::kEql && op <= BinOp::kLte; }
bool IsSetOperator(BinOp op) { return op >= BinOp::kAnd; }

const char* AggOpName(AggOp op) {
  switch (op) {
    case AggOp::kSum:
      return "sum";
    case AggOp::kAvg:
      return "avg";
    case AggOp::kMin:
      return "min";
    case AggOp::kMax:
      return "max";
    case AggOp::kCount:
      return "count";
    case AggOp::kGroup:
      return "group";
    case AggOp::kStddev:
      return "stddev";
    case AggOp::kStdvar:
      return "stdvar";
    case AggOp::kTopk:
      return "topk";
    case AggOp::kBottomk:
      return "bottomk";
    case AggOp::kQuantile:
      return "quantile";
    case AggOp::kCountValues:
      return "count_values";
  }
  return "?";
}

ValueType Expr::type() const {
  switch (kind) {
    case Kind::kNumber:
      return ValueType::kScalar;
    case Kind::kString:
      return ValueType::kString;
    case Kind::kSelector:
      return ValueType::kVector;
    case Kind::kMatrix:
    case Kind::kSubquery:
      return ValueType::kMatrix;
    case Kind::kCall:
      return func != nullptr ? func->return_type : ValueType::kNone;
    case Kind::kAggregate:
      return ValueType::kVector;
    case Kind::kBinary:
      return lhs->type() == ValueType::kScalar && rhs->type() == ValueType::kScalar
                 ? ValueType::kScalar
                 : ValueType::kVector;
    case Kind::kUnary:
    case Kind::kParen:
      return child->type();
  }
  return ValueType::kNone;
}

std::string Expr::String() const {
  switch (kind) {
    case Kind::kNumber:
      return FormatNumber(number);
    case Kind::kString:
      return GoQuote(str);
    case Kind::kSelector: {
      std::string out = SelectorString(*this);
      AppendModifiers(*this, &out);
      return out;
    }
    case Kind::kMatrix: {
      std::string out = StrCat(SelectorString(*child), "[", FormatDurationMs(range_ms), "]");
      AppendModifiers(*child, &out);
      return out;
    }
    case Kind::kSubquery: {
      std::string out = StrCat(child->String(), "[", FormatDurationMs(range_ms), ":",
                               step_ms ? FormatDurationMs(step_ms) : "", "]");
      AppendModifiers(*this, &out);
      return out;
    }
    case Kind::kCall: {
      std::vector<std::string> a;
      for (const auto& arg : args) a.push_back(arg->String());
      return StrCat(func->name, "(", Join(a, ", "), ")");
    }
    case Kind::kAggregate: {
      std::string out = AggOpName(agg);
      if (!grouping.empty() || without) {
        StrAppend(&out, without ? " without " : " by ", JoinLabels(grouping), " ");
      }
      out += "(";
      if (param) StrAppend(&out, param->String(), ", ");
      StrAppend(&out, child->String(), ")");
      return out;
    }
    case Kind::kBinary: {
      std::string out = StrCat(lhs->String(), " ", BinOpName(op));
      if (return_bool) out += " bool";
      if (matching.has_value()) {
        const VectorMatching& m = *matching;
        bool grouped = m.card == VectorMatching::Card::kManyToOne ||
                       m.card == VectorMatching::Card::kOneToMany;
        if (m.on || !m.labels.empty() || grouped) {
          StrAppend(&out, m.on ? " on" : " ignoring", JoinLabels(m.labels));
        }
        if (m.card == VectorMatching::Card::kManyToOne) {
          StrAppend(&out, " group_left", JoinLabels(m.include));
        } else if (m.card == VectorMatching::Card::kOneToMany) {
          StrAppend(&out, " group_right", JoinLabels(m.include));
        }
      }
      StrAppend(&out, " ", rhs->String());
      return out;
    }
    case Kind::kUnary:
      return StrCat("-", child->String());
    case Kind::kParen:
      return StrCat("(", child->String(), ")");
  }
  return "";
}

}  // namespace bulwark::observe::promql
