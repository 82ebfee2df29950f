#include "observe/tsdb/store.h"

#include <algorithm>
#include <cstring>

#include "absl/hash/hash.h"

namespace bulwark::observe::tsdb {

double StaleNaN() {
  double v;
  std::memcpy(&v, &kStaleNaNBits, sizeof(v));
  return v;
}

bool IsStaleNaN(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits == kStaleNaNBits;
}

bool Series::ValueAt(int64_t oldest, int64_t newest, Point* out) const {
  auto it = std::upper_bound(points.begin(), points.end(), newest,
                             [](int64_t x, const Point& p) { return x < p.t; });
  if (it == points.begin()) return false;
  const Point& p = *(it - 1);
  if (p.t < oldest) return false;
  // A marker in (p.t, newest] ended the series.
  auto m = std::upper_bound(stale.begin(), stale.end(), p.t);
  if (m != stale.end() && *m <= newest) return false;
  *out = p;
  return true;
}

std::pair<const Point*, const Point*> Series::Range(int64_t from, int64_t to) const {
  auto lo = std::lower_bound(points.begin(), points.end(), from,
                             [](const Point& p, int64_t x) { return p.t < x; });
  auto hi =
      std::upper_bound(lo, points.end(), to, [](int64_t x, const Point& p) { return x < p.t; });
  const Point* base = points.data();
  return {base + (lo - points.begin()), base + (hi - points.begin())};
}

const std::string* Series::Get(std::string_view name) const {
  return observe::GetLabel(labels, name);
}

size_t Store::LabelsHash::operator()(const Labels& l) const { return absl::HashOf(l); }

Store::Store() : Store(Options{}) {}
Store::Store(Options options) : options_(options) {}
Store::~Store() = default;

int32_t Store::Ref(const Labels& labels) {
  if (auto it = by_labels_.find(labels); it != by_labels_.end()) {
    return static_cast<int32_t>(it->second);
  }
  if (by_labels_.size() >= options_.max_series) {
    ++series_refused_;
    return -1;
  }
  uint32_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = static_cast<uint32_t>(series_.size());
    series_.emplace_back();
  }
  series_[id] = std::make_unique<Series>();
  series_[id]->labels = labels;
  by_labels_.emplace(labels, id);
  Index(id);
  return static_cast<int32_t>(id);
}

bool Store::Append(int32_t ref, int64_t t, double v) {
  if (ref < 0 || static_cast<size_t>(ref) >= series_.size() || !series_[ref]) return false;
  Series& s = *series_[ref];
  if (t <= s.last_t) {
    ++out_of_order_;
    return false;
  }
  s.last_t = t;
  if (IsStaleNaN(v)) {
    s.stale.push_back(t);
  } else {
    s.points.push_back({t, v});
    ++samples_;
  }
  return true;
}

bool Store::Append(const Labels& labels, int64_t t, double v) {
  int32_t ref = Ref(labels);
  return ref >= 0 && Append(ref, t, v);
}

void Store::Index(uint32_t id) {
  for (const auto& [name, value] : series_[id]->labels) {
    std::vector<uint32_t>& ids = postings_[name][value];
    ids.insert(std::upper_bound(ids.begin(), ids.end(), id), id);
  }
}

void Store::Unindex(uint32_t id) {
  for (const auto& [name, value] : series_[id]->labels) {
    auto n = postings_.find(name);
    if (n == postings_.end()) continue;
    auto v = n->second.find(value);
    if (v == n->second.end()) continue;
    auto it = std::lower_bound(v->second.begin(), v->second.end(), id);
    if (it != v->second.end() && *it == id) v->second.erase(it);
    if (v->second.empty()) n->second.erase(v);
    if (n->second.empty()) postings_.erase(n);
  }
}

const Series* Store::Find(const Labels& labels) const {
  auto it = by_labels_.find(labels);
  return it == by_labels_.end() ? nullptr : series_[it->second].get();
}

