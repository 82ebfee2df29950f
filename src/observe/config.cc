#include "observe/config.h"

#include <glob.h>

#include "core/host_pins.h"
#include "core/net.h"
#include "core/strings.h"
#include "observe/model/duration.h"
#include "observe/promql/parser.h"

namespace bulwark::observe {
namespace {

bool PromDuration(ConfigContext& ctx, MapReader& r, std::string_view key, int64_t* ms) {
  YAML::Node n = r.Get(key);
  if (!n.IsDefined()) return true;
  std::string s;
  if (!ReadScalar(ctx, n, key, &s)) return false;
  auto d = observe::ParseDurationMs(s);
  if (!d.ok() || *d <= 0) {
    ctx.Error(n.Mark(),
              StrCat(r.what(), ".", key, ": not a valid duration: \"", s, "\" (e.g. 15s, 1m, 2h)"));
    return false;
  }
  *ms = *d;
  return true;
}

}  // namespace

void LoadObserveConfig(ConfigContext& ctx, const YAML::Node& node, ObserveConfig* out) {
  MapReader r(ctx, node, "observe");
  if (!r.valid()) return;
  r.Bool("enabled", &out->enabled);
  PromDuration(ctx, r, "evaluation_interval", &out->evaluation_interval_ms);
  PromDuration(ctx, r, "retention", &out->retention_ms);
  int64_t v = static_cast<int64_t>(out->max_series);
  if (r.Int("max_series", &v, 1, 100000000)) out->max_series = static_cast<size_t>(v);
  v = static_cast<int64_t>(out->max_samples);
  if (r.Int("max_samples", &v, 1000, 4000000000LL)) out->max_samples = static_cast<size_t>(v);
  if (YAML::Node q = r.Get("query"); q.IsDefined()) {
    MapReader qr(ctx, q, "observe.query");
    v = static_cast<int64_t>(out->query.max_samples);
    if (qr.Int("max_samples", &v, 1, 4000000000LL)) out->query.max_samples = static_cast<size_t>(v);
    qr.Duration("timeout", &out->query.timeout_ms);
    if (out->query.timeout_ms <= 0)
      ctx.Error(q.Mark(), "observe.query.timeout: must be more than zero");
    qr.Int("max_concurrency", &out->query.max_concurrency, 1, 1000);
    qr.Finish();
  }
  ForEachNamed(ctx, r.Get("external_labels"), "observe.external_labels",
               "expected a mapping of label to value",
               [&](const std::string& k, const YAML::Node& value) {
                 std::string val;
                 if (!IsValidLabelName(k))
                   ctx.Error(value.Mark(),
                             StrCat("observe.external_labels: invalid label name \"", k, "\""));
                 ReadScalar(ctx, value, k, &val);
                 out->external_labels[k] = val;
               });
  r.String("external_url", &out->external_url);
  while (!out->external_url.empty() && out->external_url.back() == '/')
    out->external_url.pop_back();
  r.StringList("disk_mounts", &out->disk_mounts);

  // Rule files (globs); a file may carry an Alertmanager configuration beside its groups.
  std::string alertmanager_from_rules, alertmanager_from_rules_path;
  if (r.StringList("rule_files", &out->rule_files)) {
    YAML::Node at = r.Get("rule_files");
    for (const std::string& pattern : out->rule_files) {
      std::string full = ctx.Resolve(pattern);
      std::vector<std::string> files;
      glob_t g;
      if (glob(full.c_str(), 0, nullptr, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
      } else if (full.find_first_of("*?[") == std::string::npos) {
        files.push_back(full);  // reported below as missing
      }
      globfree(&g);
      for (const std::string& f : files) {
        rules::RuleFileOptions opts;
        opts.allow_alertmanager = true;
        auto rf = rules::LoadRuleFile(f, opts);
        if (!rf.ok()) {
          for (const std::string& e : Split(std::string(rf.status().message()), '\n')) {
            if (StartsWith(e, f)) {
              ctx.ForeignError(e);
            } else {
              ctx.Error(at.Mark(), StrCat("observe.rule_files: ", e));
            }
          }
          continue;
        }
        for (rules::RuleGroup& grp : rf->groups) {
          out->groups.push_back(std::make_shared<const rules::RuleGroup>(std::move(grp)));
        }
        if (!rf->alertmanager_yaml.empty()) {
          alertmanager_from_rules = rf->alertmanager_yaml;
          alertmanager_from_rules_path = f;
        }
      }
    }
    // Prometheus refuses two groups of one name in one file; across files names may repeat,
    // but bulwark's API and metrics name groups by file and name, so that stays unambiguous.
  }

  if (YAML::Node am = r.Get("alertmanager"); am.IsDefined()) {
    MapReader a(ctx, am, "observe.alertmanager");
    if (a.valid()) {
      a.String("config_file", &out->alertmanager_file);
      a.StringList("forward", &out->forward);
      PromDuration(ctx, a, "resend_delay", &out->resend_delay_ms);
      YAML::Node list = a.Get("forward");
      for (size_t i = 0; i < out->forward.size(); ++i) {
        std::string& f = out->forward[i];
        YAML::Mark mark = list.IsSequence() && i < list.size() ? list[i].Mark() : list.Mark();
        out->forward_where.push_back(ctx.Where(mark));
        while (!f.empty() && f.back() == '/') f.pop_back();
        if (!StartsWith(f, "http://") && !StartsWith(f, "https://")) {
          ctx.Error(mark,
                    StrCat("observe.alertmanager.forward: \"", f, "\" is not an http(s) URL"));
        } else if (absl::StatusOr<HostPort> hp = UrlHostPort(f); !hp.ok()) {
          ctx.Error(mark, StrCat("observe.alertmanager.forward: ", hp.status().message()));
        }
      }
      a.Finish();
    }
  }
  if (!out->alertmanager_file.empty()) {
    std::string path = ctx.Resolve(out->alertmanager_file);
    auto cfg = alerting::LoadAlertmanagerConfig(path);
    if (!cfg.ok()) {
      for (const std::string& e : Split(std::string(cfg.status().message()), '\n'))
        ctx.ForeignError(e);
    } else {
      out->alertmanager = std::move(*cfg);
    }
  } else if (!alertmanager_from_rules.empty()) {
    auto cfg =
        alerting::ParseAlertmanagerConfig(alertmanager_from_rules_path, alertmanager_from_rules);
    if (!cfg.ok()) {
      for (const std::string& e : Split(std::string(cfg.status().message()), '\n'))
        ctx.ForeignError(e);
    } else {
      out->alertmanager = std::move(*cfg);
    }
  }

  if (YAML::Node sc = r.Get("scrape"); sc.IsDefined()) {
    if (!sc.IsSequence()) {
      ctx.Error(sc.Mark(), "observe.scrape: expected a list of jobs");
    } else {
      for (const YAML::Node& j : sc) {
        MapReader s(ctx, j, "observe.scrape[]");
        if (!s.valid()) continue;
        ScrapeConfig c;
        s.Require("job");
        s.String("job", &c.job);
        s.StringList("targets", &c.targets);
        s.String("metrics_path", &c.metrics_path);
        PromDuration(ctx, s, "interval", &c.interval_ms);
        PromDuration(ctx, s, "timeout", &c.timeout_ms);
        int64_t lim = static_cast<int64_t>(c.sample_limit);
        if (s.Int("sample_limit", &lim, 1, 100000000)) c.sample_limit = static_cast<size_t>(lim);
        YAML::Node list = s.Get("targets");
        for (size_t i = 0; i < c.targets.size(); ++i) {
          YAML::Mark mark = list.IsSequence() && i < list.size() ? list[i].Mark() : j.Mark();
          c.targets_where.push_back(ctx.Where(mark));
          // As Prometheus's static_configs: HOST:PORT (a name, an IPv4 or a bracketed IPv6).
          if (absl::StatusOr<HostPort> hp = ParseHostPort(c.targets[i]); !hp.ok()) {
            ctx.Error(mark, StrCat("observe.scrape job \"", c.job, "\": target \"", c.targets[i],
                                   "\": ", hp.status().message()));
          }
        }
        if (c.targets.empty())
          ctx.Error(j.Mark(), StrCat("observe.scrape job \"", c.job, "\": no targets"));
        s.Finish();
        out->scrape.push_back(std::move(c));
      }
    }
  }
  r.Finish();
}

}  // namespace bulwark::observe
