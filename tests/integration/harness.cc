#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "core/strings.h"
#include "gtest/gtest.h"
#include "http/chunked.h"
#include "http/parser.h"
#include "yaml-cpp/yaml.h"

namespace bulwark::testing {

int FreePort() {
  // The kernel may hand the same free port to two binds in a row: a test that asked for an
  // admin port and a pg port got one port twice ("admin.listen ... is also pg.listen"). A port
  // is handed out once per test binary.
  static std::mutex mu;
  static std::set<int> given;
  std::lock_guard<std::mutex> l(mu);
  for (;;) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    int port = ntohs(a.sin_port);
    if (given.insert(port).second) return port;
  }
}

namespace {

// Every temp dir a test made, removed when the test binary exits (PostgreSQL data directories
// are 100+ MB each: left behind, a few hundred runs fill the disk). BULWARK_KEEP_TEST_DIRS=1
// keeps them for a look afterwards.
std::mutex temp_dirs_mu;
std::vector<std::string>* temp_dirs = nullptr;

void RemoveTempDirs() {
  if (getenv("BULWARK_KEEP_TEST_DIRS") != nullptr) return;
  std::lock_guard<std::mutex> l(temp_dirs_mu);
  for (const std::string& d : *temp_dirs) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);
  }
}

}  // namespace

std::string MakeTempDir() {
  char tmpl[] = "/tmp/bulwark-test-XXXXXX";
  char* d = mkdtemp(tmpl);
  if (d == nullptr) return "/tmp";
  std::lock_guard<std::mutex> l(temp_dirs_mu);
  if (temp_dirs == nullptr) {
    temp_dirs = new std::vector<std::string>();
    std::atexit(RemoveTempDirs);
  }
  temp_dirs->push_back(d);
  return d;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

long ProcKb(pid_t pid, const std::string& field) {
  std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  size_t at = status.find(field + ":");
  if (at == std::string::npos) return -1;
  return std::stol(status.substr(at + field.size() + 1));
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void MakeCert(const std::string& dir, const std::string& name) {
  std::string out;
  int st = RunProgram(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
       "-nodes", "-keyout", dir + "/" + name + ".key", "-out", dir + "/" + name + ".crt", "-days",
       "2", "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name + ",DNS:*." + name},
      {}, &out);
  ASSERT_EQ(st, 0) << out;
}

// A CA, a server certificate for api.test and 127.0.0.1 signed by it, client certificates
// signed by it (with and without a CommonName), and a second CA that signed nothing here. Files in
// `dir`.
void MakeTestPki(const std::string& dir) {
  std::string out;
  auto run = [&](std::vector<std::string> argv) {
    ASSERT_EQ(RunProgram(argv, {}, &out), 0) << Join(argv, " ") << "\n" << out;
  };
  auto key = [&](const std::string& name) {
    run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
         dir + "/" + name + ".key"});
  };
  for (const char* ca : {"ca", "other-ca"}) {
    key(ca);
    run({"openssl", "req", "-x509", "-new", "-key", dir + "/" + ca + ".key", "-out",
         dir + "/" + ca + ".crt", "-days", "2", "-subj", StrCat("/CN=bulwark test ", ca)});
  }
  auto sign = [&](const std::string& name, const std::string& ext,
                  const std::string& subject = "") {
    key(name);
    run({"openssl", "req", "-new", "-key", dir + "/" + name + ".key", "-out",
         dir + "/" + name + ".csr", "-subj", subject.empty() ? "/CN=" + name : subject});
    WriteFile(dir + "/" + name + ".ext", ext);
    run({"openssl", "x509", "-req", "-in", dir + "/" + name + ".csr", "-CA", dir + "/ca.crt",
         "-CAkey", dir + "/ca.key", "-CAcreateserial", "-out", dir + "/" + name + ".crt", "-days",
         "2", "-extfile", dir + "/" + name + ".ext"});
  };
  sign("server", "subjectAltName=DNS:api.test,IP:127.0.0.1\n");
  sign("client", "extendedKeyUsage=clientAuth\n");
  // etcd's JSON gateway refuses a client certificate with a CommonName once authentication is
  // on (it would otherwise stand for the CN's user): one without.
  sign("client-nocn", "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:bulwark-client\n",
       "/O=bulwark test");
}

