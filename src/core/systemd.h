// The systemd service protocol, spoken directly (no libsystemd): readiness and reload
// notifications (sd_notify(3)), socket activation (sd_listen_fds(3)), the watchdog and
// journald's stream detection. Every function is a no-op when systemd did not start the
// process, so the same binary runs the same way from a shell, a container or a unit.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::systemd {

// Sends `state` ("READY=1", "RELOADING=1\nMONOTONIC_USEC=...", "STOPPING=1", "STATUS=...",
// "WATCHDOG=1") to $NOTIFY_SOCKET (a path, or an abstract socket written "@name"). False when
// the variable is unset or the datagram could not be sent.
bool Notify(std::string_view state);

// "RELOADING=1\nMONOTONIC_USEC=<now>": what Type=notify-reload wants before a reload starts
// (READY=1 follows when it is done).
std::string ReloadingState();

// Takes the listening sockets systemd passed ($LISTEN_PID is this process, $LISTEN_FDS of them
// from descriptor 3): each is made close-on-exec and kept for ListenTcp, which hands a duplicate
// to every listener configured with that socket's address instead of binding one. The variables
// are removed so child processes (pg_dump, hooks) do not see them. Returns how many were taken.
int AdoptListenFds();
// A duplicate of the passed socket bound to `addr` (an IPv4 any-address also matches a
// dual-stack [::] socket of the same port, what `ListenStream=PORT` binds), or -1.
int TakeListenFd(const sockaddr* addr, socklen_t len);
// Passed sockets no listener asked for (their addresses), for a warning.
std::vector<std::string> UnusedListenFds();

// $WATCHDOG_USEC when $WATCHDOG_PID is unset or this process: WATCHDOG=1 must be sent more often
// than that (half of it is what sd_watchdog_enabled(3) suggests). 0 when no watchdog is set.
int64_t WatchdogUsec();

// True when `fd` is the stream journald connected ($JOURNAL_STREAM "DEVICE:INODE"): then log
// lines may start with "<N>" syslog priorities (sd-daemon(3)), which journald reads and strips.
bool IsJournalStream(int fd);

}  // namespace bulwark::systemd
