// Tokenizer tests against ids from independent references (tools/gen_tokenizer_fixtures.py:
// HF tokenizers for llama3/qwen3 tokenizer.json, sentencepiece for the Llama 2
// tokenizer.model, transformers' GGUF conversion for SmolLM2), plus round trips and bad input.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "io/gguf.h"
#include "test_paths.h"
#include "tokenizer/text_util.h"

namespace lowbit::tokenizer {
namespace {

using lowbit::testing::shared_available;
using lowbit::testing::shared_path;
using lowbit::testing::source_path;
using nlohmann::json;

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string fnv1a(const std::vector<int32_t>& ids, size_t b, size_t e) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (size_t i = b; i < e; ++i) {
    auto v = static_cast<uint32_t>(ids[i]);
    for (int k = 0; k < 4; ++k) {
      h ^= (v >> (8 * k)) & 0xFF;
      h *= 0x100000001B3ull;
    }
  }
  return fmt::format("{:016x}", h);
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return out;
}

json fixture(const std::string& name) {
  return json::parse(read_all(source_path("tests/fixtures/tokenizer/" + name + ".json")));
}

// Compares one file's ids with the stored digest; on mismatch names the first bad block and,
// inside the first 200 ids, the first differing index.
void check_file(const Tokenizer& tok, const json& entry, const std::string& label) {
  std::string rel = entry["path"];
  std::string text = sanitize_utf8(read_all(shared_path(rel)));
  std::vector<int32_t> ids = tok.encode(text, false);
  auto first = entry["first"].get<std::vector<int32_t>>();
  for (size_t i = 0; i < first.size(); ++i) {
    ASSERT_LT(i, ids.size()) << label << " " << rel << ": only " << ids.size() << " ids";
    ASSERT_EQ(ids[i], first[i]) << label << " " << rel << ": first difference at id #" << i;
  }
  const auto& blocks = entry["blocks"];
  for (size_t k = 0; k < blocks.size(); ++k) {
    size_t b = k * 1024, e = std::min(ids.size(), b + 1024);
    ASSERT_LE(b, ids.size()) << label << " " << rel << ": only " << ids.size() << " ids";
    if (fnv1a(ids, b, e) != blocks[k].get<std::string>()) {
      std::string ctx;
      for (size_t i = b; i < std::min(e, b + 40); ++i) ctx += std::to_string(ids[i]) + " ";
      FAIL() << label << " " << rel << ": ids differ in block " << k << " (ids [" << b << ", "
             << b + 1024 << ")); ours start: " << ctx;
    }
  }
  EXPECT_EQ(ids.size(), entry["count"].get<size_t>()) << label << " " << rel;
  EXPECT_EQ(fnv1a(ids, 0, ids.size()), entry["fnv"].get<std::string>()) << label << " " << rel;
}

class HfTokenizerTest : public ::testing::TestWithParam<std::string> {
 protected:
  static const Tokenizer& get(const std::string& name) {
    static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
    auto& t = cache[name];
    if (!t) t = load_from_hf_dir(shared_path("models/tokenizers/" + name));
    return *t;
  }
  void SetUp() override {
    if (!shared_available()) GTEST_SKIP() << "../shared not available";
  }
};

TEST_P(HfTokenizerTest, EveryDataFileMatchesHfTokenizers) {
  const Tokenizer& tok = get(GetParam());
  json fx = fixture(GetParam());
  ASSERT_GE(fx["files"].size(), 10u);
  for (const auto& f : fx["files"]) check_file(tok, f, GetParam());
}

TEST_P(HfTokenizerTest, ShortStringsMatchHfTokenizers) {
  const Tokenizer& tok = get(GetParam());
  json fx = fixture(GetParam());
  ASSERT_GE(fx["strings"].size(), 20u);
  for (const auto& s : fx["strings"]) {
    std::string text = from_hex(s["hex"]);
    if (!nfc_available() && nfc(sanitize_utf8(text)) != sanitize_utf8(text)) continue;
    EXPECT_EQ(tok.encode(text, false), s["ids"].get<std::vector<int32_t>>()) << "text: " << text;
    EXPECT_EQ(tok.encode(text, true), s["ids_special"].get<std::vector<int32_t>>())
        << "text: " << text;
    EXPECT_EQ(tok.decode(tok.encode(text, false), false), from_hex(s["decoded_hex"]))
        << "text: " << text;
  }
}

TEST_P(HfTokenizerTest, DecodeRoundTripsEveryFile) {
  const Tokenizer& tok = get(GetParam());
  json fx = fixture(GetParam());
  ASSERT_GE(fx["files"].size(), 10u);
  for (const auto& f : fx["files"]) {
    std::string text = sanitize_utf8(read_all(shared_path(f["path"])));
    std::string expect = GetParam() == "qwen3" ? nfc(text) : text;  // Qwen normalizes to NFC
    std::string got = tok.decode(tok.encode(text, false), false);
    ASSERT_EQ(got.size(), expect.size()) << f["path"];
    EXPECT_TRUE(got == expect) << f["path"];
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, HfTokenizerTest, ::testing::Values("llama3", "qwen3"));

TEST(HfTokenizer, MetadataOfLlama3AndQwen3) {
  if (!shared_available()) GTEST_SKIP() << "../shared not available";
  auto l3 = load_from_hf_dir(shared_path("models/tokenizers/llama3"));
  EXPECT_EQ(l3->vocab_size(), 128256);
  EXPECT_EQ(l3->bos_id(), 128000);
  EXPECT_EQ(l3->bos_token_text(), "<|begin_of_text|>");
  EXPECT_EQ(l3->eos_token_text(), "<|end_of_text|>");
  EXPECT_EQ(l3->eos_ids().at(0), 128001);
  EXPECT_TRUE(l3->is_special(128009));
  EXPECT_FALSE(l3->is_special(1000));
  EXPECT_EQ(l3->token_id("<|eot_id|>"), 128009);
  EXPECT_EQ(l3->token_bytes(l3->token_id("Ġthe").value()), " the");
  auto q3 = load_from_hf_dir(shared_path("models/tokenizers/qwen3"));
  EXPECT_FALSE(q3->adds_bos());
  EXPECT_EQ(q3->eos_token_text(), "<|im_end|>");
  EXPECT_EQ(q3->eos_ids().at(0), 151645);
  ASSERT_TRUE(q3->chat_template().has_value());
  EXPECT_NE(q3->chat_template()->find("im_start"), std::string::npos);
  EXPECT_FALSE(q3->is_special(q3->token_id("<think>").value()));  // added, not special
  // decode(skip_special) drops control tokens only.
  auto ids = q3->encode("<|im_start|>user\nhi<|im_end|>", false);
  EXPECT_EQ(q3->decode(ids, true), "user\nhi");
}

TEST(HfTokenizer, EncodeSpeedLlama3) {
  if (!shared_available()) GTEST_SKIP() << "../shared not available";
  auto tok = load_from_hf_dir(shared_path("models/tokenizers/llama3"));
  std::string text = read_all(shared_path("data/wikitext2/wiki.test.raw"));
  auto t0 = std::chrono::steady_clock::now();
  auto ids = tok->encode(text, false);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("llama3 encode of wiki.test.raw: %.2f MB in %.3f s = %.2f MB/s (%zu tokens)\n",
              text.size() / 1e6, s, text.size() / 1e6 / s, ids.size());
  EXPECT_LT(s, 10.0);
}

TEST(SpmTokenizer, Llama2TokenizerModelMatchesSentencepiece) {
  if (!shared_available()) GTEST_SKIP() << "../shared not available";
  auto tok = load_from_hf_dir(shared_path("models/llama2-tokenizer"));
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_TRUE(tok->adds_bos());
  json fx = fixture("llama2");
  for (const auto& f : fx["files"]) check_file(*tok, f, "llama2");
  for (const auto& s : fx["strings"]) {
    std::string text = from_hex(s["hex"]);
    auto ids = tok->encode(text, false);
    EXPECT_EQ(ids, s["ids"].get<std::vector<int32_t>>()) << "text: " << text;
    EXPECT_EQ(tok->decode(ids, false), from_hex(s["decoded_hex"])) << "text: " << text;
    auto with_bos = tok->encode(text, true);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], 1);
    EXPECT_EQ(tok->decode(with_bos, true), from_hex(s["decoded_hex"])) << "text: " << text;
  }
  // Control tokens written in the text are recognised (HF LlamaTokenizerFast / llama.cpp).
  auto ids = tok->encode("hi</s>", false);
  EXPECT_EQ(ids.back(), 2);
}

