#include "observe/promql/parser.h"

#include <re2/re2.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/strings.h"
#include "observe/model/duration.h"
#include "observe/go_strings.h"
#include "observe/promql/functions.h"

namespace bulwark::observe::promql {
namespace {

// ---------------------------------------------------------------- lexer

enum class Tok : uint8_t {
  kEnd,
  kIdent,
  kNumber,
  kDuration,
  kString,
  kLParen,
  kRParen,
  kLBrace,
  kRBrace,
  kLBracket,
  kRBracket,
  kComma,
  kColon,
  kAt,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kPow,
  kEqlc,  // ==
  kNeq,
  kGtr,
  kLss,
  kGte,
  kLte,
  kAssign,  // =
  kRegex,   // =~
  kNotRegex,
};

struct Token {
  Tok tok = Tok::kEnd;
  int pos = 0;
  std::string_view text;  // as written
  std::string value;      // strings: unescaped
  double number = 0;
  int64_t duration_ms = 0;
};

bool IsAlpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsIdentChar(char c) { return IsAlpha(c) || IsDigit(c) || c == ':'; }


// Go's strconv.ParseFloat as PromQL uses it: decimal with optional fraction and exponent,
// 0x hex integers, Inf/NaN in any case.
bool ParseNumber(std::string_view s, double* out) {
  if (s.empty() || s.size() > 64) return false;
  std::string lower = AsciiLower(s);
  if (lower == "inf" || lower == "+inf") {
    *out = INFINITY;
    return true;
  }
  if (lower == "nan") {
    *out = NAN;
    return true;
  }
  std::string buf(s);
  char* end = nullptr;
  if (lower.size() > 2 && lower[0] == '0' && lower[1] == 'x') {
    errno = 0;
    unsigned long long v = std::strtoull(buf.c_str() + 2, &end, 16);
    if (end != buf.c_str() + buf.size() || errno != 0) return false;
    *out = static_cast<double>(v);
    return true;
  }
  for (char c : lower) {
    if (!IsDigit(c) && c != '.' && c != 'e' && c != '+' && c != '-') return false;
  }
  *out = std::strtod(buf.c_str(), &end);
  return end == buf.c_str() + buf.size();
}

class Lexer {
 public:
  explicit Lexer(std::string_view in) : in_(in) {}

  // Fills *t with the next token; false (with *error) on a lexical error.
  bool Next(Token* t, std::string* error) {
    SkipSpace();
    *t = Token{};
    t->pos = static_cast<int>(pos_);
    if (pos_ >= in_.size()) {
      // As Prometheus's lexer, unbalanced brackets are reported before the parser's view.
      if (parens_ > 0) {
        *error = "unclosed left parenthesis";
        return false;
      }
      if (brackets_ > 0) {
        *error = "unclosed left bracket";
        return false;
      }
      t->tok = Tok::kEnd;
      return true;
    }
    char c = in_[pos_];
    auto one = [&](Tok k, size_t n = 1) {
      t->tok = k;
      t->text = in_.substr(pos_, n);
      pos_ += n;
      return true;
    };
    char d = pos_ + 1 < in_.size() ? in_[pos_ + 1] : '\0';
    switch (c) {
      case '(':
        ++parens_;
        return one(Tok::kLParen);
      case ')':
        if (parens_ == 0) {
          t->pos = static_cast<int>(pos_ + 1);
          *error = "unexpected right parenthesis ')'";
          return false;
        }
        --parens_;
        return one(Tok::kRParen);
      case '{':
        return one(Tok::kLBrace);
      case '}':
        return one(Tok::kRBrace);
      case '[':
        ++brackets_;
        return one(Tok::kLBracket);
      case ']':
        if (brackets_ > 0) --brackets_;
        return one(Tok::kRBracket);
      case ',':
        return one(Tok::kComma);
      case ':':
        // A subquery's colon inside brackets; elsewhere the start of a metric name (":foo").
        if (brackets_ > 0 || !(pos_ + 1 < in_.size() && IsIdentChar(d))) {
          return one(Tok::kColon);
        }
        break;
      case '@':
        return one(Tok::kAt);
      case '+':
        return one(Tok::kAdd);
      case '-':
        return one(Tok::kSub);
      case '*':
        return one(Tok::kMul);
      case '/':
        return one(Tok::kDiv);
      case '%':
        return one(Tok::kMod);
      case '^':
        return one(Tok::kPow);
      case '=':
        if (d == '=') return one(Tok::kEqlc, 2);
        if (d == '~') return one(Tok::kRegex, 2);
        return one(Tok::kAssign);
      case '!':
        if (d == '=') return one(Tok::kNeq, 2);
        if (d == '~') return one(Tok::kNotRegex, 2);
        *error = "unexpected character after '!'";
        return false;
      case '>':
        if (d == '=') return one(Tok::kGte, 2);
        return one(Tok::kGtr);
      case '<':
        if (d == '=') return one(Tok::kLte, 2);
        return one(Tok::kLss);
      case '"':
      case '\'':
      case '`':
        return LexString(t, error);
      default:
        break;
    }
    if (IsDigit(c) || (c == '.' && IsDigit(d))) return LexNumberOrDuration(t, error);
    if (IsAlpha(c) || c == ':') {
      size_t start = pos_;
      while (pos_ < in_.size() && IsIdentChar(in_[pos_])) ++pos_;
      t->text = in_.substr(start, pos_ - start);
      std::string lower = AsciiLower(t->text);
      if (lower == "inf" || lower == "nan") {
        t->tok = Tok::kNumber;
        ParseNumber(t->text, &t->number);
        return true;
      }
      t->tok = Tok::kIdent;
      return true;
    }
    *error = StrCat("unexpected character: '", std::string(1, c), "'");
    return false;
  }

