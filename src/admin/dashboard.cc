#include "admin/dashboard.h"

namespace bulwark::admin {

std::string_view DashboardHtml() {
  static constexpr char kHtml[] =
#include "admin/dashboard_html.inc"
      ;
  return std::string_view(kHtml, sizeof(kHtml) - 1);
}

}  // namespace bulwark::admin
