// Loaders for HF model directories: tokenizer.json (+ tokenizer_config.json,
// generation_config.json) for byte-level BPE, and SentencePiece tokenizer.model (parsed here:
// ModelProto pieces/scores/types + trainer/normalizer options) for SPM BPE.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace lowbit::tokenizer {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open file", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json(const std::string& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

// "bos_token": "<s>" | {"content": "<s>", ...} | null
std::optional<std::string> token_text(const json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

// Collects pre-tokenizer stages; returns whether a ByteLevel step was seen.
bool add_pre_tokenizer(const json& pt, BpeSpec& spec, const std::string& path) {
  static const char* kGpt2 =
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
  if (pt.is_null()) return false;
  std::string type = pt.value("type", "");
  if (type == "Sequence") {
    bool bl = false;
    for (const auto& p : pt.at("pretokenizers")) bl |= add_pre_tokenizer(p, spec, path);
    return bl;
  }
  if (type == "Split") {
    const json& pat = pt.at("pattern");
    std::string re;
    if (pat.contains("Regex")) {
      re = pat["Regex"].get<std::string>();
    } else if (pat.contains("String")) {
      // A literal: quote it for PCRE2.
      re = "\\Q" + pat["String"].get<std::string>() + "\\E";
    } else {
      fail("{}: pre_tokenizer Split: pattern has neither Regex nor String", path);
    }
    std::string behavior = pt.value("behavior", "Isolated");
    if (pt.value("invert", false) || (behavior != "Isolated" && behavior != "Removed")) {
      fail(
          "{}: pre_tokenizer Split: behavior '{}' invert {} is not supported (expected "
          "Isolated or Removed, invert false)",
          path, behavior, pt.value("invert", false));
    }
    spec.stages.push_back({re, behavior == "Removed"});
    return false;
  }
  if (type == "ByteLevel") {
    spec.add_prefix_space = pt.value("add_prefix_space", false);
    if (pt.value("use_regex", true)) spec.stages.push_back({kGpt2, false});
    return true;
  }
  if (type == "Digits") {
    spec.stages.push_back({pt.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+", false});
    return false;
  }
  fail(
      "{}: pre_tokenizer type '{}' is not supported (expected Split, ByteLevel, Digits or "
      "Sequence)",
      path, type);
}

void add_normalizer(const json& n, BpeSpec& spec, const std::string& path) {
  if (n.is_null()) return;
  std::string type = n.value("type", "");
  if (type == "Sequence") {
    for (const auto& x : n.at("normalizers")) add_normalizer(x, spec, path);
  } else if (type == "NFC") {
    spec.nfc = true;
  } else {
    fail("{}: normalizer type '{}' is not supported (expected NFC or none)", path, type);
  }
}

// Finds BOS/EOS from a TemplateProcessing "single" template. Returns {bos piece, eos piece}.
void scan_post_processor(const json& pp, std::optional<std::string>& bos,
                         std::optional<std::string>& eos) {
  if (pp.is_null()) return;
  std::string type = pp.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : pp.at("processors")) scan_post_processor(p, bos, eos);
    return;
  }
  if (type != "TemplateProcessing" || !pp.contains("single")) return;
  bool seen_a = false;
  for (const auto& item : pp["single"]) {
    if (item.contains("Sequence")) {
      seen_a = true;
    } else if (item.contains("SpecialToken")) {
      std::string id = item["SpecialToken"].value("id", "");
      (seen_a ? eos : bos) = id;
    }
  }
}

std::unique_ptr<Tokenizer> load_spm_model(const std::string& path);

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& tokenizer_json,
                                               const std::string& tokenizer_config_json) {
  const std::string& path = tokenizer_json;
  json j = parse_json(path);
  BpeSpec spec;
  spec.source = path;
  std::unique_ptr<ByteBpeTokenizer> tok;
  std::vector<AddedToken> added;
  try {
    const json& model = j.at("model");
    std::string mtype = model.value("type", "BPE");
    if (mtype != "BPE") fail("{}: model.type '{}' is not supported (expected BPE)", path, mtype);
    int64_t max_id = -1;
    for (const auto& [piece, id] : model.at("vocab").items())
      max_id = std::max<int64_t>(max_id, id);
    if (j.contains("added_tokens")) {
      for (const auto& a : j["added_tokens"]) {
        AddedToken t;
        t.content = a.at("content").get<std::string>();
        t.id = a.at("id").get<int32_t>();
        t.special = a.value("special", false);
        t.lstrip = a.value("lstrip", false);
        t.rstrip = a.value("rstrip", false);
        t.single_word = a.value("single_word", false);
        max_id = std::max<int64_t>(max_id, t.id);
        added.push_back(t);
      }
    }
    if (max_id < 0 || max_id > (1 << 24)) fail("{}: vocab size {} out of range", path, max_id + 1);
    spec.vocab.resize(static_cast<size_t>(max_id + 1));
    for (const auto& [piece, id] : model["vocab"].items()) {
      int64_t i = id.get<int64_t>();
      if (i < 0) fail("{}: vocab entry '{}' has negative id {}", path, piece, i);
      spec.vocab[static_cast<size_t>(i)] = piece;
    }
    for (const auto& m : model.at("merges")) {
      if (m.is_string()) {
        std::string s = m.get<std::string>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          fail("{}: merge '{}' is not two pieces separated by one space", path, s);
        }
        spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2) {
        spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        fail("{}: merge entry {} is neither \"a b\" nor [a, b]", path, m.dump());
      }
    }
    spec.ignore_merges = model.value("ignore_merges", false);
    spec.byte_fallback = model.value("byte_fallback", false);
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = model["vocab"].find(model["unk_token"].get<std::string>());
      if (it != model["vocab"].end()) spec.unk_id = it->get<int32_t>();
    }
    add_normalizer(j.value("normalizer", json()), spec, path);
    if (!add_pre_tokenizer(j.value("pre_tokenizer", json()), spec, path)) {
      fail(
          "{}: pre_tokenizer has no ByteLevel step; only byte-level BPE tokenizer.json is "
          "supported (use tokenizer.model for SentencePiece models)",
          path);
    }
  } catch (const json::exception& e) {
    fail("{}: unexpected structure: {}", path, e.what());
  }
  tok = std::make_unique<ByteBpeTokenizer>(spec);
  for (const auto& a : added) tok->add_token(a);

  std::optional<std::string> bos_piece, eos_piece;
  scan_post_processor(j.value("post_processor", json()), bos_piece, eos_piece);
  bool add_bos = bos_piece.has_value(), add_eos = eos_piece.has_value();
  json cfg;
  if (!tokenizer_config_json.empty()) cfg = parse_json(tokenizer_config_json);
  if (cfg.is_object()) {
    // An explicit add_bos_token / add_eos_token wins (transformers rebuilds the post-processor).
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
      add_bos = cfg["add_bos_token"].get<bool>();
    }
    if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) {
      add_eos = cfg["add_eos_token"].get<bool>();
    }
    if (auto b = token_text(cfg, "bos_token")) bos_piece = b;
    if (auto e = token_text(cfg, "eos_token")) eos_piece = e;
    if (cfg.contains("chat_template")) {
      const json& ct = cfg["chat_template"];
      if (ct.is_string()) {
        tok->set_chat_template(ct.get<std::string>());
      } else if (ct.is_array()) {
        for (const auto& t : ct) {
          if (t.value("name", "") == "default" && t.contains("template")) {
            tok->set_chat_template(t["template"].get<std::string>());
          }
        }
      }
    }
  }
  std::optional<int32_t> bos_id;
  if (bos_piece) {
    bos_id = tok->token_id(*bos_piece);
    if (!bos_id) fail("{}: bos_token '{}' is not in the vocabulary", path, *bos_piece);
  }
  tok->set_bos(bos_id, add_bos);
  if (eos_piece) {
    auto eid = tok->token_id(*eos_piece);
    if (!eid) fail("{}: eos_token '{}' is not in the vocabulary", path, *eos_piece);
    tok->add_eos_id(*eid);
    tok->set_eos_text(*eos_piece);
  }
  tok->set_add_eos(add_eos);
  // generation_config.json's eos_token_id (int or list) lists the end-of-generation ids.
  fs::path gen = fs::path(path).parent_path() / "generation_config.json";
  if (fs::exists(gen)) {
    json g = parse_json(gen.string());
    if (g.contains("eos_token_id")) {
      const json& e = g["eos_token_id"];
      if (e.is_number_integer()) tok->add_eos_id(e.get<int32_t>());
      if (e.is_array()) {
        for (const auto& x : e) {
          if (x.is_number_integer()) tok->add_eos_id(x.get<int32_t>());
        }
      }
    }
  }
  return tok;
}

