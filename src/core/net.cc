#include "core/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/strings.h"
#include "core/systemd.h"

namespace bulwark {

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

std::string SocketAddress::IpString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, buf, sizeof(buf));
  } else if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, buf,
              sizeof(buf));
  }
  return buf;
}

std::string SocketAddress::ToString() const {
  if (family() == AF_INET6) return StrCat("[", IpString(), "]:", port());
  return StrCat(IpString(), ":", port());
}

absl::StatusOr<SocketAddress> ResolveSocketAddress(const std::string& host, int port) {
  std::string literal = host.find(':') != std::string::npos ? StrCat("[", host, "]") : host;
  auto direct = ParseSocketAddress(StrCat(literal, ":", port));
  if (direct.ok()) return direct;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return absl::UnavailableError(StrCat("cannot resolve \"", host, "\": ", gai_strerror(rc)));
  }
  SocketAddress a;
  memcpy(&a.storage, res->ai_addr, res->ai_addrlen);
  a.len = static_cast<socklen_t>(res->ai_addrlen);
  freeaddrinfo(res);
  if (a.family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(static_cast<uint16_t>(port));
  } else {
    reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(static_cast<uint16_t>(port));
  }
  return a;
}

absl::StatusOr<SocketAddress> ParseSocketAddress(std::string_view text) {
  std::string_view host = "0.0.0.0";
  std::string_view port_str = text;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(
          StrCat("invalid address \"", text, "\": expected [IPv6]:PORT"));
    }
    host = text.substr(1, close - 1);
    port_str = text.substr(close + 2);
  } else if (size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    if (text.find(':') != colon) {
      return absl::InvalidArgumentError(
          StrCat("invalid address \"", text, "\": write IPv6 addresses as [ADDR]:PORT"));
    }
    if (colon > 0) host = text.substr(0, colon);
    port_str = text.substr(colon + 1);
  }
  uint32_t port;
  if (!ParseInt(port_str, &port) || port > 65535) {
    return absl::InvalidArgumentError(
        StrCat("invalid address \"", text, "\": expected HOST:PORT with a port 0-65535"));
  }
  if (host == "localhost") host = "127.0.0.1";
  SocketAddress a;
  std::string h(host);
  auto* in4 = reinterpret_cast<sockaddr_in*>(&a.storage);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (inet_pton(AF_INET, h.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
    a.len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, h.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    a.len = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError(
        StrCat("invalid address \"", text, "\": \"", host,
               "\" is not an IP address (host names are not resolved)"));
  }
  return a;
}

bool IsHostName(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (label == 0 || label > 63) return false;
      if (name[i - 1] == '-' || name[i - label] == '-') return false;
      label = 0;
      continue;
    }
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';  // '_' appears in docker-compose service names
    if (!ok) return false;
    ++label;
  }
  return true;
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text) {
  HostPort hp;
  absl::StatusOr<SocketAddress> a = ParseSocketAddress(text);
  if (a.ok()) {
    if (text.find(':') == std::string_view::npos || text.back() == ':' || text[0] == ':')
      return absl::InvalidArgumentError(
          StrCat("invalid address \"", text, "\": expected HOST:PORT"));
    if (a->port() == 0)
      return absl::InvalidArgumentError(StrCat("invalid address \"", text, "\": port 0"));
    hp.port = a->port();
    hp.address = *a;
    return hp;
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || text[0] == '[') return a.status();
  std::string_view host = text.substr(0, colon);
  uint32_t port;
  if (!ParseInt(text.substr(colon + 1), &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(
        StrCat("invalid address \"", text, "\": expected HOST:PORT with a port 1-65535"));
  }
  if (!IsHostName(host)) {
    return absl::InvalidArgumentError(StrCat("invalid address \"", text, "\": \"", host,
                                             "\" is neither an IP address nor a host name"));
  }
  hp.host = AsciiLower(host);
  hp.port = static_cast<uint16_t>(port);
  return hp;
}

SocketAddress MakeSocketAddress(const IpAddress& ip, uint16_t port) {
  SocketAddress a;
  if (ip.family == AF_INET) {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&a.storage);
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    std::memcpy(&in4->sin_addr, ip.bytes, 4);
    a.len = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    std::memcpy(&in6->sin6_addr, ip.bytes, 16);
    a.len = sizeof(sockaddr_in6);
  }
  return a;
}

bool SameAddress(const SocketAddress& a, const SocketAddress& b) {
  return a.len == b.len && a.family() == b.family() && a.port() == b.port() &&
         IpAddress::From(a) == IpAddress::From(b);
}

