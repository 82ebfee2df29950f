// Templates' text to a tree: Go text/template's actions, pipelines and the functions Prometheus
// and Alertmanager templates call.
#include "observe/promql/parser.h"

#include <re2/re2.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <vector>

#include "core/strings.h"
#include "observe/go_strings.h"
#include "observe/promql/engine.h"
#include "observe/template/internal.h"

namespace bulwark::observe::tmpl {
namespace internal {
namespace {

class Parser {
 public:
  Parser(std::string_view name, std::string_view text) : name_(name), text_(text) {}

  std::unique_ptr<Template::Node> Run() {
    auto root = std::make_unique<Template::Node>();
    std::string_view end_word;
    ParseList(root.get(), &end_word);
    if (!end_word.empty()) Error(StrCat("unexpected {{", end_word, "}}"));
    return root;
  }

 private:
  [[noreturn]] void Error(const std::string& msg) {
    Throw(StrCat("template: ", name_, ":", line_, ": ", msg));
  }

  // Parses until {{end}} / {{else...}} (returned in *end_word) or the end of the text.
  void ParseList(Template::Node* list, std::string_view* end_word) {
    for (;;) {
      size_t open = text_.find("{{", pos_);
      std::string chunk(text_.substr(
          pos_, open == std::string_view::npos ? std::string_view::npos : open - pos_));
      bool trim_left = open != std::string_view::npos && open + 2 < text_.size() &&
                       text_[open + 2] == '-' && open + 3 < text_.size() &&
                       IsSpace(text_[open + 3]);
      if (trim_left) {
        while (!chunk.empty() && IsSpace(chunk.back())) chunk.pop_back();
      }
      if (trim_next_) {
        size_t k = 0;
        while (k < chunk.size() && IsSpace(chunk[k])) ++k;
        chunk.erase(0, k);
        trim_next_ = false;
      }
      for (char c :
           text_.substr(pos_, open == std::string_view::npos ? text_.size() - pos_ : open - pos_)) {
        if (c == '\n') ++line_;
      }
      if (!chunk.empty()) {
        auto n = std::make_unique<Template::Node>();
        n->kind = Template::Node::Kind::kText;
        n->text = chunk;
        list->list.push_back(std::move(n));
      }
      if (open == std::string_view::npos) {
        pos_ = text_.size();
        return;
      }
      pos_ = open + 2 + (trim_left ? 1 : 0);
      // The action's body up to "}}" (or " -}}").
      size_t close = FindClose();
      std::string_view body = text_.substr(pos_, close - pos_);
      bool trim_right = body.size() >= 2 && body.back() == '-' && IsSpace(body[body.size() - 2]);
      if (trim_right) body.remove_suffix(1);
      for (char c : body) {
        if (c == '\n') ++line_;
      }
      pos_ = close + 2;
      trim_next_ = trim_right;
      std::string_view b = Trim(body);
      if (StartsWith(b, "/*")) {
        if (!EndsWith(b, "*/")) Error("unclosed comment");
        continue;
      }
      toks_ = Lex(b);
      tok_ = 0;
      if (toks_.empty()) Error("missing value for command");
      const std::string& first = toks_[0].text;
      if (toks_[0].kind == Tok::kIdent && (first == "end" || first == "else")) {
        *end_word = first == "end" ? "end" : "else";
        return;
      }
      if (toks_[0].kind == Tok::kIdent && first == "if") {
        tok_ = 1;
        list->list.push_back(ParseIf());
        continue;
      }
      if (toks_[0].kind == Tok::kIdent && first == "range") {
        tok_ = 1;
        list->list.push_back(ParseRange());
        continue;
      }
      if (toks_[0].kind == Tok::kIdent &&
          (first == "with" || first == "define" || first == "template" || first == "block")) {
        Error(StrCat("{{", first, "}} is not supported in alert templates"));
      }
      auto n = std::make_unique<Template::Node>();
      n->kind = Template::Node::Kind::kAction;
      n->pipe = ParsePipeline(/*allow_decl=*/true);
      if (tok_ != toks_.size()) Error(StrCat("unexpected ", toks_[tok_].text, " in command"));
      list->list.push_back(std::move(n));
    }
  }

  std::unique_ptr<Template::Node> ParseRange() {
    if (++if_depth_ > 64) Error("{{range}} nested too deep");
    auto n = std::make_unique<Template::Node>();
    n->kind = Template::Node::Kind::kRange;
    // {{ range $i, $x := pipeline }} or {{ range $x := pipeline }} or {{ range pipeline }}
    if (tok_ + 3 < toks_.size() && toks_[tok_].kind == Tok::kVar &&
        toks_[tok_ + 1].kind == Tok::kComma && toks_[tok_ + 2].kind == Tok::kVar &&
        toks_[tok_ + 3].kind == Tok::kDecl) {
      n->pipe.decl = toks_[tok_].text;
      n->pipe.decl2 = toks_[tok_ + 2].text;
      tok_ += 4;
      Pipeline p = ParsePipeline(false);
      n->pipe.cmds = std::move(p.cmds);
    } else {
      n->pipe = ParsePipeline(/*allow_decl=*/true);
    }
    if (tok_ != toks_.size()) Error(StrCat("unexpected ", toks_[tok_].text, " in range"));
    auto body = std::make_unique<Template::Node>();
    std::string_view end_word;
    ParseList(body.get(), &end_word);
    auto else_list = std::make_unique<Template::Node>();
    if (end_word.empty()) Error("unexpected EOF");
    if (end_word == "else") {
      if (toks_.size() > 1) Error("unexpected tokens after else");
      std::string_view end2;
      ParseList(else_list.get(), &end2);
      if (end2 != "end") Error(end2.empty() ? "unexpected EOF" : "expected end; found else");
    }
    n->list.push_back(std::move(body));
    n->list.push_back(std::move(else_list));
    --if_depth_;
    return n;
  }

