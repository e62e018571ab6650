// Hub resolver against an in-process fake hub (fake_hub.h): cache layout as huggingface_hub
// writes it, resume after a dropped connection, offline/no-network reuse, HTTP error messages,
// hostile file names and GGUF selection. No network needed.
#include "io/hub.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "fake_hub.h"

namespace fs = std::filesystem;
using lowbit::io::HubOptions;
using lowbit::io::resolve_model;
using lowbit::testing::FakeHub;

namespace {

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Runs `fn` expecting a lowbit::Error; returns its message.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const lowbit::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected lowbit::Error";
  return "";
}

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef LOWBIT_HAVE_CURL
    GTEST_SKIP() << "built without libcurl";
#endif
    char tmpl[] = "/tmp/lowbit_hub_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    opt_.endpoint = hub_.endpoint();
    opt_.cache_dir = (tmp_ / "hub").string();
    opt_.token = "";
    opt_.offline = false;
    opt_.retries = 0;
    opt_.connect_timeout_s = 5;
    opt_.stall_timeout_s = 10;
  }
  void TearDown() override {
    if (!tmp_.empty()) fs::remove_all(tmp_);
  }

  // A safetensors repo with two shards, an index, tokenizer files and things never fetched.
  void add_safetensors_repo(const std::string& id) {
    hub_.repo(id).commit = kCommit;
    hub_.add_file(id, "config.json", R"({"model_type": "llama"})", false);
    hub_.add_file(id, "tokenizer.json", random_bytes(333, 1), false);
    hub_.add_file(id, "tokenizer_config.json", "{}", false);
    hub_.add_file(id, "generation_config.json", R"({"do_sample": false})", false);
    hub_.add_file(id, "model.safetensors.index.json",
                  R"({"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                      "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}})",
                  false);
    hub_.add_file(id, "model-00001-of-00002.safetensors", random_bytes(100003, 2), true);
    hub_.add_file(id, "model-00002-of-00002.safetensors", random_bytes(77777, 3), true);
    hub_.add_file(id, "consolidated.safetensors", random_bytes(1001, 4), true);
    hub_.add_file(id, "pytorch_model.bin", random_bytes(999, 5), true);
    hub_.add_file(id, "README.md", "# model", false);
    hub_.add_file(id, "original/consolidated.00.pth", random_bytes(555, 6), true);
  }

  fs::path repo_dir(const std::string& id) {
    return lowbit::io::hub_repo_cache_dir(opt_.cache_dir, id);
  }

  size_t count_log(const std::string& needle) {
    size_t n = 0;
    for (const auto& l : hub_.log()) n += l.find(needle) != std::string::npos;
    return n;
  }

  FakeHub hub_;
  fs::path tmp_;
  HubOptions opt_;
};

const std::vector<std::string> kExpectedFiles = {
    "config.json",          "generation_config.json",           "model-00001-of-00002.safetensors",
    "tokenizer.json",       "model-00002-of-00002.safetensors", "model.safetensors.index.json",
    "tokenizer_config.json"};

