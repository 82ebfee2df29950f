#include "observe/system_metrics.h"

#include <dirent.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <set>
#include <sstream>

#include "core/clock.h"
#include "core/files.h"
#include "core/strings.h"
#include "observe/metrics.h"

namespace bulwark::observe {
namespace {

// /proc files are small; an unreadable one reads as empty (its metric is left out).
std::string Slurp(const std::string& path) { return ReadFileToString(path, 4 << 20).value_or(""); }

// Filesystems that hold data, as opposed to kernel and memory filesystems.
bool RealFilesystem(const std::string& type) {
  static const std::set<std::string> kReal = {
      "ext2", "ext3",     "ext4", "xfs",     "btrfs", "zfs",  "vfat",    "exfat",
      "f2fs", "reiserfs", "jfs",  "overlay", "nfs",   "nfs4", "fuseblk", "ntfs"};
  return kReal.count(type) > 0;
}

void Gauge(std::string* out, std::string_view name, std::string_view help) {
  AppendHeader(out, name, "gauge", help);
}

}  // namespace

SystemMetrics::SystemMetrics(std::string proc_root, std::vector<std::string> mounts)
    : proc_(std::move(proc_root)), mounts_(std::move(mounts)) {
  // Start time: boot time plus the process's start in clock ticks after boot.
  start_time_s_ = WallMs() / 1000;
  std::string stat = Slurp(proc_ + "/self/stat");
  std::string proc_stat = Slurp(proc_ + "/stat");
  size_t close = stat.rfind(')');
  size_t btime_at = proc_stat.find("\nbtime ");
  if (close != std::string::npos && btime_at != std::string::npos) {
    std::istringstream fields(stat.substr(close + 2));
    std::string f;
    uint64_t starttime = 0;
    for (int i = 3; i <= 22 && fields >> f; ++i) {
      if (i == 22) starttime = std::strtoull(f.c_str(), nullptr, 10);
    }
    uint64_t btime = std::strtoull(proc_stat.c_str() + btime_at + 7, nullptr, 10);
    long ticks = sysconf(_SC_CLK_TCK);
    if (btime > 0 && ticks > 0) start_time_s_ = static_cast<int64_t>(btime + starttime / ticks);
  }
}

bool SystemMetrics::ReadCpu(CpuTimes* out) {
  std::string stat = Slurp(proc_ + "/stat");
  if (stat.compare(0, 4, "cpu ") != 0) return false;
  std::istringstream in(stat.substr(4, stat.find('\n') - 4));
  uint64_t v[10] = {};
  for (int i = 0; i < 10 && in >> v[i]; ++i) {
  }
  // user nice system idle iowait irq softirq steal (guest time is inside user/nice).
  uint64_t idle = v[3] + v[4];
  uint64_t total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
  out->busy = total - idle;
  out->total = total;
  out->at_ms = MonotonicMs();
  return true;
}

void SystemMetrics::Collect(std::string* out) {
  CpuTimes now;
  double percent = 0;
  if (ReadCpu(&now)) {
    MutexLock l(&mu_);
    // Usage over the window since the last reading at least a second old, so two renders in
    // quick succession do not report the noise of a few ticks.
    if (last_.total == 0) {
      last_percent_ = now.total > 0 ? 100.0 * now.busy / now.total : 0;
      last_ = now;
    } else if (now.at_ms - last_.at_ms >= 1000 && now.total > last_.total) {
      last_percent_ = 100.0 * static_cast<double>(now.busy - last_.busy) /
                      static_cast<double>(now.total - last_.total);
      last_ = now;
    }
    percent = last_percent_;
  }
  Gauge(out, "cpu_usage_percent", "Host CPU busy time, percent, over the last second or more.");
  StrAppend(out, "cpu_usage_percent ");
  AppendValue(out, percent);
  out->push_back('\n');

  // Process memory: malloc's bytes in use, and the rest of the resident set.
  std::string statm = Slurp(proc_ + "/self/statm");
  uint64_t vm_pages = 0, rss_pages = 0;
  std::istringstream(statm) >> vm_pages >> rss_pages;
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t rss = rss_pages * page;
  struct mallinfo2 mi = mallinfo2();
  uint64_t heap = mi.uordblks + mi.hblkhd;
  Gauge(out, "memory_usage_bytes",
        "Memory bulwark uses: heap (allocated) and non_heap (the rest of its resident set).");
  StrAppend(out, "memory_usage_bytes{type=\"heap\"} ", heap, "\n");
  StrAppend(out, "memory_usage_bytes{type=\"non_heap\"} ", rss > heap ? rss - heap : 0, "\n");

  // Filesystems.
  std::vector<std::string> mounts = mounts_;
  if (mounts.empty()) {
    std::istringstream in(Slurp(proc_ + "/mounts"));
    std::set<std::string> devices;
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string dev, mount, type;
      if (!(f >> dev >> mount >> type) || !RealFilesystem(type)) continue;
      if (!devices.insert(dev).second && type != "overlay") continue;  // bind mounts once
      mounts.push_back(mount);
    }
  }
  std::string used, free, size;
  for (const std::string& m : mounts) {
    struct statvfs st;
    if (statvfs(m.c_str(), &st) != 0) continue;
    uint64_t total = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
    uint64_t avail = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
    uint64_t fr = static_cast<uint64_t>(st.f_bfree) * st.f_frsize;
    auto line = [&](std::string* s, std::string_view name, uint64_t v) {
      StrAppend(s, name, "{mount_point=\"");
      AppendLabelValue(s, m);
      StrAppend(s, "\"} ", v, "\n");
    };
    line(&used, "disk_usage_bytes", total - fr);
    line(&free, "disk_free_bytes", avail);
    line(&size, "disk_size_bytes", total);
  }
  Gauge(out, "disk_usage_bytes", "Bytes used on each filesystem.");
  out->append(used);
  Gauge(out, "disk_free_bytes", "Bytes available to unprivileged users on each filesystem.");
  out->append(free);
  Gauge(out, "disk_size_bytes", "Size of each filesystem.");
  out->append(size);