std::string GunzipFile(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return "";
  std::string out;
  char buf[8192];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  gzclose(f);
  return out;
}

std::string Gunzip(const std::string& in) {
  z_stream z{};
  inflateInit2(&z, 15 + 16);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[16384];
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
  }
  inflateEnd(&z);
  return rc == Z_STREAM_END ? out : "<bad gzip>";
}

std::string FindProgram(const std::string& name) {
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  path += ":/usr/local/sbin:/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t colon = path.find(':', start);
    std::string dir =
        path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string candidate = dir + "/" + name;
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return "";
}

int ConnectLoopback(int port, int timeout_ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string Shell(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int st = pclose(p);
  if (status != nullptr) *status = WEXITSTATUS(st);
  return out;
}

bool WaitForPort(int port, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = ConnectLoopback(port, 200);
    if (fd >= 0) {
      close(fd);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

Process::Process(std::vector<std::string> argv, std::map<std::string, std::string> env,
                 const std::string& log_path) {
  pid_ = fork();
  if (pid_ == 0) {
    // A process group of its own, so that what it starts (nginx's workers, a postmaster's
    // backends) goes with it at the end of the test.
    setpgid(0, 0);
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  if (pid_ > 0) setpgid(pid_, pid_);  // also from here: no race with the destructor's kill
}

Process::~Process() {
  if (running()) {
    kill(pid_, SIGKILL);
    Wait(5000);
  }
  // Its children too, even when it ended first: nginx's workers outlive a killed master.
  if (pid_ > 0) kill(-pid_, SIGKILL);
}

void Process::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool Process::running() {
  if (pid_ <= 0 || status_ != -1) return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

int Process::Wait(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

namespace {
std::mutex g_admin_mu;
std::map<int, std::string> g_admin_token_files;  // admin port -> token file
}  // namespace

void RegisterAdminPort(int port, const std::string& token_file) {
  std::lock_guard<std::mutex> l(g_admin_mu);
  g_admin_token_files[port] = token_file;
}

void UnregisterAdminPort(int port) {
  std::lock_guard<std::mutex> l(g_admin_mu);
  g_admin_token_files.erase(port);
}

std::string AdminToken(int port) {
  std::string file;
  {
    std::lock_guard<std::mutex> l(g_admin_mu);
    auto it = g_admin_token_files.find(port);
    if (it == g_admin_token_files.end()) return "";
    file = it->second;
  }
  if (file.empty()) return "";
  std::string t = ReadFile(file);
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  return t;
}

Client::Client(int port, int timeout_ms) : port_(port) { fd_ = ConnectLoopback(port, timeout_ms); }
Client::~Client() {
  if (fd_ >= 0) close(fd_);
}

bool Client::Send(const std::string& in) {
  std::string raw = in;
  bool admin_port;
  {
    std::lock_guard<std::mutex> l(g_admin_mu);
    admin_port = g_admin_token_files.count(port_) > 0;
  }
  // The admin API answers only to IP literals, loopback names and its server_names (DNS
  // rebinding): the tests' usual "Host: test" is sent as localhost there.
  if (admin_port) {
    size_t h = raw.find("\r\nHost: test\r\n");
    if (h != std::string::npos && h < raw.find("\r\n\r\n")) raw.replace(h + 8, 4, "localhost");
  }
  if (auto_token_ && admin_port) {
    std::string lower = raw.substr(0, raw.find("\r\n\r\n"));
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t eol = raw.find("\r\n");
    if (lower.find("\nauthorization:") == std::string::npos && eol != std::string::npos) {
      std::string token = AdminToken(port_);
      if (!token.empty()) raw.insert(eol + 2, "Authorization: Bearer " + token + "\r\n");
    }
  }
  size_t off = 0;
  while (off < raw.size()) {
    ssize_t n = send(fd_, raw.data() + off, raw.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

Response Client::Read(bool head_request) {
  Response r;
  http::Limits limits;
  limits.max_header_bytes = 1 << 20;
  limits.max_request_line = 1 << 20;
  http::ResponseHead head;
  http::ParseError err;
  char tmp[65536];
  for (;;) {
    http::ParseStatus st =
        http::ParseResponse(buf_.data(), buf_.size(), limits,
                            head_request ? http::Method::kHead : http::Method::kGet, &head, &err);
    if (st == http::ParseStatus::kDone) break;
    if (st == http::ParseStatus::kError) {
      r.error = "unparsable response (" + std::string(err.reason) + "): " + buf_.substr(0, 200);
      return r;
    }
    ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) {
      r.error = n == 0 ? "connection closed before a response, buffered: " + buf_.substr(0, 200)
                       : "recv failed: " + std::string(strerror(errno));
      return r;
    }
    buf_.append(tmp, static_cast<size_t>(n));
  }
  r.status = head.status;
  for (const auto& h : head.headers) {
    std::string k(h.name);
    for (auto& c : k) c = static_cast<char>(tolower(c));
    r.headers[k] = std::string(h.value);
  }
  size_t pos = head.head_len;
  http::BodyKind kind = head.body;
  uint64_t len = head.content_length;
  buf_.erase(0, pos);
  auto fill = [&]() {
    ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  };
  if (kind == http::BodyKind::kLength) {
    while (buf_.size() < len) {
      if (!fill()) return Response{};
    }
    r.body = buf_.substr(0, len);
    buf_.erase(0, len);
  } else if (kind == http::BodyKind::kChunked) {
    http::ChunkedDecoder d;
    for (;;) {
      size_t consumed = 0;
      auto res = d.Feed(buf_.data(), buf_.size(), &consumed,
                        [&](const char* p, size_t n) { r.body.append(p, n); });
      buf_.erase(0, consumed);
      if (res == http::ChunkedDecoder::Result::kDone) break;
      if (res == http::ChunkedDecoder::Result::kError || !fill()) return Response{};
    }
  } else if (kind == http::BodyKind::kUntilClose) {
    while (fill()) {
    }
    r.body = buf_;
    buf_.clear();
    r.closed = true;
  }
  auto c = r.headers.find("connection");
  if (c != r.headers.end() && c->second == "close") r.closed = true;
  return r;
}

Response Client::Get(const std::string& path, const std::string& extra) {
  if (!Send("GET " + path + " HTTP/1.1\r\nHost: test\r\n" + extra + "\r\n")) return {};
  return Read();
}

bool Client::WaitClosed(int timeout_ms) {
  pollfd p{fd_, POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (poll(&p, 1, 50) > 0) {
      char c[4096];
      ssize_t n = recv(fd_, c, sizeof(c), 0);
      if (n <= 0) return true;
      buf_.append(c, static_cast<size_t>(n));
    }
  }
  return false;
}

Response HttpGet(int port, const std::string& path, const std::string& extra) {
  Client c(port);
  if (!c.connected()) return {};
  return c.Get(path, extra + "Connection: close\r\n");
}

Response HttpPost(int port, const std::string& path, const std::string& body) {
  Client c(port);
  if (!c.connected()) return {};
  c.Send("POST " + path + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body);
  return c.Read();
}

Backend::Backend(Handler h, int port, std::string ip)
    : handler_(std::move(h)), port_(port == 0 ? FreePort() : port), ip_(std::move(ip)) {
  Start();
}

Backend::~Backend() { Stop(); }

std::string Backend::Reply(int status, const std::string& body, const std::string& extra) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}

void Backend::Start() {
  stopping_ = false;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port_));
  inet_pton(AF_INET, ip_.c_str(), &a.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 512) != 0) {
    close(fd);
    return;
  }
  lfd_ = fd;
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

void Backend::Stop() {
  stopping_ = true;
  int fd = lfd_.exchange(-1);
  if (fd >= 0) {
    shutdown(fd, SHUT_RDWR);
    close(fd);
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (int c : conns_) shutdown(c, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  std::lock_guard<std::mutex> l(mu_);
  conns_.clear();
}

void Backend::AcceptLoop() {
  for (;;) {
    int lfd = lfd_.load();
    if (lfd < 0) return;
    int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    conns_.push_back(fd);
    threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void Backend::Serve(int fd) {
  std::string buf;
  char tmp[65536];
  http::Limits limits;
  for (;;) {
    http::RequestHead head;
    http::ParseError err;
    http::ParseStatus st;
    while ((st = http::ParseRequest(buf.data(), buf.size(), limits, &head, &err)) ==
           http::ParseStatus::kNeedMore) {
      ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
      if (n <= 0) goto done;
      buf.append(tmp, static_cast<size_t>(n));
    }
    if (st == http::ParseStatus::kError) break;
    {
      Request req;
      req.method.assign(head.method_str);
      req.target.assign(head.target);
      for (const auto& h : head.headers) {
        std::string k(h.name);
        for (auto& c : k) c = static_cast<char>(tolower(c));
        req.headers[k] = std::string(h.value);
      }
      bool close_after = !head.keep_alive;
      bool upgrade = head.connection_upgrade;
      size_t pos = head.head_len;
      buf.erase(0, pos);
      if (head.body == http::BodyKind::kLength) {
        while (buf.size() < head.content_length) {
          ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
          if (n <= 0) goto done;
          buf.append(tmp, static_cast<size_t>(n));
        }
        req.body = buf.substr(0, head.content_length);
        buf.erase(0, head.content_length);
      } else if (head.body == http::BodyKind::kChunked) {
        http::ChunkedDecoder d;
        for (;;) {
          size_t consumed = 0;
          auto r = d.Feed(buf.data(), buf.size(), &consumed,
                          [&](const char* p, size_t n) { req.body.append(p, n); });
          buf.erase(0, consumed);
          if (r == http::ChunkedDecoder::Result::kDone) break;
          if (r == http::ChunkedDecoder::Result::kError) goto done;
          ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
          if (n <= 0) goto done;
          buf.append(tmp, static_cast<size_t>(n));
        }
      }
      requests_.fetch_add(1);
      std::string resp = handler_(req);
      if (send(fd, resp.data(), resp.size(), MSG_NOSIGNAL) < 0) break;
      if (upgrade && resp.rfind("HTTP/1.1 101", 0) == 0) {
        // Echo whatever follows, byte for byte (a stand-in for a WebSocket server).
        if (!buf.empty()) send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
        for (;;) {
          ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
          if (n <= 0) goto done;
          send(fd, tmp, static_cast<size_t>(n), MSG_NOSIGNAL);
        }
      }
      if (close_after || resp.find("Connection: close") != std::string::npos) break;
    }
  }
done : {
  // Forget the fd before closing it: its number may be reused at once by another socket in
  // this process (a test client), which Stop() must not shut down.
  std::lock_guard<std::mutex> l(mu_);
  std::erase(conns_, fd);
  close(fd);
}
}

static std::string BulwarkBinary() { return BULWARK_BINARY; }

Bulwark::Bulwark(const std::string& config, std::map<std::string, std::string> env,
                 std::vector<std::string> prefix) {
  dir_ = MakeTempDir();
  config_path_ = dir_ + "/bulwark.yml";
  log_path_ = dir_ + "/bulwark.log";
  WriteFile(config_path_, config);
  if (!env.count("STATE_DIRECTORY")) env["STATE_DIRECTORY"] = state_dir();
  // The admin port, unless the config turns admin off or sets a token of its own (a test of
  // the token then sends it itself).
  try {
    YAML::Node root = YAML::Load(config);
    YAML::Node admin = root["admin"];
    bool enabled = !admin || !admin["enabled"] || admin["enabled"].as<bool>();
    std::string listen = admin && admin["listen"] ? admin["listen"].as<std::string>() : "";
    if (enabled && !listen.empty()) {
      admin_port_ = std::stoi(listen.substr(listen.rfind(':') + 1));
      RegisterAdminPort(admin_port_, admin["token"] ? "" : env["STATE_DIRECTORY"] + "/admin.token");
    }
  } catch (const std::exception&) {
    // Not YAML this harness can read (a test of config errors): no admin port to register.
  }
  std::vector<std::string> argv = std::move(prefix);
  argv.push_back(BulwarkBinary());
  argv.push_back("serve");
  argv.push_back("-c");
  argv.push_back(config_path_);
  process_ = std::make_unique<Process>(argv, env, log_path_);
}

Bulwark::~Bulwark() {
  if (admin_port_ != 0) UnregisterAdminPort(admin_port_);
  // Stop gracefully so exit-time checks run (LeakSanitizer), then fail the test if the process
  // reported anything: a sanitizer report in the child is a bug even when no request noticed it.
  if (process_->running()) {
    process_->Signal(SIGTERM);
    if (process_->Wait(10000) == -1) process_->Signal(SIGKILL);
  }
  process_.reset();
  std::string log = ReadFile(log_path_);
  for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                             "WARNING: ThreadSanitizer", "runtime error:"}) {
    if (log.find(marker) != std::string::npos) {
      ADD_FAILURE() << "bulwark reported \"" << marker << "\":\n"
                    << log.substr(log.find(marker), 6000);
      break;
    }
  }
  std::string cmd = "rm -rf " + dir_;
  [[maybe_unused]] int rc = system(cmd.c_str());
}

bool Bulwark::Ready(int port, int admin_port, int timeout_ms) {
  return WaitForPort(port, timeout_ms) && (admin_port == 0 || WaitForPort(admin_port, timeout_ms));
}

std::string Bulwark::log() const { return ReadFile(log_path_); }

namespace {
const char kPgBin[] = "/usr/lib/postgresql/15/bin/";
// Runs argv as the postgres user (PostgreSQL refuses to run as root) and waits for it.
int RunAsPostgres(std::vector<std::string> argv, const std::string& log) {
  if (getuid() == 0) {
    argv.insert(argv.begin(),
                {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"});
  }
  Process p(argv, {}, log);
  return p.Wait(60000);
}
}  // namespace

bool PostgresServer::Prepare() {
  dir_ = MakeTempDir();
  if (getuid() == 0) {
    std::string cmd = "chown postgres:postgres " + dir_;
    if (system(cmd.c_str()) != 0) return false;
  }
  return true;
}

void PostgresServer::Start(const std::vector<std::string>& conf) {
  const std::string conf_path = dir_ + "/data/postgresql.conf";
  const std::string base = ReadFile(conf_path);
  // Tests run in parallel: the free port may be taken by another test's server before this one
  // binds it, and then the port answers for the wrong server. Ours is up when its own
  // postmaster.pid says "ready" (line 8); if it died instead, try another port.
  for (int attempt = 0; attempt < 3 && !ok_; ++attempt) {
    if (attempt > 0) port_ = FreePort();
    std::string extra = "\nlisten_addresses = '127.0.0.1'\nport = " + std::to_string(port_) +
                        "\nunix_socket_directories = '" + dir_ + "'\nfsync = off\n";
    for (const std::string& line : conf) extra += line + "\n";
    WriteFile(conf_path, base + extra);
    std::vector<std::string> argv = {std::string(kPgBin) + "postgres", "-D", dir_ + "/data"};
    if (getuid() == 0) {
      argv.insert(argv.begin(),
                  {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"});
    }
    proc_ = std::make_unique<Process>(argv, std::map<std::string, std::string>{},
                                      dir_ + "/postgres.log");
    for (int i = 0; i < 400 && proc_->running(); ++i) {
      std::string pid = ReadFile(dir_ + "/data/postmaster.pid");
      std::vector<std::string> lines;
      std::stringstream ss(pid);
      for (std::string l; std::getline(ss, l);) lines.push_back(l);
      if (lines.size() >= 8 && lines[3] == std::to_string(port_) &&
          lines[7].find("ready") != std::string::npos) {
        ok_ = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!ok_ && proc_->running()) {
      proc_->Signal(SIGKILL);
      proc_->Wait(5000);
    }
  }
}

PostgresServer::PostgresServer(std::vector<std::string> conf) : port_(FreePort()) {
  if (!Prepare()) return;
  if (RunAsPostgres({std::string(kPgBin) + "initdb", "-D", dir_ + "/data", "-U", "postgres",
                     "--auth-local=trust", "--auth-host=md5", "--no-sync"},
                    dir_ + "/initdb.log") != 0) {
    return;
  }
  Start(conf);
}

PostgresServer::PostgresServer(ReplicaOf r) : port_(FreePort()) {
  if (!Prepare()) return;
  // Over the primary's Unix socket, where replication is trusted; -R writes standby.signal and
  // primary_conninfo, so the copy starts as a streaming replica.
  if (RunAsPostgres({std::string(kPgBin) + "pg_basebackup", "-h", r.primary->dir(), "-p",
                     std::to_string(r.primary->port()), "-U", "postgres", "-D", dir_ + "/data",
                     "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"},
                    dir_ + "/basebackup.log") != 0) {
    return;
  }
  Start(r.conf);
}

PostgresServer::PostgresServer(FromDataDir from) : port_(FreePort()) {
  if (!Prepare()) return;
  std::string cmd = "mv " + from.data + " " + dir_ + "/data && chmod 700 " + dir_ + "/data";
  if (getuid() == 0) cmd += " && chown -R postgres:postgres " + dir_ + "/data";
  if (system(cmd.c_str()) != 0) return;
  // Whatever the copied configuration said about the socket directory and the port, Start()
  // appends this server's own.
  Start({});
}

MysqlServer::MysqlServer() : port_(FreePort()), dir_(MakeTempDir()) {
  bool root = getuid() == 0;
  if (root && system(("chown mysql:mysql " + dir_).c_str()) != 0) return;
  std::vector<std::string> install = {"mariadb-install-db", "--no-defaults",
                                      "--datadir=" + dir_ + "/data", "--skip-test-db",
                                      "--auth-root-authentication-method=normal"};
  if (root) install.push_back("--user=mysql");
  std::string out;
  if (RunProgram(install, {}, &out) != 0) {
    WriteFile(dir_ + "/error.log", out);
    return;
  }
  std::vector<std::string> argv = {"mariadbd",
                                   "--no-defaults",
                                   "--datadir=" + dir_ + "/data",
                                   "--socket=" + socket(),
                                   "--port=" + std::to_string(port_),
                                   "--bind-address=127.0.0.1",
                                   "--pid-file=" + dir_ + "/mysqld.pid",
                                   "--log-error=" + dir_ + "/error.log",
                                   "--innodb-flush-log-at-trx-commit=0",
                                   "--skip-log-bin"};
  if (root) argv.push_back("--user=mysql");
  proc_ =
      std::make_unique<Process>(argv, std::map<std::string, std::string>{}, dir_ + "/mariadbd.out");
  for (int i = 0; i < 600 && proc_->running(); ++i) {
    std::string ping;
    if (RunProgram({"mysqladmin", "--socket=" + socket(), "-uroot", "ping"}, {}, &ping) == 0) {
      ok_ = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

MysqlServer::~MysqlServer() {
  if (proc_ && proc_->running()) {
    proc_->Signal(SIGTERM);
    proc_->Wait(30000);
  }
}

std::string MysqlServer::Sql(const std::string& sql, const std::string& db) {
  std::vector<std::string> argv = {"mysql", "--socket=" + socket(), "-uroot", "-N", "-B", "-e",
                                   sql};
  if (!db.empty()) argv.push_back(db);
  std::string out;
  RunProgram(argv, {}, &out);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

void PostgresServer::Stop(int sig) {
  if (proc_ && proc_->running()) {
    proc_->Signal(sig);
    proc_->Wait(20000);
  }
}

bool PostgresServer::Restart() {
  int port = port_;
  ok_ = false;
  Start({});
  return ok_ && port_ == port;
}

PostgresServer::~PostgresServer() {
  if (proc_ && proc_->running()) {
    proc_->Signal(SIGINT);  // fast shutdown
    proc_->Wait(20000);
  }
}

std::string PostgresServer::Psql(const std::string& sql, const std::string& db) {
  std::string out = dir_ + "/psql.out";
  RunAsPostgres({"psql", "-X", "-At", "-h", dir_, "-p", std::to_string(port_), "-U", "postgres",
                 "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql},
                out);
  std::string r = ReadFile(out);
  while (!r.empty() && r.back() == '\n') r.pop_back();
  return r;
}

EtcdServer::EtcdServer(std::string pki)
    : port_(FreePort()), peer_port_(FreePort()), dir_(MakeTempDir()), pki_(std::move(pki)) {
  std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
  std::vector<std::string> argv = {"etcd",
                                   "--name",
                                   "t",
                                   "--data-dir",
                                   dir_ + "/data",
                                   "--listen-client-urls",
                                   endpoint(),
                                   "--advertise-client-urls",
                                   endpoint(),
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--initial-cluster",
                                   "t=" + peer,
                                   "--log-level",
                                   "warn"};
  if (!pki_.empty()) {
    for (const std::string& a : std::vector<std::string>{
             "--cert-file", pki_ + "/server.crt", "--key-file", pki_ + "/server.key",
             "--trusted-ca-file", pki_ + "/ca.crt", "--client-cert-auth"})
      argv.push_back(a);
  }
  proc_ = std::make_unique<Process>(argv, std::map<std::string, std::string>{}, dir_ + "/etcd.log");
  ok_ = WaitForPort(port_, 20000);
}

std::string EtcdServer::Post(const std::string& path, const std::string& body,
                             const std::string& token) {
  std::vector<std::string> argv = {"curl", "-sS", "-X", "POST", endpoint() + path, "-d", body};
  if (!pki_.empty()) {
    for (const std::string& a :
         std::vector<std::string>{"--cacert", pki_ + "/ca.crt", "--cert", pki_ + "/client-nocn.crt",
                                  "--key", pki_ + "/client-nocn.key"})
      argv.push_back(a);
  }
  if (!token.empty()) {
    argv.push_back("-H");
    argv.push_back("Authorization: " + token);
  }
  std::string out;
  RunProgram(argv, {}, &out);
  return out;
}

bool EtcdServer::EnableAuth(const std::string& password) {
  std::string a = Post("/v3/auth/user/add", R"({"name": "root", "password": ")" + password + "\"}");
  std::string b = Post("/v3/auth/role/add", R"({"name": "root"})");
  std::string c = Post("/v3/auth/user/grant", R"({"user": "root", "role": "root"})");
  std::string d = Post("/v3/auth/enable", "{}");
  bool ok = d.find("error") == std::string::npos && d.find("header") != std::string::npos;
  if (!ok) ADD_FAILURE() << a << "\n" << b << "\n" << c << "\n" << d;
  return ok;
}

void EtcdServer::Stop() {
  if (proc_ && proc_->running()) {
    proc_->Signal(SIGKILL);
    proc_->Wait(10000);
  }
}

EtcdServer::~EtcdServer() {
  Stop();
  std::string cmd = "rm -rf " + dir_;
  [[maybe_unused]] int rc = system(cmd.c_str());
}

std::string ObserveConfig(int port, int admin, int app_port, const std::string& observe) {
  return "admin: {listen: 127.0.0.1:" + std::to_string(admin) +
         "}\naccess_log: {enabled: false}\nobserve:\n" + observe +
         "listeners: [{listen: '127.0.0.1:" + std::to_string(port) +
         "', routes: [{prefix: /, upstream: app}]}]\n" +
         "upstreams:\n  app:\n    servers: ['127.0.0.1:" + std::to_string(app_port) + "']\n";
}

int RunBulwark(const std::vector<std::string>& args, std::string* output) {
  std::string dir = MakeTempDir();
  std::vector<std::string> argv{BulwarkBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, {}, dir + "/out");
  // A bound against a hang, not a timing check: a drill (seed, dump, drop, restore, verify)
  // under ASan on a loaded machine took longer than 10 s.
  int rc = p.Wait(120000);
  *output = ReadFile(dir + "/out");
  std::string cmd = "rm -rf " + dir;
  [[maybe_unused]] int r = system(cmd.c_str());
  return rc;
}

int RunProgram(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
               std::string* output, int timeout_ms) {
  std::string dir = MakeTempDir();
  Process p(argv, env, dir + "/out");
  int rc = p.Wait(timeout_ms);
  if (rc == -1) {
    p.Signal(SIGKILL);
    p.Wait(5000);
  }
  *output = ReadFile(dir + "/out");
  std::string cmd = "rm -rf " + dir;
  [[maybe_unused]] int r = system(cmd.c_str());
  return rc;
}

std::string Metric(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return "";
  size_t start = at + series.size() + 2;
  return text.substr(start, text.find('\n', start) - start);
}

RedisServer::RedisServer(std::vector<std::string> extra, std::string sentinel_conf)
    : port_(FreePort()),
      dir_(MakeTempDir()),
      extra_(std::move(extra)),
      sentinel_conf_(std::move(sentinel_conf)) {
  Start();
}

RedisServer::~RedisServer() {
  Kill();
  std::string cmd = "rm -rf " + dir_;
  [[maybe_unused]] int r = system(cmd.c_str());
}

void RedisServer::Start() {
  std::string bin = FindProgram("redis-server");
  if (bin.empty()) {
    ADD_FAILURE() << "redis-server is not installed: run scripts/deps";
    return;
  }
  std::vector<std::string> argv{bin};
  if (!sentinel_conf_.empty()) {
    // Sentinel rewrites its config file, so it gets its own copy.
    WriteFile(dir_ + "/sentinel.conf", sentinel_conf_);
    argv.push_back(dir_ + "/sentinel.conf");
    argv.push_back("--sentinel");
  }
  for (const std::string& a : std::vector<std::string>{"--port", std::to_string(port_), "--bind",
                                                       "127.0.0.1", "--dir", dir_}) {
    argv.push_back(a);
  }
  if (sentinel_conf_.empty()) {
    for (const char* a : {"--save", "", "--appendonly", "no"}) argv.push_back(a);
  }
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  proc_ =
      std::make_unique<Process>(argv, std::map<std::string, std::string>{}, dir_ + "/redis.log");
  if (!WaitForPort(port_, 5000)) ADD_FAILURE() << ReadFile(dir_ + "/redis.log");
}

void RedisServer::Kill() {
  if (proc_ == nullptr) return;
  proc_->Signal(SIGKILL);
  proc_->Wait(5000);
  proc_.reset();
}

RedisClusterServers::RedisClusterServers(int masters) {
  std::vector<std::string> create = {"--cluster", "create"};
  for (int i = 0; i < masters; ++i) {
    // The cluster bus port defaults to port + 10000, which may not be free (or valid).
    nodes_.push_back(std::make_unique<RedisServer>(
        std::vector<std::string>{"--cluster-enabled", "yes", "--cluster-port",
                                 std::to_string(FreePort()), "--cluster-node-timeout", "2000"}));
    create.push_back("127.0.0.1:" + std::to_string(nodes_.back()->port()));
  }
  for (const char* a : {"--cluster-replicas", "0", "--cluster-yes"}) create.push_back(a);
  log_ = RedisCli(nodes_[0]->port(), create);
  for (int waited = 0; waited < 15000; waited += 100) {
    bool all = true;
    for (const auto& n : nodes_) {
      all = all &&
            RedisCli(n->port(), {"CLUSTER", "INFO"}).find("cluster_state:ok") != std::string::npos;
    }
    if (all) {
      ok_ = true;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string RedisCli(int port, const std::vector<std::string>& args) {
  std::string dir = MakeTempDir();
  std::vector<std::string> argv{FindProgram("redis-cli"), "-p", std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p(argv, {}, dir + "/out");
  p.Wait(10000);
  std::string out = ReadFile(dir + "/out");
  std::string cmd = "rm -rf " + dir;
  [[maybe_unused]] int r = system(cmd.c_str());
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

DnsServer::DnsServer() : dir_(MakeTempDir()), port_(FreePort()) {
  chmod(dir_.c_str(), 0755);  // dnsmasq reads its hosts file as an unprivileged user
}

void DnsServer::Start(const std::string& hosts) {
  SetHosts(hosts);
  proc_ = std::make_unique<Process>(
      std::vector<std::string>{"/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                               "--listen-address=127.0.0.1", "--bind-interfaces",
                               "--port=" + std::to_string(port_), "--no-resolv", "--no-hosts",
                               "--local=/test/", "--addn-hosts=" + dir_ + "/hosts", "--local-ttl=1",
                               "--pid-file=" + dir_ + "/pid", "--log-facility=-"},
      std::map<std::string, std::string>{}, dir_ + "/dnsmasq.log");
  ResolverOptions o = options();
  o.timeout_ms = 200;
  Resolver probe(o);
  ASSERT_TRUE(WaitFor([&] { return probe.Lookup("ready.test").ok(); }, 10000))
      << ReadFile(dir_ + "/dnsmasq.log");
}

void DnsServer::SetHosts(const std::string& hosts) {
  WriteFile(dir_ + "/hosts", "127.0.0.1 ready.test\n" + hosts);
  chmod((dir_ + "/hosts").c_str(), 0644);
  if (proc_) proc_->Signal(SIGHUP);
}

void DnsServer::Kill() { proc_.reset(); }

ResolverOptions DnsServer::options() const {
  ResolverOptions o;
  o.servers = {"127.0.0.1:" + std::to_string(port_)};
  o.timeout_ms = 500;
  o.attempts = 1;
  o.min_ttl_ms = 200;
  o.max_ttl_ms = 2000;
  o.retry_ms = 200;
  return o;
}

std::string DnsServer::ConfigBlock() const {
  return "resolver: {servers: ['127.0.0.1:" + std::to_string(port_) +
         "'], timeout: 500ms, attempts: 1, min_ttl: 200ms, max_ttl: 2s, retry: 200ms}\n";
}

}  // namespace bulwark::testing
