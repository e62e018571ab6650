// Hugging Face Hub resolution and download (layout described in hub.h).
//
// Online flow, as huggingface_hub does it: GET /api/models/{repo}/revision/{rev} gives the
// commit and file list; per file a HEAD on /{repo}/resolve/{commit}/{file} (no redirects to
// other hosts) gives the etag (X-Linked-Etag, else ETag) and size (X-Linked-Size, else
// Content-Length); the blob is fetched with GET (redirects followed, Range to resume) into
// blobs/<etag>.incomplete under a flock, renamed into place, then linked from the snapshot.
#include "io/hub.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "core/error.h"

#ifdef LOWBIT_HAVE_CURL
#include <curl/curl.h>

#include <mutex>
#endif

namespace fs = std::filesystem;

namespace lowbit::io {
namespace {

constexpr size_t kMaxApiBytes = 64u << 20;    // model info JSON (large repos list ~1 MB)
constexpr size_t kMaxIndexBytes = 64u << 20;  // model.safetensors.index.json
constexpr size_t kMaxSiblings = 1u << 20;
constexpr size_t kMaxErrorBody = 4096;

// Files a safetensors model needs besides its weights.
const char* const kModelFiles[] = {"config.json",         "generation_config.json",
                                   "tokenizer.json",      "tokenizer_config.json",
                                   "tokenizer.model",     "special_tokens_map.json",
                                   "chat_template.jinja", "preprocessor_config.json"};
constexpr const char* kIndexName = "model.safetensors.index.json";

std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string trim(std::string s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) b++;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) e--;
  return s.substr(b, e - b);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string hf_home() {
  std::string home = env_str("HF_HOME");
  if (!home.empty()) return home;
  std::string xdg = env_str("XDG_CACHE_HOME");
  if (!xdg.empty()) return xdg + "/huggingface";
  std::string user_home = env_str("HOME");
  return (user_home.empty() ? std::string(".") : user_home) + "/.cache/huggingface";
}

bool is_commit_hash(const std::string& s) {
  return s.size() == 40 &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit((unsigned char)c); });
}

// huggingface_hub's repo id rule: [\w.-]+ parts, no "--" or "..", no leading/trailing - or .
bool is_valid_repo_part(const std::string& s) {
  if (s.empty() || s.size() > 96) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
      return false;
  }
  if (s.front() == '-' || s.front() == '.' || s.back() == '-' || s.back() == '.') return false;
  return s.find("--") == std::string::npos && s.find("..") == std::string::npos;
}

std::optional<HubId> try_parse_hub_id(const std::string& s, std::string* why) {
  auto bad = [&](const std::string& msg) -> std::optional<HubId> {
    if (why) *why = msg;
    return std::nullopt;
  };
  HubId id;
  std::string path = s;
  size_t at = s.find('@');
  if (at != std::string::npos) {
    path = s.substr(0, at);
    id.revision = s.substr(at + 1);
    if (id.revision.empty()) return bad("empty revision after '@'");
    if (!is_safe_repo_filename(id.revision)) return bad("unsafe revision '" + id.revision + "'");
  }
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string p; std::getline(ss, p, '/');) parts.push_back(p);
  if (!path.empty() && path.back() == '/') parts.push_back("");
  if (parts.size() < 2) return bad("expected org/name");
  if (!is_valid_repo_part(parts[0]) || !is_valid_repo_part(parts[1])) {
    return bad("'" + parts[0] + "/" + parts[1] +
               "' is not a valid repo id (letters, digits, '_', '-', '.'; no '--' or '..')");
  }
  id.repo = parts[0] + "/" + parts[1];
  if (parts.size() > 2) {
    id.file = path.substr(id.repo.size() + 1);
    if (!ends_with(id.file, ".gguf")) return bad("a file inside a repo must be a .gguf file");
    if (!is_safe_repo_filename(id.file)) return bad("unsafe file name '" + id.file + "'");
  }
  return id;
}