 private:
  void SkipSpace() {
    while (pos_ < in_.size()) {
      char c = in_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else if (c == '#') {  // a comment runs to the end of the line
        while (pos_ < in_.size() && in_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  bool LexNumberOrDuration(Token* t, std::string* error) {
    size_t start = pos_;
    // A duration: digits and units, e.g. 1h30m. Tried first, as Prometheus's lexer does.
    size_t p = pos_;
    bool duration = false;
    while (p < in_.size() && IsDigit(in_[p])) {
      size_t q = p;
      while (q < in_.size() && IsDigit(in_[q])) ++q;
      size_t u = q;
      while (u < in_.size() && std::isalpha(static_cast<unsigned char>(in_[u]))) ++u;
      std::string_view unit = in_.substr(q, u - q);
      if (unit.empty() || DurationUnitMs(unit) == 0) break;
      duration = true;
      p = u;
    }
    // ':' may follow (a subquery's range): it is not part of a name here.
    if (duration && (p >= in_.size() || !(IsAlpha(in_[p]) || IsDigit(in_[p])))) {
      t->text = in_.substr(start, p - start);
      auto ms = ParseDurationMs(t->text);
      if (!ms.ok()) {
        *error = std::string(ms.status().message());
        return false;
      }
      t->tok = Tok::kDuration;
      t->duration_ms = *ms;
      pos_ = p;
      return true;
    }
    // A number: hex, or decimal with fraction and exponent.
    p = pos_;
    if (in_[p] == '0' && p + 1 < in_.size() && (in_[p + 1] == 'x' || in_[p + 1] == 'X')) {
      p += 2;
      while (p < in_.size() && std::isxdigit(static_cast<unsigned char>(in_[p]))) ++p;
    } else {
      while (p < in_.size() && IsDigit(in_[p])) ++p;
      if (p < in_.size() && in_[p] == '.') {
        ++p;
        while (p < in_.size() && IsDigit(in_[p])) ++p;
      }
      if (p < in_.size() && (in_[p] == 'e' || in_[p] == 'E')) {
        ++p;
        if (p < in_.size() && (in_[p] == '+' || in_[p] == '-')) ++p;
        while (p < in_.size() && IsDigit(in_[p])) ++p;
      }
    }
    if (p < in_.size() && (IsAlpha(in_[p]) || IsDigit(in_[p]))) {
      *error = StrCat("bad number or duration syntax: \"",
                      in_.substr(start, std::min<size_t>(p - start, 32)), "\"");
      return false;
    }
    t->text = in_.substr(start, p - start);
    if (!ParseNumber(t->text, &t->number)) {
      *error = StrCat("error parsing number: strconv.ParseFloat: parsing \"", t->text,
                      "\": invalid syntax");
      return false;
    }
    t->tok = Tok::kNumber;
    pos_ = p;
    return true;
  }

  // Go string literal rules: "..." and '...' with escapes, `...` raw (observe/go_strings.h).
  bool LexString(Token* t, std::string* error) {
    size_t start = pos_;
    std::string v;
    if (!ReadGoString(in_, &pos_, &v, error)) return false;
    t->tok = Tok::kString;
    t->text = in_.substr(start, pos_ - start);
    t->value = std::move(v);
    return true;
  }

  std::string_view in_;
  size_t pos_ = 0;
  int parens_ = 0;
  int brackets_ = 0;
};

// ---------------------------------------------------------------- parser

struct ParseError {
  int pos;
  std::string message;
};

std::optional<AggOp> AggregatorOf(std::string_view s) {
  static const std::pair<std::string_view, AggOp> kAggs[] = {
      {"sum", AggOp::kSum},           {"avg", AggOp::kAvg},
      {"min", AggOp::kMin},           {"max", AggOp::kMax},
      {"count", AggOp::kCount},       {"group", AggOp::kGroup},
      {"stddev", AggOp::kStddev},     {"stdvar", AggOp::kStdvar},
      {"topk", AggOp::kTopk},         {"bottomk", AggOp::kBottomk},
      {"quantile", AggOp::kQuantile}, {"count_values", AggOp::kCountValues},
  };
  for (const auto& [name, op] : kAggs) {
    if (name == s) return op;
  }
  return std::nullopt;
}

bool IsKeyword(std::string_view s) {
  for (std::string_view k : {"and", "or", "unless", "atan2", "by", "without", "on", "ignoring",
                             "group_left", "group_right", "bool", "offset"}) {
    if (s == k) return true;
  }
  return AggregatorOf(s).has_value();
}

bool ValidLabelName(std::string_view s) {
  if (s.empty() || !IsAlpha(s[0])) return false;
  for (char c : s) {
    if (!IsAlpha(c) && !IsDigit(c)) return false;
  }
  return true;
}

// Prometheus's own names for value types, which some of its messages use.
const char* RawTypeName(ValueType t) {
  switch (t) {
    case ValueType::kScalar:
      return "scalar";
    case ValueType::kVector:
      return "vector";
    case ValueType::kMatrix:
      return "matrix";
    case ValueType::kString:
      return "string";
    default:
      return "none";
  }
}

// Go's regexp errors, which Prometheus passes on: "error parsing regexp: missing closing ):
// `(`". RE2 finds the same mistakes; its codes map one to one.
std::string RegexError(const RE2& re) {
  const char* what = "invalid regular expression";
  switch (re.error_code()) {
    case RE2::ErrorMissingParen:
      what = "missing closing )";
      break;
    case RE2::ErrorMissingBracket:
      what = "missing closing ]";
      break;
    case RE2::ErrorBadEscape:
      what = "invalid escape sequence";
      break;
    case RE2::ErrorBadCharRange:
      what = "invalid character class range";
      break;
    case RE2::ErrorBadCharClass:
      what = "invalid character class";
      break;
    case RE2::ErrorRepeatArgument:
      what = "missing argument to repetition operator";
      break;
    case RE2::ErrorRepeatSize:
      what = "invalid repeat count";
      break;
    case RE2::ErrorRepeatOp:
      what = "invalid nested repetition operator";
      break;
    case RE2::ErrorBadPerlOp:
      what = "invalid or unsupported Perl syntax";
      break;
    case RE2::ErrorBadUTF8:
      what = "invalid UTF-8";
      break;
    case RE2::ErrorBadNamedCapture:
      what = "invalid named capture";
      break;
    case RE2::ErrorTrailingBackslash:
      what = "trailing backslash at end of expression";
      break;
    case RE2::ErrorUnexpectedParen:
      what = "unexpected )";
      break;
    default:
      break;
  }
  return StrCat("error parsing regexp: ", what, ": `", re.error_arg(), "`");
}

// Precedence of binary operators; 0 = not a binary operator here.
int Precedence(const Token& t, BinOp* op) {
  switch (t.tok) {
    case Tok::kPow:
      *op = BinOp::kPow;
      return 6;
    case Tok::kMul:
      *op = BinOp::kMul;
      return 5;
    case Tok::kDiv:
      *op = BinOp::kDiv;
      return 5;
    case Tok::kMod:
      *op = BinOp::kMod;
      return 5;
    case Tok::kAdd:
      *op = BinOp::kAdd;
      return 4;
    case Tok::kSub:
      *op = BinOp::kSub;
      return 4;
    case Tok::kEqlc:
      *op = BinOp::kEql;
      return 3;
    case Tok::kNeq:
      *op = BinOp::kNeq;
      return 3;
    case Tok::kGtr:
      *op = BinOp::kGtr;
      return 3;
    case Tok::kLss:
      *op = BinOp::kLss;
      return 3;
    case Tok::kGte:
      *op = BinOp::kGte;
      return 3;
    case Tok::kLte:
      *op = BinOp::kLte;
      return 3;
    case Tok::kIdent:
      if (t.text == "atan2") {
        *op = BinOp::kAtan2;
        return 5;
      }
      if (t.text == "and") {
        *op = BinOp::kAnd;
        return 2;
      }
      if (t.text == "unless") {
        *op = BinOp::kUnless;
        return 2;
      }
      if (t.text == "or") {
        *op = BinOp::kOr;
        return 1;
      }
      return 0;
    default:
      return 0;
  }
}

class Parser {
 public:
  explicit Parser(std::string_view in) : in_(in), lexer_(in) {}

  std::unique_ptr<Expr> ParseAll() {
    Advance();
    if (cur_.tok == Tok::kEnd) Fail(0, "no expression found in input");
    auto e = ParseExpr(1);
    if (cur_.tok != Tok::kEnd) Fail(cur_.pos, StrCat("unexpected ", Describe(cur_)));
    return e;
  }

 private:
  [[noreturn]] void Fail(int pos, std::string message) {
    throw ParseError{pos, std::move(message)};
  }

  static std::string Describe(const Token& t) {
    switch (t.tok) {
      case Tok::kEnd:
        return "end of input";
      case Tok::kIdent:
        // atan2 is an operator token, described as Prometheus describes operators.
        if (t.text == "atan2") return "<op:atan2>";
        return IsKeyword(t.text) ? StrCat("<", t.text, ">") : StrCat("identifier \"", t.text, "\"");
      case Tok::kNumber:
        return StrCat("number \"", t.text, "\"");
      case Tok::kDuration:
        return StrCat("duration \"", t.text, "\"");
      case Tok::kString:
        return StrCat("string ", t.text);
      default:
        return StrCat("\"", t.text, "\"");
    }
  }

  Token Peek() {
    Lexer copy = lexer_;
    Token t;
    std::string error;
    if (!copy.Next(&t, &error)) t.tok = Tok::kEnd;
    return t;
  }

  // Keywords Prometheus's grammar also accepts as metric names.
  static bool MayNameMetric(std::string_view s) {
    for (std::string_view k : {"by", "without", "and", "or", "unless", "offset"}) {
      if (s == k) return true;
    }
    return false;
  }

  void Advance() {
    std::string error;
    if (!lexer_.Next(&cur_, &error)) Fail(cur_.pos, error);
  }

  bool IsIdent(std::string_view word) const { return cur_.tok == Tok::kIdent && cur_.text == word; }

  void Expect(Tok k, const char* what, const char* context) {
    if (cur_.tok != k) {
      Fail(cur_.pos, StrCat("unexpected ", Describe(cur_), " in ", context, ", expected ", what));
    }
    Advance();
  }

  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxDepth) {
        p_->Fail(p_->cur_.pos, StrCat("expression nests more than ", kMaxDepth, " levels"));
      }
    }
    ~DepthGuard() { --p_->depth_; }
    Parser* p_;
  };

  std::unique_ptr<Expr> New(Expr::Kind k, int pos) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->pos = pos;
    return e;
  }

