// The PostgreSQL frontend/backend protocol, version 3.0: framing and the messages the proxy
// reads and writes. Everything here is a pure function of bytes: no sockets, no state beyond a
// framer's position, so the fuzzer and the unit tests drive it directly.
//
// Framing: after the startup packet (int32 length, int32 code, body), every message is one type
// byte, an int32 length that counts itself, and a body. A length below 4 or above the limit is a
// protocol violation: the connection gets an error and is closed, as PostgreSQL and PgBouncer
// close it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace bulwark::pg {

// Startup codes (the second int32 of a startup packet).
inline constexpr int32_t kProtocolV3 = 196608;  // 3.0
inline constexpr int32_t kSslRequest = 80877103;
inline constexpr int32_t kGssEncRequest = 80877104;
inline constexpr int32_t kCancelRequest = 80877102;

// PostgreSQL refuses startup packets over 10,000 bytes; so does bulwark.
inline constexpr size_t kMaxStartupPacket = 10000;
// The default limit on any other message (PostgreSQL's is 1 GiB for data; PgBouncer's
// max_packet_size defaults to 2 GiB). Configurable per pool.
inline constexpr size_t kDefaultMaxMessage = 256 * 1024 * 1024;

// A message's type byte and body, viewing the caller's buffer.
struct Message {
  char type = 0;  // 0 for a startup packet
  std::string_view body;
  size_t size = 0;  // bytes on the wire, header included
};

// Reads whole messages from the front of `data`. Returns nullopt when more bytes are needed,
// an error for a malformed header, else the message (which views `data`).
absl::StatusOr<std::optional<Message>> NextMessage(std::string_view data, size_t max_size);
absl::StatusOr<std::optional<Message>> NextStartupPacket(std::string_view data);

// ---------------------------------------------------------------- frontend messages

struct StartupPacket {
  int32_t code = 0;                                         // kProtocolV3, kSslRequest, ...
  std::vector<std::pair<std::string, std::string>> params;  // user, database, options, ...
  int32_t cancel_pid = 0;                                   // kCancelRequest
  int32_t cancel_key = 0;
  std::string Param(std::string_view name) const;
};
absl::StatusOr<StartupPacket> ParseStartup(std::string_view body);  // body after the length

struct Parse {
  std::string_view statement;  // "" = the unnamed statement
  std::string_view query;
  std::vector<uint32_t> param_types;
};
absl::StatusOr<Parse> ParseParse(std::string_view body);

struct Bind {
  std::string_view portal;
  std::string_view statement;
  std::vector<int16_t> param_formats;
  std::vector<std::optional<std::string_view>> params;  // nullopt = SQL NULL
  std::vector<int16_t> result_formats;
};
absl::StatusOr<Bind> ParseBind(std::string_view body);

struct DescribeOrClose {
  char kind = 'S';  // 'S' statement, 'P' portal
  std::string_view name;
};
absl::StatusOr<DescribeOrClose> ParseDescribeOrClose(std::string_view body);

struct Execute {
  std::string_view portal;
  int32_t max_rows = 0;
};
absl::StatusOr<Execute> ParseExecute(std::string_view body);

// 'Q': the query text (without its terminating zero).
absl::StatusOr<std::string_view> ParseQuery(std::string_view body);

// ---------------------------------------------------------------- backend messages

// ErrorResponse / NoticeResponse fields by code: 'S' severity, 'V' non-localized severity,
// 'C' SQLSTATE, 'M' message, 'D' detail, 'H' hint, 'P' position, ...
struct ErrorFields {
  std::vector<std::pair<char, std::string>> fields;
  std::string Get(char code) const;
};
absl::StatusOr<ErrorFields> ParseErrorFields(std::string_view body);

struct Authentication {
  int32_t code = 0;       // 0 ok, 3 cleartext, 5 md5, 10 SASL, 11 SASL continue, 12 SASL final
  std::string_view data;  // md5: the 4-byte salt; SASL: mechanisms or server message
  std::vector<std::string_view> mechanisms;  // code 10
};
absl::StatusOr<Authentication> ParseAuthentication(std::string_view body);

struct ParameterStatus {
  std::string_view name, value;
};
absl::StatusOr<ParameterStatus> ParseParameterStatus(std::string_view body);

struct BackendKeyData {
  int32_t pid = 0, key = 0;
};
absl::StatusOr<BackendKeyData> ParseBackendKeyData(std::string_view body);

// 'Z': 'I' idle, 'T' in a transaction, 'E' in a failed transaction.
absl::StatusOr<char> ParseReadyForQuery(std::string_view body);
// 'C': the command tag, e.g. "SELECT 3", "INSERT 0 1".
absl::StatusOr<std::string_view> ParseCommandComplete(std::string_view body);

// 'D': the columns of one row (nullopt = NULL).
absl::StatusOr<std::vector<std::optional<std::string_view>>> ParseDataRow(std::string_view body);

struct FieldDescription {
  std::string_view name;
  uint32_t table_oid = 0;
  int16_t column = 0;
  uint32_t type_oid = 0;
  int16_t type_size = 0;
  int32_t type_modifier = 0;
  int16_t format = 0;
};
absl::StatusOr<std::vector<FieldDescription>> ParseRowDescription(std::string_view body);

// ---------------------------------------------------------------- writing

// Appends one message: type, length, body.
void AppendMessage(std::string* out, char type, std::string_view body);
void AppendStartup(std::string* out,
                   const std::vector<std::pair<std::string, std::string>>& params);
void AppendCancelRequest(std::string* out, int32_t pid, int32_t key);
// An ErrorResponse (or NoticeResponse with type 'N') with severity, SQLSTATE and message, as
// PgBouncer and PostgreSQL word their own.
void AppendError(std::string* out, std::string_view severity, std::string_view sqlstate,
                 std::string_view message, char type = 'E');
void AppendAuthentication(std::string* out, int32_t code, std::string_view data = {});
void AppendParameterStatus(std::string* out, std::string_view name, std::string_view value);
void AppendBackendKeyData(std::string* out, int32_t pid, int32_t key);
void AppendReadyForQuery(std::string* out, char status);
void AppendQuery(std::string* out, std::string_view sql);

// Big-endian helpers.
uint32_t ReadU32(const char* p);
void AppendInt32(std::string* out, int32_t v);
void AppendInt16(std::string* out, int16_t v);

}  // namespace bulwark::pg
