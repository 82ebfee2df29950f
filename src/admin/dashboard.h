// The status page the admin listener serves at / and /dashboard: one HTML file with its CSS
// and JavaScript inline (src/admin/assets/dashboard.html, embedded at build time), which reads
// the admin API and refreshes every two seconds.
#pragma once

#include <string_view>

namespace bulwark::admin {

std::string_view DashboardHtml();

}  // namespace bulwark::admin