  // Binary operators by precedence climbing; ^ is right-associative.
  std::unique_ptr<Expr> ParseExpr(int min_prec) {
    DepthGuard guard(this);
    auto lhs = ParseUnary();
    while (true) {
      BinOp op;
      int prec = Precedence(cur_, &op);
      if (prec == 0 || prec < min_prec) return lhs;
      int op_pos = cur_.pos;
      Advance();
      auto b = New(Expr::Kind::kBinary, lhs->pos);  // a node starts where its left side does
      b->op = op;
      VectorMatching m;
      bool matching_given = false;
      if (IsIdent("bool")) {
        b->return_bool = true;
        Advance();
      }
      if (IsIdent("on") || IsIdent("ignoring")) {
        m.on = cur_.text == "on";
        Advance();
        m.labels = ParseLabelList("on/ignoring clause");
        matching_given = true;
        if (IsIdent("group_left") || IsIdent("group_right")) {
          m.card = cur_.text == "group_left" ? VectorMatching::Card::kManyToOne
                                             : VectorMatching::Card::kOneToMany;
          Advance();
          if (cur_.tok == Tok::kLParen) m.include = ParseLabelList("grouping clause");
        }
      } else if (IsIdent("group_left") || IsIdent("group_right")) {
        Fail(cur_.pos, StrCat("unexpected ", Describe(cur_)));
      }
      b->rhs = ParseExpr(op == BinOp::kPow ? prec : prec + 1);
      b->lhs = std::move(lhs);
      CheckBinary(b.get(), op_pos, std::move(m), matching_given);
      lhs = std::move(b);
    }
  }

