#include "pg/protocol.h"

#include <cstring>

#include "core/strings.h"

namespace bulwark::pg {
namespace {

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(StrCat("invalid ", what, " message"));
}

// A cursor over a message body that refuses to read past its end.
class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool Int32(int32_t* v) {
    if (b_.size() - pos_ < 4) return false;
    uint32_t u = 0;
    for (int i = 0; i < 4; ++i) u = (u << 8) | static_cast<unsigned char>(b_[pos_ + i]);
    pos_ += 4;
    *v = static_cast<int32_t>(u);
    return true;
  }
  bool Int16(int16_t* v) {
    if (b_.size() - pos_ < 2) return false;
    uint16_t u = static_cast<uint16_t>((static_cast<unsigned char>(b_[pos_]) << 8) |
                                       static_cast<unsigned char>(b_[pos_ + 1]));
    pos_ += 2;
    *v = static_cast<int16_t>(u);
    return true;
  }
  // A zero-terminated string.
  bool CString(std::string_view* s) {
    size_t z = b_.find('\0', pos_);
    if (z == std::string_view::npos) return false;
    *s = b_.substr(pos_, z - pos_);
    pos_ = z + 1;
    return true;
  }
  bool Bytes(size_t n, std::string_view* s) {
    if (b_.size() - pos_ < n) return false;
    *s = b_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  std::string_view Rest() {
    std::string_view r = b_.substr(pos_);
    pos_ = b_.size();
    return r;
  }
  bool done() const { return pos_ == b_.size(); }
  size_t left() const { return b_.size() - pos_; }

 private:
  std::string_view b_;
  size_t pos_ = 0;
};

}  // namespace

uint32_t ReadU32(const char* p) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(p[0])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(p[1])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(p[2])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(p[3]));
}

absl::StatusOr<std::optional<Message>> NextMessage(std::string_view data, size_t max_size) {
  if (data.size() < 5) return std::optional<Message>();
  uint32_t len = ReadU32(data.data() + 1);
  if (len < 4) return absl::InvalidArgumentError(StrCat("invalid message length ", len));
  if (len > max_size) {
    return absl::InvalidArgumentError(
        StrCat("message of ", len, " bytes is over the limit of ", max_size));
  }
  if (data.size() < 1 + static_cast<size_t>(len)) return std::optional<Message>();
  Message m;
  m.type = data[0];
  m.body = data.substr(5, len - 4);
  m.size = 1 + static_cast<size_t>(len);
  return std::optional<Message>(m);
}

absl::StatusOr<std::optional<Message>> NextStartupPacket(std::string_view data) {
  if (data.size() < 4) return std::optional<Message>();
  uint32_t len = ReadU32(data.data());
  if (len < 8 || len > kMaxStartupPacket) {
    return absl::InvalidArgumentError(StrCat("invalid startup packet length ", len));
  }
  if (data.size() < len) return std::optional<Message>();
  Message m;
  m.body = data.substr(4, len - 4);
  m.size = len;
  return std::optional<Message>(m);
}

std::string StartupPacket::Param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return "";
}

absl::StatusOr<StartupPacket> ParseStartup(std::string_view body) {
  Reader r(body);
  StartupPacket p;
  if (!r.Int32(&p.code)) return Malformed("startup");
  if (p.code == kSslRequest || p.code == kGssEncRequest) {
    if (!r.done()) return Malformed("SSL request");
    return p;
  }
  if (p.code == kCancelRequest) {
    if (!r.Int32(&p.cancel_pid) || !r.Int32(&p.cancel_key) || !r.done())
      return Malformed("cancel request");
    return p;
  }
  if ((p.code >> 16) != 3) {
    return absl::InvalidArgumentError(StrCat("unsupported frontend protocol ", p.code >> 16, ".",
                                             p.code & 0xffff, ": server supports 3.0 to 3.0"));
  }
  for (;;) {
    std::string_view k, v;
    if (!r.CString(&k)) return Malformed("startup");
    if (k.empty()) break;
    if (!r.CString(&v)) return Malformed("startup");
    p.params.emplace_back(std::string(k), std::string(v));
  }
  if (!r.done()) return Malformed("startup");
  return p;
}

absl::StatusOr<Parse> ParseParse(std::string_view body) {
  Reader r(body);
  Parse p;
  int16_t n = 0;
  if (!r.CString(&p.statement) || !r.CString(&p.query) || !r.Int16(&n) || n < 0)
    return Malformed("Parse");
  if (r.left() != static_cast<size_t>(n) * 4) return Malformed("Parse");
  for (int i = 0; i < n; ++i) {
    int32_t oid = 0;
    r.Int32(&oid);
    p.param_types.push_back(static_cast<uint32_t>(oid));
  }
  return p;
}

