// Fuzzes what rule files feed bulwark: alert templates (parsed, then expanded with labels and a
// value) and whole rule files (YAML with groups, rules and expressions). Any input must end in
// a status or a result, never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "observe/rules/rule_file.h"
#include "observe/rules/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto t = bulwark::observe::rules::Template::Parse("__alert_fuzz", text);
    if (!t.ok()) return 0;
    std::map<std::string, std::string> labels = {{"job", "api"}, {"instance", "a:80"}};
    bulwark::observe::rules::TemplateData d;
    d.labels = &labels;
    d.value = data[0] * 1.5 - 100;
    (void)(*t)->Expand(d);
  } else {
    bulwark::observe::rules::RuleFileOptions options;
    options.allow_alertmanager = data[0] % 4 == 1;
    (void)bulwark::observe::rules::ParseRuleFile("fuzz.yml", text, options);
  }
  return 0;
}