  // Prometheus reports the first three of these at the operator (its grammar checks them) and
  // the others at the start of the expression (its type checker does); so does bulwark.
  void CheckBinary(Expr* b, int op_pos, VectorMatching m, bool matching_given) {
    ValueType lt = b->lhs->type(), rt = b->rhs->type();
    auto ok = [](ValueType t) { return t == ValueType::kScalar || t == ValueType::kVector; };
    if (!ok(lt) || !ok(rt)) {
      Fail(b->pos, "binary expression must contain only scalar and instant vector types");
    }
    if (b->return_bool && !IsComparison(b->op)) {
      Fail(op_pos, "bool modifier can only be used on comparison operators");
    }
    if (IsComparison(b->op) && lt == ValueType::kScalar && rt == ValueType::kScalar &&
        !b->return_bool) {
      Fail(op_pos, "comparisons between scalars must use BOOL modifier");
    }
    bool both_vectors = lt == ValueType::kVector && rt == ValueType::kVector;
    if (IsSetOperator(b->op)) {
      if (!both_vectors) {
        Fail(b->pos, StrCat("set operator \"", BinOpName(b->op),
                            "\" not allowed in binary scalar expression"));
      }
      if (m.card == VectorMatching::Card::kOneToMany ||
          m.card == VectorMatching::Card::kManyToOne) {
        Fail(b->pos, StrCat("no grouping allowed for \"", BinOpName(b->op), "\" operation"));
      }
      m.card = VectorMatching::Card::kManyToMany;
    }
    if (!both_vectors) {
      if (matching_given) Fail(b->pos, "vector matching only allowed between instant vectors");
      return;
    }
    if (m.on) {
      for (const std::string& l : m.include) {
        for (const std::string& o : m.labels) {
          if (l == o) {
            Fail(op_pos, StrCat("label \"", l, "\" must not occur in ON and GROUP clause at once"));
          }
        }
      }
    }
    b->matching = std::move(m);
  }