TEST_F(HubTest, SafetensorsRepoHasHuggingfaceHubLayout) {
  add_safetensors_repo("org/model");
  opt_.token = "tok123";
  std::vector<std::string> progress_files;
  std::map<std::string, std::pair<uint64_t, uint64_t>> last_progress;
  opt_.progress = [&](uint64_t done, uint64_t total, const std::string& file) {
    EXPECT_LE(done, total ? total : done);
    if (progress_files.empty() || progress_files.back() != file) progress_files.push_back(file);
    last_progress[file] = {done, total};
  };
  std::string path = resolve_model("org/model", opt_);
  fs::path dir = repo_dir("org/model");
  EXPECT_EQ(dir.filename(), "models--org--model");
  EXPECT_EQ(path, (dir / "snapshots" / kCommit).string());
  EXPECT_EQ(slurp(dir / "refs" / "main"), kCommit);  // no trailing newline, like huggingface_hub

  const auto& files = hub_.repo("org/model").files;
  std::set<std::string> blobs;
  for (const auto& name : kExpectedFiles) {
    fs::path pointer = fs::path(path) / name;
    ASSERT_TRUE(fs::is_symlink(pointer)) << name;
    const auto& f = files.at(name);
    EXPECT_EQ(fs::read_symlink(pointer).string(), "../../blobs/" + f.etag) << name;
    EXPECT_EQ(slurp(pointer), f.content) << name;
    blobs.insert(f.etag);
  }
  std::set<std::string> on_disk;
  for (const auto& e : fs::directory_iterator(dir / "blobs")) on_disk.insert(e.path().filename());
  EXPECT_EQ(on_disk, blobs);  // nothing else: no .bin/.pth/README/unindexed shard, no .incomplete
  std::set<std::string> snap_files;
  for (const auto& e : fs::directory_iterator(path)) snap_files.insert(e.path().filename());
  EXPECT_EQ(snap_files, std::set<std::string>(kExpectedFiles.begin(), kExpectedFiles.end()));
  EXPECT_TRUE(fs::exists(fs::path(opt_.cache_dir) / ".locks" / "models--org--model"));
  EXPECT_EQ(count_log("pytorch_model"), 0u);
  EXPECT_EQ(count_log("consolidated"), 0u);
  EXPECT_GT(count_log("auth=Bearer tok123"), 0u);
  EXPECT_GE(progress_files.size(), kExpectedFiles.size());
  auto shard_size = files.at("model-00001-of-00002.safetensors").content.size();
  EXPECT_EQ(last_progress["model-00001-of-00002.safetensors"],
            std::make_pair(uint64_t(shard_size), uint64_t(shard_size)));

  // Second call: everything is in the snapshot, only the API is asked.
  hub_.clear_log();
  EXPECT_EQ(resolve_model("org/model", opt_), path);
  EXPECT_EQ(hub_.log().size(), 1u);
  EXPECT_EQ(count_log("GET /api/models/org/model/revision/main"), 1u);
}

TEST_F(HubTest, CommitRevisionWritesNoRefAndNestedFilesLinkDeeper) {
  hub_.repo("org/g").commit = kCommit;
  hub_.add_file("org/g", "sub/dir/m-Q4_K_M.gguf", random_bytes(4097, 7), true);
  std::string p = resolve_model("org/g/sub/dir/m-Q4_K_M.gguf@" + kCommit, opt_);
  fs::path dir = repo_dir("org/g");
  EXPECT_EQ(p, (dir / "snapshots" / kCommit / "sub/dir/m-Q4_K_M.gguf").string());
  EXPECT_EQ(fs::read_symlink(p).string(),
            "../../../../blobs/" + hub_.repo("org/g").files.at("sub/dir/m-Q4_K_M.gguf").etag);
  EXPECT_FALSE(fs::exists(dir / "refs"));  // huggingface_hub writes refs only for branch/tag names
}

