#include "observe/rules/group.h"

#include <algorithm>
#include <chrono>

#include "absl/hash/hash.h"
#include "core/clock.h"
#include "core/strings.h"

namespace bulwark::observe::rules {
namespace {

// Prometheus keeps a resolved alert this long so it is sent as resolved.
constexpr int64_t kResolvedRetentionMs = 15 * 60 * 1000;

using observe::SetLabel;

uint64_t Hash(const Labels& l) { return absl::HashOf(l); }

}  // namespace

const char* AlertStateName(AlertState s) {
  switch (s) {
    case AlertState::kInactive:
      return "inactive";
    case AlertState::kPending:
      return "pending";
    case AlertState::kFiring:
      return "firing";
  }
  return "";
}

std::string ExpandTemplate(const Template& t, const Labels& labels, double value,
                           const EvalContext& ctx) {
  std::map<std::string, std::string> m(labels.begin(), labels.end());
  TemplateData data;
  data.labels = &m;
  data.external_labels = &ctx.external_labels;
  data.external_url = ctx.external_url;
  data.value = value;
  auto r = t.Expand(data);
  if (!r.ok()) return StrCat("<error expanding template: ", r.status().message(), ">");
  return *r;
}

GroupEvaluator::GroupEvaluator(const RuleGroup* group)
    : group_(group), states_(group->rules.size()) {}

void GroupEvaluator::EvalAlert(const Rule& rule, RuleState& st, const promql::QueryResult& res,
                               int64_t t, const EvalContext& ctx,
                               std::vector<std::pair<Labels, double>>* out) {
  absl::flat_hash_map<uint64_t, Alert> fresh;
  for (const promql::Sample& s : res.vector) {
    Alert a;
    a.labels = *s.labels;
    SetLabel(&a.labels, "__name__", "");
    for (size_t i = 0; i < rule.labels.size(); ++i) {
      SetLabel(&a.labels, rule.labels[i].first,
               ExpandTemplate(*rule.label_templates[i], *s.labels, s.v, ctx));
    }
    SetLabel(&a.labels, "alertname", rule.name);
    for (size_t i = 0; i < rule.annotations.size(); ++i) {
      a.annotations.emplace_back(
          rule.annotations[i].first,
          ExpandTemplate(*rule.annotation_templates[i], *s.labels, s.v, ctx));
    }
    a.active_at = t;
    a.state = AlertState::kPending;
    a.value = s.v;
    uint64_t h = Hash(a.labels);
    if (fresh.contains(h)) {
      st.last_error = "vector contains metrics with the same labelset after applying alert labels";
      return;
    }
    fresh.emplace(h, std::move(a));
  }
  for (auto& [h, a] : fresh) {
    auto it = st.active.find(h);
    if (it != st.active.end() && it->second.state != AlertState::kInactive) {
      it->second.value = a.value;
      it->second.annotations = std::move(a.annotations);
      continue;
    }
    st.active[h] = std::move(a);
  }
  size_t active = 0;
  std::vector<uint64_t> remove;
  for (auto& [h, a] : st.active) {
    if (!fresh.contains(h)) {
      // Gone from the result: resolved, unless keep_firing_for holds it.
      bool keep_firing = false;
      if (a.state == AlertState::kFiring && rule.keep_firing_for_ms > 0) {
        if (a.keep_firing_since == 0) a.keep_firing_since = t;
        if (t - a.keep_firing_since < rule.keep_firing_for_ms) keep_firing = true;
      }
      if (a.state == AlertState::kPending ||
          (a.resolved_at != 0 && t - a.resolved_at > kResolvedRetentionMs)) {
        remove.push_back(h);
      }
      if (a.state != AlertState::kInactive && !keep_firing) {
        a.state = AlertState::kInactive;
        a.resolved_at = t;
      }
      if (!keep_firing) continue;
    } else {
      a.keep_firing_since = 0;
    }
    ++active;
    if (a.state == AlertState::kPending && t - a.active_at >= rule.for_ms) {
      a.state = AlertState::kFiring;
      a.fired_at = t;
    }
    // ALERTS starts from the rule's own labels (unexpanded), then the alert's.
    Labels l = rule.labels;
    for (const auto& [k, v] : a.labels) SetLabel(&l, k, v);
    SetLabel(&l, "__name__", "ALERTS");
    SetLabel(&l, "alertname", rule.name);
    Labels for_state = l;
    SetLabel(&l, "alertstate", AlertStateName(a.state));
    SetLabel(&for_state, "__name__", "ALERTS_FOR_STATE");
    out->emplace_back(std::move(l), 1.0);
    out->emplace_back(std::move(for_state), static_cast<double>(a.active_at / 1000));
  }
  for (uint64_t h : remove) st.active.erase(h);
  if (group_->limit > 0 && active > static_cast<size_t>(group_->limit)) {
    st.active.clear();
    out->clear();
    st.last_error = StrCat("exceeded limit of ", group_->limit, " with ", active, " alerts");
  }
}

void GroupEvaluator::Eval(int64_t t, tsdb::Store* store, const EvalContext& ctx) {
  int64_t group_start_ns = MonotonicNs();
  promql::QueryResult res;
  for (size_t i = 0; i < group_->rules.size(); ++i) {
    const Rule& rule = group_->rules[i];
    RuleState& st = states_[i];
    int64_t start_ns = MonotonicNs();
    st.last_eval_ms = t;
    st.last_error.clear();
    if (!rule.expr) {
      st.last_error = "the rule's expression did not parse";
      continue;
    }
    absl::Status status = promql::Evaluate(*rule.expr, t, *store, ctx.query, &res);
    if (status.ok() && res.type == promql::ValueType::kScalar) {
      res.arena->emplace_back();
      res.vector = {{&res.arena->back(), res.scalar, t}};
      res.type = promql::ValueType::kVector;
    } else if (status.ok() && res.type != promql::ValueType::kVector) {
      status = absl::InvalidArgumentError("rule result is not a vector or scalar");
    }
    if (!status.ok()) {
      st.last_error = std::string(status.message());
      continue;
    }
    std::vector<std::pair<Labels, double>> out;
    if (rule.kind == Rule::Kind::kRecord) {
      out.reserve(res.vector.size());
      absl::flat_hash_set<uint64_t> seen;
      bool dup = false;
      for (const promql::Sample& s : res.vector) {
        Labels l = *s.labels;
        SetLabel(&l, "__name__", rule.name);
        for (const auto& [k, v] : rule.labels) SetLabel(&l, k, v);
        if (!seen.insert(Hash(l)).second) dup = true;
        out.emplace_back(std::move(l), s.v);
      }
      if (dup) {
        st.last_error = "vector contains metrics with the same labelset after applying rule labels";
        continue;
      }
      if (group_->limit > 0 && out.size() > static_cast<size_t>(group_->limit)) {
        st.last_error =
            StrCat("exceeded limit of ", group_->limit, " with ", out.size(), " series");
        continue;
      }
    } else {
      EvalAlert(rule, st, res, t, ctx, &out);
      if (!st.last_error.empty()) continue;
    }
    // Write the samples, then mark what disappeared since last time as stale.
    absl::flat_hash_set<uint64_t> now;
    now.reserve(out.size());
    for (const auto& [l, v] : out) {
      store->Append(l, t, v);
      now.insert(Hash(l));
    }
    for (const Labels& l : st.previous) {
      if (!now.contains(Hash(l))) store->Append(l, t, tsdb::StaleNaN());
    }
    st.previous.clear();
    st.previous.reserve(out.size());
    for (auto& [l, v] : out) st.previous.push_back(std::move(l));
    st.last_samples = out.size();
    st.last_duration_s = static_cast<double>(MonotonicNs() - start_ns) / 1e9;
  }
  last_duration_s_ = static_cast<double>(MonotonicNs() - group_start_ns) / 1e9;
}

}  // namespace bulwark::observe::rules