  // Unary minus binds like multiplication: its operand takes only ^.
  std::unique_ptr<Expr> ParseUnary() {
    if (cur_.tok == Tok::kAdd || cur_.tok == Tok::kSub) {
      bool neg = cur_.tok == Tok::kSub;
      int pos = cur_.pos;
      Advance();
      DepthGuard guard(this);
      auto operand = ParseExpr(6);
      ValueType t = operand->type();
      if (t != ValueType::kScalar && t != ValueType::kVector) {
        Fail(pos, StrCat("unary expression only allowed on expressions of type scalar or instant "
                         "vector, got \"",
                         ValueTypeName(t), "\""));
      }
      if (!neg) return operand;
      if (operand->kind == Expr::Kind::kNumber) {
        operand->number = -operand->number;
        operand->pos = pos;
        return operand;
      }
      auto u = New(Expr::Kind::kUnary, pos);
      u->child = std::move(operand);
      return u;
    }
    return ParsePostfix(ParsePrimary());
  }

  std::unique_ptr<Expr> ParsePrimary() {
    int pos = cur_.pos;
    switch (cur_.tok) {
      case Tok::kNumber: {
        auto e = New(Expr::Kind::kNumber, pos);
        e->number = cur_.number;
        Advance();
        return e;
      }
      case Tok::kString: {
        auto e = New(Expr::Kind::kString, pos);
        e->str = cur_.value;
        Advance();
        return e;
      }
      case Tok::kLParen: {
        Advance();
        auto e = New(Expr::Kind::kParen, pos);
        e->child = ParseExpr(1);
        Expect(Tok::kRParen, "\")\"", "parenthesized expression");
        return e;
      }
      case Tok::kLBrace:
        return ParseSelector("", pos);
      case Tok::kIdent:
        break;
      default:
        Fail(pos, StrCat("unexpected ", Describe(cur_)));
    }
    std::string name(cur_.text);
    if (auto agg = AggregatorOf(name)) {
      // An aggregation when "(" or a grouping follows; otherwise a metric that happens to be
      // called "sum" (Prometheus's grammar allows that).
      Token next = Peek();
      if (next.tok == Tok::kLParen ||
          (next.tok == Tok::kIdent && (next.text == "by" || next.text == "without"))) {
        Advance();
        return ParseAggregate(*agg, pos);
      }
    } else if (IsKeyword(name) && !MayNameMetric(name)) {
      Fail(pos, StrCat("unexpected ", Describe(cur_)));
    }
    Advance();
    if (cur_.tok == Tok::kLParen) {
      const FunctionInfo* f = LookupFunction(name);
      if (f == nullptr) Fail(pos, StrCat("unknown function with name \"", name, "\""));
      return ParseCall(f, pos);
    }
    return ParseSelector(name, pos);
  }

