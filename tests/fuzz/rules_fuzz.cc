// Fuzzes what the observe plane reads from files and the network: alert templates (parsed,
// then expanded), rule files, Alertmanager configurations and matchers, and the Prometheus
// exposition format of scraped targets. The first byte picks the parser. Any input must end in
// a status or a result, never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "observe/alerting/config.h"
#include "observe/exposition.h"
#include "observe/rules/rule_file.h"
#include "observe/template/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      auto t = bulwark::observe::tmpl::Template::Parse("__alert_fuzz", text);
      if (!t.ok()) return 0;
      std::map<std::string, std::string> labels = {{"job", "api"}, {"instance", "a:80"}};
      bulwark::observe::tmpl::TemplateData d;
      d.labels = &labels;
      d.value = data[0] * 1.5 - 100;
      (void)(*t)->Expand(d);
      break;
    }
    case 1: {
      bulwark::observe::rules::RuleFileOptions options;
      options.allow_alertmanager = (data[0] / 5) % 2 == 1;
      (void)bulwark::observe::rules::ParseRuleFile("fuzz.yml", text, options);
      break;
    }
    case 2:
      (void)bulwark::observe::alerting::ParseAlertmanagerConfig("am.yml", text);
      break;
    case 3:
      (void)bulwark::observe::alerting::ParseMatchers(text);
      break;
    case 4:
      (void)bulwark::observe::ParseExposition(text, 1000,
                                              [](bulwark::observe::ExpositionSample&) {});
      break;
  }
  return 0;
}
