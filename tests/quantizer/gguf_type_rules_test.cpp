// llama-quantize's per-tensor type choices, restated in io/gguf_type_rules, against what
// llama-quantize itself chose (tests/fixtures/quantizer/type_rules.json, written by
// tools/check_gguf_export.py): two synthetic llama models (16 layers with 4-way GQA and an
// untied output; 8 layers, no GQA, tied embeddings), every file type, with and without an
// importance matrix. Plus fallbacks for rows not divisible by 256 / 32 and the name lookup.
#include "io/gguf_type_rules.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_paths.h"

namespace lowbit::io {
namespace {

using nlohmann::json;

DType dtype_named(const std::string& n) {
  for (int i = 0; i < int(DType::kCount); ++i)
    if (name(DType(i)) == n) return DType(i);
  throw std::runtime_error("unknown type " + n);
}

TEST(GgufTypeRules, MatchLlamaQuantizeOnSyntheticModels) {
  std::ifstream f(testing::source_path("tests/fixtures/quantizer/type_rules.json"));
  ASSERT_TRUE(f) << "missing type_rules.json";
  const json j = json::parse(f);
  int checked = 0;
  for (const auto& [model_name, m] : j["models"].items()) {
    std::vector<TensorDesc> descs;
    for (const auto& t : m["tensors"])
      descs.push_back({t[0].get<std::string>(), t[1].get<std::vector<int64_t>>(),
                       dtype_named(t[2].get<std::string>())});
    const auto& c = m["config"];
    ModelShape shape{"llama", c["n_layer"].get<int>(), c["n_head"].get<int>(),
                     c["n_head_kv"].get<int>(), 0};
    for (const auto& [tag, types] : m["types"].items()) {
      const bool imatrix = tag.find("+imatrix") != std::string::npos;
      const auto ft = find_gguf_file_type(tag.substr(0, tag.find('+')));
      ASSERT_TRUE(ft) << tag;
      const auto got = choose_tensor_types(descs, shape, *ft, imatrix, false);
      for (size_t i = 0; i < descs.size(); ++i) {
        EXPECT_EQ(name(got[i].type), types[i].get<std::string>())
            << model_name << " " << tag << " " << descs[i].name;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 2000);
}

TEST(GgufTypeRules, FallbacksForOddRows) {
  const ModelShape shape{"llama", 4, 4, 4, 0};
  auto one = [&](std::vector<int64_t> s, const char* ftype) {
    std::vector<TensorDesc> d = {{"blk.0.attn_q.weight", s, DType::F32}};
    return choose_tensor_types(d, shape, *find_gguf_file_type(ftype), false, true)[0];
  };
  EXPECT_EQ(one({64, 256}, "Q4_K_S").type, DType::Q4_K);
  EXPECT_EQ(one({64, 96}, "Q4_K_S").type, DType::Q5_0);
  EXPECT_EQ(one({64, 96}, "Q5_K_S").type, DType::Q5_1);
  EXPECT_EQ(one({64, 96}, "Q6_K").type, DType::Q8_0);
  EXPECT_EQ(one({64, 96}, "Q2_K").type, DType::Q4_0);
  EXPECT_EQ(one({64, 96}, "Q3_K_S").type, DType::Q4_0);
  EXPECT_EQ(one({64, 96}, "IQ4_XS").type, DType::IQ4_NL);
  EXPECT_EQ(one({64, 172}, "IQ4_XS").type, DType::F16);
  EXPECT_EQ(one({64, 96}, "IQ3_S").type, DType::IQ4_NL);
  EXPECT_EQ(one({64, 96}, "IQ1_M").type, DType::IQ4_NL);
  EXPECT_EQ(one({64, 256}, "IQ2_M").type, DType::IQ2_S);
  EXPECT_EQ(one({64, 172}, "Q8_0").type, DType::F16);
  EXPECT_NE(one({64, 172}, "Q8_0").note.find("172"), std::string::npos);
  EXPECT_EQ(one({64, 172}, "BF16").type, DType::BF16);  // plain types have no block
  EXPECT_TRUE(one({64, 256}, "Q4_0").note.empty());
}

TEST(GgufTypeRules, KeepsNormsAndOneDimensionalTensors) {
  const ModelShape shape{"llama", 1, 4, 4, 0};
  std::vector<TensorDesc> d = {{"blk.0.attn_norm.weight", {256}, DType::F32},
                               {"blk.0.ffn_gate_inp.weight", {8, 256}, DType::F16},
                               {"blk.0.attn_q.bias", {256, 256}, DType::F32},
                               {"blk.0.ffn_up.weight", {256, 256}, DType::BF16}};
  const auto c = choose_tensor_types(d, shape, *find_gguf_file_type("q8_0"), false, false);
  EXPECT_FALSE(c[0].quantizable);
  EXPECT_EQ(c[0].type, DType::F32);
  EXPECT_EQ(c[1].type, DType::F16);
  EXPECT_EQ(c[2].type, DType::F32);
  EXPECT_EQ(c[3].type, DType::Q8_0);
}

TEST(GgufTypeRules, OutputAndTokenEmbeddingOverrides) {
  const ModelShape shape{"llama", 1, 4, 4, 0};
  const std::vector<TensorDesc> untied = {{"token_embd.weight", {512, 256}, DType::F32},
                                          {"output.weight", {512, 256}, DType::F32},
                                          {"blk.0.attn_q.weight", {256, 256}, DType::F32}};
  const auto ft = *find_gguf_file_type("Q4_K_M");
  auto c = choose_tensor_types(untied, shape, ft, false, false);
  EXPECT_EQ(c[0].type, DType::Q4_K);  // untied embeddings follow the default
  EXPECT_EQ(c[1].type, DType::Q6_K);
  c = choose_tensor_types(untied, shape, ft, false, false, {DType::Q8_0, DType::Q5_0});
  EXPECT_EQ(c[0].type, DType::Q5_0);
  EXPECT_EQ(c[1].type, DType::Q8_0);
  EXPECT_EQ(c[2].type, DType::Q4_K);
  // Tied embeddings take the output type unless a token-embedding type is given.
  const std::vector<TensorDesc> tied = {untied[0], untied[2]};
  c = choose_tensor_types(tied, shape, ft, false, false);
  EXPECT_EQ(c[0].type, DType::Q6_K);
  c = choose_tensor_types(tied, shape, ft, false, false, {DType::IQ4_XS, std::nullopt});
  EXPECT_EQ(c[0].type, DType::IQ4_XS);
  c = choose_tensor_types(tied, shape, ft, false, false, {DType::IQ4_XS, DType::F16});
  EXPECT_EQ(c[0].type, DType::F16);
}

TEST(GgufTypeRules, FileTypeNames) {
  EXPECT_EQ(find_gguf_file_type("q4_k_m")->llama_ftype, 15u);
  EXPECT_EQ(find_gguf_file_type("IQ4_XS")->default_type, DType::IQ4_XS);
  EXPECT_TRUE(find_gguf_file_type("Q2_K_S")->needs_imatrix);
  EXPECT_EQ(find_gguf_file_type("iq2_m")->default_type, DType::IQ2_S);
  EXPECT_EQ(find_gguf_file_type("IQ2_S")->default_type, DType::IQ2_XS);
  EXPECT_EQ(find_gguf_file_type("IQ3_XS")->default_type, DType::IQ3_S);
  EXPECT_EQ(find_gguf_file_type("IQ1_M")->llama_ftype, 31u);
  EXPECT_FALSE(find_gguf_file_type("Q1_0"));
  EXPECT_FALSE(find_gguf_file_type("Q4_K_MM"));
  EXPECT_NE(gguf_file_type_list().find("Q5_K_M"), std::string::npos);
}

// llama-quantize's tensor_requires_imatrix: the grid i-quants (but IQ3_S) everywhere except
// token_embd / output, Q2_K only in Q2_K_S files.
TEST(GgufTypeRules, WhichTensorsNeedAnImatrix) {
  const auto q2ks = *find_gguf_file_type("Q2_K_S"), q2k = *find_gguf_file_type("Q2_K");
  const auto iq2 = *find_gguf_file_type("IQ2_XXS");
  EXPECT_TRUE(tensor_requires_imatrix("blk.0.ffn_up.weight", DType::Q2_K, q2ks));
  EXPECT_FALSE(tensor_requires_imatrix("blk.0.ffn_up.weight", DType::Q2_K, q2k));
  for (DType t :
       {DType::IQ1_S, DType::IQ1_M, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS}) {
    EXPECT_TRUE(tensor_requires_imatrix("blk.3.attn_q.weight", t, iq2)) << name(t);
    EXPECT_FALSE(tensor_requires_imatrix("output.weight", t, iq2)) << name(t);
    EXPECT_FALSE(tensor_requires_imatrix("token_embd.weight", t, iq2)) << name(t);
  }
  EXPECT_FALSE(tensor_requires_imatrix("blk.3.attn_q.weight", DType::IQ3_S, iq2));
  EXPECT_FALSE(tensor_requires_imatrix("blk.3.attn_q.weight", DType::Q4_K, iq2));
}

TEST(GgufTypeRules, LlamaQuantizeOrder) {
  std::vector<TensorDesc> d = {{"blk.10.a", {1}, DType::F32},
                               {"blk.2.b", {1}, DType::F32},
                               {"output.weight", {1}, DType::F32},
                               {"blk.2.a", {1}, DType::F32},
                               {"token_embd.weight", {1}, DType::F32}};
  EXPECT_EQ(llama_quantize_order(d), (std::vector<size_t>{2, 4, 3, 1, 0}));
}

}  // namespace
}  // namespace lowbit::io
