// Replays the cache benchmark's request stream against a proxy and counts the answers:
// Zipf(0.9) over 100k objects, with a scan of 5k objects seen once every 50k requests.
//
//   cache_replay HOST:PORT [REQUESTS] [CONNECTIONS]
// Prints: replay: requests=N ok=N errors=N seconds=S rps=N
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cache/trace.h"

namespace {

int Connect(const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Reads one response with a Content-Length body; returns its status or -1. Sets *close when
// the server said it closes the connection after this response.
int ReadResponse(int fd, std::string* buf, bool* close_after) {
  for (;;) {
    size_t end = buf->find("\r\n\r\n");
    if (end != std::string::npos) {
      int status = std::atoi(buf->c_str() + 9);
      size_t cl = 0;
      size_t p = 0;
      while ((p = buf->find('\n', p)) != std::string::npos && p < end) {
        ++p;
        if (strncasecmp(buf->c_str() + p, "content-length:", 15) == 0) {
          cl = std::strtoul(buf->c_str() + p + 15, nullptr, 10);
        }
        if (strncasecmp(buf->c_str() + p, "connection: close", 17) == 0) *close_after = true;
      }
      while (buf->size() < end + 4 + cl) {
        char tmp[65536];
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n <= 0) return -1;
        buf->append(tmp, static_cast<size_t>(n));
      }
      buf->erase(0, end + 4 + cl);
      return status;
    }
    char tmp[65536];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) return -1;
    buf->append(tmp, static_cast<size_t>(n));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: cache_replay HOST:PORT [REQUESTS] [CONNECTIONS]\n");
    return 2;
  }
  std::string target = argv[1];
  std::string host = target.substr(0, target.rfind(':'));
  int port = std::atoi(target.c_str() + target.rfind(':') + 1);
  uint64_t requests = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 400000;
  int conns = argc > 3 ? std::atoi(argv[3]) : 4;
  std::vector<uint64_t> trace =
      bulwark::cache::ZipfWithScansTrace(100000, 0.9, requests, 50000, 5000, 20261122);
  std::atomic<uint64_t> next{0}, ok{0}, errors{0};
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < conns; ++c) {
    threads.emplace_back([&] {
      int fd = Connect(host, port);
      std::string buf, req;
      for (;;) {
        uint64_t i = next.fetch_add(1);
        if (i >= trace.size()) break;
        if (fd < 0) fd = Connect(host, port);
        req = "GET /obj/" + std::to_string(trace[i]) + " HTTP/1.1\r\nHost: bench\r\n\r\n";
        int status = -1;
        bool close_after = false;
        if (fd >= 0 && write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
          status = ReadResponse(fd, &buf, &close_after);
        }
        if (status == 200) {
          ok.fetch_add(1);
          if (close_after) {  // keepalive_requests reached: a new connection, not an error
            close(fd);
            fd = -1;
            buf.clear();
          }
        } else {
          errors.fetch_add(1);
          if (fd >= 0) close(fd);
          fd = -1;
          buf.clear();
        }
      }
      if (fd >= 0) close(fd);
    });
  }
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("replay: requests=%llu ok=%llu errors=%llu seconds=%.1f rps=%.0f\n",
              static_cast<unsigned long long>(trace.size()),
              static_cast<unsigned long long>(ok.load()),
              static_cast<unsigned long long>(errors.load()), secs,
              static_cast<double>(trace.size()) / secs);
  return errors.load() == 0 ? 0 : 1;
}
