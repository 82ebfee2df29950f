#include "gateway/shared_limit.h"

#include <algorithm>

#include "core/redis_client.h"
#include "core/strings.h"

namespace bulwark::gateway {
namespace {

// KEYS[i]: rule i's key state (a hash: e = excess in thousandths, l = last update in ms).
// ARGV[3i-2], ARGV[3i-1], ARGV[3i]: rate (thousandths per second; "" = the rule has no key for
// this request), burst and delay (thousandths).
// Returns {0 pass | 1 delay | 2 reject, rule (1-based), excess, delay_ms, per-rule P/D/-}.
const char kScript[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local function charge(i, rate)
  local h = redis.call('HMGET', KEYS[i], 'e', 'l')
  if not h[1] then return 0, 1, true end
  local ms = now - tonumber(h[2])
  if ms < -60000 then ms = 1 elseif ms < 0 then ms = 0 end
  local e = tonumber(h[1]) - math.floor(rate * ms / 1000) + 1000
  if e < 0 then e = 0 end
  return e, ms, false
end
local function store(i, rate, e, ms, fresh)
  if fresh or ms ~= 0 then
    redis.call('HSET', KEYS[i], 'e', string.format('%d', e), 'l', string.format('%d', now))
  else
    redis.call('HSET', KEYS[i], 'e', string.format('%d', e))
  end
  redis.call('PEXPIRE', KEYS[i], string.format('%d', math.floor((e + 1000) * 1000 / rate) + 1000))
end
local excess, last, stop = 0, 0, 0
local pend = {}
for i = 1, n do
  last = i
  local rate = tonumber(ARGV[3 * i - 2])
  if rate then
    local e, ms, fresh = charge(i, rate)
    excess = e
    if e > tonumber(ARGV[3 * i - 1]) then return {2, i, e, 0, ''} end
    if i == n then
      store(i, rate, e, ms, fresh)
      stop = i
    else
      pend[i] = true
    end
  end
end
local codes = {}
for i = 1, n do codes[i] = '-' end
if stop == 0 then excess = 0 end
local best = (stop > 0) and stop or last
local max_delay = 0
local best_excess = excess
local brate = tonumber(ARGV[3 * best - 2])
if brate and excess > tonumber(ARGV[3 * best]) then
  max_delay = math.floor((excess - tonumber(ARGV[3 * best])) * 1000 / brate)
end
if stop > 0 then
  codes[stop] = (excess > tonumber(ARGV[3 * stop])) and 'D' or 'P'
end
local from = (stop > 0) and (stop - 1) or n
for i = from, 1, -1 do
  if pend[i] then
    local rate = tonumber(ARGV[3 * i - 2])
    local delay = tonumber(ARGV[3 * i])
    local e, ms, fresh = charge(i, rate)
    store(i, rate, e, ms, fresh)
    if e <= delay then
      codes[i] = 'P'
    else
      codes[i] = 'D'
      local d = math.floor((e - delay) * 1000 / rate)
      if d > max_delay then
        max_delay = d
        best_excess = e
        best = i
      end
    end
  end
end
return {(max_delay > 0) and 1 or 0, best, best_excess, max_delay, table.concat(codes)}
)lua";

}  // namespace

const std::string& SharedLimit::Script() {
  static const std::string* s = new std::string(kScript);
  return *s;
}

const std::string& SharedLimit::Sha1() {
  static const std::string* s = new std::string(RedisClient::ScriptSha1(kScript));
  return *s;
}

void SharedLimit::BuildArgs(const std::string& prefix, const LimitRequest* rules, int n,
                            std::string* storage, std::vector<std::string_view>* keys,
                            std::vector<std::string_view>* args) {
  // Everything goes into one buffer first (it may grow), then views are taken.
  storage->clear();
  std::vector<size_t> offs;
  for (int i = 0; i < n; ++i) {
    offs.push_back(storage->size());
    StrAppend(storage, prefix, "lr:", rules[i].zone->name(), ":");
    storage->append(rules[i].key.empty() ? std::string_view("-") : rules[i].key);
    offs.push_back(storage->size());
    if (!rules[i].key.empty()) StrAppend(storage, rules[i].zone->rate_milli());
    offs.push_back(storage->size());
    StrAppend(storage, rules[i].burst);
    offs.push_back(storage->size());
    StrAppend(storage, rules[i].delay);
  }
  offs.push_back(storage->size());
  keys->clear();
  args->clear();
  std::string_view all(*storage);
  for (int i = 0; i < n; ++i) {
    size_t* o = &offs[static_cast<size_t>(i) * 4];
    keys->push_back(all.substr(o[0], o[1] - o[0]));
    args->push_back(all.substr(o[1], o[2] - o[1]));
    args->push_back(all.substr(o[2], o[3] - o[2]));
    args->push_back(all.substr(o[3], o[4] - o[3]));
  }
}

bool SharedLimit::ParseReply(const RedisReply& r, const LimitRequest* rules, int n, bool dry_run,
                             LimitOutcome* out) {
  if (r.type != RedisReply::Type::kArray || r.elements.size() != 5) return false;
  for (int i = 0; i < 4; ++i) {
    if (r.elements[i].type != RedisReply::Type::kInteger) return false;
  }
  int64_t code = r.elements[0].integer;
  int64_t rule = r.elements[1].integer - 1;
  if (code < 0 || code > 2 || rule < 0 || rule >= n) return false;
  *out = LimitOutcome{};
  out->applied = true;
  out->rule = static_cast<int>(rule);
  out->excess = r.elements[2].integer;
  const LimitRequest& lr = rules[rule];
  if (code == 2) {
    out->result = dry_run ? LimitResult::kRejectedDryRun : LimitResult::kRejected;
    int64_t wait_ms = (out->excess - lr.burst) * 1000 / std::max<int64_t>(1, lr.zone->rate_milli());
    out->retry_after_s = std::max<int64_t>(1, (wait_ms + 999) / 1000);
    lr.zone->Count(out->result);
    return true;
  }
  const std::string& codes = r.elements[4].str;
  for (int i = 0; i < n && i < static_cast<int>(codes.size()); ++i) {
    if (codes[i] == 'P') rules[i].zone->Count(LimitResult::kPassed);
    if (codes[i] == 'D')
      rules[i].zone->Count(dry_run ? LimitResult::kDelayedDryRun : LimitResult::kDelayed);
  }
  if (code == 1) {
    out->result = dry_run ? LimitResult::kDelayedDryRun : LimitResult::kDelayed;
    out->delay_ms = dry_run ? 0 : r.elements[3].integer;
  }
  return true;
}

}  // namespace bulwark::gateway