// Percent-encodes everything but RFC 3986 unreserved characters (and '/' when keep_slash).
[[maybe_unused]] std::string url_quote(const std::string& s, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string read_small_file(const fs::path& p, size_t cap) {
  std::error_code ec;
  auto size = fs::file_size(p, ec);
  if (ec) fail("{}: cannot read ({})", p.string(), ec.message());
  if (size > cap) fail("{}: {} bytes, expected at most {}", p.string(), size, cap);
  std::ifstream f(p, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return s;
}

// Writes `text` to `path` atomically (temp file in the same folder + rename).
[[maybe_unused]] void write_atomic(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  fs::path tmp = path;
  tmp += ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f) fail("{}: cannot write", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail("{}: cannot rename into place ({})", path.string(), ec.message());
}

// Shard names listed by an index's "weight_map" (plain file names only, rule 5).
std::vector<std::string> index_shards(const fs::path& index_path) {
  std::string text = read_small_file(index_path, kMaxIndexBytes);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    fail("{}: expected a JSON object with a \"weight_map\" object", index_path.string());
  }
  std::set<std::string> shards;
  for (auto& [tensor, file] : j["weight_map"].items()) {
    if (!file.is_string())
      fail("{}: weight_map[\"{}\"] is not a string", index_path.string(), tensor);
    std::string name = file.get<std::string>();
    if (!is_safe_repo_filename(name) || name.find('/') != std::string::npos ||
        !ends_with(name, ".safetensors")) {
      fail("{}: weight_map[\"{}\"] = '{}', expected a plain *.safetensors file name",
           index_path.string(), tensor, name);
    }
    shards.insert(name);
  }
  if (shards.empty()) fail("{}: weight_map is empty", index_path.string());
  return {shards.begin(), shards.end()};
}

// Parts of a split GGUF ("x-00001-of-00003.gguf" -> the three names), or {name}.
std::vector<std::string> gguf_parts(const std::string& name) {
  static const std::regex split_re(R"((.*)-00001-of-(\d{5})\.gguf)");
  std::smatch m;
  if (!std::regex_match(name, m, split_re)) return {name};
  int n = std::stoi(m[2].str());
  if (n < 1) return {name};
  std::vector<std::string> out;
  for (int i = 1; i <= n; i++)
    out.push_back(fmt::format("{}-{:05d}-of-{}.gguf", m[1].str(), i, m[2].str()));
  return out;
}

bool exists_following_links(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// A snapshot already on disk (downloaded by us or by huggingface_hub). Returns the model path
// or nullopt with `why` saying what is missing.
std::optional<std::string> find_cached(const HubId& id, const fs::path& repo_dir,
                                       std::string* why) {
  std::string commit = id.revision;
  if (!is_commit_hash(commit)) {
    fs::path ref = repo_dir / "refs" / id.revision;
    if (!fs::is_regular_file(ref)) {
      *why = "no " + ref.string();
      return std::nullopt;
    }
    commit = trim(read_small_file(ref, 1024));
    if (!is_commit_hash(commit)) {
      *why = ref.string() + " does not hold a commit hash";
      return std::nullopt;
    }
  }
  fs::path snap = repo_dir / "snapshots" / commit;
  if (!fs::is_directory(snap)) {
    *why = "no " + snap.string();
    return std::nullopt;
  }
  std::vector<std::string> parts;
  if (!id.file.empty()) {
    parts = gguf_parts(id.file);
  } else if (exists_following_links(snap / "config.json")) {
    std::vector<std::string> missing;
    if (exists_following_links(snap / kIndexName)) {
      for (const auto& s : index_shards(snap / kIndexName)) {
        if (!exists_following_links(snap / s)) missing.push_back(s);
      }
      if (missing.empty()) return snap.string();
      *why = fmt::format("{} lacks {}", snap.string(), fmt::join(missing, ", "));
      return std::nullopt;
    }
    for (const auto& e : fs::directory_iterator(snap)) {
      if (ends_with(e.path().filename().string(), ".safetensors") &&
          exists_following_links(e.path())) {
        return snap.string();
      }
    }
  }
  if (parts.empty()) {
    std::vector<std::string> ggufs;
    for (auto it = fs::recursive_directory_iterator(snap); it != fs::recursive_directory_iterator();
         ++it) {
      std::string rel = it->path().lexically_relative(snap).string();
      if (ends_with(rel, ".gguf") && exists_following_links(it->path())) ggufs.push_back(rel);
    }
    if (ggufs.empty()) {
      *why = snap.string() + " has no safetensors weights with a config.json and no GGUF file";
      return std::nullopt;
    }
    std::sort(ggufs.begin(), ggufs.end());
    parts = gguf_parts(choose_gguf(ggufs, id.repo));
  }
  for (const auto& p : parts) {
    if (!exists_following_links(snap / p)) {
      *why = "no " + (snap / p).string();
      return std::nullopt;
    }
  }
  return (snap / parts[0]).string();
}

// Thrown when the hub cannot be reached (connection failure, 5xx), so the cache is tried.
class NetworkError : public Error {
 public:
  using Error::Error;
};

#ifdef LOWBIT_HAVE_CURL

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names, last response only
  std::string body;                            // error bodies and API JSON (capped)
  CURLcode code = CURLE_OK;
  std::string curl_error;
  uint64_t written = 0;  // bytes appended to the sink
};

struct Request {
  std::string url;
  bool head = false;
  bool follow = false;
  uint64_t resume_from = 0;  // sends Range: bytes=N- when > 0
  FILE* sink = nullptr;      // 200/206 body goes here when set
  size_t max_body = kMaxApiBytes;
  uint64_t total = 0;  // expected size for progress
  std::string file;    // name for progress
};

struct Transfer {
  const Request* req;
  const HubOptions* opt;
  Response* resp;
  CURL* curl;
  bool truncated_for_restart = false;
  bool too_big = false;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    t->resp->headers.clear();  // a new response (after a redirect): keep only the last one
  } else if (auto colon = line.find(':'); colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    t->resp->headers[name] = trim(line.substr(colon + 1));
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->req->sink && (status == 200 || status == 206)) {
    if (status == 200 && t->req->resume_from > 0 && !t->truncated_for_restart) {
      // The server ignored the Range header: start the file over.
      if (ftruncate(fileno(t->req->sink), 0) != 0 || fseek(t->req->sink, 0, SEEK_SET) != 0)
        return 0;
      t->truncated_for_restart = true;
    }
    if (fwrite(data, 1, bytes, t->req->sink) != bytes) return 0;
    t->resp->written += bytes;
    return bytes;
  }
  size_t cap = t->req->sink ? kMaxErrorBody : t->req->max_body;
  if (t->resp->body.size() + bytes > cap) {
    if (!t->req->sink) {
      t->too_big = true;
      return 0;  // aborts the transfer
    }
    bytes = std::min(bytes, cap - t->resp->body.size());
    t->resp->body.append(data, bytes);
    return size * n;
  }
  t->resp->body.append(data, bytes);
  return bytes;
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->opt->progress || !t->req->sink) return 0;
  uint64_t base = t->truncated_for_restart ? 0 : t->req->resume_from;
  uint64_t total = t->req->total ? t->req->total : (dltotal > 0 ? base + dltotal : 0);
  t->opt->progress(base + static_cast<uint64_t>(dlnow), total, t->req->file);
  return 0;
}

