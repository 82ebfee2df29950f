#include "core/redis_cluster.h"

#include <algorithm>
#include <map>

#include "core/log.h"
#include "core/strings.h"

namespace bulwark {
namespace {

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum Redis Cluster's key
// slots are defined with; the table is built at compile time.
constexpr std::array<uint16_t, 256> MakeCrc16Table() {
  std::array<uint16_t, 256> t{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int b = 0; b < 8; ++b) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
    t[static_cast<size_t>(i)] = crc;
  }
  return t;
}
constexpr std::array<uint16_t, 256> kCrc16 = MakeCrc16Table();

uint16_t Crc16(std::string_view s) {
  uint16_t crc = 0;
  for (unsigned char c : s) {
    crc = static_cast<uint16_t>((crc << 8) ^ kCrc16[((crc >> 8) ^ c) & 0xff]);
  }
  return crc;
}

// Commands sent to any master: they name no key.
bool Keyless(std::string_view upper) {
  for (std::string_view k : {"PUBLISH", "PING", "SCAN", "INFO", "CLUSTER", "DBSIZE", "KEYS",
                             "SCRIPT", "FLUSHALL", "FLUSHDB", "ECHO", "TIME"}) {
    if (upper == k) return true;
  }
  return false;
}

bool Splittable(std::string_view upper) {
  return upper == "MGET" || upper == "DEL" || upper == "UNLINK" || upper == "EXISTS";
}

std::vector<std::string_view> Views(const std::vector<std::string>& args) {
  return std::vector<std::string_view>(args.begin(), args.end());
}

// Splits "ip:port" / "[v6]:port" / "host:port" at the last colon.
bool SplitAddress(std::string_view a, std::string* host, int* port) {
  size_t c = a.rfind(':');
  int64_t p = 0;
  if (c == std::string_view::npos || !ParseInt(a.substr(c + 1), &p) || p <= 0 || p > 65535) {
    return false;
  }
  std::string_view h = a.substr(0, c);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  *host = std::string(h);
  *port = static_cast<int>(p);
  return true;
}

}  // namespace