  std::vector<std::string> ParseLabelList(const char* context) {
    Expect(Tok::kLParen, "\"(\"", context);
    std::vector<std::string> labels;
    while (cur_.tok != Tok::kRParen) {
      if (cur_.tok != Tok::kIdent || !ValidLabelName(cur_.text)) {
        Fail(cur_.pos, StrCat("unexpected ", Describe(cur_), " in ", context, ", expected label"));
      }
      labels.emplace_back(cur_.text);
      Advance();
      if (cur_.tok == Tok::kComma) {
        Advance();
      } else if (cur_.tok != Tok::kRParen) {
        Fail(cur_.pos,
             StrCat("unexpected ", Describe(cur_), " in ", context, ", expected \",\" or \")\""));
      }
    }
    Advance();
    return labels;
  }

  std::unique_ptr<Expr> ParseSelector(const std::string& name, int pos) {
    auto e = New(Expr::Kind::kSelector, pos);
    e->name = name;
    if (!name.empty()) {
      Matcher m;
      m.name = "__name__";
      m.value = name;
      e->matchers.push_back(std::move(m));
    }
    if (cur_.tok == Tok::kLBrace) {
      Advance();
      while (cur_.tok != Tok::kRBrace) {
        if (cur_.tok != Tok::kIdent || !ValidLabelName(cur_.text)) {
          Fail(cur_.pos, StrCat("unexpected ", Describe(cur_),
                                " in label matching, expected identifier or \"}\""));
        }
        Matcher m;
        m.name = std::string(cur_.text);
        int mpos = cur_.pos;
        Advance();
        switch (cur_.tok) {
          case Tok::kAssign:
            m.op = Matcher::Op::kEqual;
            break;
          case Tok::kNeq:
            m.op = Matcher::Op::kNotEqual;
            break;
          case Tok::kRegex:
            m.op = Matcher::Op::kRegex;
            break;
          case Tok::kNotRegex:
            m.op = Matcher::Op::kNotRegex;
            break;
          default:
            Fail(cur_.pos, StrCat("unexpected ", Describe(cur_),
                                  " in label matching, expected label matching operator"));
        }
        Advance();
        if (cur_.tok != Tok::kString) {
          Fail(cur_.pos,
               StrCat("unexpected ", Describe(cur_), " in label matching, expected string"));
        }
        m.value = cur_.value;
        Advance();
        if (m.op == Matcher::Op::kRegex || m.op == Matcher::Op::kNotRegex) {
          RE2::Options o;
          o.set_log_errors(false);
          o.set_dot_nl(true);  // Go's regexp as Prometheus compiles it: (?s)
          auto re = std::make_shared<RE2>(StrCat("^(?:", m.value, ")$"), o);
          if (!re->ok()) Fail(mpos, RegexError(*re));
          m.re = std::move(re);
        }
        if (m.name == "__name__" && !name.empty()) {
          Fail(pos,
               StrCat("metric name must not be set twice: \"", name, "\" or \"", m.value, "\""));
        }
        e->matchers.push_back(std::move(m));
        if (cur_.tok == Tok::kComma) {
          Advance();
        } else if (cur_.tok != Tok::kRBrace) {
          Fail(cur_.pos, StrCat("unexpected ", Describe(cur_),
                                " in label matching, expected \",\" or \"}\""));
        }
      }
      Advance();
    }
    bool any_non_empty = false;
    for (const Matcher& m : e->matchers) any_non_empty |= !m.MatchesEmpty();
    if (!any_non_empty) Fail(pos, "vector selector must contain at least one non-empty matcher");
    return e;
  }