Response perform(const Request& req, const HubOptions& opt) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  Response resp;
  CURL* curl = curl_easy_init();
  if (!curl) fail("hub: curl_easy_init failed");
  Transfer t{&req, &opt, &resp, curl};
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* hdrs = nullptr;
  hdrs = curl_slist_append(hdrs, "User-Agent: lowbit/0.1; libcurl");
  if (!opt.token.empty())
    hdrs = curl_slist_append(hdrs, ("Authorization: Bearer " + opt.token).c_str());
  if (req.head) hdrs = curl_slist_append(hdrs, "Accept-Encoding: identity");
  std::string range;
  if (req.resume_from > 0) {
    range = "Range: bytes=" + std::to_string(req.resume_from) + "-";
    hdrs = curl_slist_append(hdrs, range.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOBODY, req.head ? 1L : 0L);
  // curl drops a custom Authorization header when a redirect leaves the host (the hub sends
  // LFS files to a CDN with signed URLs), unless CURLOPT_UNRESTRICTED_AUTH is set; it is not.
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, req.follow ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, opt.connect_timeout_s);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, opt.stall_timeout_s);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  resp.code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.status);
  resp.curl_error = errbuf[0] ? errbuf : curl_easy_strerror(resp.code);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(curl);
  if (t.too_big) fail("hub: {}: response larger than {} bytes", req.url, req.max_body);
  return resp;
}