TEST(SpmTokenizer, Stories260KGgufRoundTrip) {
  if (!shared_available()) GTEST_SKIP() << "../shared not available";
  auto gguf = io::GgufFile::open(shared_path("models/stories260K/gguf/stories260K-F32.gguf"));
  auto tok = load_from_gguf(*gguf);
  EXPECT_EQ(tok->vocab_size(), 512);
  std::string all = read_all(shared_path("data/tinystories/TinyStoriesV2-GPT4-valid.first100.txt"));
  std::string story = all.substr(0, all.find("<|endoftext|>"));
  ASSERT_GT(story.size(), 100u);
  auto ids = tok->encode(story, true);
  ASSERT_GT(ids.size(), 20u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_LT(ids.size(), story.size() / 2);  // merges happened
  EXPECT_EQ(tok->decode(ids, true), story);
  // Non-ASCII falls back to <0xNN> byte tokens and still round-trips.
  std::string odd = "Zoë 😀 naïve";
  EXPECT_EQ(tok->decode(tok->encode(odd, false), false), odd);
}

TEST(BpeTokenizer, SmolLM2GgufMatchesTransformers) {
  const char* env = std::getenv("LOWBIT_SMOLLM_GGUF");
  std::string path = env ? env : "";
  if (path.empty() || !std::filesystem::exists(path)) {
    GTEST_SKIP() << "set LOWBIT_SMOLLM_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf to run";
  }
  auto gguf = io::GgufFile::open(path);
  auto tok = load_from_gguf(*gguf);
  EXPECT_FALSE(tok->adds_bos());
  json fx = fixture("smollm2");
  for (const auto& f : fx["files"]) check_file(*tok, f, "smollm2");
  for (const auto& s : fx["strings"]) {
    std::string text = from_hex(s["hex"]);
    EXPECT_EQ(tok->encode(text, false), s["ids"].get<std::vector<int32_t>>()) << "text: " << text;
    EXPECT_EQ(tok->encode(text, true), s["ids_special"].get<std::vector<int32_t>>())
        << "text: " << text;
  }
  ASSERT_TRUE(tok->chat_template().has_value());
}

TEST(BpeTokenizer, TinyGgufGpt2Llama3PreMatchesHfTokenizers) {
  // Committed 17 kB GGUF (tools/gen_tokenizer_fixtures.py): model gpt2, pre llama-bpe, so the
  // GGUF byte-level path (Llama 3 regex, ignore_merges, default BOS) runs without ../shared.
  auto gguf = io::GgufFile::open(source_path("tests/fixtures/tokenizer/tiny_gpt2_llama3.gguf"));
  auto tok = load_from_gguf(*gguf);
  EXPECT_EQ(tok->vocab_size(), 700);
  EXPECT_TRUE(tok->adds_bos());
  EXPECT_EQ(tok->bos_token_text(), "<|begin_of_text|>");
  EXPECT_TRUE(tok->is_special(tok->token_id("<|eot_id|>").value()));
  json fx = fixture("tiny_gpt2_llama3");
  ASSERT_GE(fx["strings"].size(), 20u);
  for (const auto& s : fx["strings"]) {
    std::string text = from_hex(s["hex"]);
    auto ids = tok->encode(text, false);
    EXPECT_EQ(ids, s["ids"].get<std::vector<int32_t>>()) << "text: " << text.substr(0, 200);
    EXPECT_EQ(tok->encode(text, true), s["ids_special"].get<std::vector<int32_t>>())
        << "text: " << text.substr(0, 200);
    EXPECT_EQ(tok->decode(ids, false), sanitize_utf8(text));
  }
}

TEST(BadInput, PathologicalTextsStayFast) {
  // Long runs (one huge pre-token / regex match) and random bytes must neither hang nor crash.
  if (!shared_available()) GTEST_SKIP() << "../shared not available";
  auto l3 = load_from_hf_dir(shared_path("models/tokenizers/llama3"));
  auto l2 = load_from_hf_dir(shared_path("models/llama2-tokenizer"));
  std::string random_bytes(100000, '\0');
  uint32_t x = 12345;
  for (char& c : random_bytes) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  const std::vector<std::string> texts = {std::string(200000, ' '), std::string(200000, 'a'),
                                          std::string(100000, '\n') + "x", random_bytes,
                                          std::string(50000, '9')};
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& t : texts) {
    for (const Tokenizer* tok : {l3.get(), l2.get()}) {
      auto ids = tok->encode(t, true);
      EXPECT_FALSE(ids.empty());
      EXPECT_EQ(tok->decode(ids, true), sanitize_utf8(t));
    }
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 20.0);
}

