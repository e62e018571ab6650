// A tiny Hugging Face Hub stand-in for tests: HTTP/1.1 on 127.0.0.1:<ephemeral port>, one
// connection at a time in a std::thread, "Connection: close" on every reply. It speaks the
// subset of the hub's protocol that huggingface_hub and lowbit use:
//   GET  /api/models/{org}/{name}/revision/{rev}  -> {"sha": commit, "siblings": [...]}
//   HEAD /{org}/{name}/resolve/{rev}/{file}       -> LFS: 302 to /cdn/{etag} + X-Linked-Etag,
//                                                    X-Linked-Size; else 200 + ETag
//   GET  same / GET /cdn/{etag}                   -> body, honouring "Range: bytes=N-"
// and the hub's errors (401 RepoNotFound, 401/403 GatedRepo, 404 Revision/EntryNotFound, with
// X-Error-Code). Knobs: cut the next k file bodies half-way (connection dropped), ignore Range.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace lowbit::testing {

struct FakeFile {
  std::string content;
  bool lfs = false;  // LFS files are redirected to /cdn and carry X-Linked-Etag (a sha256)
  std::string etag;  // filled by FakeHub::add_file when empty
};

struct FakeRepo {
  std::string commit;
  std::map<std::string, FakeFile> files;
  std::vector<std::string> extra_siblings;  // listed by the API but not served
  std::string gated_token;                  // non-empty: files need "Bearer <gated_token>"
  std::string sha_override;                 // non-empty: reported as "sha" (to test checks)
  std::string etag_override;                // non-empty: sent as every file's etag
};

inline std::string fake_hex(const std::string& s, size_t n_chars, uint64_t salt) {
  // Deterministic hex digest stand-in (FNV-1a chains); the client never verifies it.
  std::string out;
  uint64_t h = 1469598103934665603ull ^ salt;
  while (out.size() < n_chars) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ out.size()) * 1099511628211ull;
    char buf[17];
    snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    out += buf;
  }
  return out.substr(0, n_chars);
}

