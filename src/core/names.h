// Host names a plane's servers are written with, kept current for it: looked up when they first
// appear (all at once, waiting, so servers start with their addresses as nginx's do at load) and
// then watched by the Resolver, each change handed to the plane on its control loop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/event_loop.h"
#include "core/net.h"
#include "core/resolver.h"

namespace bulwark {

// What each host name stands for now. Slot k of a name is the address of its (k+1)th server,
// labelled "NAME:PORT" for the first and "NAME:PORT#K+1" after it (HAProxy server-template). A
// slot keeps its address while the name keeps it, so a server keeps its label, health and
// counters when its name gains or loses other addresses; an empty slot (its address gone) is
// free for the next new address. A name with no address yet has no entry.
using NameTable = std::map<std::string, std::vector<std::optional<IpAddress>>>;

// Fits a name's new set of addresses into its slots (see NameTable).
std::vector<std::optional<IpAddress>> AssignSlots(const std::vector<std::optional<IpAddress>>& old,
                                                  const std::vector<IpAddress>& addresses);

// The label of slot `k` of a server written as `text` ("NAME:PORT"): the text itself for the
// first, "NAME:PORT#K+1" after it.
std::string SlotLabel(const std::string& text, size_t k);

// The servers one configured server `s` stands for: itself for a literal address (empty
// `s.host`), a copy per address of its name in `names` (labelled by SlotLabel, `resolved`), or,
// while the name has none, itself unresolved (down). Any server type with address_text,
// address, host, port and resolved will do (the gateway's and the pg proxy's).
template <class Server>
std::vector<Server> ExpandByName(const Server& s, const NameTable* names) {
  if (s.host.empty()) return {s};
  std::vector<Server> out;
  auto it = names != nullptr ? names->find(s.host) : NameTable::const_iterator{};
  if (names != nullptr && it != names->end()) {
    for (size_t k = 0; k < it->second.size(); ++k) {
      if (!it->second[k]) continue;
      Server e = s;
      e.address_text = SlotLabel(s.address_text, k);
      e.address = MakeSocketAddress(*it->second[k], s.port);
      e.resolved = true;
      out.push_back(std::move(e));
    }
  }
  if (out.empty()) {
    out.push_back(s);
    out.back().resolved = false;
  }
  return out;
}

// A host name a server is written with, and where (FILE:LINE:COL): what a plane watches and
// what check-config reports on.
struct NamedServer {
  std::string name;
  std::string where;
};

// The servers of `servers` written with host names, appended to `out`. Any server type with
// host and where (the gateway's and the pg proxy's).
template <class Server>
void AppendNamedServers(const std::vector<Server>& servers, std::vector<NamedServer>* out) {
  for (const Server& s : servers) {
    if (!s.host.empty()) out->push_back({s.host, s.where});
  }
}

// The names of `servers`, each once, in the order they first appear.
std::vector<std::string> DistinctNames(const std::vector<NamedServer>& servers);

// Keeps a set of names resolved for one plane. Control thread only (the loop's), except that
// the resolver's thread posts to the loop.
class NameWatcher {
 public:
  // `on_change` runs on `loop` after a watched name's slots changed (table() has them). `who`
  // names the plane in logs ("gateway", "pg"). `resolver` may be null: names never resolve.
  NameWatcher(Resolver* resolver, EventLoop* loop, std::string who,
              std::function<void()> on_change);
  ~NameWatcher();
  NameWatcher(const NameWatcher&) = delete;
  NameWatcher& operator=(const NameWatcher&) = delete;

  // Makes `names` the watched set: the new ones are looked up now (waiting for all of them, at
  // most one timeout x attempts), the ones no longer named are forgotten. A name that does not
  // resolve is logged and has no entry until it does.
  void Set(const std::vector<std::string>& names);
  const NameTable& table() const { return table_; }

 private:
  void OnResolved(const std::string& name, const std::vector<IpAddress>& addresses);

  Resolver* resolver_;
  EventLoop* loop_;
  const std::string who_;
  std::function<void()> on_change_;
  NameTable table_;
  std::map<std::string, uint64_t> watches_;  // name -> Resolver watch id
  // Tasks the resolver posts check it: the loop may outlive the watcher.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace bulwark
