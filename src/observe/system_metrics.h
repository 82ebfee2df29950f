// Host and process metrics, under the names the AlkaidSYS dashboards and alert rules use:
//   cpu_usage_percent                      host CPU busy time over the last >= 1 s, 0..100
//   memory_usage_bytes{type="heap"}        bytes bulwark has allocated (malloc in use)
//   memory_usage_bytes{type="non_heap"}    the rest of its resident memory
//   disk_usage_bytes{mount_point}          bytes used on each real filesystem
//   disk_free_bytes{mount_point}, disk_size_bytes{mount_point}
//   network_bytes_total{direction="received"|"sent"}   all interfaces but loopback
// and the Prometheus client conventions for the process: process_cpu_seconds_total,
// process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
// process_max_fds, process_start_time_seconds, process_threads.
// Read from /proc (a different root can be given for tests). Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/mutex.h"

namespace bulwark::observe {

class SystemMetrics {
 public:
  // `mounts`: mount points to report; empty = every mounted real filesystem.
  explicit SystemMetrics(std::string proc_root = "/proc", std::vector<std::string> mounts = {});
  void Collect(std::string* out);

 private:
  struct CpuTimes {
    uint64_t busy = 0, total = 0;
    int64_t at_ms = 0;
  };
  bool ReadCpu(CpuTimes* out);

  std::string proc_;
  std::vector<std::string> mounts_;
  int64_t start_time_s_;
  Mutex mu_;
  CpuTimes last_ ABSL_GUARDED_BY(mu_);
  double last_percent_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace bulwark::observe