uint16_t RedisClusterClient::KeySlot(std::string_view key) {
  size_t open = key.find('{');
  if (open != std::string_view::npos) {
    size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return static_cast<uint16_t>(Crc16(key) & (kSlots - 1));
}

bool RedisClusterClient::ParseRedirect(std::string_view err, bool* ask, uint16_t* slot,
                                       std::string_view* address) {
  if (StartsWith(err, "MOVED ")) {
    *ask = false;
    err.remove_prefix(6);
  } else if (StartsWith(err, "ASK ")) {
    *ask = true;
    err.remove_prefix(4);
  } else {
    return false;
  }
  size_t sp = err.find(' ');
  int64_t s = 0;
  if (sp == std::string_view::npos || !ParseInt(err.substr(0, sp), &s) || s < 0 || s >= kSlots) {
    return false;
  }
  *slot = static_cast<uint16_t>(s);
  *address = err.substr(sp + 1);
  return !address->empty();
}

std::vector<RedisClusterClient::SlotRange> RedisClusterClient::ParseSlots(
    const RedisReply& r, std::string_view asked_ip) {
  std::vector<SlotRange> out;
  if (r.type != RedisReply::Type::kArray) return out;
  for (const RedisReply& range : r.elements) {
    if (range.type != RedisReply::Type::kArray || range.elements.size() < 3) continue;
    int64_t from = range.elements[0].integer, to = range.elements[1].integer;
    const RedisReply& master = range.elements[2];
    auto is_int = [](const RedisReply& e) { return e.type == RedisReply::Type::kInteger; };
    if (!is_int(range.elements[0]) || !is_int(range.elements[1]) || from < 0 || to >= kSlots ||
        from > to || master.type != RedisReply::Type::kArray || master.elements.size() < 2 ||
        !is_int(master.elements[1])) {
      continue;
    }
    std::string_view ip = master.elements[0].str;
    int64_t port = master.elements[1].integer;
    if (ip == "?" || port <= 0 || port > 65535) continue;
    if (ip.empty()) ip = asked_ip;
    SlotRange sr;
    sr.from = static_cast<uint16_t>(from);
    sr.to = static_cast<uint16_t>(to);
    sr.master = ip.find(':') != std::string_view::npos ? StrCat("[", ip, "]:", port)
                                                       : StrCat(ip, ":", port);
    out.push_back(std::move(sr));
  }
  return out;
}

RedisClusterClient::RedisClusterClient(EventLoop* loop, RedisClusterOptions options,
                                       std::string name)
    : loop_(loop), opt_(std::move(options)), name_(std::move(name)) {
  if (!opt_.lookup) opt_.lookup = SystemRedisLookup();
  slots_.fill(-1);
  timer_.set_callback([this] { Refresh(); });
}

RedisClusterClient::~RedisClusterClient() {
  Close();
  alive_.reset();
}

void RedisClusterClient::Start() {
  if (seed_ || closed_) return;
  RedisOptions o = opt_.node;
  o.command_timeout_ms = std::max<int64_t>(opt_.node.command_timeout_ms, 1000);
  // Each connection attempt tries the next seed, so one dead seed does not stop discovery.
  o.resolve = EndpointsInTurn(opt_.seeds, opt_.lookup);
  seed_ = std::make_unique<RedisClient>(loop_, o, name_ + " seed");
  seed_->SetOnReady([this] { Refresh(); });
  seed_->Start();
  loop_->ArmTimer(&timer_, opt_.refresh_interval_ms);
}

void RedisClusterClient::Close() {
  if (closed_) return;
  closed_ = true;
  loop_->CancelTimer(&timer_);
  if (seed_) seed_->Close();
  for (auto& n : nodes_) n.client->Close();
  up_.store(false, std::memory_order_relaxed);
}

bool RedisClusterClient::connected() const { return complete_ && AnyConnected() != nullptr; }

RedisClient* RedisClusterClient::AnyConnected() const {
  for (const auto& n : nodes_) {
    if (n.client->connected()) return n.client.get();
  }
  return nullptr;
}

void RedisClusterClient::UpdateUp() {
  up_.store(connected(), std::memory_order_relaxed);
  if (ready_reported_ || !complete_ || closed_) return;
  for (RedisClient* m : Masters()) {
    if (!m->connected()) return;
  }
  ready_reported_ = true;
  if (on_ready_) on_ready_();
}

std::vector<RedisClient*> RedisClusterClient::Masters() const {
  std::vector<bool> seen(nodes_.size(), false);
  std::vector<RedisClient*> out;
  for (int16_t n : slots_) {
    if (n >= 0 && !seen[static_cast<size_t>(n)]) {
      seen[static_cast<size_t>(n)] = true;
      out.push_back(nodes_[static_cast<size_t>(n)].client.get());
    }
  }
  return out;
}

void RedisClusterClient::RequestRefresh() {
  if (closed_) return;
  // At most one CLUSTER SLOTS per 100 ms however many redirections arrive at once.
  int64_t wait = std::max<int64_t>(0, last_refresh_ms_ + 100 - loop_->now_ms());
  loop_->ArmTimer(&timer_, std::max<int64_t>(1, wait));
}

void RedisClusterClient::Refresh() {
  if (closed_) return;
  loop_->ArmTimer(&timer_, opt_.refresh_interval_ms);
  if (refreshing_) return;
  // Ask a node we already talk to; the seed connection covers the start and a cluster whose
  // known nodes all went away.
  RedisClient* c = AnyConnected();
  if (c == nullptr && seed_ && seed_->connected()) c = seed_.get();
  if (c == nullptr) return;
  refreshing_ = true;
  last_refresh_ms_ = loop_->now_ms();
  std::string asked = c->address().IpString();
  std::weak_ptr<bool> alive = alive_;
  c->Command({"CLUSTER", "SLOTS"}, [this, alive, asked](const RedisReply& r) {
    if (alive.expired() || closed_) return;
    refreshing_ = false;
    OnSlots(r, asked);
  });
}

void RedisClusterClient::OnSlots(const RedisReply& r, const std::string& asked_ip) {
  if (r.is_error() || r.type != RedisReply::Type::kArray) {
    LogWarn(name_, ": CLUSTER SLOTS failed: ", r.is_error() ? r.str : "not an array");
    return;
  }
  std::array<int16_t, kSlots> next;
  next.fill(-1);
  for (const SlotRange& range : ParseSlots(r, asked_ip)) {
    int n = NodeFor(range.master);
    if (n < 0) continue;
    for (int s = range.from; s <= range.to; ++s)
      next[static_cast<size_t>(s)] = static_cast<int16_t>(n);
  }
  bool complete = std::none_of(next.begin(), next.end(), [](int16_t n) { return n < 0; });
  bool changed = complete != complete_ || refreshes_.load(std::memory_order_relaxed) == 0;
  slots_ = next;
  complete_ = complete;
  if (!complete) ready_reported_ = false;
  if (changed && complete) {
    LogInfo(name_, ": slot map learned, ", Masters().size(), " master(s)");
  } else if (changed) {
    LogWarn(name_, ": some hash slots have no master (cluster down or being built)");
  }
  refreshes_.fetch_add(1, std::memory_order_relaxed);
  UpdateUp();
}

int RedisClusterClient::NodeFor(std::string_view address) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].address == address) return static_cast<int>(i);
  }
  std::string host;
  int port = 0;
  if (!SplitAddress(address, &host, &port)) return -1;
  std::optional<SocketAddress> a = opt_.lookup(host, port);
  if (!a) {
    LogWarn(name_, ": node ", address, " does not resolve");
    return -1;
  }
  if (nodes_.size() >= 1000) return -1;  // a map that large is not a real cluster
  RedisOptions o = opt_.node;
  o.address = *a;
  o.resolve = nullptr;
  Node node;
  node.address = std::string(address);
  node.client = std::make_unique<RedisClient>(loop_, o, StrCat(name_, " node"));
  // A node that goes away may have been failed over: learn the new map soon.
  node.client->SetOnDown([this] {
    UpdateUp();
    RequestRefresh();
  });
  node.client->SetOnReady([this] { UpdateUp(); });
  node.client->Start();
  nodes_.push_back(std::move(node));
  return static_cast<int>(nodes_.size() - 1);
}