  // [range], [range:step], offset and @ after a selector, a range or a subquery.
  std::unique_ptr<Expr> ParsePostfix(std::unique_ptr<Expr> e) {
    while (true) {
      if (cur_.tok == Tok::kLBracket) {
        int pos = cur_.pos;
        Advance();
        if (cur_.tok != Tok::kDuration) {
          Fail(cur_.pos, StrCat("unexpected ", Describe(cur_),
                                " in subquery or range selector, "
                                "expected duration"));
        }
        int64_t range = cur_.duration_ms;
        if (range <= 0) Fail(cur_.pos, "duration must be greater than 0");
        Advance();
        if (cur_.tok == Tok::kColon) {
          Advance();
          int64_t step = 0;
          if (cur_.tok == Tok::kDuration) {
            step = cur_.duration_ms;
            if (step <= 0) Fail(cur_.pos, "duration must be greater than 0");
            Advance();
          }
          Expect(Tok::kRBracket, "\"]\"", "subquery");
          if (e->type() != ValueType::kVector) {
            Fail(e->pos, StrCat("subquery is only allowed on instant vector, got ",
                                RawTypeName(e->type()), " instead"));
          }
          auto s = New(Expr::Kind::kSubquery, e->pos);
          s->range_ms = range;
          s->step_ms = step;
          s->child = std::move(e);
          e = std::move(s);
          continue;
        }
        Expect(Tok::kRBracket, "\"]\"", "range selector");
        if (e->kind != Expr::Kind::kSelector) {
          Fail(pos, "ranges only allowed for vector selectors");
        }
        if (e->offset_ms != 0) Fail(pos, "no offset modifiers allowed before range");
        if (e->at != Expr::At::kNone) Fail(pos, "no @ modifiers allowed before range");
        auto m = New(Expr::Kind::kMatrix, e->pos);
        m->range_ms = range;
        m->child = std::move(e);
        e = std::move(m);
        continue;
      }
      if (IsIdent("offset")) {
        Advance();
        bool neg = false;
        if (cur_.tok == Tok::kSub) {
          neg = true;
          Advance();
        }
        if (cur_.tok != Tok::kDuration) {
          Fail(cur_.pos, StrCat("unexpected ", Describe(cur_), " in offset, expected duration"));
        }
        Expr* target = ModifierTarget(e.get(), "offset");
        if (target->offset_ms != 0) Fail(e->pos, "offset may not be set multiple times");
        target->offset_ms = neg ? -cur_.duration_ms : cur_.duration_ms;
        Advance();
        continue;
      }
      if (cur_.tok == Tok::kAt) {
        int pos = cur_.pos;
        Advance();
        Expr* target = ModifierTarget(e.get(), "@");
        if (target->at != Expr::At::kNone)
          Fail(e->pos, "@ <timestamp> may not be set multiple times");
        if (IsIdent("start") || IsIdent("end")) {
          target->at = cur_.text == "start" ? Expr::At::kStart : Expr::At::kEnd;
          Advance();
          Expect(Tok::kLParen, "\"(\"", "@ modifier");
          Expect(Tok::kRParen, "\")\"", "@ modifier");
          continue;
        }
        bool neg = false;
        if (cur_.tok == Tok::kSub || cur_.tok == Tok::kAdd) {
          neg = cur_.tok == Tok::kSub;
          Advance();
        }
        if (cur_.tok != Tok::kNumber) {
          Fail(cur_.pos, StrCat("unexpected ", Describe(cur_), " in @, expected timestamp"));
        }
        double t = neg ? -cur_.number : cur_.number;
        if (!std::isfinite(t) || std::fabs(t) > 9.2e15) {
          Fail(pos, "timestamp out of bounds for @ modifier");
        }
        target->at = Expr::At::kTime;
        target->at_ms = static_cast<int64_t>(std::llround(t * 1000));
        Advance();
        continue;
      }
      return e;
    }
  }

  Expr* ModifierTarget(Expr* e, const char* what) {
    switch (e->kind) {
      case Expr::Kind::kSelector:
      case Expr::Kind::kSubquery:
        return e;
      case Expr::Kind::kMatrix:
        return e->child.get();
      default:
        Fail(e->pos, StrCat(what,
                            " modifier must be preceded by an instant vector selector or range "
                            "vector selector or a subquery"));
    }
  }