TEST(TextUtil, SanitizeMatchesPythonReplace) {
  EXPECT_EQ(sanitize_utf8("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_EQ(sanitize_utf8("a\xFF"), "a\xEF\xBF\xBD");
  EXPECT_EQ(sanitize_utf8("\xE4\xBD"), "\xEF\xBF\xBD");  // one maximal subpart
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"),
            std::string(9, 'x').replace(
                0, 9,
                "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));  // surrogate: 3 bad bytes
  EXPECT_EQ(sanitize_utf8("\xF0\x9F\x98"), "\xEF\xBF\xBD");
}

TEST(BadInput, MissingAndMalformedFilesThrow) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "lowbit_tok_bad";
  fs::create_directories(dir);
  EXPECT_THROW(load_from_hf_dir((dir / "nope").string()), Error);
  auto write = [&](const std::string& name, const std::string& body) {
    std::ofstream(dir / name) << body;
    return (dir / name).string();
  };
  EXPECT_THROW(load_tokenizer_json(write("a.json", "{not json"), ""), Error);
  EXPECT_THROW(load_tokenizer_json(write("b.json", "{\"model\": {\"type\": \"Unigram\"}}"), ""),
               Error);
  EXPECT_THROW(load_tokenizer_json(write("c.json",
                                         "{\"model\": {\"type\": \"BPE\", \"vocab\": "
                                         "{\"a\": 0}, \"merges\": [\"a b\"]}, "
                                         "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}"),
                                   ""),
               Error);  // merge refers to a missing piece
  EXPECT_THROW(load_tokenizer_json(write("d.json",
                                         "{\"model\": {\"type\": \"BPE\", \"vocab\": "
                                         "{\"a\": 0}, \"merges\": []}}"),
                                   ""),
               Error);  // no ByteLevel pre-tokenizer
  std::string bad_model = write("tokenizer.model", std::string("\x0a\xff\xff\xff\x0f", 5));
  EXPECT_THROW(load_from_hf_dir(dir.string()), Error);  // truncated protobuf
  fs::remove_all(dir);
}

TEST(BpeTokenizer, TinyHandBuiltVocab) {
  // Vocab of a, b, ab, Ġ, Ġab with merges "a b" then "Ġ ab": checks rank order and
  // ignore_merges-free behaviour without any shared data.
  namespace fs = std::filesystem;
  fs::path p = fs::temp_directory_path() / "lowbit_tok_tiny.json";
  std::ofstream(p) << R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3,
    "Ġab": 4, "c": 5}, "merges": [["a", "b"], "Ġ ab"]}, "added_tokens": [{"id": 6,
    "content": "<x>", "special": true, "lstrip": true}], "pre_tokenizer": {"type": "ByteLevel",
    "add_prefix_space": false, "use_regex": true}})";
  auto tok = load_tokenizer_json(p.string(), "");
  EXPECT_EQ(tok->encode("ab ab", false), (std::vector<int32_t>{2, 4}));
  EXPECT_EQ(tok->encode("abc  <x>ab", false), (std::vector<int32_t>{2, 5, 6, 2}));  // lstrip
  EXPECT_EQ(tok->decode({2, 4, 6}, true), "ab ab");
  EXPECT_EQ(tok->decode({2, 4, 6}, false), "ab ab<x>");
  EXPECT_THROW(tok->token_bytes(99), Error);
  fs::remove(p);
}

}  // namespace
}  // namespace lowbit::tokenizer