absl::StatusOr<Bind> ParseBind(std::string_view body) {
  Reader r(body);
  Bind b;
  int16_t n = 0;
  if (!r.CString(&b.portal) || !r.CString(&b.statement) || !r.Int16(&n) || n < 0)
    return Malformed("Bind");
  for (int i = 0; i < n; ++i) {
    int16_t f;
    if (!r.Int16(&f)) return Malformed("Bind");
    b.param_formats.push_back(f);
  }
  if (!r.Int16(&n) || n < 0) return Malformed("Bind");
  for (int i = 0; i < n; ++i) {
    int32_t len;
    if (!r.Int32(&len)) return Malformed("Bind");
    if (len == -1) {
      b.params.emplace_back(std::nullopt);
      continue;
    }
    std::string_view v;
    if (len < 0 || !r.Bytes(static_cast<size_t>(len), &v)) return Malformed("Bind");
    b.params.emplace_back(v);
  }
  if (!r.Int16(&n) || n < 0) return Malformed("Bind");
  for (int i = 0; i < n; ++i) {
    int16_t f;
    if (!r.Int16(&f)) return Malformed("Bind");
    b.result_formats.push_back(f);
  }
  if (!r.done()) return Malformed("Bind");
  // One format applies to all; otherwise one per parameter (PostgreSQL's rule).
  if (b.param_formats.size() > 1 && b.param_formats.size() != b.params.size()) {
    return absl::InvalidArgumentError(StrCat("bind message has ", b.param_formats.size(),
                                             " parameter formats but ", b.params.size(),
                                             " parameters"));
  }
  return b;
}

absl::StatusOr<DescribeOrClose> ParseDescribeOrClose(std::string_view body) {
  Reader r(body);
  DescribeOrClose d;
  std::string_view kind;
  if (!r.Bytes(1, &kind) || !r.CString(&d.name) || !r.done()) return Malformed("Describe/Close");
  d.kind = kind[0];
  if (d.kind != 'S' && d.kind != 'P') return Malformed("Describe/Close");
  return d;
}

absl::StatusOr<Execute> ParseExecute(std::string_view body) {
  Reader r(body);
  Execute e;
  if (!r.CString(&e.portal) || !r.Int32(&e.max_rows) || !r.done()) return Malformed("Execute");
  return e;
}

absl::StatusOr<std::string_view> ParseQuery(std::string_view body) {
  Reader r(body);
  std::string_view q;
  if (!r.CString(&q) || !r.done()) return Malformed("Query");
  return q;
}

std::string ErrorFields::Get(char code) const {
  for (const auto& [c, v] : fields) {
    if (c == code) return v;
  }
  return "";
}

absl::StatusOr<ErrorFields> ParseErrorFields(std::string_view body) {
  Reader r(body);
  ErrorFields e;
  for (;;) {
    std::string_view code;
    if (!r.Bytes(1, &code)) return Malformed("ErrorResponse");
    if (code[0] == '\0') break;
    std::string_view v;
    if (!r.CString(&v)) return Malformed("ErrorResponse");
    e.fields.emplace_back(code[0], std::string(v));
  }
  if (!r.done()) return Malformed("ErrorResponse");
  return e;
}

absl::StatusOr<Authentication> ParseAuthentication(std::string_view body) {
  Reader r(body);
  Authentication a;
  if (!r.Int32(&a.code)) return Malformed("Authentication");
  a.data = r.Rest();
  if (a.code == 5 && a.data.size() != 4) return Malformed("AuthenticationMD5Password");
  if (a.code == 10) {
    Reader m(a.data);
    for (;;) {
      std::string_view mech;
      if (!m.CString(&mech)) return Malformed("AuthenticationSASL");
      if (mech.empty()) break;
      a.mechanisms.push_back(mech);
    }
  }
  return a;
}

absl::StatusOr<ParameterStatus> ParseParameterStatus(std::string_view body) {
  Reader r(body);
  ParameterStatus p;
  if (!r.CString(&p.name) || !r.CString(&p.value) || !r.done()) return Malformed("ParameterStatus");
  return p;
}

absl::StatusOr<BackendKeyData> ParseBackendKeyData(std::string_view body) {
  Reader r(body);
  BackendKeyData k;
  if (!r.Int32(&k.pid) || !r.Int32(&k.key) || !r.done()) return Malformed("BackendKeyData");
  return k;
}

absl::StatusOr<char> ParseReadyForQuery(std::string_view body) {
  if (body.size() != 1 || (body[0] != 'I' && body[0] != 'T' && body[0] != 'E')) {
    return Malformed("ReadyForQuery");
  }
  return body[0];
}