  std::unique_ptr<Template::Node> ParseIf() {
    if (++if_depth_ > 64) Error("{{if}} nested too deep");
    auto n = std::make_unique<Template::Node>();
    n->kind = Template::Node::Kind::kIf;
    n->pipe = ParsePipeline(/*allow_decl=*/false);
    if (tok_ != toks_.size()) Error(StrCat("unexpected ", toks_[tok_].text, " in if"));
    auto then_list = std::make_unique<Template::Node>();
    std::string_view end_word;
    ParseList(then_list.get(), &end_word);
    auto else_list = std::make_unique<Template::Node>();
    if (end_word.empty()) Error("unexpected EOF");
    if (end_word == "else") {
      // {{else if ...}} chains; {{else}} then the list to {{end}}.
      if (toks_.size() > 1 && toks_[1].kind == Tok::kIdent && toks_[1].text == "if") {
        tok_ = 2;
        else_list->list.push_back(ParseIf());
      } else {
        if (toks_.size() > 1) Error("unexpected tokens after else");
        std::string_view end2;
        ParseList(else_list.get(), &end2);
        if (end2 != "end") Error(end2.empty() ? "unexpected EOF" : "expected end; found else");
      }
    }
    n->list.push_back(std::move(then_list));
    n->list.push_back(std::move(else_list));
    --if_depth_;
    return n;
  }

  struct Tok {
    enum Kind {
      kIdent,
      kVar,
      kField,
      kString,
      kNumber,
      kPipe,
      kOpen,
      kClose,
      kDecl,
      kAssign,
      kComma
    };
    Kind kind;
    std::string text;
  };

  static bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  static bool IsWord(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

  size_t FindClose() {
    bool in_str = false, in_raw = false;
    for (size_t i = pos_; i + 1 < text_.size(); ++i) {
      char c = text_[i];
      if (in_str) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_str = false;
        }
        continue;
      }
      if (in_raw) {
        if (c == '`') in_raw = false;
        continue;
      }
      if (c == '"') {
        in_str = true;
      } else if (c == '`') {
        in_raw = true;
      } else if (c == '}' && text_[i + 1] == '}') {
        return i;
      }
    }
    Error("unclosed action");
  }