std::string header(const Response& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? std::string() : it->second;
}

// One-line errors for HTTP failures, using the hub's X-Error-Code / X-Error-Message headers.
[[noreturn]] void throw_http_error(const Response& r, const std::string& url, const HubId& id,
                                   const std::string& file, const HubOptions& opt) {
  std::string code = header(r, "x-error-code");
  std::string msg = header(r, "x-error-message");
  if (msg.empty()) {
    msg = trim(r.body.substr(0, 200));
    for (char& c : msg) {
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
  }
  std::string detail = msg.empty() ? "" : " (" + msg + ")";
  std::string what = file.empty() ? id.repo : id.repo + "/" + file;
  bool has_token = !opt.token.empty();
  if (code == "GatedRepo" || (r.status == 403 && code.empty())) {
    fail(
        "hub: {} is gated or forbidden (HTTP {}){}: accept its conditions on {}/{} and set "
        "HF_TOKEN "
        "(or $HF_HOME/token) to a token of an account with access{}",
        id.repo, r.status, detail, opt.endpoint, id.repo,
        has_token ? "; the token given was refused" : "; no token is set");
  }
  if (r.status == 401 || code == "RepoNotFound") {
    fail(
        "hub: {}: repository not found or not accessible (HTTP {}){}: check the id; if it is "
        "private or gated set HF_TOKEN (or $HF_HOME/token){}",
        id.repo, r.status, detail, has_token ? " (the token given was refused)" : "");
  }
  if (code == "RevisionNotFound")
    fail("hub: {}: revision '{}' not found (HTTP 404){}", id.repo, id.revision, detail);
  if (code == "EntryNotFound" || (r.status == 404 && !file.empty())) {
    fail("hub: {}: file not found at revision {} (HTTP 404){}", what, id.revision, detail);
  }
  if (r.status == 404) fail("hub: {}: not found (HTTP 404 from {}){}", id.repo, url, detail);
  if (r.status == 429)
    throw NetworkError(fmt::format("hub: {}: rate limited (HTTP 429){}", what, detail));
  if (r.status >= 500)
    throw NetworkError(fmt::format("hub: {}: server error HTTP {}{}", what, r.status, detail));
  fail("hub: {}: unexpected HTTP {} from {}{}", what, r.status, url, detail);
}

struct RepoInfo {
  std::string commit;
  std::set<std::string> files;
};

RepoInfo fetch_info(const HubId& id, const HubOptions& opt) {
  Request req;
  req.url = opt.endpoint + "/api/models/" + id.repo + "/revision/" + url_quote(id.revision, false);
  req.follow = true;
  Response r = perform(req, opt);
  if (r.code != CURLE_OK) throw NetworkError(fmt::format("{}: {}", req.url, r.curl_error));
  if (r.status != 200) throw_http_error(r, req.url, id, "", opt);
  nlohmann::json j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) fail("hub: {}: response is not a JSON object", req.url);
  RepoInfo info;
  if (!j.contains("sha") || !j["sha"].is_string() || !is_commit_hash(j["sha"].get<std::string>())) {
    fail("hub: {}: \"sha\" missing or not a 40-hex commit hash", req.url);
  }
  info.commit = j["sha"].get<std::string>();
  if (!j.contains("siblings") || !j["siblings"].is_array())
    fail("hub: {}: \"siblings\" array missing", req.url);
  if (j["siblings"].size() > kMaxSiblings)
    fail("hub: {}: {} files, expected at most {}", req.url, j["siblings"].size(), kMaxSiblings);
  for (const auto& s : j["siblings"]) {
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string()) {
      fail("hub: {}: a \"siblings\" entry has no \"rfilename\" string", req.url);
    }
    std::string name = s["rfilename"].get<std::string>();
    // A hostile server could try to write outside the snapshot (rule 5): refuse the whole repo.
    if (!is_safe_repo_filename(name)) {
      fail(
          "hub: {}: the server lists an unsafe file name '{}' (absolute, '..', '.', empty part, "
          "backslash or control character); refusing this repo",
          id.repo, name);
    }
    info.files.insert(name);
  }
  return info;
}

