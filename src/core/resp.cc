#include "core/resp.h"

#include "core/strings.h"

namespace bulwark {
namespace {

class Parser {
 public:
  Parser(std::string_view d, const RespLimits& l, std::string* err) : d_(d), l_(l), err_(err) {}

  // Returns false with need_more_ or an error set.
  bool Parse(RedisReply* out, int depth) {
    if (depth > l_.max_depth) return Fail("arrays nested too deeply");
    if (pos_ >= d_.size()) return More();
    char type = d_[pos_];
    std::string_view line;
    size_t save = pos_;
    ++pos_;
    if (!Line(&line)) {
      pos_ = save;
      return false;
    }
    switch (type) {
      case '+':
        out->type = RedisReply::Type::kStatus;
        out->str.assign(line);
        return true;
      case '-':
        out->type = RedisReply::Type::kError;
        out->str.assign(line);
        return true;
      case ':':
        out->type = RedisReply::Type::kInteger;
        if (!ParseInt(line, &out->integer)) return Fail("bad integer");
        return true;
      case '$': {
        int64_t n = 0;
        if (!ParseSigned(line, &n)) return Fail("bad bulk length");
        if (n == -1) {
          out->type = RedisReply::Type::kNil;
          return true;
        }
        if (n < 0 || n > l_.max_bulk) return Fail("bulk string too long");
        if (d_.size() - pos_ < static_cast<size_t>(n) + 2) return More();
        if (d_[pos_ + n] != '\r' || d_[pos_ + n + 1] != '\n')
          return Fail("bulk string not followed by CRLF");
        out->type = RedisReply::Type::kString;
        out->str.assign(d_.substr(pos_, static_cast<size_t>(n)));
        pos_ += static_cast<size_t>(n) + 2;
        return true;
      }
      case '*': {
        int64_t n = 0;
        if (!ParseSigned(line, &n)) return Fail("bad array length");
        if (n == -1) {
          out->type = RedisReply::Type::kNil;
          return true;
        }
        if (n < 0 || n > l_.max_elements) return Fail("array too long");
        out->type = RedisReply::Type::kArray;
        out->elements.clear();
        // Each element needs at least 3 bytes: a longer claim than the data can wait for more,
        // but no allocation is made for it up front.
        for (int64_t i = 0; i < n; ++i) {
          out->elements.emplace_back();
          if (!Parse(&out->elements.back(), depth + 1)) return false;
        }
        return true;
      }
      default:
        return Fail(StrCat("unexpected reply type byte 0x", static_cast<int>(static_cast<unsigned char>(type))));
    }
  }
  size_t pos() const { return pos_; }
  bool need_more() const { return need_more_; }

 private:
  bool Line(std::string_view* line) {
    size_t end = d_.find("\r\n", pos_);
    if (end == std::string_view::npos) {
      if (d_.size() - pos_ > l_.max_line) return Fail("line too long");
      return More();
    }
    if (end - pos_ > l_.max_line) return Fail("line too long");
    *line = d_.substr(pos_, end - pos_);
    pos_ = end + 2;
    return true;
  }
  static bool ParseSigned(std::string_view s, int64_t* v) {
    if (s == "-1") {
      *v = -1;
      return true;
    }
    return ParseInt(s, v);
  }
  bool More() {
    need_more_ = true;
    return false;
  }
  bool Fail(std::string_view why) {
    err_->assign(why);
    return false;
  }

  std::string_view d_;
  const RespLimits& l_;
  std::string* err_;
  size_t pos_ = 0;
  bool need_more_ = false;
};

}  // namespace

RespStatus ParseResp(std::string_view data, const RespLimits& limits, RedisReply* out,
                     size_t* consumed, std::string* error) {
  error->clear();
  Parser p(data, limits, error);
  RedisReply r;
  if (p.Parse(&r, 0)) {
    *out = std::move(r);
    *consumed = p.pos();
    return RespStatus::kDone;
  }
  if (!error->empty()) return RespStatus::kError;
  return RespStatus::kNeedMore;
}

void AppendRespCommand(std::string* out, const std::vector<std::string_view>& args) {
  StrAppend(out, "*", args.size(), "\r\n");
  for (std::string_view a : args) {
    StrAppend(out, "$", a.size(), "\r\n");
    out->append(a);
    out->append("\r\n");
  }
}

}  // namespace bulwark