TEST_F(HubTest, ResumesAfterDroppedConnection) {
  add_safetensors_repo("org/model");
  const auto& shard = hub_.repo("org/model").files.at("model-00001-of-00002.safetensors");
  fs::path blob = repo_dir("org/model") / "blobs" / shard.etag;
  // The first body fetched (config.json, served directly, not via the CDN) is cut half-way.
  hub_.cut_next_bodies = 1;
  std::string msg = error_of([&] { resolve_model("org/model", opt_); });
  EXPECT_NE(msg.find("org/model/config.json interrupted"), std::string::npos) << msg;
  EXPECT_NE(msg.find("run again to resume"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(repo_dir("org/model") / "refs" / "main"));  // snapshot not complete

  // Also leave half of a shard in blobs/<etag>.incomplete, as huggingface_hub's older
  // versions (and a killed lowbit) do; the next call resumes both with Range requests.
  fs::path part = blob;
  part += ".incomplete";
  {
    std::ofstream f(part, std::ios::binary);
    f << shard.content.substr(0, shard.content.size() / 2);
  }
  hub_.clear_log();
  std::string path = resolve_model("org/model", opt_);
  EXPECT_EQ(slurp(fs::path(path) / "model-00001-of-00002.safetensors"), shard.content);
  EXPECT_FALSE(fs::exists(part));
  EXPECT_EQ(count_log("range=bytes=" + std::to_string(shard.content.size() / 2) + "-"), 1u);
  const auto& config = hub_.repo("org/model").files.at("config.json");
  EXPECT_EQ(count_log("range=bytes=" + std::to_string(config.content.size() / 2) + "-"), 1u);
  EXPECT_EQ(slurp(fs::path(path) / "config.json"), config.content);
  EXPECT_EQ(slurp(repo_dir("org/model") / "refs" / "main"), kCommit);
}

TEST_F(HubTest, ResumesWithinOneCallAndAcrossCalls) {
  hub_.repo("org/big").commit = kCommit;
  std::string data = random_bytes(1234567, 11);
  hub_.add_file("org/big", "big-Q4_0.gguf", data, true);
  const std::string etag = hub_.repo("org/big").files.at("big-Q4_0.gguf").etag;
  fs::path part = repo_dir("org/big") / "blobs" / (etag + ".incomplete");

  // Across calls: the cut leaves half the bytes; the next call asks for the rest only.
  hub_.cut_next_bodies = 1;
  std::string msg = error_of([&] { resolve_model("org/big", opt_); });
  EXPECT_NE(msg.find("interrupted at"), std::string::npos) << msg;
  ASSERT_TRUE(fs::exists(part));
  uint64_t half = fs::file_size(part);
  EXPECT_EQ(half, data.size() / 2);
  hub_.clear_log();
  std::string p = resolve_model("org/big", opt_);
  EXPECT_EQ(slurp(p), data);
  EXPECT_EQ(count_log("range=bytes=" + std::to_string(half) + "-"), 1u);

  // Within one call: two cuts, three attempts, each resuming where the last stopped.
  fs::remove_all(opt_.cache_dir);
  hub_.clear_log();
  hub_.cut_next_bodies = 2;
  opt_.retries = 2;
  p = resolve_model("org/big", opt_);
  EXPECT_EQ(slurp(p), data);
  EXPECT_EQ(count_log("range=bytes=" + std::to_string(data.size() / 2) + "-"), 1u);
  uint64_t second = data.size() / 2 + (data.size() - data.size() / 2) / 2;
  EXPECT_EQ(count_log("range=bytes=" + std::to_string(second) + "-"), 1u);

  // A server that ignores Range answers 200: the partial file is restarted, not appended to.
  fs::remove_all(opt_.cache_dir);
  opt_.retries = 1;
  hub_.cut_next_bodies = 1;
  hub_.ignore_range = true;
  p = resolve_model("org/big", opt_);
  EXPECT_EQ(slurp(p), data);
}

TEST_F(HubTest, OfflineAndNoNetworkReuseTheCache) {
  add_safetensors_repo("org/model");
  std::string path = resolve_model("org/model", opt_);
  hub_.clear_log();

  HubOptions off = opt_;
  off.offline = true;
  EXPECT_EQ(resolve_model("org/model", off), path);
  EXPECT_TRUE(hub_.log().empty());

  // No network: a port nobody listens on.
  HubOptions dead = opt_;
  {
    FakeHub gone;
    dead.endpoint = gone.endpoint();
  }
  EXPECT_EQ(resolve_model("org/model", dead), path);

  std::string msg = error_of([&] { resolve_model("org/other", dead); });
  EXPECT_NE(
      msg.find("no network and org/other is not in the cache " + repo_dir("org/other").string()),
      std::string::npos)
      << msg;
  msg = error_of([&] { resolve_model("org/other@v2", off); });
  EXPECT_NE(msg.find("offline"), std::string::npos) << msg;
  EXPECT_NE(msg.find("org/other@v2 is not in the cache"), std::string::npos) << msg;

  // A snapshot missing a shard is not complete.
  fs::remove(fs::path(path) / "model-00002-of-00002.safetensors");
  msg = error_of([&] { resolve_model("org/model", off); });
  EXPECT_NE(msg.find("lacks model-00002-of-00002.safetensors"), std::string::npos) << msg;
}

TEST_F(HubTest, ReusesACacheWrittenByHuggingfaceHub) {
  // The tree huggingface_hub's hf_hub_download leaves (file_download.py: blobs/<etag>,
  // snapshots/<commit>/<file> -> ../../blobs/<etag>, refs/main = commit): built by hand here.
  fs::path dir = repo_dir("Org-1/Tiny.Model_2");
  fs::create_directories(dir / "blobs");
  fs::create_directories(dir / "snapshots" / kCommit);
  fs::create_directories(dir / "refs");
  std::ofstream(dir / "refs" / "main") << kCommit;
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"}) {
    std::string etag = lowbit::testing::fake_hex(f, 64, 1);
    std::ofstream(dir / "blobs" / etag) << random_bytes(50, 3);
    fs::create_symlink("../../blobs/" + etag, dir / "snapshots" / kCommit / f);
  }
  opt_.offline = true;
  EXPECT_EQ(resolve_model("Org-1/Tiny.Model_2", opt_), (dir / "snapshots" / kCommit).string());
  EXPECT_EQ(resolve_model("Org-1/Tiny.Model_2@" + kCommit, opt_),
            (dir / "snapshots" / kCommit).string());
}