// Holds an exclusive flock on the lock file huggingface_hub uses for the same blob.
class BlobLock {
 public:
  explicit BlobLock(const fs::path& path) {
    fs::create_directories(path.parent_path());
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~BlobLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  BlobLock(const BlobLock&) = delete;
  BlobLock& operator=(const BlobLock&) = delete;

 private:
  int fd_ = -1;
};

struct Repo {
  HubId id;
  fs::path dir;  // <cache>/models--org--name
  std::string commit;
  const HubOptions* opt;
};

std::string normalize_etag(std::string etag) {
  if (etag.rfind("W/", 0) == 0) etag = etag.substr(2);
  while (!etag.empty() && etag.front() == '"') etag.erase(etag.begin());
  while (!etag.empty() && etag.back() == '"') etag.pop_back();
  return etag;
}

// The blob name becomes a path component: only [A-Za-z0-9._-], not "." or "..".
bool is_safe_etag(const std::string& e) {
  if (e.empty() || e.size() > 256 || e == "." || e == "..") return false;
  return std::all_of(e.begin(), e.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// Resolves a Location header against the URL it came from.
std::string resolve_location(const std::string& base, const std::string& loc) {
  if (loc.find("://") != std::string::npos) return loc;
  size_t scheme = base.find("://");
  size_t host_end = base.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  std::string origin = host_end == std::string::npos ? base : base.substr(0, host_end);
  if (!loc.empty() && loc[0] == '/') return origin + loc;
  return base.substr(0, base.rfind('/') + 1) + loc;
}

void link_pointer(const fs::path& pointer, int depth, const std::string& etag) {
  // snapshots/<commit>/<a/b/file> -> ../../../blobs/<etag>: one ".." per folder below repo dir.
  std::string target;
  for (int i = 0; i < depth; i++) target += "../";
  target += "blobs/" + etag;
  fs::create_directories(pointer.parent_path());
  fs::path tmp = pointer;
  tmp += ".tmp-link-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_symlink(target, tmp, ec);
  if (ec) fail("hub: cannot create symlink {} -> {} ({})", tmp.string(), target, ec.message());
  fs::rename(tmp, pointer, ec);
  if (ec) fail("hub: cannot rename {} into place ({})", pointer.string(), ec.message());
}

void download_file(const Repo& repo, const std::string& file) {
  const HubOptions& opt = *repo.opt;
  fs::path pointer = repo.dir / "snapshots" / repo.commit / file;
  if (exists_following_links(pointer)) return;
  std::string url =
      opt.endpoint + "/" + repo.id.repo + "/resolve/" + repo.commit + "/" + url_quote(file, true);

  // HEAD, following only same-host (relative) redirects such as renamed repos.
  Request head;
  head.url = url;
  head.head = true;
  Response h;
  for (int hop = 0;; hop++) {
    h = perform(head, opt);
    if (h.code != CURLE_OK) throw NetworkError(fmt::format("{}: {}", head.url, h.curl_error));
    std::string loc = header(h, "location");
    bool relative = !loc.empty() && loc[0] == '/' && (loc.size() < 2 || loc[1] != '/');
    if (h.status >= 300 && h.status < 400 && relative && header(h, "x-linked-etag").empty() &&
        hop < 5) {
      head.url = resolve_location(head.url, loc);
      continue;
    }
    break;
  }
  bool redirect = h.status >= 300 && h.status < 400;
  if (h.status != 200 && !redirect) throw_http_error(h, head.url, repo.id, file, opt);
  std::string etag = header(h, "x-linked-etag");
  if (etag.empty()) etag = header(h, "etag");
  etag = normalize_etag(etag);
  if (!is_safe_etag(etag)) {
    fail("hub: {}/{}: ETag '{}' missing or not a plain token (expected hex digits)", repo.id.repo,
         file, etag);
  }
  std::optional<uint64_t> size;
  std::string size_str = header(h, "x-linked-size");
  if (size_str.empty() && !redirect) size_str = header(h, "content-length");
  if (!size_str.empty()) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(size_str.c_str(), &end, 10);
    if (end && *end == '\0') size = v;
  }
  std::string get_url = redirect ? resolve_location(head.url, header(h, "location")) : head.url;

  fs::path blob = repo.dir / "blobs" / etag;
  fs::create_directories(blob.parent_path());
  BlobLock lock(repo.dir.parent_path() / ".locks" / repo.dir.filename() / (etag + ".lock"));
  if (!exists_following_links(blob)) {
    fs::path part = blob;
    part += ".incomplete";
    for (int attempt = 0;; attempt++) {
      std::error_code ec;
      uint64_t have = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
      if (size && have > *size) {
        fs::resize_file(part, 0, ec);
        have = 0;
      }
      if (!size || have < *size) {
        FILE* f = std::fopen(part.c_str(), "ab");
        if (!f) fail("hub: cannot open {} for writing", part.string());
        Request get;
        get.url = get_url;
        get.follow = true;
        get.resume_from = have;
        get.sink = f;
        get.total = size.value_or(0);
        get.file = file;
        Response g = perform(get, opt);
        bool closed_ok = std::fclose(f) == 0;
        if (g.status == 416 && have > 0) {  // the partial file does not fit this blob: restart
          fs::remove(part, ec);
          if (attempt < opt.retries) continue;
        }
        if (g.code == CURLE_OK && g.status != 200 && g.status != 206) {
          throw_http_error(g, get_url, repo.id, file, opt);
        }
        if (g.code != CURLE_OK || !closed_ok) {
          uint64_t now = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
          if (attempt < opt.retries) continue;
          fail(
              "hub: download of {}/{} interrupted at {} of {} bytes ({}); run again to resume "
              "from {}",
              repo.id.repo, file, now, size ? std::to_string(*size) : "?", g.curl_error,
              part.string());
        }
      }
      uint64_t got = fs::file_size(part, ec);
      if (size && got != *size) {
        fs::remove(part, ec);
        fail("hub: {}/{}: downloaded {} bytes, expected {} (X-Linked-Size/Content-Length)",
             repo.id.repo, file, got, *size);
      }
      if (opt.progress) opt.progress(got, got, file);
      fs::rename(part, blob, ec);
      if (ec) fail("hub: cannot rename {} into place ({})", blob.string(), ec.message());
      break;
    }
  }
  int depth = 2 + static_cast<int>(std::count(file.begin(), file.end(), '/'));
  link_pointer(pointer, depth, etag);
}

std::string resolve_online(const HubId& id, const fs::path& repo_dir, const HubOptions& opt) {
  RepoInfo info = fetch_info(id, opt);
  Repo repo{id, repo_dir, info.commit, &opt};
  fs::path snap = repo_dir / "snapshots" / info.commit;
  auto has = [&](const std::string& f) { return info.files.count(f) > 0; };
  auto need = [&](const std::string& f) {
    if (!has(f)) fail("hub: {}@{} does not contain {}", id.repo, id.revision, f);
    download_file(repo, f);
  };
  std::string result;
  std::vector<std::string> top_safetensors, ggufs;
  bool has_pickle = false;
  for (const auto& f : info.files) {
    bool top = f.find('/') == std::string::npos;
    if (top && ends_with(f, ".safetensors")) top_safetensors.push_back(f);
    if (ends_with(f, ".gguf")) ggufs.push_back(f);
    if (ends_with(f, ".bin") || ends_with(f, ".pt") || ends_with(f, ".pth")) has_pickle = true;
  }
  if (!id.file.empty() || top_safetensors.empty()) {
    if (id.file.empty() && ggufs.empty()) {
      fail("hub: {}@{} has no safetensors or GGUF weights{}", id.repo, id.revision,
           has_pickle ? " (only pickled .bin/.pt/.pth files, which lowbit never loads: convert "
                        "them to safetensors)"
                      : "");
    }
    std::string chosen = id.file.empty() ? choose_gguf(ggufs, id.repo) : id.file;
    if (!has(chosen)) {
      fail("hub: {}@{} has no file {}; its GGUF files: {}", id.repo, id.revision, chosen,
           ggufs.empty() ? std::string("none") : fmt::format("{}", fmt::join(ggufs, ", ")));
    }
    for (const auto& p : gguf_parts(chosen)) need(p);
    result = (snap / chosen).string();
  } else {
    for (const char* f : kModelFiles) {
      if (has(f)) download_file(repo, f);
    }
    if (!has("config.json"))
      fail("hub: {}@{} has safetensors weights but no config.json", id.repo, id.revision);
    std::vector<std::string> weights;
    if (has(kIndexName)) {
      download_file(repo, kIndexName);
      weights = index_shards(snap / kIndexName);
    } else if (has("model.safetensors")) {
      weights = {"model.safetensors"};
    } else {
      weights = top_safetensors;
    }
    for (const auto& w : weights) need(w);
    result = snap.string();
  }
  // The ref is written last, so refs/<rev> only ever names a complete snapshot of ours.
  if (id.revision != info.commit) write_atomic(repo_dir / "refs" / id.revision, info.commit);
  return result;
}

#endif  // LOWBIT_HAVE_CURL

}  // namespace

std::string hub_default_endpoint() {
  std::string e = env_str("HF_ENDPOINT");
  if (e.empty()) e = "https://huggingface.co";
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

std::string hub_default_token() {
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}) {
    std::string t = trim(env_str(name));
    if (!t.empty()) return t;
  }
  std::string path = env_str("HF_TOKEN_PATH");
  if (path.empty()) path = hf_home() + "/token";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return "";
  try {
    return trim(read_small_file(path, 4096));
  } catch (const Error&) {
    return "";
  }
}

