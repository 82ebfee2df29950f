// Scatter-gather execution: a query without a shard key runs on every shard through internal
// pool users, and the parts are merged (scatter.cc) into one answer for the client.
#include <errno.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>

#include "core/log.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "pg/protocol.h"
#include "pg/proxy.h"
#include "pg/proxy_internal.h"

namespace bulwark::pg {

void InternalUser::LeaveQueue() {
  if (wanted == nullptr) return;
  auto& w = wanted->waiting;
  auto it = std::find(w.begin(), w.end(), static_cast<PoolUser*>(this));
  if (it != w.end()) w.erase(it);
  wanted = nullptr;
}

bool InternalUser::TrackServer(ServerConn* s, char type, std::string_view body, bool* ready) {
  if (type == 'S') {
    auto ps = ParseParameterStatus(body);
    if (ps.ok()) s->SetParam(ps->name, ps->value);
    return true;
  }
  if (type == 'Z') {
    s->tx_status = body.empty() ? 'I' : body[0];
    s->at_sync = true;
    *ready = true;
    return true;
  }
  return false;
}

void ProxyImpl::StartScatter(ClientConn* c, ScatterPlan plan, bool read) {
  PoolGroup* g = c->group;
  auto owned = std::make_unique<ScatterJob>();
  ScatterJob* job = owned.get();
  jobs[job] = std::move(owned);
  job->proxy = this;
  job->client = c;
  job->plan = std::move(plan);
  c->state = ClientConn::State::kScatter;
  c->job = job;
  c->query_start_ms = loop.now_ms();
  size_t n = g->sharding->databases.size();
  job->remaining = static_cast<int>(n);
  for (size_t i = 0; i < n; ++i) {
    job->parts.push_back(std::make_unique<ScatterPart>(job, static_cast<int>(i)));
  }
  for (auto& part : job->parts) {
    ScatterPart* sp = part.get();
    sp->read_next = read;
    Pool* p = ChoosePool(g, read, sp->shard_next);
    if (p == nullptr) {
      sp->WaitTimedOut(StrCat("no server of shard ", g->sharding->databases[sp->shard_next],
                              " can take queries"));
      continue;
    }
    sp->waiting = true;
    sp->wanted = p;
    sp->wait_start_ms = loop.now_ms();
    Acquire(p, sp);
  }
}

void ScatterPart::Attach(ServerConn* s) {
  waiting = false;
  server = s;
  s->internal = this;
  // The client's parameters (DateStyle, TimeZone...) shape the rows' text: set them first.
  std::string sets = job->client != nullptr ? s->SetsFor(job->client->vars) : "";
  if (!sets.empty()) {
    AppendQuery(&s->out.buf, sets);
    skip_z = 1;
  }
  AppendQuery(&s->out.buf, job->plan.sql);
  s->at_sync = false;
  s->Flush();
}

void ScatterPart::WaitTimedOut(const std::string& why) {
  LeaveQueue();
  waiting = false;
  if (error.empty()) AppendError(&error, "ERROR", "08P01", why);
  Done();
}

void ScatterPart::FromServer(char type, std::string_view msg, std::string_view body) {
  bool ready = false;
  if (TrackServer(server, type, body, &ready)) {
    if (!ready) return;  // a ParameterStatus
    if (skip_z > 0) {
      --skip_z;  // the parameter SETs are done
    } else {
      done = true;
    }
    return;
  }
  if (skip_z > 0) return;
  switch (type) {
    case 'T':
      row_description = std::string(body);
      break;
    case 'D': {
      auto row = ParseDataRow(body);
      if (!row.ok()) {
        if (error.empty()) AppendError(&error, "ERROR", "08P01", "malformed DataRow from a shard");
        break;
      }
      Row r;
      r.reserve(row->size());
      for (const auto& v : *row) {
        r.push_back(v ? std::optional<std::string>(std::string(*v)) : std::nullopt);
      }
      rows.push_back(std::move(r));
      break;
    }
    case 'E':
      if (error.empty()) error = std::string(msg);
      break;
    default:
      break;  // CommandComplete, notices
  }
}

void ScatterPart::AfterServerBatch() {
  if (!done || server == nullptr) return;
  ServerConn* s = server;
  server = nullptr;
  s->internal = nullptr;
  job->proxy->Release(s);
  job->PartDone();
}

void ScatterPart::ServerLost(std::string_view why) {
  server = nullptr;
  if (done) return;
  if (error.empty()) AppendError(&error, "ERROR", "08006", StrCat("server connection lost: ", why));
  Done();
}

void ScatterPart::Done() {
  done = true;
  job->PartDone();
}

void ScatterJob::PartDone() {
  if (--remaining > 0) return;
  ClientConn* c = client;
  if (c != nullptr && c->state == ClientConn::State::kScatter) {
    const std::string* error = nullptr;
    for (const auto& p : parts) {
      if (!p->error.empty()) {
        error = &p->error;
        break;
      }
    }
    std::string& out = c->out.buf;
    if (error != nullptr) {
      out += *error;
    } else {
      ScatterMerger m(plan);
      absl::Status st;
      for (auto& p : parts) {
        auto fields = ParseRowDescription(p->row_description);
        if (!fields.ok()) {
          st = fields.status();
          break;
        }
        st = m.Add(*fields, std::move(p->rows));
        if (!st.ok()) break;
      }
      auto r = st.ok() ? m.Finish() : absl::StatusOr<ScatterResult>(st);
      if (!r.ok()) {
        AppendError(&out, "ERROR",
                    r.status().code() == absl::StatusCode::kFailedPrecondition ? "0A000" : "XX000",
                    ToStd(r.status().message()));
      } else {
        AppendMessage(&out, 'T', r->row_description);
        std::string row;
        for (const Row& rr : r->rows) {
          row.clear();
          AppendInt16(&row, static_cast<int16_t>(rr.size()));
          for (const auto& v : rr) {
            if (!v) {
              AppendInt32(&row, -1);
            } else {
              AppendInt32(&row, static_cast<int32_t>(v->size()));
              row += *v;
            }
          }
          AppendMessage(&out, 'D', row);
        }
        std::string tag = StrCat("SELECT ", r->rows.size());
        tag.push_back('\0');
        AppendMessage(&out, 'C', tag);
        c->group->stats->scatters.Add(1);
      }
    }
    AppendReadyForQuery(&out, 'I');
    c->ScatterDone();
  }
  ProxyImpl* p = proxy;
  ScatterJob* self = this;
  p->loop.Defer([p, self] { p->jobs.erase(self); });
}

}  // namespace bulwark::pg