TEST_F(HubTest, HttpErrorsAreClear) {
  add_safetensors_repo("org/model");
  std::string msg = error_of([&] { resolve_model("org/missing", opt_); });
  EXPECT_NE(msg.find("org/missing: repository not found or not accessible (HTTP 401)"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("HF_TOKEN"), std::string::npos) << msg;

  msg = error_of([&] { resolve_model("org/model@nope", opt_); });
  EXPECT_NE(msg.find("revision 'nope' not found (HTTP 404)"), std::string::npos) << msg;

  msg = error_of([&] { resolve_model("org/model/none.gguf", opt_); });
  EXPECT_NE(msg.find("has no file none.gguf"), std::string::npos) << msg;

  hub_.repo("org/gated").commit = kCommit;
  hub_.repo("org/gated").gated_token = "secret";
  hub_.add_file("org/gated", "config.json", "{}", false);
  hub_.add_file("org/gated", "model.safetensors", random_bytes(99, 1), true);
  msg = error_of([&] { resolve_model("org/gated", opt_); });
  EXPECT_NE(msg.find("org/gated is gated or forbidden (HTTP 401)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("set HF_TOKEN"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no token is set"), std::string::npos) << msg;
  opt_.token = "wrong";
  msg = error_of([&] { resolve_model("org/gated", opt_); });
  EXPECT_NE(msg.find("(HTTP 403)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the token given was refused"), std::string::npos) << msg;
  opt_.token = "secret";
  EXPECT_TRUE(fs::exists(resolve_model("org/gated", opt_) + "/model.safetensors"));

  // Pickles only: never downloaded, and the message says what to do.
  hub_.repo("org/pickle").commit = kCommit;
  hub_.add_file("org/pickle", "config.json", "{}", false);
  hub_.add_file("org/pickle", "pytorch_model.bin", random_bytes(99, 1), true);
  msg = error_of([&] { resolve_model("org/pickle", opt_); });
  EXPECT_NE(msg.find("convert them to safetensors"), std::string::npos) << msg;
  EXPECT_EQ(count_log("pytorch_model.bin"), 0u);
}

TEST_F(HubTest, CacheProblemsAreErrors) {
  add_safetensors_repo("org/model");
  fs::create_directories(opt_.cache_dir);
  std::ofstream(repo_dir("org/model")) << "a file where the repo folder should be";
  std::string msg = error_of([&] { resolve_model("org/model", opt_); });
  EXPECT_NE(msg.find("hub: org/model: cache error:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Not a directory"), std::string::npos) << msg;
}

TEST_F(HubTest, RejectsHostileNames) {
  for (const std::string bad : {"../evil.json", "/etc/passwd", "a\\b.json", "a/./b.json",
                                "a//b.json", "x/../../y.json", "..", "new\nline.json"}) {
    SCOPED_TRACE(bad);
    hub_.repo("org/evil").commit = kCommit;
    hub_.repo("org/evil").extra_siblings = {bad};
    hub_.add_file("org/evil", "config.json", "{}", false);
    hub_.add_file("org/evil", "model.safetensors", "x", true);
    std::string msg = error_of([&] { resolve_model("org/evil", opt_); });
    EXPECT_NE(msg.find("unsafe file name"), std::string::npos) << msg;
  }
  // A shard index pointing outside the snapshot.
  hub_.repo("org/evil2").commit = kCommit;
  hub_.add_file("org/evil2", "config.json", "{}", false);
  hub_.add_file("org/evil2", "model.safetensors.index.json",
                R"({"weight_map": {"a": "../../../../escape.safetensors"}})", false);
  hub_.add_file("org/evil2", "x.safetensors", "x", true);
  std::string msg = error_of([&] { resolve_model("org/evil2", opt_); });
  EXPECT_NE(msg.find("expected a plain *.safetensors file name"), std::string::npos) << msg;
  // An ETag that would name a path, and a "sha" that is not a commit hash.
  hub_.repo("org/evil3").commit = kCommit;
  hub_.repo("org/evil3").etag_override = "../../../escape";
  hub_.add_file("org/evil3", "config.json", "{}", false);
  hub_.add_file("org/evil3", "model.safetensors", "x", true);
  msg = error_of([&] { resolve_model("org/evil3", opt_); });
  EXPECT_NE(msg.find("ETag '../../../escape'"), std::string::npos) << msg;
  hub_.repo("org/evil3").etag_override.clear();
  hub_.repo("org/evil3").sha_override = "../../../../tmp";
  msg = error_of([&] { resolve_model("org/evil3", opt_); });
  EXPECT_NE(msg.find("not a 40-hex commit hash"), std::string::npos) << msg;
  // Nothing escaped the cache.
  EXPECT_FALSE(fs::exists(tmp_ / "escape.safetensors"));
  EXPECT_FALSE(fs::exists(tmp_ / "escape"));

  EXPECT_FALSE(lowbit::io::is_safe_repo_filename("C:\\x"));
  EXPECT_FALSE(lowbit::io::is_safe_repo_filename("a/"));
  EXPECT_FALSE(lowbit::io::is_safe_repo_filename(""));
  EXPECT_TRUE(lowbit::io::is_safe_repo_filename("original/params.json"));
  EXPECT_TRUE(lowbit::io::is_safe_repo_filename("..hidden"));  // a name, not a parent link
}

TEST_F(HubTest, GgufSelection) {
  hub_.repo("org/q").commit = kCommit;
  hub_.add_file("org/q", "model-Q8_0.gguf", random_bytes(300, 1), true);
  hub_.add_file("org/q", "model-Q4_K_M.gguf", random_bytes(301, 2), true);
  hub_.add_file("org/q", "model-IQ4_K_M.gguf", random_bytes(302, 3), true);
  hub_.add_file("org/q", "mmproj-model-f16.gguf", random_bytes(303, 4), true);
  hub_.add_file("org/q", "README.md", "x", false);
  std::string p = resolve_model("org/q", opt_);
  EXPECT_EQ(fs::path(p).filename(), "model-Q4_K_M.gguf");
  EXPECT_EQ(slurp(p), hub_.repo("org/q").files.at("model-Q4_K_M.gguf").content);
  EXPECT_EQ(count_log("Q8_0"), 0u);
  // Named explicitly.
  p = resolve_model("org/q/model-Q8_0.gguf", opt_);
  EXPECT_EQ(slurp(p), hub_.repo("org/q").files.at("model-Q8_0.gguf").content);

  // Split GGUF: all parts downloaded, the first returned.
  hub_.repo("org/split").commit = kCommit;
  for (int i = 1; i <= 3; i++) {
    hub_.add_file("org/split", "m-Q4_0-0000" + std::to_string(i) + "-of-00003.gguf",
                  random_bytes(100 + i, i), true);
  }
  p = resolve_model("org/split", opt_);
  EXPECT_EQ(fs::path(p).filename(), "m-Q4_0-00001-of-00003.gguf");
  for (int i = 2; i <= 3; i++) {
    EXPECT_TRUE(fs::exists(fs::path(p).parent_path() /
                           ("m-Q4_0-0000" + std::to_string(i) + "-of-00003.gguf")));
  }

  using lowbit::io::choose_gguf;
  EXPECT_EQ(choose_gguf({"only.gguf", "mmproj.gguf"}, "o/r"), "only.gguf");
  EXPECT_EQ(choose_gguf({"a.Q6_K.gguf", "a.Q4_0.gguf", "a.Q4_0_4_4.gguf"}, "o/r"), "a.Q4_0.gguf");
  EXPECT_EQ(choose_gguf({"a-q4_k_m.gguf", "a-q4_0.gguf"}, "o/r"), "a-q4_k_m.gguf");
  std::string msg = error_of([&] { choose_gguf({"a.Q8_0.gguf", "a.Q6_K.gguf"}, "o/r"); });
  EXPECT_NE(msg.find("none is the single Q4_K_M or Q4_0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("a.Q8_0.gguf, a.Q6_K.gguf"), std::string::npos) << msg;
  msg = error_of([&] {
    choose_gguf({"x/a.Q4_K_M.gguf", "y/a.Q4_K_M.gguf", "a.Q8_0.gguf"}, "o/r");
  });
  EXPECT_NE(msg.find("x/a.Q4_K_M.gguf, y/a.Q4_K_M.gguf"), std::string::npos) << msg;

  // Offline, the same rule picks among the cached GGUF files.
  opt_.offline = true;
  EXPECT_EQ(fs::path(resolve_model("org/q", opt_)).filename(), "model-Q4_K_M.gguf");
}

#ifndef LOWBIT_HAVE_CURL
TEST(HubNoCurlTest, SaysSoAndStillUsesTheCache) {
  HubOptions o;
  o.cache_dir = "/nonexistent/lowbit-hub-cache";
  o.offline = false;
  std::string msg = error_of([&] { resolve_model("org/name", o); });
  EXPECT_NE(msg.find("built without libcurl"), std::string::npos) << msg;
}
#endif

TEST(HubIdTest, ParsesAndRecognisesIds) {
  using lowbit::io::looks_like_hub_id;
  using lowbit::io::parse_hub_id;
  auto id = parse_hub_id("meta-llama/Llama-3.2-1B@refs/pr/1");
  EXPECT_EQ(id.repo, "meta-llama/Llama-3.2-1B");
  EXPECT_EQ(id.revision, "refs/pr/1");
  EXPECT_EQ(id.file, "");
  id = parse_hub_id("bartowski/X-GGUF/sub/X-Q4_K_M.gguf@v1");
  EXPECT_EQ(id.repo, "bartowski/X-GGUF");
  EXPECT_EQ(id.file, "sub/X-Q4_K_M.gguf");
  EXPECT_EQ(id.revision, "v1");
  EXPECT_EQ(parse_hub_id("a/b").revision, "main");

  EXPECT_TRUE(looks_like_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
  EXPECT_TRUE(looks_like_hub_id("org/name/file.gguf"));
  EXPECT_TRUE(looks_like_hub_id("org/name@main"));
  for (const char* s :
       {"", "name", "/abs/path", "./org/name", "~/org/name", "org/name/", "org/name/config.json",
        "org/../x", "org/na--me", "-org/name", "org/name@", "org/name@../x", "models/tiny.gguf",
        "org/na me", "org/name/../../x.gguf"}) {
    EXPECT_FALSE(looks_like_hub_id(s)) << s;
  }
  // An existing local path is never an id.
  EXPECT_FALSE(looks_like_hub_id("tests/hub"));
  EXPECT_EQ(resolve_model("tests/hub", HubOptions{}), "tests/hub");
  std::string msg = error_of([] { resolve_model("no_such_dir/x.gguf", HubOptions{}); });
  EXPECT_NE(msg.find("is neither an existing file or directory nor a Hugging Face model id"),
            std::string::npos)
      << msg;
}

}  // namespace

namespace {

// Listing of a cache tree: "path" for folders/files, "path -> target" for links; .locks and
// transient files left out. Two caches holding the same snapshot list identically.
std::vector<std::string> tree(const fs::path& root) {
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    std::string rel = it->path().lexically_relative(root).string();
    // .locks, CACHEDIR.TAG and trees/<commit>.json (a listing cache of huggingface_hub >= 1.x's
    // snapshot_download) are bookkeeping, not part of the layout a reader depends on.
    if (rel.rfind(".locks", 0) == 0 || rel == "CACHEDIR.TAG") continue;
    if (rel.find("/trees") != std::string::npos) continue;
    if (it->is_symlink()) {
      out.push_back(rel + " -> " + fs::read_symlink(it->path()).string());
    } else {
      out.push_back(rel + (it->is_directory() ? "/" : " " + std::to_string(it->file_size())));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool have_python_hub() {
  return std::system("python3 -c 'import huggingface_hub' >/dev/null 2>&1") == 0;
}

// Downloads `files` of `repo` with Python's huggingface_hub into `cache` from `endpoint`.
int python_download(const std::string& endpoint, const fs::path& cache, const std::string& repo,
                    const std::vector<std::string>& files) {
  std::string patterns;
  for (const auto& f : files) patterns += "'" + f + "',";
  std::string cmd = "HF_ENDPOINT=" + endpoint + " HF_HUB_CACHE=" + cache.string() +
                    " HF_HUB_DISABLE_XET=1 HF_HUB_DISABLE_TELEMETRY=1 HF_TOKEN=tok"
                    " HF_HUB_DISABLE_PROGRESS_BARS=1 python3 -c \"from huggingface_hub import "
                    "snapshot_download as s; s('" +
                    repo + "', allow_patterns=[" + patterns + "])\" >/dev/null";
  return std::system(cmd.c_str());
}

// The same snapshot downloaded by Python's huggingface_hub and by lowbit gives the same tree,
// and each reuses the other's cache without downloading again.
TEST_F(HubTest, SameTreeAsPythonHuggingfaceHub) {
  if (!have_python_hub()) GTEST_SKIP() << "python3 with huggingface_hub not installed";
  add_safetensors_repo("org/model");
  hub_.repo("org/model").files.erase("original/consolidated.00.pth");
  hub_.add_file("org/model", "original/params.json", "{}", false);  // nested link depth
  fs::path py_cache = tmp_ / "py";
  ASSERT_EQ(python_download(hub_.endpoint(), py_cache, "org/model", kExpectedFiles), 0);
  resolve_model("org/model", opt_);
  std::vector<std::string> py_tree = tree(py_cache);
  // models--org--model/ blobs/ refs/ refs/main snapshots/ snapshots/<commit>/, 7 blobs, 7 links
  EXPECT_EQ(py_tree.size(), 6 + 7 + 7u);
  EXPECT_EQ(py_tree, tree(opt_.cache_dir));

  // lowbit reads Python's cache offline and online without fetching any file.
  HubOptions o = opt_;
  o.cache_dir = py_cache.string();
  hub_.clear_log();
  EXPECT_EQ(resolve_model("org/model", o),
            (py_cache / "models--org--model/snapshots" / kCommit).string());
  EXPECT_EQ(count_log("/resolve/"), 0u);
  o.offline = true;
  EXPECT_TRUE(fs::exists(resolve_model("org/model", o) + "/model-00002-of-00002.safetensors"));

  // Python reuses lowbit's cache: it asks for metadata but downloads no body.
  hub_.clear_log();
  ASSERT_EQ(python_download(hub_.endpoint(), opt_.cache_dir, "org/model", kExpectedFiles), 0);
  EXPECT_EQ(count_log("GET /cdn/"), 0u);
  for (const auto& l : hub_.log()) EXPECT_EQ(l.rfind("GET /org/", 0), std::string::npos) << l;

  // A nested file: Python's link is one level deeper; lowbit's matches.
  ASSERT_EQ(python_download(hub_.endpoint(), py_cache, "org/model", {"original/params.json"}), 0);
  fs::path nested = py_cache / "models--org--model/snapshots" / kCommit / "original/params.json";
  EXPECT_EQ(fs::read_symlink(nested).string(),
            "../../../blobs/" + hub_.repo("org/model").files.at("original/params.json").etag);
}

}  // namespace