std::unique_ptr<Tokenizer> load_from_hf_dir(const std::string& dir) {
  fs::path d(dir);
  fs::path tj = d / "tokenizer.json", tc = d / "tokenizer_config.json", tm = d / "tokenizer.model";
  if (fs::exists(tj)) {
    try {
      return load_tokenizer_json(tj.string(), fs::exists(tc) ? tc.string() : "");
    } catch (const Error&) {
      if (!fs::exists(tm)) throw;  // e.g. a Metaspace tokenizer.json: use tokenizer.model
    }
  }
  if (fs::exists(tm)) {
    auto tok = load_spm_model(tm.string());
    return tok;
  }
  fail("{}: no tokenizer.json or tokenizer.model found", dir);
}

// ---- SentencePiece ModelProto (protobuf wire format) ----
namespace {

struct PbReader {
  const uint8_t* p;
  const uint8_t* end;
  const std::string& path;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) fail("{}: truncated protobuf varint", path);
      uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("{}: protobuf varint longer than 10 bytes", path);
  }
  // Returns the field's bytes for wire type 2, or skips other types.
  std::string_view bytes() {
    uint64_t n = varint();
    if (n > static_cast<uint64_t>(end - p)) fail("{}: protobuf length {} past the end", path, n);
    std::string_view s(reinterpret_cast<const char*>(p), n);
    p += n;
    return s;
  }
  void skip(uint32_t wire) {
    if (wire == 0) {
      varint();
    } else if (wire == 1) {
      advance(8);
    } else if (wire == 5) {
      advance(4);
    } else if (wire == 2) {
      bytes();
    } else {
      fail("{}: unsupported protobuf wire type {}", path, wire);
    }
  }
  void advance(size_t n) {
    if (n > static_cast<size_t>(end - p)) fail("{}: protobuf field past the end", path);
    p += n;
  }
  float f32() {
    advance(4);
    float f;
    std::memcpy(&f, p - 4, 4);
    return f;
  }
};

