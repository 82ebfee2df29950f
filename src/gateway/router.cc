#include "gateway/router.h"

#include "core/strings.h"

namespace bulwark::gateway {

Router::Router(const ListenerConfig& cfg, const std::vector<std::string>& upstream_names,
               const std::function<uint32_t(std::string_view)>& intern) {
  routes_.reserve(cfg.routes.size());
  for (const auto& rc : cfg.routes) {
    Route r;
    r.cfg = &rc;
    r.endpoint_id = intern(rc.name);
    for (size_t i = 0; i < upstream_names.size(); ++i) {
      if (upstream_names[i] == rc.upstream) r.upstream_index = static_cast<int>(i);
    }
    if (rc.match == PathMatch::kRegex) r.regex = std::make_unique<RE2>(rc.path, RE2::Quiet);
    routes_.push_back(std::move(r));
  }
}

bool Router::HostMatches(const std::vector<std::string>& hosts, std::string_view host) {
  if (hosts.empty()) return true;
  // Host may carry a port; names compare case-insensitively.
  if (size_t colon = host.rfind(':');
      colon != std::string_view::npos && host.find(']') == std::string_view::npos) {
    host = host.substr(0, colon);
  }
  for (const auto& h : hosts) {
    if (h.size() > 1 && h[0] == '*' && h[1] == '.') {
      std::string_view suffix = std::string_view(h).substr(1);  // ".example.com"
      if (host.size() > suffix.size() && EndsWithIgnoreCase(host, suffix)) return true;
    } else if (EqualsIgnoreCase(h, host)) {
      return true;
    }
  }
  return false;
}

bool Router::MethodMatches(const std::vector<std::string>& methods, std::string_view method) {
  if (methods.empty()) return true;
  for (const auto& m : methods) {
    if (m == method) return true;
  }
  return false;
}

const Router::Route* Router::Match(std::string_view host, std::string_view path,
                                   std::string_view method) const {
  const Route* best_prefix = nullptr;
  for (const auto& r : routes_) {
    if (r.cfg->match == PathMatch::kRegex) continue;
    if (!HostMatches(r.cfg->hosts, host) || !MethodMatches(r.cfg->methods, method)) continue;
    if (r.cfg->match == PathMatch::kExact) {
      if (path == r.cfg->path) return &r;
    } else if (StartsWith(path, r.cfg->path)) {
      if (best_prefix == nullptr || r.cfg->path.size() > best_prefix->cfg->path.size())
        best_prefix = &r;
    }
  }
  for (const auto& r : routes_) {
    if (r.cfg->match != PathMatch::kRegex) continue;
    if (!HostMatches(r.cfg->hosts, host) || !MethodMatches(r.cfg->methods, method)) continue;
    if (RE2::PartialMatch(re2::StringPiece(path.data(), path.size()), *r.regex)) return &r;
  }
  return best_prefix;
}

}  // namespace bulwark::gateway