absl::StatusOr<CidrBlock> ParseCidr(std::string_view text) {
  CidrBlock b;
  std::string_view ip = text;
  int prefix = -1;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    ip = text.substr(0, slash);
    if (!ParseInt(text.substr(slash + 1), &prefix)) {
      return absl::InvalidArgumentError(StrCat("invalid CIDR \"", text, "\""));
    }
  }
  std::string s(ip);
  if (inet_pton(AF_INET, s.c_str(), b.addr) == 1) {
    b.family = AF_INET;
    if (prefix < 0) prefix = 32;
    if (prefix > 32)
      return absl::InvalidArgumentError(StrCat("invalid CIDR \"", text, "\": prefix > 32"));
  } else if (inet_pton(AF_INET6, s.c_str(), b.addr) == 1) {
    b.family = AF_INET6;
    if (prefix < 0) prefix = 128;
    if (prefix > 128)
      return absl::InvalidArgumentError(StrCat("invalid CIDR \"", text, "\": prefix > 128"));
  } else {
    return absl::InvalidArgumentError(StrCat("invalid CIDR \"", text, "\": not an IP address"));
  }
  b.prefix = prefix;
  return b;
}

namespace {
bool PrefixMatch(const uint8_t* a, const uint8_t* b, int prefix) {
  int full = prefix / 8;
  if (std::memcmp(a, b, full) != 0) return false;
  int rem = prefix % 8;
  if (rem == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rem));
  return (a[full] & mask) == (b[full] & mask);
}
}  // namespace

bool CidrBlock::Contains(const SocketAddress& a) const {
  if (a.family() == AF_INET && family == AF_INET) {
    return PrefixMatch(reinterpret_cast<const uint8_t*>(
                           &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr),
                       addr, prefix);
  }
  if (a.family() == AF_INET6) {
    const uint8_t* v6 = reinterpret_cast<const uint8_t*>(
        &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr);
    if (family == AF_INET6) return PrefixMatch(v6, addr, prefix);
    // IPv4-mapped IPv6 (::ffff:a.b.c.d) matches IPv4 blocks.
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(v6, kMapped, 12) == 0) return PrefixMatch(v6 + 12, addr, prefix);
  }
  return false;
}

bool CidrBlock::Contains(const IpAddress& a) const {
  return a.family == family && PrefixMatch(a.bytes, addr, prefix);
}

std::string CidrBlock::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, addr, buf, sizeof(buf));
  return StrCat(buf, "/", prefix);
}

namespace {
const uint8_t kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
}  // namespace

IpAddress IpAddress::From(const SocketAddress& a) {
  IpAddress ip;
  if (a.family() == AF_INET) {
    std::memcpy(ip.bytes, &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr, 4);
  } else if (a.family() == AF_INET6) {
    const uint8_t* v6 = reinterpret_cast<const uint8_t*>(
        &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr);
    if (std::memcmp(v6, kV4Mapped, 12) == 0) {
      std::memcpy(ip.bytes, v6 + 12, 4);
    } else {
      ip.family = AF_INET6;
      std::memcpy(ip.bytes, v6, 16);
    }
  }
  return ip;
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  char s[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(s)) return std::nullopt;
  std::memcpy(s, text.data(), text.size());
  s[text.size()] = 0;
  IpAddress ip;
  if (inet_pton(AF_INET, s, ip.bytes) == 1) return ip;
  if (inet_pton(AF_INET6, s, ip.bytes) == 1) {
    if (std::memcmp(ip.bytes, kV4Mapped, 12) == 0) {
      std::memmove(ip.bytes, ip.bytes + 12, 4);
      std::memset(ip.bytes + 4, 0, 12);
      return ip;
    }
    ip.family = AF_INET6;
    return ip;
  }
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes, buf, sizeof(buf));
  return buf;
}

absl::StatusOr<int> ListenTcp(const SocketAddress& addr, bool reuse_port, int backlog) {
  // A socket systemd passed for this address (socket activation) is used as it is.
  if (int passed = systemd::TakeListenFd(addr.sa(), addr.len); passed >= 0) return passed;
  int fd = socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(StrCat("socket: ", strerror(errno)));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (bind(fd, addr.sa(), addr.len) != 0) {
    int e = errno;
    close(fd);
    return absl::UnavailableError(StrCat("cannot listen on ", addr.ToString(), ": ", strerror(e)));
  }
  if (listen(fd, backlog) != 0) {
    int e = errno;
    close(fd);
    return absl::UnavailableError(StrCat("listen on ", addr.ToString(), ": ", strerror(e)));
  }
  return fd;
}

absl::StatusOr<int> ConnectTcp(const SocketAddress& addr) {
  int fd = socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(StrCat("socket: ", strerror(errno)));
  SetNoDelay(fd);
  if (connect(fd, addr.sa(), addr.len) != 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    return absl::UnavailableError(StrCat("connect to ", addr.ToString(), ": ", strerror(e)));
  }
  return fd;
}

int LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return -1;
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace bulwark
