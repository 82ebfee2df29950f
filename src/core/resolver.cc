#include "core/resolver.h"

#include <ares.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>

#include "core/clock.h"
#include "core/log.h"
#include "core/strings.h"

namespace bulwark {
namespace {

std::once_flag g_ares_init;

void InitLibrary() {
  std::call_once(g_ares_init, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

bool Before(const IpAddress& a, const IpAddress& b) {
  if (a.family != b.family) return a.family == AF_INET;
  return std::memcmp(a.bytes, b.bytes, a.size()) < 0;
}

// A channel with the options' servers, timeout and tries.
absl::StatusOr<ares_channel> NewChannel(const ResolverOptions& o) {
  InitLibrary();
  ares_options opts{};
  opts.timeout = static_cast<int>(std::max<int64_t>(o.timeout_ms, 1));
  opts.tries = std::max(o.attempts, 1);
  opts.flags = ARES_FLAG_STAYOPEN;
  ares_channel ch = nullptr;
  int rc = ares_init_options(&ch, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
  if (rc != ARES_SUCCESS)
    return absl::InternalError(StrCat("resolver: cannot start: ", ares_strerror(rc)));
  if (!o.servers.empty()) {
    std::string csv = Join(o.servers, ",");
    rc = ares_set_servers_ports_csv(ch, csv.c_str());
    if (rc != ARES_SUCCESS) {
      ares_destroy(ch);
      return absl::InvalidArgumentError(
          StrCat("resolver: bad servers \"", csv, "\": ", ares_strerror(rc)));
    }
  }
  return ch;
}

// Runs `ch`'s queries until none is left or `stop` says so: poll on its sockets and its timeout.
void Drive(ares_channel ch, int wake_fd, int64_t wait_cap_ms) {
  ares_socket_t socks[ARES_GETSOCK_MAXNUM];
  int bits = ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
  pollfd pfds[ARES_GETSOCK_MAXNUM + 1];
  int n = 0;
  for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
    short ev = 0;
    if (ARES_GETSOCK_READABLE(bits, i)) ev |= POLLIN;
    if (ARES_GETSOCK_WRITABLE(bits, i)) ev |= POLLOUT;
    if (ev == 0) continue;
    pfds[n++] = pollfd{socks[i], ev, 0};
  }
  int ares_n = n;
  if (wake_fd >= 0) pfds[n++] = pollfd{wake_fd, POLLIN, 0};
  timeval cap{static_cast<time_t>(wait_cap_ms / 1000),
              static_cast<suseconds_t>(wait_cap_ms % 1000 * 1000)};
  timeval tv{};
  timeval* t = ares_timeout(ch, &cap, &tv);
  int timeout_ms = static_cast<int>(t->tv_sec * 1000 + t->tv_usec / 1000);
  int r = poll(pfds, static_cast<nfds_t>(n), timeout_ms);
  if (r < 0 && errno != EINTR) return;
  bool any = false;
  for (int i = 0; i < ares_n; ++i) {
    if (pfds[i].revents == 0) continue;
    any = true;
    ares_socket_t rd =
        (pfds[i].revents & (POLLIN | POLLERR | POLLHUP)) ? pfds[i].fd : ARES_SOCKET_BAD;
    ares_socket_t wr = (pfds[i].revents & POLLOUT) ? pfds[i].fd : ARES_SOCKET_BAD;
    ares_process_fd(ch, rd, wr);
  }
  // Timeouts are processed on a call without a ready socket.
  if (!any) ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  if (wake_fd >= 0 && n > ares_n && (pfds[ares_n].revents & POLLIN)) {
    uint64_t v;
    ssize_t ignored = read(wake_fd, &v, sizeof(v));
    (void)ignored;
  }
}

struct Answer {
  std::function<void(absl::StatusOr<Resolved>)> done;
  std::string name;
};

void OnAddrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
  std::unique_ptr<Answer> a(static_cast<Answer*>(arg));
  if (status != ARES_SUCCESS) {
    if (res != nullptr) ares_freeaddrinfo(res);
    a->done(absl::UnavailableError(
        StrCat("cannot resolve \"", a->name, "\": ", ares_strerror(status))));
    return;
  }
  Resolved r;
  int64_t ttl_s = -1;
  for (ares_addrinfo_node* n = res != nullptr ? res->nodes : nullptr; n != nullptr;
       n = n->ai_next) {
    if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
    SocketAddress sa;
    std::memcpy(&sa.storage, n->ai_addr, std::min<size_t>(n->ai_addrlen, sizeof(sa.storage)));
    sa.len = n->ai_addrlen;
    IpAddress ip = IpAddress::From(sa);
    if (std::find(r.addresses.begin(), r.addresses.end(), ip) == r.addresses.end())
      r.addresses.push_back(ip);
    if (ttl_s < 0 || n->ai_ttl < ttl_s) ttl_s = n->ai_ttl;
  }
  if (res != nullptr) ares_freeaddrinfo(res);
  if (r.addresses.empty()) {
    a->done(absl::UnavailableError(StrCat("cannot resolve \"", a->name, "\": no addresses")));
    return;
  }
  std::sort(r.addresses.begin(), r.addresses.end(), Before);
  r.ttl_ms = std::max<int64_t>(ttl_s, 0) * 1000;
  a->done(std::move(r));
}

void Query(ares_channel ch, const std::string& name,
           std::function<void(absl::StatusOr<Resolved>)> done) {
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = ARES_AI_NOSORT;
  auto* a = new Answer{std::move(done), name};
  ares_getaddrinfo(ch, name.c_str(), nullptr, &hints, OnAddrinfo, a);
}

}  // namespace

Resolver::Resolver(ResolverOptions options) : options_(std::move(options)) {}

Resolver::~Resolver() { Stop(); }

int64_t Resolver::ClampTtl(int64_t ttl_ms) const {
  return std::clamp(ttl_ms, options_.min_ttl_ms,
                    std::max(options_.min_ttl_ms, options_.max_ttl_ms));
}

absl::StatusOr<Resolved> Resolver::Lookup(const std::string& name) {
  return std::move(LookupAll({name})[0]);
}

std::vector<absl::StatusOr<Resolved>> Resolver::LookupAll(const std::vector<std::string>& names) {
  std::vector<std::optional<absl::StatusOr<Resolved>>> out(names.size());
  size_t pending = 0;
  absl::StatusOr<ares_channel> ch = absl::UnknownError("");
  for (size_t i = 0; i < names.size(); ++i) {
    if (std::optional<IpAddress> ip = IpAddress::Parse(names[i])) {
      out[i] = Resolved{{*ip}, options_.max_ttl_ms};
      continue;
    }
    if (!ch.ok()) {
      ch = NewChannel(options_);
      if (!ch.ok()) {
        out[i] = ch.status();
        continue;
      }
    }
    ++pending;
    Query(*ch, names[i], [&out, &pending, i](absl::StatusOr<Resolved> r) {
      out[i] = std::move(r);
      --pending;
    });
  }
  // c-ares bounds the wait (timeout x tries x servers); the cap only bounds one poll.
  while (pending > 0) Drive(*ch, -1, 1000);
  if (ch.ok()) ares_destroy(*ch);
  std::vector<absl::StatusOr<Resolved>> answers;
  MutexLock l(&mu_);
  for (auto& a : out) {
    ++stats_.lookups;
    if (!a->ok()) ++stats_.failures;
    answers.push_back(std::move(*a));
  }
  return answers;
}

absl::Status Resolver::Start() {
  absl::StatusOr<ares_channel> ch = NewChannel(options_);
  if (!ch.ok()) return ch.status();
  channel_ = *ch;
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    ares_destroy(*ch);
    channel_ = nullptr;
    return absl::InternalError(StrCat("resolver: eventfd: ", strerror(errno)));
  }
  stop_.store(false);
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void Resolver::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  Wake();
  thread_.join();
  ares_destroy(static_cast<ares_channel>(channel_));  // answers what is in flight: cancelled
  channel_ = nullptr;
  close(wake_fd_);
  wake_fd_ = -1;
}

void Resolver::Wake() {
  uint64_t one = 1;
  if (wake_fd_ >= 0) {
    ssize_t ignored = write(wake_fd_, &one, sizeof(one));
    (void)ignored;
  }
}

uint64_t Resolver::Watch(const std::string& name, OnChange on_change) {
  uint64_t id;
  {
    MutexLock l(&mu_);
    id = next_id_++;
    WatchState& w = watches_[id];
    w.name = name;
    w.on_change = std::move(on_change);
    w.due_ms = 0;  // at once
  }
  Wake();
  return id;
}

void Resolver::Unwatch(uint64_t id) {
  MutexLock l(&mu_);
  watches_.erase(id);
  // A callback of this watch that is running finishes before Unwatch returns (unless Unwatch
  // is called from it).
  while (running_callback_ == id && std::this_thread::get_id() != thread_.get_id()) cv_.Wait(&mu_);
}

int64_t Resolver::LookupBoundMs() const {
  // resolv.conf may list up to three name servers (MAXNS).
  int64_t servers = options_.servers.empty() ? 3 : static_cast<int64_t>(options_.servers.size());
  return std::max<int64_t>(options_.timeout_ms, 1) * std::max(options_.attempts, 1) * servers;
}

ResolverStats Resolver::stats() const {
  MutexLock l(&mu_);
  return stats_;
}

std::vector<NameStats> Resolver::name_stats() const {
  std::map<std::string, NameStats> by_name;
  {
    MutexLock l(&mu_);
    for (const auto& [id, w] : watches_) {
      NameStats& n = by_name[w.name];
      n.name = w.name;
      n.lookups += w.lookups;
      n.failures += w.failures;
      n.changes += w.changes;
      n.failing = n.failing || w.failing;
      n.addresses = std::max(n.addresses, w.last.size());
    }
  }
  std::vector<NameStats> out;
  for (auto& [name, n] : by_name) out.push_back(std::move(n));
  return out;
}

int64_t Resolver::StartDue(int64_t now_ms) {
  int64_t next = now_ms + 1000;
  std::vector<std::pair<uint64_t, std::string>> due;
  {
    MutexLock l(&mu_);
    for (auto& [id, w] : watches_) {
      if (w.in_flight) continue;
      if (w.due_ms <= now_ms) {
        w.in_flight = true;
        due.emplace_back(id, w.name);
      } else {
        next = std::min(next, w.due_ms);
      }
    }
  }
  for (auto& [id, name] : due) {
    if (std::optional<IpAddress> ip = IpAddress::Parse(name)) {
      OnWatchAnswer(id, Resolved{{*ip}, options_.max_ttl_ms});
      continue;
    }
    uint64_t watch = id;
    Query(static_cast<ares_channel>(channel_), name,
          [this, watch](absl::StatusOr<Resolved> r) { OnWatchAnswer(watch, std::move(r)); });
  }
  return next;
}

void Resolver::OnWatchAnswer(uint64_t id, absl::StatusOr<Resolved> r) {
  if (stop_.load()) return;  // the channel is being destroyed: its answers are cancellations
  int64_t now = MonotonicMs();
  OnChange call;
  std::vector<IpAddress> addresses;
  {
    MutexLock l(&mu_);
    ++stats_.lookups;
    auto it = watches_.find(id);
    if (it == watches_.end()) return;  // unwatched meanwhile
    WatchState& w = it->second;
    w.in_flight = false;
    ++w.lookups;
    if (!r.ok()) {
      ++stats_.failures;
      ++w.failures;
      w.due_ms = now + options_.retry_ms;
      if (!w.failing) {
        // Logged once per change of outcome; the last good addresses stay in use (HAProxy
        // `hold valid`).
        LogWarn("resolver: ", r.status().message(),
                w.have_last ? "; keeping the last good addresses" : "; nothing to use yet");
        w.failing = true;
      }
      return;
    }
    if (w.failing) LogInfo("resolver: \"", w.name, "\" resolves again");
    w.failing = false;
    w.due_ms = now + ClampTtl(r->ttl_ms);
    if (w.have_last && w.last == r->addresses) return;
    if (w.have_last) {
      ++stats_.changes;
      ++w.changes;
    }
    w.last = r->addresses;
    w.have_last = true;
    call = w.on_change;
    addresses = r->addresses;
    running_callback_ = id;
  }
  call(addresses);
  MutexLock l(&mu_);
  running_callback_ = 0;
  cv_.SignalAll();
}

void Resolver::Run() {
  auto* ch = static_cast<ares_channel>(channel_);
  while (!stop_.load()) {
    int64_t now = MonotonicMs();
    int64_t next = StartDue(now);
    Drive(ch, wake_fd_, std::max<int64_t>(next - now, 1));
  }
}

}  // namespace bulwark