void RedisClusterClient::Command(const std::vector<std::string_view>& args, Callback cb) {
  auto fail = [this, &cb](std::string why) {
    loop_->Defer([cb = std::move(cb), why = std::move(why)] { cb(RedisReply::Error(why)); });
  };
  if (closed_ || args.empty()) return fail("client closed");
  if (!complete_) return fail("cluster slot map not known yet");
  std::string upper = AsciiUpper(args[0]);
  if (Keyless(upper) || args.size() < 2) {
    RedisClient* c = AnyConnected();
    if (c == nullptr) return fail("no cluster node connected");
    c->Command(args, std::move(cb));
    return;
  }
  // Kept for a redirection's resend: the caller's views do not outlive this call.
  auto owned = std::make_shared<Args>(args.begin(), args.end());
  if (Splittable(upper) && args.size() > 2) {
    SplitByKey(std::move(owned), std::move(cb));
    return;
  }
  std::string_view key = args[1];
  if (upper == "EVAL" || upper == "EVALSHA") {
    int64_t numkeys = 0;
    if (args.size() < 4 || !ParseInt(args[2], &numkeys) || numkeys < 1) {
      RedisClient* c = AnyConnected();
      if (c == nullptr) return fail("no cluster node connected");
      c->Command(args, std::move(cb));
      return;
    }
    key = args[3];
  }
  SendToSlot(KeySlot(key), std::move(owned), std::move(cb));
}

void RedisClusterClient::SendToSlot(uint16_t slot, std::shared_ptr<const Args> args, Callback cb) {
  int16_t n = slots_[slot];
  if (n < 0) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    loop_->Defer([cb = std::move(cb), slot] {
      cb(RedisReply::Error(StrCat("CLUSTERDOWN hash slot ", slot, " has no master")));
    });
    return;
  }
  Send(n, std::move(args), 0, false, std::move(cb));
}

