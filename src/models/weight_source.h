// Where a model's tensors come from, under Hugging Face names ("model.layers.0.mlp.up_proj.weight")
// whatever the container: a safetensors checkpoint, or a GGUF file whose llama.cpp names
// ("blk.0.ffn_up.weight") are translated here (FORMATS.md §8.3).
#pragma once

#include <memory>
#include <string>

#include "core/tensor.h"

namespace lowbit::io {
class GgufFile;
class SafetensorsCheckpoint;
}  // namespace lowbit::io

namespace lowbit::models {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const TensorView* find(const std::string& hf_name) const = 0;
  // The name as stored in the file (for messages).
  virtual std::string stored_name(const std::string& hf_name) const = 0;
  virtual std::string path() const = 0;
};

std::unique_ptr<WeightSource> safetensors_source(const io::SafetensorsCheckpoint& ckpt,
                                                 std::string dir);
std::unique_ptr<WeightSource> gguf_source(const io::GgufFile& gguf);

// HF tensor name -> GGUF tensor name ("" when the name has no GGUF counterpart).
std::string hf_to_gguf_name(const std::string& hf_name);

}  // namespace lowbit::models