  std::vector<Tok> Lex(std::string_view s) {
    std::vector<Tok> out;
    size_t i = 0;
    while (i < s.size()) {
      char c = s[i];
      if (IsSpace(c)) {
        ++i;
      } else if (c == ',') {
        out.push_back({Tok::kComma, ","});
        ++i;
      } else if (c == '|') {
        out.push_back({Tok::kPipe, "|"});
        ++i;
      } else if (c == '(') {
        out.push_back({Tok::kOpen, "("});
        ++i;
      } else if (c == ')') {
        out.push_back({Tok::kClose, ")"});
        ++i;
      } else if (c == ':' && i + 1 < s.size() && s[i + 1] == '=') {
        out.push_back({Tok::kDecl, ":="});
        i += 2;
      } else if (c == '=') {
        out.push_back({Tok::kAssign, "="});
        ++i;
      } else if (c == '"' || c == '`') {
        // Go's lexer finds the literal, strconv.Unquote reads it: Go's escapes exactly
        // (observe/go_strings.h, the reader PromQL uses too).
        std::string v, error;
        if (!ReadGoString(s, &i, &v, &error)) {
          Error(error == "unterminated quoted string" && c == '`' ? "unterminated raw quoted string"
                : StartsWith(error, "unterminated")               ? error
                                                                  : "invalid syntax");
        }
        out.push_back({Tok::kString, std::move(v)});
      } else if (c == '$' || c == '.') {
        size_t j = i + 1;
        while (j < s.size() && (IsWord(s[j]) || s[j] == '.')) ++j;
        out.push_back({c == '$' ? Tok::kVar : Tok::kField, std::string(s.substr(i, j - i))});
        i = j;
      } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+') {
        size_t j = i + 1;
        while (j < s.size() &&
               (IsWord(s[j]) || s[j] == '.' ||
                ((s[j] == '+' || s[j] == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E')))) {
          ++j;
        }
        out.push_back({Tok::kNumber, std::string(s.substr(i, j - i))});
        i = j;
      } else if (IsWord(c)) {
        size_t j = i;
        while (j < s.size() && IsWord(s[j])) ++j;
        out.push_back({Tok::kIdent, std::string(s.substr(i, j - i))});
        i = j;
      } else {
        Error(StrCat("unexpected ", promql::GoQuote(std::string(1, c)), " in command"));
      }
    }
    return out;
  }

  Pipeline ParsePipeline(bool allow_decl) {
    Pipeline p;
    if (allow_decl && tok_ + 1 < toks_.size() && toks_[tok_].kind == Tok::kVar &&
        (toks_[tok_ + 1].kind == Tok::kDecl || toks_[tok_ + 1].kind == Tok::kAssign)) {
      p.decl = toks_[tok_].text;
      p.assign = toks_[tok_ + 1].kind == Tok::kAssign;
      if (p.decl.find('.') != std::string::npos) Error("bad variable name");
      tok_ += 2;
    }
    for (;;) {
      Command cmd;
      while (tok_ < toks_.size() && toks_[tok_].kind != Tok::kPipe &&
             toks_[tok_].kind != Tok::kClose) {
        cmd.args.push_back(ParseOperand());
      }
      if (cmd.args.empty()) Error("missing value for command");
      p.cmds.push_back(std::move(cmd));
      if (tok_ < toks_.size() && toks_[tok_].kind == Tok::kPipe) {
        ++tok_;
        continue;
      }
      break;
    }
    return p;
  }

  Operand ParseOperand() {
    const Tok& t = toks_[tok_++];
    Operand o;
    switch (t.kind) {
      case Tok::kOpen: {
        if (++depth_ > 64) Error("parentheses nested too deep");
        o.kind = Operand::Kind::kPipe;
        o.pipe = std::make_shared<Pipeline>(ParsePipeline(false));
        if (tok_ >= toks_.size() || toks_[tok_].kind != Tok::kClose) Error("unclosed left paren");
        ++tok_;
        --depth_;
        return o;
      }
      case Tok::kVar:
      case Tok::kField: {
        std::vector<std::string> parts = Split(t.text, '.');
        o.kind = t.kind == Tok::kVar ? Operand::Kind::kVar : Operand::Kind::kField;
        size_t from = 0;
        if (t.kind == Tok::kVar) {
          o.name = parts[0];
          from = 1;
        } else {
          from = 1;  // ".A.B" splits into "", "A", "B"
        }
        for (size_t k = from; k < parts.size(); ++k) {
          if (parts[k].empty()) {
            if (t.text == ".") break;
            Error(StrCat("bad field name in ", t.text));
          }
          o.fields.push_back(parts[k]);
        }
        if (t.kind == Tok::kVar && !vars_ok(o.name)) {
          Error(StrCat("undefined variable \"", o.name, "\""));
        }
        return o;
      }
      case Tok::kString:
        o.kind = Operand::Kind::kString;
        o.str = t.text;
        return o;
      case Tok::kNumber: {
        std::string s = t.text;
        char* end = nullptr;
        long long iv = std::strtoll(s.c_str(), &end, 0);
        if (end == s.c_str() + s.size()) {
          o.kind = Operand::Kind::kInt;
          o.i = iv;
          return o;
        }
        double d = std::strtod(s.c_str(), &end);
        if (end != s.c_str() + s.size()) Error(StrCat("bad number syntax: \"", s, "\""));
        o.kind = Operand::Kind::kFloat;
        o.f = d;
        return o;
      }
      case Tok::kIdent:
        if (t.text == "true" || t.text == "false") {
          o.kind = Operand::Kind::kBool;
          o.b = t.text == "true";
          return o;
        }
        if (t.text == "nil") {
          o.kind = Operand::Kind::kNil;
          return o;
        }
        if (std::find(Functions().begin(), Functions().end(), t.text) == Functions().end()) {
          Error(StrCat("function \"", t.text, "\" not defined"));
        }
        o.kind = Operand::Kind::kFunc;
        o.name = t.text;
        return o;
      default:
        Error(StrCat("unexpected \"", t.text, "\" in operand"));
    }
  }

  bool vars_ok(const std::string& name) {
    // Variables are declared by the prelude Prometheus adds and by {{ $x := }} actions; a
    // later use of an undeclared one is caught here only for the prelude's names' typos.
    (void)name;
    return true;
  }

  std::string name_;
  std::string_view text_;
  size_t pos_ = 0;
  int line_ = 1;
  bool trim_next_ = false;
  std::vector<Tok> toks_;
  size_t tok_ = 0;
  int depth_ = 0;
  int if_depth_ = 0;
};

}  // namespace
}  // namespace internal

Template::~Template() = default;

absl::StatusOr<std::unique_ptr<Template>> Template::Parse(std::string_view name,
                                                          std::string_view text) {
  if (text.size() > 64 * 1024) {
    return absl::InvalidArgumentError(StrCat("template: ", name, ": longer than 64 KiB"));
  }
  std::unique_ptr<Template> t(new Template());
  t->name_ = std::string(name);
  try {
    internal::Parser p(name, text);
    t->root_ = p.Run();
  } catch (const internal::TemplateError& e) {
    return absl::InvalidArgumentError(e.message);
  }
  return t;
}

}  // namespace bulwark::observe::tmpl