void Store::Select(const std::vector<observe::Matcher>& matchers,
                   std::vector<const Series*>* out) const {
  out->clear();
  // Candidates: the intersection of the posting lists of the matchers that need their label
  // present (a matcher that accepts "" also accepts series without the label, so it can only
  // filter).
  std::vector<uint32_t> candidates;
  bool constrained = false;
  std::vector<uint32_t> scratch, merged;
  for (const observe::Matcher& m : matchers) {
    if (m.MatchesEmpty()) continue;
    auto n = postings_.find(m.name);
    merged.clear();
    if (n != postings_.end()) {
      if (m.op == observe::Matcher::Op::kEqual) {
        auto v = n->second.find(m.value);
        if (v != n->second.end()) merged = v->second;
      } else {
        for (const auto& [value, ids] : n->second) {
          if (!m.Matches(value)) continue;
          scratch.clear();
          std::set_union(merged.begin(), merged.end(), ids.begin(), ids.end(),
                         std::back_inserter(scratch));
          merged.swap(scratch);
        }
      }
    }
    if (!constrained) {
      candidates = merged;
      constrained = true;
    } else {
      scratch.clear();
      std::set_intersection(candidates.begin(), candidates.end(), merged.begin(), merged.end(),
                            std::back_inserter(scratch));
      candidates.swap(scratch);
    }
    if (candidates.empty()) return;
  }
  auto consider = [&](const Series& s) {
    for (const observe::Matcher& m : matchers) {
      const std::string* v = s.Get(m.name);
      if (!m.Matches(v ? std::string_view(*v) : std::string_view())) return;
    }
    out->push_back(&s);
  };
  if (constrained) {
    for (uint32_t id : candidates) consider(*series_[id]);
  } else {
    for (const auto& s : series_)
      if (s) consider(*s);
  }
  std::sort(out->begin(), out->end(),
            [](const Series* a, const Series* b) { return a->labels < b->labels; });
}

void Store::Trim(int64_t now_ms) {
  int64_t cutoff = now_ms - options_.retention_ms;
  if (samples_ > options_.max_samples && samples_ > 0) {
    // Over the cap: shorten the window in proportion, so the oldest samples go first.
    double keep = static_cast<double>(options_.max_samples) / static_cast<double>(samples_);
    int64_t window = static_cast<int64_t>(static_cast<double>(options_.retention_ms) * keep * 0.9);
    cutoff = std::max(cutoff, now_ms - window);
  }
  bool over = samples_ > options_.max_samples;
  for (uint32_t id = 0; id < series_.size(); ++id) {
    if (!series_[id]) continue;
    Series& s = *series_[id];
    auto p = std::lower_bound(s.points.begin(), s.points.end(), cutoff,
                              [](const Point& pt, int64_t x) { return pt.t < x; });
    size_t dropped = static_cast<size_t>(p - s.points.begin());
    if (dropped > 0) {
      // Points older than the retention window are dropped normally; those dropped only
      // because of the sample cap are counted.
      if (over) samples_trimmed_ += dropped;
      s.points.erase(s.points.begin(), p);
      samples_ -= dropped;
    }
    auto m = std::lower_bound(s.stale.begin(), s.stale.end(), cutoff);
    s.stale.erase(s.stale.begin(), m);
    if (s.last_t < cutoff) {
      samples_ -= s.points.size();
      Unindex(id);
      by_labels_.erase(s.labels);
      series_[id].reset();
      free_ids_.push_back(id);
    } else if (dropped > 0 && s.points.capacity() > 2 * s.points.size() + 64) {
      s.points.shrink_to_fit();
    }
  }
}

Store::Stats Store::stats() const {
  Stats st;
  st.series = by_labels_.size();
  st.samples = samples_;
  size_t bytes = 0;
  for (const auto& s : series_) {
    if (!s) continue;
    bytes += sizeof(Series) + s->points.capacity() * sizeof(Point) +
             s->stale.capacity() * sizeof(int64_t);
    // Each label pair is held by the series, the by-labels map and the index (plus a posting).
    for (const auto& [n, v] : s->labels) {
      bytes += 3 * (2 * sizeof(std::string) + n.size() + v.size()) + sizeof(uint32_t);
    }
  }
  st.bytes = bytes;
  st.out_of_order = out_of_order_;
  st.series_refused = series_refused_;
  st.samples_trimmed = samples_trimmed_;
  return st;
}

}  // namespace bulwark::observe::tsdb
