// The template engine's insides, shared by its files: values.cc (values and the functions'
// helpers), parser.cc (text to a tree) and executor.cc (a tree and data to text).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "observe/template/template.h"

namespace bulwark::observe::tmpl::internal {

using TValue = TemplateValue;

// Parsing and execution stop by throwing this; Template::Parse and Expand turn it into a
// Status. It never leaves the module.
struct TemplateError {
  std::string message;
};
[[noreturn]] inline void Throw(std::string m) { throw TemplateError{std::move(m)}; }

// humanizeTimestamp's argument: seconds with a fraction, as Go's time.Time String().
std::string GoTimeFromSeconds(double seconds);
// Go's %T name of a value ("float64", "template.KV", ...).
const char* GoTypeName(const TValue& v);
// Go's fmt.Sprint of one value.
std::string Print(const TValue& v);
// text/template's truth: non-zero, non-empty.
bool Truth(const TValue& v);
// Prometheus's convertToFloat: floats, ints and numeric strings; `fn` names the caller in errors.
double ToFloat(const TValue& v, std::string_view fn);
// Go's fmt.Sprintf for the verbs templates use.
std::string GoSprintf(const std::string& format, const std::vector<TValue>& args);
// The functions templates may call.
const std::vector<std::string_view>& Functions();

// ---------------------------------------------------------------------------------------------
// Syntax.

struct Pipeline;

struct Operand {
  enum class Kind { kFunc, kVar, kField, kString, kInt, kFloat, kBool, kNil, kPipe };
  Kind kind = Kind::kNil;
  std::string name;                 // function or variable name ("$" for the root)
  std::vector<std::string> fields;  // .A.B after the variable or the dot
  std::string str;
  double f = 0;
  int64_t i = 0;
  bool b = false;
  std::shared_ptr<Pipeline> pipe;
};

struct Command {
  std::vector<Operand> args;
};

struct Pipeline {
  std::string decl;   // "$x" for {{ $x := ... }}; the element in {{ range $i, $x := }}
  std::string decl2;  // {{ range $i, $x := ... }}: decl is $i, decl2 is $x
  bool assign = false;
  std::vector<Command> cmds;
};

}  // namespace bulwark::observe::tmpl::internal

namespace bulwark::observe::tmpl {

struct Template::Node {
  enum class Kind { kList, kText, kAction, kIf, kRange };
  Kind kind = Kind::kList;
  std::string text;
  internal::Pipeline pipe;
  std::vector<std::unique_ptr<Node>> list;  // kList; kIf: [then, else]
};

}  // namespace bulwark::observe::tmpl
