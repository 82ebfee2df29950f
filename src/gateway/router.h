// Route matching for one listener.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "gateway/config.h"
#include "http/parser.h"
#include "re2/re2.h"

namespace bulwark::gateway {

// A Router matches a request to one of a listener's routes with nginx's `location` precedence:
// an exact match wins; otherwise the longest matching prefix is remembered, regexes are tried in
// the order written and the first match wins; otherwise the longest prefix. Routes with a host or
// method list only take part when the request matches it. Immutable; shared by workers.
class Router {
 public:
  struct Route {
    const RouteConfig* cfg = nullptr;
    uint32_t endpoint_id = 0;  // interned route name, the `endpoint` metric label
    int upstream_index = -1;   // -1 for `return` routes
    std::unique_ptr<RE2> regex;
  };

  // `upstream_index_of` maps an upstream name to its index in the snapshot.
  Router(const ListenerConfig& cfg, const std::vector<std::string>& upstream_names,
         const std::function<uint32_t(std::string_view)>& intern);

  const Route* Match(std::string_view host, std::string_view path, std::string_view method) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  static bool HostMatches(const std::vector<std::string>& hosts, std::string_view host);
  static bool MethodMatches(const std::vector<std::string>& methods, std::string_view method);
  std::vector<Route> routes_;
};

}  // namespace bulwark::gateway