  // Network: every interface but loopback.
  uint64_t rx = 0, tx = 0;
  {
    std::istringstream in(Slurp(proc_ + "/net/dev"));
    std::string line;
    while (std::getline(in, line)) {
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string iface(Trim(std::string_view(line).substr(0, colon)));
      if (iface == "lo") continue;
      std::istringstream f(line.substr(colon + 1));
      uint64_t v[9] = {};
      for (int i = 0; i < 9 && f >> v[i]; ++i) {
      }
      rx += v[0];
      tx += v[8];
    }
  }
  AppendHeader(out, "network_bytes_total", "counter",
               "Bytes through the host's network interfaces (loopback excluded).");
  StrAppend(out, "network_bytes_total{direction=\"received\"} ", rx, "\n");
  StrAppend(out, "network_bytes_total{direction=\"sent\"} ", tx, "\n");

  // The process, as Prometheus client libraries report it.
  std::string stat = Slurp(proc_ + "/self/stat");
  size_t close = stat.rfind(')');
  double cpu_s = 0;
  uint64_t threads = 0;
  if (close != std::string::npos) {
    std::istringstream fields(stat.substr(close + 2));
    std::string f;
    uint64_t utime = 0, stime = 0;
    for (int i = 3; i <= 20 && fields >> f; ++i) {
      if (i == 14) utime = std::strtoull(f.c_str(), nullptr, 10);
      if (i == 15) stime = std::strtoull(f.c_str(), nullptr, 10);
      if (i == 20) threads = std::strtoull(f.c_str(), nullptr, 10);
    }
    long ticks = sysconf(_SC_CLK_TCK);
    if (ticks > 0) cpu_s = static_cast<double>(utime + stime) / static_cast<double>(ticks);
  }
  uint64_t fds = 0;
  if (DIR* d = opendir((proc_ + "/self/fd").c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++fds;
    }
    closedir(d);
  }
  struct rlimit rl;
  uint64_t max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 0;
  AppendHeader(out, "process_cpu_seconds_total", "counter",
               "User and system CPU time spent, seconds.");
  out->append("process_cpu_seconds_total ");
  AppendValue(out, cpu_s);
  out->push_back('\n');
  Gauge(out, "process_resident_memory_bytes", "Resident memory size, bytes.");
  StrAppend(out, "process_resident_memory_bytes ", rss, "\n");
  Gauge(out, "process_virtual_memory_bytes", "Virtual memory size, bytes.");
  StrAppend(out, "process_virtual_memory_bytes ", vm_pages * page, "\n");
  Gauge(out, "process_open_fds", "Open file descriptors.");
  StrAppend(out, "process_open_fds ", fds, "\n");
  Gauge(out, "process_max_fds", "The limit on open file descriptors.");
  StrAppend(out, "process_max_fds ", max_fds, "\n");
  Gauge(out, "process_threads", "Threads of the process.");
  StrAppend(out, "process_threads ", threads, "\n");
  Gauge(out, "process_start_time_seconds", "Start time of the process since the Unix epoch.");
  StrAppend(out, "process_start_time_seconds ", start_time_s_, "\n");
}

}  // namespace bulwark::observe
