// The status page the admin listener serves at / and /dashboard: one HTML file with its CSS
// and JavaScript inline (src/admin/assets/dashboard.html, embedded at build time), which reads
// the admin API and refreshes every two seconds.
#pragma once

#include <string>
#include <string_view>

namespace bulwark::admin {

std::string_view DashboardHtml();
// The page's Content-Security-Policy: nothing but its own inline script and style (by their
// SHA-256) and requests to its own origin; no framing.
const std::string& DashboardCsp();

}  // namespace bulwark::admin