void RedisClusterClient::Send(int node, std::shared_ptr<const Args> args, int hops, bool asking,
                              Callback cb) {
  RedisClient* c = nodes_[static_cast<size_t>(node)].client.get();
  if (asking) c->Command({"ASKING"}, [](const RedisReply&) {});
  std::weak_ptr<bool> alive = alive_;
  c->Command(Views(*args), [this, alive, args, hops, cb = std::move(cb)](const RedisReply& r) {
    bool ask = false;
    uint16_t slot = 0;
    std::string_view address;
    if (alive.expired() || closed_ || !r.is_error() ||
        !ParseRedirect(r.str, &ask, &slot, &address)) {
      if (r.is_error() && !alive.expired()) errors_.fetch_add(1, std::memory_order_relaxed);
      cb(r);
      return;
    }
    if (hops >= opt_.max_redirects) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      cb(RedisReply::Error(StrCat("too many cluster redirections: ", r.str)));
      return;
    }
    redirects_.fetch_add(1, std::memory_order_relaxed);
    int to = NodeFor(address);
    if (to < 0) {
      cb(r);
      return;
    }
    if (!ask) {
      // MOVED: the slot lives elsewhere for good; fix this slot now, the rest at the refresh.
      slots_[slot] = static_cast<int16_t>(to);
      RequestRefresh();
    }
    Send(to, args, hops + 1, ask, cb);
  });
}

void RedisClusterClient::SplitByKey(std::shared_ptr<const Args> args, Callback cb) {
  const Args& a = *args;
  // Slot → positions of its keys (1-based, as in the command), in the order they were given.
  std::map<uint16_t, std::vector<size_t>> groups;
  for (size_t i = 1; i < a.size(); ++i) groups[KeySlot(a[i])].push_back(i);
  if (groups.size() == 1) {
    SendToSlot(groups.begin()->first, std::move(args), std::move(cb));
    return;
  }
  struct Join {
    size_t remaining;
    bool mget;
    RedisReply merged;
    std::optional<RedisReply> error;
    Callback cb;
  };
  auto join = std::make_shared<Join>();
  join->remaining = groups.size();
  join->mget = AsciiUpper(a[0]) == "MGET";
  if (join->mget) {
    join->merged.type = RedisReply::Type::kArray;
    join->merged.elements.resize(a.size() - 1);
  } else {
    join->merged.type = RedisReply::Type::kInteger;
  }
  join->cb = std::move(cb);
  for (auto& [slot, positions] : groups) {
    auto part = std::make_shared<Args>();
    part->push_back(a[0]);
    for (size_t p : positions) part->push_back(a[p]);
    SendToSlot(slot, std::move(part), [join, positions = positions](const RedisReply& r) {
      if (r.is_error()) {
        if (!join->error) join->error = r;
      } else if (join->mget) {
        if (r.type == RedisReply::Type::kArray && r.elements.size() == positions.size()) {
          for (size_t i = 0; i < positions.size(); ++i) {
            join->merged.elements[positions[i] - 1] = r.elements[i];
          }
        } else if (!join->error) {
          join->error = RedisReply::Error("MGET part answered with an unexpected reply");
        }
      } else {
        join->merged.integer += r.integer;
      }
      if (--join->remaining == 0) join->cb(join->error ? *join->error : join->merged);
    });
  }
}

void RedisClusterClient::Eval(const std::string& script, const std::string& sha1,
                              const std::vector<std::string_view>& keys,
                              const std::vector<std::string_view>& args, Callback cb) {
  // As RedisClient::Eval: NOSCRIPT (a node that never saw the script) → EVAL, same routing.
  RedisClient::EvalCalls calls = RedisClient::MakeEvalCalls(script, sha1, keys, args);
  auto eval = std::make_shared<Args>(std::move(calls.eval));
  std::weak_ptr<bool> alive = alive_;
  Command(Views(calls.evalsha), [this, alive, eval, cb = std::move(cb)](const RedisReply& r) {
    if (r.is_error() && StartsWith(r.str, "NOSCRIPT") && !alive.expired() && !closed_) {
      Command(Views(*eval), cb);
      return;
    }
    cb(r);
  });
}

}  // namespace bulwark