class FakeHub {
 public:
  FakeHub() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 16);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeHub() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  FakeRepo& repo(const std::string& id) {
    std::lock_guard<std::mutex> g(mu_);
    return repos_[id];
  }
  void add_file(const std::string& repo_id, const std::string& name, const std::string& content,
                bool lfs) {
    std::lock_guard<std::mutex> g(mu_);
    FakeFile f{content, lfs, fake_hex(name + content, lfs ? 64 : 40, lfs ? 7 : 3)};
    repos_[repo_id].files[name] = f;
  }

  std::atomic<int> cut_next_bodies{0};  // drop the connection half-way through the next k bodies
  std::atomic<bool> ignore_range{false};

  // One line per request: "METHOD /path range=<Range> auth=<Authorization>".
  std::vector<std::string> log() {
    std::lock_guard<std::mutex> g(mu_);
    return log_;
  }
  void clear_log() {
    std::lock_guard<std::mutex> g(mu_);
    log_.clear();
  }

 private:
  struct Req {
    std::string method, path;
    std::map<std::string, std::string> headers;  // lower-case names
  };

  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      timeval tv{5, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      handle(c);
      ::close(c);
    }
  }

  static std::string url_decode(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
      if (s[i] == '%' && i + 2 < s.size()) {
        out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
        i += 2;
      } else {
        out += s[i];
      }
    }
    return out;
  }

  static void send_all(int c, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  static void reply(int c, const Req& r, int status, const std::string& reason,
                    std::vector<std::pair<std::string, std::string>> headers,
                    const std::string& body, size_t send_body_bytes = std::string::npos) {
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
    bool has_len = false;
    for (auto& [k, v] : headers) {
      out += k + ": " + v + "\r\n";
      if (k == "Content-Length") has_len = true;
    }
    if (!has_len) out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    out += "Connection: close\r\n\r\n";
    if (r.method != "HEAD") out += body.substr(0, send_body_bytes);
    send_all(c, out);
  }

  static void error(int c, const Req& r, int status, const std::string& code,
                    const std::string& msg) {
    nlohmann::json j = {{"error", msg}};
    reply(c, r, status, "Error",
          {{"X-Error-Code", code}, {"X-Error-Message", msg}, {"Content-Type", "application/json"}},
          j.dump());
  }

  void serve_body(int c, const Req& r, const FakeFile& f, const std::string& commit) {
    std::vector<std::pair<std::string, std::string>> h = {
        {"ETag", f.lfs ? "\"" + f.etag + "\"" : "W/\"" + f.etag + "\""}, {"X-Repo-Commit", commit}};
    size_t start = 0;
    auto range = r.headers.find("range");
    if (range != r.headers.end() && !ignore_range && range->second.rfind("bytes=", 0) == 0) {
      start = std::stoull(range->second.substr(6));
      if (start >= f.content.size()) {
        reply(c, r, 416, "Range Not Satisfiable", {}, "");
        return;
      }
      h.push_back({"Content-Range", "bytes " + std::to_string(start) + "-" +
                                        std::to_string(f.content.size() - 1) + "/" +
                                        std::to_string(f.content.size())});
    }
    std::string body = f.content.substr(start);
    size_t send = std::string::npos;
    if (r.method == "GET" && cut_next_bodies > 0) {
      cut_next_bodies--;
      send = body.size() / 2;  // headers promise everything; the connection then drops
    }
    reply(c, r, start ? 206 : 200, start ? "Partial Content" : "OK", h, body, send);
  }

  void handle(int c) {
    std::string in;
    char buf[4096];
    while (in.find("\r\n\r\n") == std::string::npos && in.size() < 65536) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
    }
    Req r;
    size_t line_end = in.find("\r\n");
    std::string line = in.substr(0, line_end);
    size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
    r.method = line.substr(0, sp1);
    r.path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    for (size_t pos = line_end + 2; pos < in.size();) {
      size_t e = in.find("\r\n", pos);
      if (e == pos || e == std::string::npos) break;
      std::string h = in.substr(pos, e - pos);
      size_t colon = h.find(':');
      if (colon != std::string::npos) {
        std::string k = h.substr(0, colon);
        for (char& ch : k) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        size_t v = h.find_first_not_of(' ', colon + 1);
        r.headers[k] = v == std::string::npos ? "" : h.substr(v);
      }
      pos = e + 2;
    }
    std::lock_guard<std::mutex> g(mu_);
    log_.push_back(r.method + " " + r.path + " range=" + r.headers["range"] +
                   " auth=" + r.headers["authorization"]);
    std::string path = r.path.substr(0, r.path.find('?'));
    if (path.rfind("/api/models/", 0) == 0) return api(c, r, path.substr(12));
    if (path.rfind("/cdn/", 0) == 0) {
      std::string etag = path.substr(5);
      for (auto& [id, repo] : repos_) {
        for (auto& [name, f] : repo.files) {
          if (f.etag == etag) return serve_body(c, r, f, repo.commit);
        }
      }
      return error(c, r, 404, "EntryNotFound", "no such blob");
    }
    // /{org}/{name}/resolve/{rev}/{file}
    size_t p1 = path.find('/', 1), p2 = path.find('/', p1 + 1);
    if (p1 == std::string::npos || p2 == std::string::npos) return error(c, r, 404, "", "bad path");
    std::string id = path.substr(1, p2 - 1);
    std::string rest = path.substr(p2);
    if (rest.rfind("/resolve/", 0) != 0) return error(c, r, 404, "", "bad path");
    rest = rest.substr(9);
    size_t p3 = rest.find('/');
    std::string rev = url_decode(rest.substr(0, p3));
    std::string file = url_decode(rest.substr(p3 + 1));
    auto it = repos_.find(id);
    if (it == repos_.end()) return error(c, r, 401, "RepoNotFound", "Repository not found");
    FakeRepo& repo = it->second;
    if (!repo.gated_token.empty()) {
      std::string auth = r.headers["authorization"];
      if (auth.empty()) {
        return error(c, r, 401, "GatedRepo", "Access to model " + id + " is restricted.");
      }
      if (auth != "Bearer " + repo.gated_token) {
        return error(c, r, 403, "GatedRepo", "Your request to access " + id + " is pending.");
      }
    }
    if (rev != "main" && rev != repo.commit) {
      return error(c, r, 404, "RevisionNotFound", "Invalid rev id: " + rev);
    }
    auto f = repo.files.find(file);
    if (f == repo.files.end()) return error(c, r, 404, "EntryNotFound", "Entry not found");
    std::string etag = repo.etag_override.empty() ? f->second.etag : repo.etag_override;
    if (f->second.lfs) {
      reply(c, r, 302, "Found",
            {{"Location", endpoint() + "/cdn/" + f->second.etag + "?sig=abc"},
             {"X-Linked-Etag", "\"" + etag + "\""},
             {"X-Linked-Size", std::to_string(f->second.content.size())},
             {"X-Repo-Commit", repo.commit},
             {"ETag", "\"" + fake_hex(file, 40, 9) + "\""}},
            "");
      return;
    }
    if (!repo.etag_override.empty()) {
      FakeFile copy = f->second;
      copy.etag = etag;
      return serve_body(c, r, copy, repo.commit);
    }
    serve_body(c, r, f->second, repo.commit);
  }

  void api(int c, const Req& r, const std::string& rest) {
    // /api/models/{org}/{name}/revision/{rev} (model info) or .../tree/{rev} (file listing,
    // what Python's snapshot_download asks for).
    size_t p = rest.find("/revision/");
    bool tree = false;
    if (p == std::string::npos && (p = rest.find("/tree/")) != std::string::npos) tree = true;
    std::string id = rest.substr(0, p);
    std::string rev =
        p == std::string::npos ? "main" : url_decode(rest.substr(p + (tree ? 6 : 10)));
    auto it = repos_.find(id);
    if (it == repos_.end()) return error(c, r, 401, "RepoNotFound", "Repository not found");
    const FakeRepo& repo = it->second;
    if (rev != "main" && rev != repo.commit) {
      return error(c, r, 404, "RevisionNotFound", "Invalid rev id: " + rev);
    }
    if (tree) {
      nlohmann::json list = nlohmann::json::array();
      for (auto& [name, f] : repo.files) {
        nlohmann::json e = {{"type", "file"},
                            {"path", name},
                            {"size", f.content.size()},
                            {"oid", fake_hex(name, 40, 5)}};
        if (f.lfs) e["lfs"] = {{"oid", f.etag}, {"size", f.content.size()}, {"pointerSize", 134}};
        list.push_back(e);
      }
      return reply(c, r, 200, "OK", {{"Content-Type", "application/json"}}, list.dump());
    }
    nlohmann::json sib = nlohmann::json::array();
    for (auto& [name, f] : repo.files) sib.push_back({{"rfilename", name}});
    for (auto& name : repo.extra_siblings) sib.push_back({{"rfilename", name}});
    nlohmann::json j = {{"id", id},
                        {"modelId", id},
                        {"sha", repo.sha_override.empty() ? repo.commit : repo.sha_override},
                        {"private", false},
                        {"gated", repo.gated_token.empty() ? nlohmann::json(false) : "auto"},
                        {"siblings", sib}};
    reply(c, r, 200, "OK", {{"Content-Type", "application/json"}}, j.dump());
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, FakeRepo> repos_;
  std::vector<std::string> log_;
};

}  // namespace lowbit::testing