  std::unique_ptr<Expr> ParseCall(const FunctionInfo* f, int pos) {
    auto e = New(Expr::Kind::kCall, pos);
    e->func = f;
    Advance();  // (
    while (cur_.tok != Tok::kRParen) {
      e->args.push_back(ParseExpr(1));
      if (cur_.tok == Tok::kComma) {
        Advance();
        if (cur_.tok == Tok::kRParen) Fail(cur_.pos, "unexpected \")\" after \",\"");
      } else if (cur_.tok != Tok::kRParen) {
        Fail(cur_.pos,
             StrCat("unexpected ", Describe(cur_), " in function call, expected \",\" or \")\""));
      }
    }
    Advance();
    size_t expected = f->arg_types.size();
    size_t n = e->args.size();
    if (f->variadic == 0) {
      if (n != expected) {
        Fail(pos,
             StrCat("expected ", expected, " argument(s) in call to \"", f->name, "\", got ", n));
      }
    } else {
      size_t least = expected - 1;
      if (n < least) {
        Fail(pos, StrCat("expected at least ", least, " argument(s) in call to \"", f->name,
                         "\", got ", n));
      }
      if (f->variadic > 0 && n > least + static_cast<size_t>(f->variadic)) {
        Fail(pos, StrCat("expected at most ", least + static_cast<size_t>(f->variadic),
                         " argument(s) in call to \"", f->name, "\", got ", n));
      }
    }
    for (size_t i = 0; i < n; ++i) {
      ValueType want = f->arg_types[std::min(i, expected - 1)];
      ValueType got = e->args[i]->type();
      if (got != want) {
        Fail(e->args[i]->pos,
             StrCat("expected type ", ValueTypeName(want), " in call to function \"", f->name,
                    "\", got ", ValueTypeName(got)));
      }
    }
    return e;
  }

  std::unique_ptr<Expr> ParseAggregate(AggOp op, int pos) {
    auto e = New(Expr::Kind::kAggregate, pos);
    e->agg = op;
    bool grouped = false;
    auto grouping = [&]() {
      if (IsIdent("by") || IsIdent("without")) {
        e->without = cur_.text == "without";
        Advance();
        e->grouping = ParseLabelList("grouping");
        grouped = true;
      }
    };
    grouping();
    Expect(Tok::kLParen, "\"(\"", "aggregation");
    std::vector<std::unique_ptr<Expr>> args;
    while (cur_.tok != Tok::kRParen) {
      args.push_back(ParseExpr(1));
      if (cur_.tok == Tok::kComma) {
        Advance();
      } else if (cur_.tok != Tok::kRParen) {
        Fail(cur_.pos,
             StrCat("unexpected ", Describe(cur_), " in aggregation, expected \",\" or \")\""));
      }
    }
    Advance();
    if (IsIdent("by") || IsIdent("without")) {
      if (grouped) Fail(cur_.pos, StrCat("unexpected ", Describe(cur_)));
      grouping();
    }
    bool takes_param = op == AggOp::kTopk || op == AggOp::kBottomk || op == AggOp::kQuantile ||
                       op == AggOp::kCountValues;
    size_t want_args = takes_param ? 2 : 1;
    if (args.empty()) Fail(pos, "no arguments for aggregate expression provided");
    if (args.size() != want_args) {
      Fail(pos, StrCat("wrong number of arguments for aggregate expression provided, expected ",
                       want_args, ", got ", args.size()));
    }
    if (takes_param) e->param = std::move(args[0]);
    e->child = std::move(args.back());
    if (e->child->type() != ValueType::kVector) {
      Fail(e->child->pos, StrCat("expected type instant vector in aggregation expression, got ",
                                 ValueTypeName(e->child->type())));
    }
    if (takes_param) {
      ValueType want = op == AggOp::kCountValues ? ValueType::kString : ValueType::kScalar;
      if (e->param->type() != want) {
        Fail(e->param->pos,
             StrCat("expected type ", ValueTypeName(want), " in aggregation parameter, got ",
                    ValueTypeName(e->param->type())));
      }
    }
    return e;
  }

  std::string_view in_;
  Lexer lexer_;
  Token cur_;
  int depth_ = 0;
};

std::string LineCol(std::string_view in, int pos) {
  int line = 1, col = 1;
  for (int i = 0; i < pos && i < static_cast<int>(in.size()); ++i) {
    if (in[static_cast<size_t>(i)] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return StrCat(line, ":", col);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Expr>> Parse(std::string_view query) {
  if (query.size() > kMaxQueryBytes) {
    return absl::InvalidArgumentError(
        StrCat("query is ", query.size(), " bytes; the limit is ", kMaxQueryBytes));
  }
  Parser p(query);
  try {
    return p.ParseAll();
  } catch (const ParseError& e) {
    return absl::InvalidArgumentError(StrCat(LineCol(query, e.pos), ": parse error: ", e.message));
  }
}

}  // namespace bulwark::observe::promql
