#include "core/names.h"

#include <algorithm>

#include "core/log.h"
#include "core/strings.h"

namespace bulwark {

std::vector<std::optional<IpAddress>> AssignSlots(const std::vector<std::optional<IpAddress>>& old,
                                                  const std::vector<IpAddress>& addresses) {
  std::vector<std::optional<IpAddress>> slots = old;
  for (auto& slot : slots) {
    if (slot && std::find(addresses.begin(), addresses.end(), *slot) == addresses.end())
      slot.reset();
  }
  for (const IpAddress& ip : addresses) {
    if (std::find(slots.begin(), slots.end(), std::optional<IpAddress>(ip)) != slots.end())
      continue;
    auto free = std::find(slots.begin(), slots.end(), std::nullopt);
    if (free != slots.end())
      *free = ip;
    else
      slots.push_back(ip);
  }
  while (!slots.empty() && !slots.back()) slots.pop_back();
  return slots;
}

std::string SlotLabel(const std::string& text, size_t k) {
  return k == 0 ? text : StrCat(text, "#", k + 1);
}

NameWatcher::NameWatcher(Resolver* resolver, EventLoop* loop, std::string who,
                         std::function<void()> on_change)
    : resolver_(resolver), loop_(loop), who_(std::move(who)), on_change_(std::move(on_change)) {}

NameWatcher::~NameWatcher() {
  *alive_ = false;
  for (const auto& [name, id] : watches_) resolver_->Unwatch(id);
}

std::vector<std::string> DistinctNames(const std::vector<NamedServer>& servers) {
  std::vector<std::string> out;
  for (const NamedServer& s : servers) {
    if (std::find(out.begin(), out.end(), s.name) == out.end()) out.push_back(s.name);
  }
  return out;
}

void NameWatcher::Set(const std::vector<std::string>& names) {
  for (auto it = watches_.begin(); it != watches_.end();) {
    if (std::find(names.begin(), names.end(), it->first) != names.end()) {
      ++it;
      continue;
    }
    resolver_->Unwatch(it->second);
    table_.erase(it->first);
    it = watches_.erase(it);
  }
  std::vector<std::string> fresh;
  for (const auto& n : names) {
    if (!watches_.contains(n) && std::find(fresh.begin(), fresh.end(), n) == fresh.end())
      fresh.push_back(n);
  }
  if (fresh.empty()) return;
  if (resolver_ == nullptr) {
    LogWarn(who_, ": servers named by host name stay down: no resolver");
    return;
  }
  auto answers = resolver_->LookupAll(fresh);
  for (size_t i = 0; i < fresh.size(); ++i) {
    const std::string& name = fresh[i];
    if (answers[i].ok()) {
      table_[name] = AssignSlots({}, answers[i]->addresses);
    } else {
      LogWarn(who_, ": ", answers[i].status().message(),
              "; its servers are down until it resolves");
    }
    std::weak_ptr<bool> alive = alive_;
    watches_[name] =
        resolver_->Watch(name, [this, alive, name](const std::vector<IpAddress>& addresses) {
          loop_->Post([this, alive, name, addresses] {
            if (auto a = alive.lock(); a && *a) OnResolved(name, addresses);
          });
        });
  }
}

void NameWatcher::OnResolved(const std::string& name, const std::vector<IpAddress>& addresses) {
  if (!watches_.contains(name)) return;
  auto& slots = table_[name];
  auto next = AssignSlots(slots, addresses);
  if (next == slots) return;
  std::vector<std::string> was, now;
  for (const auto& a : slots) was.push_back(a ? a->ToString() : "-");
  for (const auto& a : next) now.push_back(a ? a->ToString() : "-");
  LogInfo(who_, ": ", name, " now stands for ", Join(now, ", "),
          was.empty() ? std::string() : StrCat(" (was ", Join(was, ", "), ")"));
  slots = std::move(next);
  on_change_();
}

}  // namespace bulwark
