// `bulwark demo`: the gateway on its embedded demo config, with three origin servers in-process.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "core/net.h"

namespace bulwark {

// A tiny HTTP origin for the demo: answers every request with a JSON line naming itself.
// Runs its own thread and loop; Stop() closes the listener and every connection (so the
// gateway sees connection refused), Start() listens again.
class DemoOrigin {
 public:
  DemoOrigin(std::string name, SocketAddress addr);
  ~DemoOrigin();
  absl::Status Start();
  void Stop();
  bool running() const;
  const std::string& name() const;
  std::string address() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The embedded config/demo.yml.
const char* DemoConfigText();

// Runs the demo until SIGINT/SIGTERM. Returns the exit code.
int RunDemo();

}  // namespace bulwark
