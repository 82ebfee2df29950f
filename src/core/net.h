// Socket addresses and the few socket operations every plane needs.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bulwark {

// An IPv4 or IPv6 socket address.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t len = 0;

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  uint16_t port() const;
  // "127.0.0.1:8080" or "[::1]:8080".
  std::string ToString() const;
  // The IP only ("127.0.0.1", "::1").
  std::string IpString() const;
};

// Parses "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" (host defaults to 0.0.0.0). HOST must be a
// literal address or "localhost": bulwark does not resolve names on its hot path.
absl::StatusOr<SocketAddress> ParseSocketAddress(std::string_view text);
struct IpAddress;

// A server address as configured: a literal (`address` set) or a host name and a port, which a
// Resolver turns into addresses off the request path.
struct HostPort {
  std::string host;  // the name; empty for a literal address
  uint16_t port = 0;
  std::optional<SocketAddress> address;  // a literal address
};
// Parses "HOST:PORT" where HOST is an IP literal, "[V6]", "localhost" or a DNS host name
// (RFC 1123: letters, digits and hyphens in dot-separated labels of at most 63 characters,
// 253 in all; a trailing dot is allowed). The port is required and not 0.
absl::StatusOr<HostPort> ParseHostPort(std::string_view text);
// True for a syntactically valid DNS host name (see ParseHostPort).
bool IsHostName(std::string_view name);
// `ip` with `port`.
SocketAddress MakeSocketAddress(const IpAddress& ip, uint16_t port);
// Same family, address and port.
bool SameAddress(const SocketAddress& a, const SocketAddress& b);

// Like ParseSocketAddress for a host and port, but also resolves host names (getaddrinfo,
// blocking): for start-up and control paths only, never per request.
absl::StatusOr<SocketAddress> ResolveSocketAddress(const std::string& host, int port);

// An IP address without a port, in network byte order. IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d, what a dual-stack listener reports for IPv4 clients) are folded to IPv4, so a
// client has one identity for access lists, rate limits and bans.
struct IpAddress {
  int family = AF_INET;
  uint8_t bytes[16] = {};

  size_t size() const { return family == AF_INET ? 4 : 16; }
  std::string_view Binary() const {
    return std::string_view(reinterpret_cast<const char*>(bytes), size());
  }
  std::string ToString() const;
  static IpAddress From(const SocketAddress& a);
  // A literal IPv4 or IPv6 address; nullopt otherwise.
  static std::optional<IpAddress> Parse(std::string_view text);
  bool operator==(const IpAddress& o) const {
    return family == o.family && std::memcmp(bytes, o.bytes, size()) == 0;
  }
};

// A CIDR block such as 10.0.0.0/8 or ::1/128; a bare address is a /32 or /128.
struct CidrBlock {
  int family = AF_INET;
  uint8_t addr[16] = {};
  int prefix = 32;
  bool Contains(const SocketAddress& a) const;
  bool Contains(const IpAddress& a) const;
  std::string ToString() const;
};
absl::StatusOr<CidrBlock> ParseCidr(std::string_view text);

// Listening socket: non-blocking, SO_REUSEADDR, and SO_REUSEPORT when `reuse_port` so that each
// worker can have its own accept queue (the kernel spreads connections across them). When
// systemd passed a socket bound to `addr` (systemd::AdoptListenFds), a duplicate of it instead.
absl::StatusOr<int> ListenTcp(const SocketAddress& addr, bool reuse_port, int backlog = 4096);
// Starts a non-blocking connect. Returns the fd; the connect may still be in progress.
absl::StatusOr<int> ConnectTcp(const SocketAddress& addr);
// The locally bound port of a socket (for port-0 listeners in tests).
int LocalPort(int fd);
void SetNoDelay(int fd);

}  // namespace bulwark