std::unique_ptr<Tokenizer> load_spm_model(const std::string& path) {
  std::string data = read_file(path);
  SpmSpec spec;
  spec.source = path;
  spec.remove_extra_whitespaces = true;  // protobuf defaults
  spec.add_space_prefix = true;
  int model_type = 1;  // UNIGRAM default
  int32_t bos = 1, eos = 2, unk = 0;
  PbReader r{reinterpret_cast<const uint8_t*>(data.data()),
             reinterpret_cast<const uint8_t*>(data.data()) + data.size(), path};
  while (r.p < r.end) {
    uint64_t key = r.varint();
    auto field = static_cast<uint32_t>(key >> 3), wire = static_cast<uint32_t>(key & 7);
    if (wire != 2) {
      r.skip(wire);
      continue;
    }
    std::string_view msg = r.bytes();
    PbReader m{reinterpret_cast<const uint8_t*>(msg.data()),
               reinterpret_cast<const uint8_t*>(msg.data()) + msg.size(), path};
    if (field == 1) {  // SentencePiece {1: piece, 2: score, 3: type}
      std::string piece;
      float score = 0;
      int type = 1;
      while (m.p < m.end) {
        uint64_t k = m.varint();
        auto f = static_cast<uint32_t>(k >> 3), w = static_cast<uint32_t>(k & 7);
        if (f == 1 && w == 2) {
          piece = std::string(m.bytes());
        } else if (f == 2 && w == 5) {
          score = m.f32();
        } else if (f == 3 && w == 0) {
          type = static_cast<int>(m.varint());
        } else {
          m.skip(w);
        }
      }
      if (type < 1 || type > 6)
        fail("{}: piece '{}' has type {}, expected 1..6", path, piece, type);
      spec.pieces.push_back(piece);
      spec.scores.push_back(score);
      spec.types.push_back(static_cast<SpmPieceType>(type));
    } else if (field == 2 || field == 3) {  // TrainerSpec / NormalizerSpec
      while (m.p < m.end) {
        uint64_t k = m.varint();
        auto f = static_cast<uint32_t>(k >> 3), w = static_cast<uint32_t>(k & 7);
        if (w != 0) {
          m.skip(w);
          continue;
        }
        auto v = static_cast<int64_t>(m.varint());
        if (field == 2 && f == 3) model_type = static_cast<int>(v);
        if (field == 2 && f == 40) unk = static_cast<int32_t>(v);
        if (field == 2 && f == 41) bos = static_cast<int32_t>(v);
        if (field == 2 && f == 42) eos = static_cast<int32_t>(v);
        if (field == 3 && f == 3) spec.add_space_prefix = v != 0;
        if (field == 3 && f == 4) spec.remove_extra_whitespaces = v != 0;
      }
    }
  }
  if (spec.pieces.empty()) fail("{}: no pieces found (not a SentencePiece model?)", path);
  if (model_type != 2) {
    fail("{}: SentencePiece model_type {} is not supported (expected 2 = BPE)", path, model_type);
  }
  const auto n = static_cast<int32_t>(spec.pieces.size());
  if (unk >= 0 && unk < n) spec.unk_id = unk;
  auto tok = std::make_unique<SpmTokenizer>(spec);
  std::optional<int32_t> bos_id;
  if (bos >= 0 && bos < n) bos_id = bos;
  tok->set_bos(bos_id, true);  // Llama 2: BOS by default, no EOS
  if (eos >= 0 && eos < n) {
    tok->add_eos_id(eos);
    tok->set_eos_text(spec.pieces[static_cast<size_t>(eos)]);
  }
  fs::path tc = fs::path(path).parent_path() / "tokenizer_config.json";
  if (fs::exists(tc)) {
    json cfg = parse_json(tc.string());
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
      tok->set_bos(bos_id, cfg["add_bos_token"].get<bool>());
    }
    if (cfg.contains("chat_template") && cfg["chat_template"].is_string()) {
      tok->set_chat_template(cfg["chat_template"].get<std::string>());
    }
  }
  return tok;
}

}  // namespace
}  // namespace lowbit::tokenizer
