#include "observe/metrics.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>

#include "core/strings.h"

namespace bulwark::observe {

void AppendSeries(std::string* out, std::string_view name,
                  std::initializer_list<std::pair<std::string_view, std::string_view>> labels) {
  out->append(name);
  out->push_back('{');
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out->push_back(',');
    first = false;
    out->append(k);
    out->append("=\"");
    AppendLabelValue(out, v);
    out->push_back('"');
  }
  out->append("} ");
}

void AppendLabelValue(std::string* out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '"') {
      out->append("\\\"");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

void AppendValue(std::string* out, double v) {
  if (std::isinf(v)) {
    out->append(v > 0 ? "+Inf" : "-Inf");
  } else if (std::isnan(v)) {
    out->append("NaN");
  } else if (v == std::floor(v) && std::fabs(v) < 1e15) {
    StrAppend(out, static_cast<int64_t>(v));
  } else {
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%.17g", v);
    out->append(buf, n);
  }
}

void AppendHeader(std::string* out, std::string_view name, std::string_view type,
                  std::string_view help) {
  StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

int Registry::AddCollector(Collector c) {
  MutexLock lock(&mu_);
  int id = next_id_++;
  collectors_.emplace_back(id, std::move(c));
  return id;
}

void Registry::RemoveCollector(int id) {
  MutexLock lock(&mu_);
  std::erase_if(collectors_, [id](const auto& p) { return p.first == id; });
}

std::string Registry::Render() const {
  std::string out;
  out.reserve(16384);
  MutexLock lock(&mu_);
  for (const auto& [id, c] : collectors_) c(&out);
  return out;
}

uint32_t Interner::Intern(std::string_view s) {
  MutexLock lock(&mu_);
  for (uint32_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == s) return i;
  }
  names_.emplace_back(s);
  return static_cast<uint32_t>(names_.size() - 1);
}

std::string Interner::Name(uint32_t id) const {
  MutexLock lock(&mu_);
  return id < names_.size() ? names_[id] : std::string();
}

HttpShard::HttpShard() : series_(new Series[kCapacity]) {}

void HttpShard::Record(uint32_t endpoint, int method, int status, int64_t duration_us) {
  uint64_t key = Key(endpoint, method, status);
  // Fibonacci hashing spreads the packed key over the table.
  size_t idx = static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 52) & (kCapacity - 1);
  for (size_t probe = 0; probe < 16; ++probe) {
    Series& s = series_[(idx + probe) & (kCapacity - 1)];
    uint64_t k = s.key.load(std::memory_order_relaxed);
    if (k == 0) {
      // Only this thread inserts; publish the key after the (zero) counters.
      s.key.store(key, std::memory_order_release);
      k = key;
    }
    if (k != key) continue;
    s.count.Add(1);
    double secs = static_cast<double>(duration_us) / 1e6;
    for (int b = 0; b < kBuckets; ++b) {
      if (secs <= kBucketBounds[b]) {
        s.buckets[b].Add(1);
        break;
      }
    }
    s.sum_us.Add(static_cast<uint64_t>(duration_us));
    return;
  }
  dropped_.Add(1);
}

void RenderHttpShards(const std::vector<const HttpShard*>& shards, const Interner& endpoints,
                      const std::vector<std::string_view>& method_names, std::string* out) {
  struct Agg {
    uint64_t count = 0;
    uint64_t buckets[HttpShard::kBuckets] = {};
    uint64_t sum_us = 0;
  };
  std::map<std::tuple<std::string, std::string, int>, Agg> merged;
  uint64_t dropped = 0;
  for (const HttpShard* shard : shards) {
    dropped += shard->dropped();
    const HttpShard::Series* series = shard->series();
    for (size_t i = 0; i < HttpShard::kCapacity; ++i) {
      uint64_t key = series[i].key.load(std::memory_order_acquire);
      if (key == 0) continue;
      uint32_t ep;
      int method, status;
      HttpShard::Unkey(key, &ep, &method, &status);
      Agg& a =
          merged[{endpoints.Name(ep),
                  method < static_cast<int>(method_names.size()) ? std::string(method_names[method])
                                                                 : std::string("OTHER"),
                  status}];
      a.count += series[i].count.Get();
      for (int b = 0; b < HttpShard::kBuckets; ++b) a.buckets[b] += series[i].buckets[b].Get();
      a.sum_us += series[i].sum_us.Get();
    }
  }
  auto labels = [](std::string* o, const std::tuple<std::string, std::string, int>& k) {
    o->append("method=\"");
    AppendLabelValue(o, std::get<1>(k));
    o->append("\",endpoint=\"");
    AppendLabelValue(o, std::get<0>(k));
    StrAppend(o, "\",status_code=\"", std::get<2>(k), "\"");
  };
  AppendHeader(out, "http_requests_total", "counter",
               "HTTP requests served, by method, route and status.");
  for (const auto& [k, a] : merged) {
    out->append("http_requests_total{");
    labels(out, k);
    StrAppend(out, "} ", a.count, "\n");
  }
  AppendHeader(out, "http_request_duration_seconds", "histogram",
               "Time from the first byte of a request to the last byte of its response.");
  for (const auto& [k, a] : merged) {
    uint64_t cum = 0;
    for (int b = 0; b < HttpShard::kBuckets; ++b) {
      cum += a.buckets[b];
      out->append("http_request_duration_seconds_bucket{");
      labels(out, k);
      out->append(",le=\"");
      AppendValue(out, HttpShard::kBucketBounds[b]);
      StrAppend(out, "\"} ", cum, "\n");
    }
    out->append("http_request_duration_seconds_bucket{");
    labels(out, k);
    StrAppend(out, ",le=\"+Inf\"} ", a.count, "\n");
    out->append("http_request_duration_seconds_sum{");
    labels(out, k);
    out->append("} ");
    AppendValue(out, static_cast<double>(a.sum_us) / 1e6);
    out->append("\n");
    out->append("http_request_duration_seconds_count{");
    labels(out, k);
    StrAppend(out, "} ", a.count, "\n");
  }
  AppendHeader(out, "bulwark_metrics_dropped_series_total", "counter",
               "Requests not recorded because a worker's series table was full.");
  StrAppend(out, "bulwark_metrics_dropped_series_total ", dropped, "\n");
}

}  // namespace bulwark::observe
