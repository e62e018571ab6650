// Opens a model from a path (HF directory with config.json, or a .gguf file), detects its
// quantization method, and builds the model and tokenizer.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "models/llama.h"
#include "models/model_config.h"
#include "quant/registry.h"
#include "tokenizer/tokenizer.h"

namespace lowbit::io {
class GgufFile;
class SafetensorsCheckpoint;
}  // namespace lowbit::io

namespace lowbit::engine {

struct LoadOptions {
  std::string quantization;   // "" = detect from the checkpoint
  bool progress_bar = false;  // draw a loading bar on stderr
  // Build the CPU model (LoadedModel::model). GPU runs set false: the CUDA backend loads the
  // weights from `source` itself, and some methods (online fp8) have no CPU kernels.
  bool cpu_model = true;
};

struct LoadedModel {
  LoadedModel();
  ~LoadedModel();
  LoadedModel(LoadedModel&&) noexcept;

  std::string path;
  std::unique_ptr<io::GgufFile> gguf;
  std::unique_ptr<io::SafetensorsCheckpoint> safetensors;
  std::unique_ptr<models::WeightSource> source;
  std::unique_ptr<quant::QuantConfig> quant;
  models::ModelConfig config;
  models::GenerationDefaults generation;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // null when the checkpoint has none
  std::unique_ptr<models::LlamaModel> model;        // null when LoadOptions::cpu_model is false

  // Throws when the model came without a tokenizer.
  const tokenizer::Tokenizer& require_tokenizer() const;
  std::vector<int32_t> eos_ids() const;  // generation config ∪ tokenizer's
};

// Which method a checkpoint uses: "gguf" for GGUF files, quantization_config.quant_method
// of config.json (or quantize_config.json), else "unquantized". `forced` (from
// --quantization) must agree with the checkpoint, except that a method registered with
// quantizes_online (int8, int4, bitsandbytes, ...) may be forced on an unquantized HF
// checkpoint or on a GGUF whose matrices are all F32/F16/BF16; it is then returned.
std::string detect_method(const std::string& model_path, const std::string& forced,
                          const quant::MethodRegistry& registry);

LoadedModel load_model(const std::string& path, const LoadOptions& options,
                       const quant::MethodRegistry& registry);

}  // namespace lowbit::engine