std::string hub_default_cache_dir() {
  for (const char* name : {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"}) {
    std::string c = env_str(name);
    if (!c.empty()) return c;
  }
  return hf_home() + "/hub";
}

bool hub_default_offline() {
  for (const char* name : {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}) {
    std::string v = env_str(name);
    std::transform(v.begin(), v.end(), v.begin(), ::toupper);
    if (v == "1" || v == "ON" || v == "YES" || v == "TRUE") return true;
  }
  return false;
}

bool is_safe_repo_filename(const std::string& name) {
  if (name.empty() || name.size() > 4096 || name.front() == '/') return false;
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f || c == '\\') return false;
  }
  std::stringstream ss(name);
  for (std::string part; std::getline(ss, part, '/');) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return name.back() != '/';
}

HubId parse_hub_id(const std::string& s) {
  std::string why;
  auto id = try_parse_hub_id(s, &why);
  if (!id) fail("'{}' is not a Hugging Face model id org/name[/file.gguf][@revision]: {}", s, why);
  return *id;
}

bool looks_like_hub_id(const std::string& s) {
  std::error_code ec;
  if (s.empty() || fs::exists(s, ec) || fs::is_symlink(s, ec)) return false;
  if (s[0] == '.' || s[0] == '/' || s[0] == '~') return false;
  auto id = try_parse_hub_id(s, nullptr);
  if (!id) return false;
  if (id->file.empty()) {
    std::string name = id->repo.substr(id->repo.find('/') + 1);
    for (const char* ext : {".gguf", ".safetensors", ".json", ".bin"}) {
      if (ends_with(name, ext)) return false;
    }
  }
  return true;
}

