// Alert templates. Expected strings were produced by Prometheus 2.42's promtool for the same
// templates and values (tests/rules/alerting.test.yml checks a few of them end to end).
#include <gtest/gtest.h>

#include "observe/template/template.h"

namespace bulwark::observe::tmpl {
namespace {

std::string Expand(const std::string& text, double value,
                   std::map<std::string, std::string> labels = {{"job", "api"},
                                                                {"instance", "a:80"}}) {
  auto t = Template::Parse("__alert_T", text);
  if (!t.ok()) return "PARSE: " + std::string(t.status().message());
  TemplateData d;
  d.labels = &labels;
  d.value = value;
  auto r = (*t)->Expand(d);
  if (!r.ok()) return "EXPAND: " + std::string(r.status().message());
  return *r;
}

TEST(Template, HumanizeFamilyMatchesPromtool) {
  // Values and outputs as promtool printed them for
  // '{{ $value }}|{{ humanize $value }}|{{ humanizePercentage $value }}|{{ humanizeDuration
  // $value }}|{{ printf "%.2f" $value }}|{{ humanize1024 $value }}'.
  const std::string t =
      "{{ $value }}|{{ humanize $value }}|{{ humanizePercentage $value }}|{{ humanizeDuration "
      "$value }}|{{ printf \"%.2f\" $value }}|{{ humanize1024 $value }}";
  EXPECT_EQ(Expand(t, 1234567), "1.234567e+06|1.235M|1.235e+08%|14d 6h 56m 7s|1234567.00|1.177Mi");
  EXPECT_EQ(Expand(t, 123456), "123456|123.5k|1.235e+07%|1d 10h 17m 36s|123456.00|120.6ki");
  EXPECT_EQ(Expand(t, 0.000012345), "1.2345e-05|12.35u|0.001234%|12.35us|0.00|1.234e-05");
  EXPECT_EQ(Expand(t, 1e21),
            "1e+21|1Z|1e+23%|-106751991167300d -15h -30m -8s|1000000000000000000000.00|867.4Ei");
  EXPECT_EQ(Expand(t, 3661.5), "3661.5|3.662k|3.662e+05%|1h 1m 1s|3661.50|3.576ki");
  EXPECT_EQ(Expand(t, 0.05), "0.05|50m|5%|50ms|0.05|0.05");
}

TEST(Template, LabelsVariablesAndControl) {
  EXPECT_EQ(Expand("{{ $labels.job }} {{ .Labels.instance }} {{ $labels.missing }}|", 1),
            "api a:80 |");
  EXPECT_EQ(Expand("{{ if gt $value 10.0 }}big{{ else if eq $labels.job \"api\" }}api{{ else }}"
                   "small{{ end }}",
                   1),
            "api");
  EXPECT_EQ(Expand("{{ if gt $value 10.0 }}big{{ end }}", 11), "big");
  EXPECT_EQ(Expand("a {{- \" b \" -}} c", 0), "a b c");
  EXPECT_EQ(Expand("{{ $x := $labels.job | toUpper }}{{ $x }}-{{ title \"hello world\" }}", 0),
            "API-Hello World");
  EXPECT_EQ(Expand("{{ reReplaceAll \"(.*):(.*)\" \"$2/$1\" $labels.instance }}", 0), "80/a");
  EXPECT_EQ(Expand("{{/* a comment */}}x", 0), "x");
  EXPECT_EQ(Expand("{{ printf \"%d %s %q %5.1f|%-4s|\" 3 \"s\" \"q\" 2.25 \"ab\" }}", 0),
            "3 s \"q\"   2.2|ab  |");
  EXPECT_EQ(Expand("{{ printf \"%d\" 1.5 }}", 0), "%!d(float64=1.5)");
}

TEST(Template, ErrorsAtParseAndExpansion) {
  EXPECT_EQ(Expand("{{ nosuch $value }}", 0),
            "PARSE: template: __alert_T:1: function \"nosuch\" not defined");
  EXPECT_EQ(Expand("{{ if $value }}x", 0).substr(0, 6), "PARSE:");
  EXPECT_EQ(Expand("{{ $value", 0).substr(0, 6), "PARSE:");
  EXPECT_NE(Expand("{{ humanize \"abc\" }}", 0).find("EXPAND:"), std::string::npos);
  std::string deep(200, '(');
  EXPECT_EQ(Expand("{{ " + deep + " }}", 0).substr(0, 6), "PARSE:");
}

}  // namespace
}  // namespace bulwark::observe::tmpl
