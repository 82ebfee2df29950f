// The JSON access log: a LogFile shared by every worker (see core/log_file.h).
#pragma once

#include "core/log_file.h"

namespace bulwark::gateway {

using AccessLog = LogFile;

}  // namespace bulwark::gateway