std::string choose_gguf(const std::vector<std::string>& names, const std::string& repo) {
  static const std::regex split_re(R"(.*-(\d{5})-of-\d{5}\.gguf)");
  std::vector<std::string> candidates;
  for (const auto& n : names) {
    if (!ends_with(n, ".gguf")) continue;
    std::string lower = n;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (lower.find("mmproj") != std::string::npos) continue;  // vision projectors, not a model
    std::smatch m;
    if (std::regex_match(n, m, split_re) && m[1].str() != "00001") continue;  // later parts
    candidates.push_back(n);
  }
  if (candidates.size() == 1) return candidates[0];
  if (candidates.empty()) fail("hub: {} has no GGUF model file", repo);
  // Preferred quantizations, matched as a whole tag in the upper-cased name.
  for (const char* tag : {"Q4_K_M", "Q4_0"}) {
    std::vector<std::string> hits;
    for (const auto& n : candidates) {
      std::string up = n;
      std::transform(up.begin(), up.end(), up.begin(), ::toupper);
      std::string t = tag;
      for (size_t pos = up.find(t); pos != std::string::npos; pos = up.find(t, pos + 1)) {
        auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
        bool left = pos == 0 || !word(up[pos - 1]);
        bool right = pos + t.size() >= up.size() || !word(up[pos + t.size()]);
        if (left && right) {
          hits.push_back(n);
          break;
        }
      }
    }
    if (hits.size() == 1) return hits[0];
    if (hits.size() > 1) {
      candidates = hits;  // ambiguous (e.g. several folders): list only these
      break;
    }
  }
  std::vector<std::string> shown(candidates.begin(),
                                 candidates.begin() + std::min<size_t>(candidates.size(), 30));
  fail(
      "hub: {} has {} GGUF files and none is the single Q4_K_M or Q4_0 one; pick one as {}/<file>: "
      "{}{}",
      repo, candidates.size(), repo, fmt::join(shown, ", "), candidates.size() > 30 ? ", ..." : "");
}

