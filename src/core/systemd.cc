#include "core/systemd.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/clock.h"
#include "core/net.h"
#include "core/strings.h"

namespace bulwark::systemd {
namespace {

constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START

struct Passed {
  int fd;
  SocketAddress address;
  bool used = false;
};

std::mutex g_mu;
std::vector<Passed>* g_passed = nullptr;  // leaked: lives as long as the process

bool ParseInt(const char* text, int64_t* out) {
  if (text == nullptr || *text == 0) return false;
  char* end = nullptr;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || *end != 0) return false;
  *out = v;
  return true;
}

bool IsAny(const SocketAddress& a) {
  if (a.family() == AF_INET)
    return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr == INADDR_ANY;
  if (a.family() == AF_INET6) {
    const in6_addr& x = reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr;
    return IN6_IS_ADDR_UNSPECIFIED(&x);
  }
  return false;
}

bool Matches(const SocketAddress& passed, const SocketAddress& wanted) {
  if (SameAddress(passed, wanted)) return true;
  // `ListenStream=80` binds [::]:80 accepting IPv4 too; a listener written 0.0.0.0:80 is that.
  return wanted.family() == AF_INET && passed.family() == AF_INET6 && IsAny(wanted) &&
         IsAny(passed) && wanted.port() == passed.port();
}

}  // namespace

bool Notify(std::string_view state) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || (path[0] != '/' && path[0] != '@')) return false;
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  size_t len = strlen(path);
  if (len >= sizeof(sun.sun_path)) return false;
  memcpy(sun.sun_path, path, len);
  if (sun.sun_path[0] == '@') sun.sun_path[0] = 0;  // abstract namespace
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  ssize_t n = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                     reinterpret_cast<const sockaddr*>(&sun), alen);
  close(fd);
  return n == static_cast<ssize_t>(state.size());
}

std::string ReloadingState() {
  return StrCat("RELOADING=1\nMONOTONIC_USEC=", MonotonicNs() / 1000);
}

int AdoptListenFds() {
  int64_t pid = 0, n = 0;
  if (!ParseInt(getenv("LISTEN_PID"), &pid) || pid != getpid()) return 0;
  if (!ParseInt(getenv("LISTEN_FDS"), &n) || n <= 0 || n > 1024) return 0;
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  std::lock_guard<std::mutex> l(g_mu);
  if (g_passed == nullptr) g_passed = new std::vector<Passed>;
  for (int fd = kListenFdsStart; fd < kListenFdsStart + n; ++fd) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    Passed p{fd, {}};
    p.address.len = sizeof(p.address.storage);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&p.address.storage), &p.address.len) != 0)
      continue;
    g_passed->push_back(p);
  }
  return static_cast<int>(g_passed->size());
}

int TakeListenFd(const sockaddr* addr, socklen_t len) {
  std::lock_guard<std::mutex> l(g_mu);
  if (g_passed == nullptr) return -1;
  SocketAddress wanted;
  memcpy(&wanted.storage, addr, std::min<size_t>(len, sizeof(wanted.storage)));
  wanted.len = len;
  for (Passed& p : *g_passed) {
    if (!Matches(p.address, wanted)) continue;
    int fd = fcntl(p.fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return -1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    p.used = true;
    return fd;
  }
  return -1;
}

std::vector<std::string> UnusedListenFds() {
  std::lock_guard<std::mutex> l(g_mu);
  std::vector<std::string> out;
  if (g_passed == nullptr) return out;
  for (const Passed& p : *g_passed)
    if (!p.used) out.push_back(p.address.ToString());
  return out;
}

int64_t WatchdogUsec() {
  int64_t usec = 0, pid = 0;
  if (!ParseInt(getenv("WATCHDOG_USEC"), &usec) || usec <= 0) return 0;
  if (ParseInt(getenv("WATCHDOG_PID"), &pid) && pid != getpid()) return 0;
  return usec;
}

bool IsJournalStream(int fd) {
  const char* js = getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(fd, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace bulwark::systemd
