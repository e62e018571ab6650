// Hugging Face Hub download into huggingface_hub's cache layout, so that files fetched by
// Python's huggingface_hub are reused here and vice versa:
//
//   <cache>/models--org--name/blobs/<etag>                    file contents (etag = sha256 for
//                                                              LFS files, git sha1 otherwise)
//   <cache>/models--org--name/snapshots/<commit>/<file>     -> ../../blobs/<etag> (relative link)
//   <cache>/models--org--name/refs/<revision>                commit hash text, no newline
//   <cache>/.locks/models--org--name/<etag>.lock             flock held while a blob is written
//
// Ids: "org/name", "org/name@revision", "org/name/path/file.gguf[@revision]".
// What is downloaded: config/tokenizer/generation files and safetensors weights (the shards
// named by model.safetensors.index.json when present). Pickled weights (.bin/.pt/.pth) are
// never downloaded (RELIABILITY.md rule 6). For a GGUF-only repo without a chosen file: the one
// GGUF file if there is one, else the one tagged Q4_K_M, else Q4_0, else an error listing them.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lowbit::io {

// Defaults follow huggingface_hub's environment variables.
std::string hub_default_endpoint();   // $HF_ENDPOINT or https://huggingface.co
std::string hub_default_token();      // $HF_TOKEN, else the file $HF_TOKEN_PATH or $HF_HOME/token
std::string hub_default_cache_dir();  // $HF_HUB_CACHE, else $HF_HOME/hub (~/.cache/huggingface)
bool hub_default_offline();           // $HF_HUB_OFFLINE in {1, ON, YES, TRUE}

struct HubOptions {
  std::string endpoint = hub_default_endpoint();
  std::string token = hub_default_token();
  std::string cache_dir = hub_default_cache_dir();
  bool offline = hub_default_offline();
  // Extra attempts within one call after a dropped connection; each resumes with a Range
  // request from the bytes already in blobs/<etag>.incomplete.
  int retries = 2;
  // Seconds to wait for a connection; a transfer slower than 1 byte/s for stall_timeout_s fails.
  long connect_timeout_s = 10;
  long stall_timeout_s = 60;
  // Called during downloads (bytes of `file` done so far, its total size or 0 if unknown).
  std::function<void(uint64_t done, uint64_t total, const std::string& file)> progress;
};

// A parsed id. `file` is empty unless one GGUF file was named.
struct HubId {
  std::string repo;               // "org/name"
  std::string revision = "main";  // branch, tag or commit hash
  std::string file;               // "path/inside/repo.gguf" or ""
};

// Parses "org/name[/path/file.gguf][@revision]"; throws lowbit::Error saying what is wrong.
HubId parse_hub_id(const std::string& s);

// True when `s` is not an existing local path and parses as a hub id. A two-part path whose
// name ends in .gguf/.safetensors/.json/.bin is treated as a missing local file, not an id.
bool looks_like_hub_id(const std::string& s);

// A file name listed by a repo is used only if it is a plain relative path: no "..", ".",
// empty or absolute components, no backslashes or control characters (RELIABILITY.md rule 5).
bool is_safe_repo_filename(const std::string& name);

// The GGUF choice rule above applied to a list of repo file names; returns the chosen name
// (the first part of a split "-00001-of-0000N.gguf" set) or throws listing the candidates.
std::string choose_gguf(const std::vector<std::string>& names, const std::string& repo);

// `<cache_dir>/models--org--name`.
std::string hub_repo_cache_dir(const std::string& cache_dir, const std::string& repo);

// Returns `id_or_path` unchanged when it exists locally; otherwise downloads (or finds in the
// cache) the model and returns the snapshot directory (safetensors repos) or the GGUF file.
// Offline mode or no network: uses the cached snapshot of the revision if it is complete.
std::string resolve_model(const std::string& id_or_path, const HubOptions& opt = HubOptions{});

}  // namespace lowbit::io