absl::StatusOr<std::string_view> ParseCommandComplete(std::string_view body) {
  Reader r(body);
  std::string_view tag;
  if (!r.CString(&tag) || !r.done()) return Malformed("CommandComplete");
  return tag;
}

absl::StatusOr<std::vector<std::optional<std::string_view>>> ParseDataRow(std::string_view body) {
  Reader r(body);
  int16_t n = 0;
  if (!r.Int16(&n) || n < 0) return Malformed("DataRow");
  std::vector<std::optional<std::string_view>> out;
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    int32_t len;
    if (!r.Int32(&len)) return Malformed("DataRow");
    if (len == -1) {
      out.emplace_back(std::nullopt);
      continue;
    }
    std::string_view v;
    if (len < 0 || !r.Bytes(static_cast<size_t>(len), &v)) return Malformed("DataRow");
    out.emplace_back(v);
  }
  if (!r.done()) return Malformed("DataRow");
  return out;
}

absl::StatusOr<std::vector<FieldDescription>> ParseRowDescription(std::string_view body) {
  Reader r(body);
  int16_t n = 0;
  if (!r.Int16(&n) || n < 0) return Malformed("RowDescription");
  std::vector<FieldDescription> out;
  for (int i = 0; i < n; ++i) {
    FieldDescription f;
    int32_t table, type, mod;
    if (!r.CString(&f.name) || !r.Int32(&table) || !r.Int16(&f.column) || !r.Int32(&type) ||
        !r.Int16(&f.type_size) || !r.Int32(&mod) || !r.Int16(&f.format)) {
      return Malformed("RowDescription");
    }
    f.table_oid = static_cast<uint32_t>(table);
    f.type_oid = static_cast<uint32_t>(type);
    f.type_modifier = mod;
    out.push_back(f);
  }
  if (!r.done()) return Malformed("RowDescription");
  return out;
}

void AppendInt32(std::string* out, int32_t v) {
  uint32_t u = static_cast<uint32_t>(v);
  char b[4] = {static_cast<char>(u >> 24), static_cast<char>(u >> 16), static_cast<char>(u >> 8),
               static_cast<char>(u)};
  out->append(b, 4);
}

void AppendInt16(std::string* out, int16_t v) {
  uint16_t u = static_cast<uint16_t>(v);
  char b[2] = {static_cast<char>(u >> 8), static_cast<char>(u)};
  out->append(b, 2);
}

void AppendMessage(std::string* out, char type, std::string_view body) {
  out->push_back(type);
  AppendInt32(out, static_cast<int32_t>(body.size() + 4));
  out->append(body.data(), body.size());
}

void AppendStartup(std::string* out,
                   const std::vector<std::pair<std::string, std::string>>& params) {
  std::string body;
  AppendInt32(&body, kProtocolV3);
  for (const auto& [k, v] : params) {
    body.append(k);
    body.push_back('\0');
    body.append(v);
    body.push_back('\0');
  }
  body.push_back('\0');
  AppendInt32(out, static_cast<int32_t>(body.size() + 4));
  out->append(body);
}

void AppendCancelRequest(std::string* out, int32_t pid, int32_t key) {
  AppendInt32(out, 16);
  AppendInt32(out, kCancelRequest);
  AppendInt32(out, pid);
  AppendInt32(out, key);
}

void AppendError(std::string* out, std::string_view severity, std::string_view sqlstate,
                 std::string_view message, char type) {
  std::string body;
  auto field = [&body](char code, std::string_view v) {
    body.push_back(code);
    body.append(v.data(), v.size());
    body.push_back('\0');
  };
  field('S', severity);
  field('V', severity);
  field('C', sqlstate);
  field('M', message);
  body.push_back('\0');
  AppendMessage(out, type, body);
}

void AppendAuthentication(std::string* out, int32_t code, std::string_view data) {
  std::string body;
  AppendInt32(&body, code);
  body.append(data.data(), data.size());
  AppendMessage(out, 'R', body);
}

void AppendParameterStatus(std::string* out, std::string_view name, std::string_view value) {
  std::string body(name);
  body.push_back('\0');
  body.append(value.data(), value.size());
  body.push_back('\0');
  AppendMessage(out, 'S', body);
}

void AppendBackendKeyData(std::string* out, int32_t pid, int32_t key) {
  std::string body;
  AppendInt32(&body, pid);
  AppendInt32(&body, key);
  AppendMessage(out, 'K', body);
}

void AppendReadyForQuery(std::string* out, char status) {
  AppendMessage(out, 'Z', std::string_view(&status, 1));
}

void AppendQuery(std::string* out, std::string_view sql) {
  std::string body(sql);
  body.push_back('\0');
  AppendMessage(out, 'Q', body);
}

}  // namespace bulwark::pg