std::string hub_repo_cache_dir(const std::string& cache_dir, const std::string& repo) {
  std::string name = "models--" + repo;
  for (size_t p = name.find('/'); p != std::string::npos; p = name.find('/', p))
    name.replace(p, 1, "--");
  return (fs::path(cache_dir) / name).string();
}

namespace {

std::string resolve_hub_id(const std::string& id_or_path, const HubOptions& opt_in) {
  HubId id = parse_hub_id(id_or_path);
  HubOptions opt = opt_in;
  while (!opt.endpoint.empty() && opt.endpoint.back() == '/') opt.endpoint.pop_back();
  if (opt.cache_dir.empty()) fail("hub: no cache directory (set HF_HUB_CACHE or HF_HOME)");
  fs::path repo_dir = hub_repo_cache_dir(opt.cache_dir, id.repo);
  std::string label = id.repo + (id.file.empty() ? "" : "/" + id.file) +
                      (id.revision == "main" ? "" : "@" + id.revision);
  auto from_cache = [&](const std::string& reason, const std::string& cause) -> std::string {
    std::string why;
    if (auto p = find_cached(id, repo_dir, &why)) return *p;
    fail("{} and {} is not in the cache {} ({}{})", reason, label, repo_dir.string(), why, cause);
  };
  if (opt.offline) return from_cache("offline mode (HF_HUB_OFFLINE)", "");
#ifdef LOWBIT_HAVE_CURL
  try {
    return resolve_online(id, repo_dir, opt);
  } catch (const NetworkError& e) {
    return from_cache("no network", std::string("; ") + e.what());
  }
#else
  return from_cache("lowbit was built without libcurl, so it cannot download", "");
#endif
}

}  // namespace

std::string resolve_model(const std::string& id_or_path, const HubOptions& opt) {
  std::error_code ec;
  if (fs::exists(id_or_path, ec)) return id_or_path;
  if (!looks_like_hub_id(id_or_path)) {
    fail(
        "'{}' is neither an existing file or directory nor a Hugging Face model id "
        "(org/name[/file.gguf][@revision])",
        id_or_path);
  }
  try {
    return resolve_hub_id(id_or_path, opt);
  } catch (const fs::filesystem_error& e) {
    // Disk full, permissions, a file where the cache needs a folder: one line, as Error.
    fail("hub: {}: cache error: {}", id_or_path, e.what());
  }
}

}  // namespace lowbit::io
