// Parity with Hugging Face transformers (fp32 CPU) on tiny random-initialised Llama-family
// models, one per variant the loader and forward pass must handle: llama3 / linear rope
// scaling, explicit head_dim != hidden/heads, attention_bias + mlp_bias, tied and untied
// lm_head, Mistral, Qwen2 (q/k/v bias), Qwen3 (q/k RMSNorm), F32 / F16 / BF16 weights, both
// config.json layouts (rope_theta + rope_scaling, and transformers-5 rope_parameters), and the
// same weights as GGUF files (Q/K rows permuted for arch llama, rope_freqs.weight).
// Logits within 1e-4 relative (max|a-b| / max|ref|) and identical greedy tokens.
// Fixtures: tests/fixtures/tiny/, made by tools/gen_tiny_models.py (see its header).
#include <gtest/gtest.h>

#include <cstdio>

#include "model_test_util.h"
#include "test_paths.h"

namespace lowbit::testing {
namespace {

constexpr const char* kDir = "tests/fixtures/tiny";

// HF directory tests/fixtures/tiny/<name>/ against <name>.json.
void check_hf(const std::string& name) {
  double err = check_against_reference(source_path(std::string(kDir) + "/" + name), name, kDir);
  std::printf("  %s (safetensors): max relative logits error %.3g\n", name.c_str(), err);
}

// tests/fixtures/tiny/<name>.gguf (the same weights, F32) against the HF model's <name>.json.
void check_gguf(const std::string& name) {
  double err =
      check_against_reference(source_path(std::string(kDir) + "/" + name + ".gguf"), name, kDir);
  std::printf("  %s (gguf): max relative logits error %.3g\n", name.c_str(), err);
}

// Tied embeddings (SmolLM / Llama 3.2 style), F32.
TEST(TinyModels, LlamaTiedF32) { check_hf("llama_tied_f32"); }

// rope_scaling llama3 with a small original context, so the unchanged, smoothed and divided
// frequency bands all occur.
TEST(TinyModels, Llama3RopeF32) { check_hf("llama3_rope_f32"); }
TEST(TinyModels, Llama3RopeGguf) { check_gguf("llama3_rope_f32"); }

// Linear rope scaling, config in the transformers-5 "rope_parameters" layout.
TEST(TinyModels, LlamaLinearRopeF32) { check_hf("llama_linear_f32"); }

// head_dim 24 with hidden 48 / 4 heads, q/k/v/o and MLP biases, untied lm_head, BF16 weights.
TEST(TinyModels, LlamaHeadDim24BiasBf16) { check_hf("llama_hd24_bias_bf16"); }
// GGUF: key_length 24, permuted Q/K rows and biases.
TEST(TinyModels, LlamaHeadDim24BiasGguf) { check_gguf("llama_hd24_bias_bf16"); }

TEST(TinyModels, MistralF32) { check_hf("mistral_f32"); }

// q/k/v biases, untied lm_head, F16 weights.
TEST(TinyModels, Qwen2F16) { check_hf("qwen2_f16"); }
TEST(TinyModels, Qwen2Gguf) { check_gguf("qwen2_f16"); }

// q/k RMSNorm over head_dim 32 (!= 48/4), attention_bias (o_proj too), tied, BF16 weights,
// rope_parameters layout.
TEST(TinyModels, Qwen3Bf16) { check_hf("qwen3_bf16"); }
TEST(TinyModels, Qwen3Gguf) { check_gguf("qwen3_bf16"); }

}  // namespace
}  // namespace lowbit::testing
