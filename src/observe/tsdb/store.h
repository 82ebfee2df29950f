// The series store: bulwark's own samples (and those of scraped targets and recording rules),
// kept in memory for the rule evaluator and the dashboard. A Store is a time-ordered list of
// float samples per series, with an inverted index from label pairs to series, a retention
// window and caps on series and samples.
//
// Owned by the observe plane's control loop and touched only from that thread (the evaluator
// reads it between appends), so nothing here locks. Series live at stable addresses until
// Trim() drops them: a `const Series*` from Select() is valid until the next Trim().
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "observe/model/labels.h"

namespace bulwark::observe::tsdb {

using observe::Labels;

struct Point {
  int64_t t;  // milliseconds since the epoch
  double v;
};

// Prometheus marks a series that ended with this particular NaN (a "staleness marker"); any
// other NaN is an ordinary value.
inline constexpr uint64_t kStaleNaNBits = 0x7ff0000000000002ull;
double StaleNaN();
bool IsStaleNaN(double v);

struct Series {
  Labels labels;
  std::vector<Point> points;   // ascending t; staleness markers are kept apart
  std::vector<int64_t> stale;  // times of staleness markers, ascending
  int64_t last_t = std::numeric_limits<int64_t>::min();  // last point or marker

  // The value an instant selector sees: the newest point in [oldest, newest], unless a
  // staleness marker came after it by `newest` (Prometheus 2.x: both ends of the lookback
  // window are included).
  bool ValueAt(int64_t oldest, int64_t newest, Point* out) const;
  // Points in [from, to], both ends included (Prometheus 2.x range selectors).
  std::pair<const Point*, const Point*> Range(int64_t from, int64_t to) const;
  const std::string* Get(std::string_view name) const;
};

class Store {
 public:
  struct Options {
    int64_t retention_ms = 2 * 3600 * 1000;
    size_t max_series = 200000;
    // Samples kept in all; beyond it Trim() drops the oldest (a shorter retention) and counts
    // them, rather than growing without bound.
    size_t max_samples = 20000000;
  };

  struct Stats {
    size_t series = 0;
    size_t samples = 0;
    size_t bytes = 0;              // estimate: labels, points, index
    uint64_t out_of_order = 0;     // appends refused: not newer than the series' last sample
    uint64_t series_refused = 0;   // new series refused over max_series
    uint64_t samples_trimmed = 0;  // dropped over max_samples before their retention ended
  };

  Store();
  explicit Store(Options options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // A series id for `labels` (sorted by name, "__name__" for the metric name; empty values
  // removed by the caller), created if new. -1 if the store is full.
  int32_t Ref(const Labels& labels);
  // Appends at `t`; a StaleNaN() value appends a staleness marker. A sample not newer than the
  // series' last one is refused (false) and counted, as Prometheus refuses out-of-order samples.
  bool Append(int32_t ref, int64_t t, double v);
  bool Append(const Labels& labels, int64_t t, double v);

  // Series matching all matchers, ordered by labels.
  void Select(const std::vector<observe::Matcher>& matchers, std::vector<const Series*>* out) const;
  const Series* Find(const Labels& labels) const;

  // Drops points older than now - retention (and the oldest beyond max_samples), then series
  // left with nothing newer than the retention.
  void Trim(int64_t now_ms);

  Stats stats() const;
  const Options& options() const { return options_; }
  // Every live series, in id order (for the dashboard and tests).
  template <typename F>
  void ForEach(F&& f) const {
    for (const auto& s : series_)
      if (s) f(*s);
  }

 private:
  struct LabelsHash {
    size_t operator()(const Labels& l) const;
  };
  void Index(uint32_t id);
  void Unindex(uint32_t id);

  Options options_;
  std::vector<std::unique_ptr<Series>> series_;  // by id; null once dropped
  std::vector<uint32_t> free_ids_;
  absl::flat_hash_map<Labels, uint32_t, LabelsHash> by_labels_;
  // label name -> value -> ascending series ids
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, std::vector<uint32_t>>>
      postings_;
  size_t samples_ = 0;
  uint64_t out_of_order_ = 0;
  uint64_t series_refused_ = 0;
  uint64_t samples_trimmed_ = 0;
};

}  // namespace bulwark::observe::tsdb
